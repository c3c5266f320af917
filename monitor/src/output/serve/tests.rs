//! The server loop with a web config, in this process on loopback, against a rustls client:
//! each client certificate policy, basic authentication, headers, ALPN, and a web config that
//! changes under the running server (renewed certificate, broken file, fixed file).

use std::path::Path;

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::oneshot,
};

use super::*;
use crate::testing::fixture;

const USERS: &str = "basic_auth_users:\n  prometheus: HASH\n";

struct Server {
    address: SocketAddr,
    dir: tempfile::TempDir,
    pki: test_pki::Pki,
    _snapshots: watch::Sender<Option<Exposition>>,
    _stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(web_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki::Pki::write(dir.path());
        let path = dir.path().join("web.yml");
        std::fs::write(&path, with_hash(web_config)).unwrap();
        let (access, _) = Access::open(path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let exposition = Exposition::new(Ok(crate::output::metrics::tests::full(
            &fixture::snapshot(),
        )));
        let (snapshots, receiver) = watch::channel(Some(exposition));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, receiver, Some(access), stopped));
        Self {
            address,
            dir,
            pki,
            _snapshots: snapshots,
            _stop: stop,
            task,
        }
    }

    fn rewrite(&self, web_config: &str) {
        std::fs::write(self.dir.path().join("web.yml"), with_hash(web_config)).unwrap();
    }

    /// GET /metrics over TLS; the reply's text, or why there is none.
    async fn get(&self, cert: Option<&str>, login: Option<(&str, &str)>) -> Result<String, String> {
        let (mut stream, _) = self.connect(cert, &[b"http/1.1"]).await?;
        let authorization = login.map_or_else(String::new, |(user, password)| {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Authorization: Basic {token}\r\n")
        });
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{authorization}\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        if reply.starts_with("HTTP/1.1 ") {
            Ok(reply)
        } else {
            Err(format!("no HTTP reply: {reply:?}"))
        }
    }

    /// A TLS connection offering `alpn`, and the server certificate it was shown.
    async fn connect(
        &self,
        cert: Option<&str>,
        alpn: &[&[u8]],
    ) -> Result<
        (
            tokio_rustls::client::TlsStream<TcpStream>,
            CertificateDer<'static>,
        ),
        String,
    > {
        let config = client_config(self.dir.path(), cert, alpn);
        let tcp = TcpStream::connect(self.address)
            .await
            .map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let shown = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        Ok((stream, shown))
    }

    fn still_serving(&self) -> bool {
        !self.task.is_finished()
    }
}

/// Puts a bcrypt hash (of "secret", lowest cost: these are debug builds) in place of HASH.
fn with_hash(web_config: &str) -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    web_config.replace(
        "HASH",
        HASH.get_or_init(|| bcrypt::hash("secret", 4).unwrap()),
    )
}

fn tls_with(client_auth: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  \
         client_ca_file: client-ca.pem\n  client_auth_type: {client_auth}\n"
    )
}

fn client_config(dir: &Path, cert: Option<&str>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let pem = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem("ca.pem")).unwrap())
        .unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some(name) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(&pem(&format!("{name}.pem"))).unwrap()],
                PrivateKeyDer::from_pem_slice(&pem(&format!("{name}-key.pem"))).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn status(reply: &Result<String, String>) -> Option<&str> {
    reply.as_ref().ok().and_then(|r| r.get(9..12))
}

#[tokio::test]
async fn a_client_needs_both_its_certificate_and_its_password() {
    let web = format!(
        "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n{USERS}",
        tls_with("RequireAndVerifyClientCert")
    );
    let server = Server::start(&web).await;
    let good = server
        .get(Some("client"), Some(("prometheus", "secret")))
        .await;
    assert_eq!(status(&good), Some("200"), "{good:?}");
    let good = good.unwrap();
    assert!(good.contains("kvmtop_source_up{") && good.contains("x-frame-options: deny"));

    for login in [
        None,
        Some(("prometheus", "wrong")),
        Some(("nobody", "secret")),
    ] {
        let reply = server.get(Some("client"), login).await;
        assert_eq!(status(&reply), Some("401"), "{login:?}: {reply:?}");
        let reply = reply.unwrap();
        assert!(reply.contains("www-authenticate: Basic"), "{reply}");
        // Headers go on refusals too, and nothing of the metrics.
        assert!(reply.contains("x-frame-options: deny") && !reply.contains("kvmtop_"));
    }
    for cert in [Some("rogue"), None] {
        let reply = server.get(cert, Some(("prometheus", "secret"))).await;
        assert!(reply.is_err(), "{cert:?} got {reply:?}");
    }
    assert!(server.still_serving());
}

