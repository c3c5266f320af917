//! `kvmtop serve --web.config.file` with TLS, a client CA and basic authentication: a real
//! Prometheus scrapes it over HTTPS with a client certificate and a password, and curl, a client
//! independent of kvmtop's TLS stack, checks what must be refused.

mod support;
#[path = "../src/output/serve/test_pki.rs"]
mod test_pki;

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use support::Observed;

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-me";

#[test]
fn prometheus_scrapes_over_tls_with_a_client_certificate_and_a_password() {
    const TEST: &str = "prometheus_scrapes_over_tls_with_a_client_certificate_and_a_password";
    if let Some(reason) = support::missing_prerequisite(false, &["prometheus", "curl"]) {
        return support::skip(TEST, &reason);
    }
    let dir = tempfile::tempdir().unwrap();
    let _pki = test_pki::Pki::write(dir.path());
    // The lowest cost: the test binary is a debug build, where each bcrypt run at cost 10 takes
    // long enough to time out the wrong-password job's scrapes (each of those runs bcrypt).
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    // Relative paths: the toolkit takes them from the web config's directory.
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .unwrap();

    let mut command = support::kvmtop();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--interval", "0.5"])
        .arg("--no-flight-recorder")
        .arg("--web.config.file")
        .arg(&web_config);
    let mut kvmtop = Observed::spawn(command);
    let address = support::prometheus::serving_address(&mut kvmtop, "https");

    // The right certificate and password: metrics, once the first sample is taken.
    let deadline = Instant::now() + Duration::from_secs(30);
    let good = loop {
        let reply = curl(
            dir.path(),
            address,
            &["--user", &format!("{USER}:{PASSWORD}")],
        );
        if reply.status == 200 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics over TLS within 30 s: {reply:?}"
        );
        thread::sleep(Duration::from_millis(250));
    };
    assert!(good.body.contains("kvmtop_source_up{"), "{}", good.body);
    assert!(
        good.headers.contains("x-content-type-options: nosniff"),
        "{}",
        good.headers
    );
    // HTTP/2 is offered by ALPN and works too.
    let h2 = curl(
        dir.path(),
        address,
        &["--http2", "--user", &format!("{USER}:{PASSWORD}")],
    );
    assert_eq!((h2.status, h2.version.as_str()), (200, "2"), "{h2:?}");

    everything_else_is_refused(dir.path(), address);

    prometheus_scrapes(dir.path(), address);
    // kvmtop survived all of it.
    assert!(matches!(kvmtop.child.try_wait(), Ok(None)), "kvmtop exited");
}

/// A real Prometheus, with one job with the right password and one with a wrong one: the first
/// is up and has series, the second is down with a 401.
fn prometheus_scrapes(dir: &Path, address: SocketAddr) {
    let (_prometheus, prometheus) = start_prometheus(dir, address);
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let targets = prometheus_get(prometheus, "/api/v1/targets");
        let health = |job: &str| {
            targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["labels"]["job"] == job)
                .map(|t| {
                    (
                        t["health"].as_str().unwrap_or("").to_owned(),
                        t["lastError"].as_str().unwrap_or("").to_owned(),
                    )
                })
        };
        let good = health("kvmtop");
        let refused = health("kvmtop-wrong-password");
        let query = prometheus_get(
            prometheus,
            "/api/v1/query?query=kvmtop_source_up%7Bjob%3D%22kvmtop%22%7D",
        );
        let series = query["data"]["result"].as_array().map_or(0, Vec::len);
        if let (Some((good, _)), Some((refused, error))) = (&good, &refused)
            && good == "up"
            && refused == "down"
            && series > 0
        {
            assert!(error.contains("401"), "wrong password job: {error}");
            eprintln!("Prometheus scraped {series} kvmtop_source_up series over TLS");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape within a minute: kvmtop {good:?}, wrong password \
             {refused:?}, {series} series"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// No password, a wrong one, an unknown user: 401 with a Basic challenge. A certificate from
/// another CA, or none: the TLS handshake fails. Plain HTTP: no metrics.
fn everything_else_is_refused(dir: &Path, address: SocketAddr) {
    for credentials in [
        &[][..],
        &["--user", "prometheus:wrong"][..],
        &["--user", "nobody:scrape-me"][..],
    ] {
        let reply = curl(dir, address, credentials);
        assert_eq!(reply.status, 401, "{credentials:?}: {reply:?}");
        assert!(
            reply.headers.contains("www-authenticate: basic"),
            "{credentials:?}: {reply:?}"
        );
        assert!(!reply.body.contains("kvmtop_"), "{reply:?}");
    }

    // A certificate from another CA, or none: the TLS handshake fails, no HTTP status at all.
    let rogue = curl_raw(
        dir,
        address,
        &[
            "--cert",
            "rogue.pem",
            "--key",
            "rogue-key.pem",
            "--user",
            &format!("{USER}:{PASSWORD}"),
        ],
    );
    assert_refused_at_handshake("a client certificate from another CA", &rogue);
    let anonymous = curl_raw(dir, address, &["--user", &format!("{USER}:{PASSWORD}")]);
    assert_refused_at_handshake("no client certificate", &anonymous);
    // Plain HTTP on the TLS port gets no metrics.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://{address}/metrics"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("kvmtop_"),
        "{plain:?}"
    );
}

#[derive(Debug)]
struct Reply {
    status: u16,
    version: String,
    headers: String,
    body: String,
}

/// GET /metrics over TLS with curl, trusting the test CA and presenting the test client's
/// certificate; `extra` adds to or overrides that.
fn curl(dir: &Path, address: SocketAddr, extra: &[&str]) -> Reply {
    let mut args = vec!["--cert", "client.pem", "--key", "client-key.pem"];
    args.extend_from_slice(extra);
    let output = curl_raw(dir, address, &args);
    assert!(output.status.success(), "curl failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (headers, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (body, trailer) = rest.rsplit_once('\n').unwrap_or((rest, ""));
    let (status, version) = trailer.split_once(' ').unwrap_or((trailer, ""));
    Reply {
        status: status.parse().unwrap_or(0),
        version: version.to_owned(),
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn curl_raw(dir: &Path, address: SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .current_dir(dir)
        .args(["-sS", "--max-time", "30", "--http1.1", "--cacert", "ca.pem"])
        .args(["-D", "-", "-o", "-", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .arg(format!("https://{address}/metrics"))
        .output()
        .unwrap()
}

fn assert_refused_at_handshake(what: &str, output: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success() && !stdout.contains("HTTP/") && !stdout.contains("kvmtop_"),
        "{what}: expected the TLS handshake to fail, got {output:?}"
    );
}

/// Starts Prometheus on loopback scraping `target`; returns it and its web address.
fn start_prometheus(dir: &Path, target: SocketAddr) -> (Observed, SocketAddr) {
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: ca.pem\n      \
             cert_file: client.pem\n      key_file: client-key.pem\n    basic_auth:\n      \
             username: {USER}\n      password: {password}\n    static_configs:\n      - targets: \
             ['{target}']\n"
        )
    };
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
            job("kvmtop", PASSWORD),
            job("kvmtop-wrong-password", "wrong")
        ),
    )
    .unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut command = Command::new("prometheus");
    command
        .current_dir(dir)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"));
    (Observed::spawn(command), web)
}

fn prometheus_get(prometheus: SocketAddr, path: &str) -> serde_json::Value {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{prometheus}{path}"))
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}