#[tokio::test]
async fn each_client_certificate_policy_lets_in_whom_it_should() {
    let server = Server::start(&tls_with("RequireAndVerifyClientCert")).await;
    // (policy, extra settings, [client, rogue, no certificate] admitted?)
    let cases = [
        ("NoClientCert", "", [true, true, true]),
        ("RequestClientCert", "", [true, true, true]),
        ("RequireAnyClientCert", "", [true, true, false]),
        ("VerifyClientCertIfGiven", "", [true, false, true]),
        ("RequireAndVerifyClientCert", "", [true, false, false]),
        (
            "RequireAndVerifyClientCert",
            "  client_allowed_sans: [prometheus.kvmtop.test]\n",
            [true, false, false],
        ),
        (
            "RequireAndVerifyClientCert",
            "  client_allowed_sans: [someone.else]\n",
            [false, false, false],
        ),
        (
            "RequireAnyClientCert",
            "  client_allowed_sans: [prometheus.kvmtop.test]\n",
            [true, true, false],
        ),
    ];
    for (policy, extra, expected) in cases {
        let web = tls_with(policy);
        let web = if policy == "NoClientCert" {
            web.replace("  client_ca_file: client-ca.pem\n", "")
        } else {
            web
        };
        // The running server picks the new file up on the next connection.
        server.rewrite(&format!("{web}{extra}"));
        for (cert, admitted) in [Some("client"), Some("rogue"), None]
            .into_iter()
            .zip(expected)
        {
            let reply = server.get(cert, None).await;
            assert_eq!(
                status(&reply) == Some("200"),
                admitted,
                "{policy} {extra} with {cert:?}: {reply:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_changed_web_config_applies_to_new_connections() {
    let server = Server::start(&tls_with("RequireAndVerifyClientCert")).await;
    let (_, first) = server.connect(Some("client"), &[]).await.unwrap();
    // A renewed certificate is served without a restart.
    server.pki.renew_server(server.dir.path());
    let (_, renewed) = server.connect(Some("client"), &[]).await.unwrap();
    let on_disk = CertificateDer::from_pem_file(server.dir.path().join("server.pem")).unwrap();
    assert!(renewed != first && renewed == on_disk);

    // A file broken while running refuses new connections; it does not stop the server.
    server.rewrite("tls_server_config: [");
    assert!(server.get(Some("client"), None).await.is_err());
    std::fs::remove_file(server.dir.path().join("web.yml")).unwrap();
    assert!(server.get(Some("client"), None).await.is_err());
    // Nor may the scheme change under a listening address.
    server.rewrite(USERS);
    assert!(server.get(Some("client"), None).await.is_err());
    assert!(server.still_serving());
    // Fixed: served again; and a password added meanwhile is asked for.
    server.rewrite(&format!(
        "{}{USERS}",
        tls_with("RequireAndVerifyClientCert")
    ));
    let reply = server.get(Some("client"), None).await;
    assert_eq!(status(&reply), Some("401"), "{reply:?}");
    let reply = server
        .get(Some("client"), Some(("prometheus", "secret")))
        .await;
    assert_eq!(status(&reply), Some("200"), "{reply:?}");
}

#[tokio::test]
async fn http2_is_offered_unless_turned_off() {
    let server = Server::start(&tls_with("RequireAndVerifyClientCert")).await;
    let (stream, _) = server
        .connect(Some("client"), &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    server.rewrite(&format!(
        "{}http_server_config:\n  http2: false\n",
        tls_with("RequireAndVerifyClientCert")
    ));
    let (stream, _) = server
        .connect(Some("client"), &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn basic_auth_without_tls_works_on_plain_http() {
    let server = Server::start(USERS).await;
    let get = |login: Option<&str>| {
        let address = server.address;
        let login = login.map(str::to_owned);
        async move {
            let mut tcp = TcpStream::connect(address).await.unwrap();
            let authorization = login
                .map(|token| format!("Authorization: Basic {token}\r\n"))
                .unwrap_or_default();
            let request = format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{authorization}\r\n"
            );
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            tcp.read_to_string(&mut reply).await.unwrap();
            reply
        }
    };
    assert!(get(None).await.starts_with("HTTP/1.1 401"));
    // "prometheus:secret"
    assert!(
        get(Some("cHJvbWV0aGV1czpzZWNyZXQ="))
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn warns_when_metrics_leave_the_host_unprotected() {
    let open: SocketAddr = "0.0.0.0:9941".parse().unwrap();
    let loopback: SocketAddr = "127.0.0.1:9941".parse().unwrap();
    let parse = |text: &str| WebConfig::parse(text, Path::new(".")).unwrap();
    assert!(exposure_warnings(loopback, None).is_empty());
    let warnings = exposure_warnings(open, None);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("TLS is off") && warnings[1].contains("anyone"));
    let passwords_only = parse(&with_hash(USERS));
    let warnings = exposure_warnings(open, Some(&passwords_only));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("metrics and passwords cross the network in clear text"));
    let tls_only = parse("tls_server_config:\n  cert_file: c\n  key_file: k\n");
    let warnings = exposure_warnings("[::]:9941".parse().unwrap(), Some(&tls_only));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("RequireAndVerifyClientCert"));
    let mutual = parse(&tls_with("RequireAndVerifyClientCert"));
    assert!(exposure_warnings(open, Some(&mutual)).is_empty());
}
