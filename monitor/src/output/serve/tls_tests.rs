//! Building the rustls configuration from certificates made by the test, and the errors for
//! files that are missing, empty or do not belong together.

use std::path::Path;

use super::*;
use crate::output::serve::{test_pki, web_config::WebConfig};

fn settings(dir: &Path, tls: &str) -> TlsSettings {
    let text =
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{tls}");
    WebConfig::parse(&text, dir)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .tls
        .unwrap()
}

fn error(dir: &Path, tls: &str) -> String {
    format!(
        "{:#}",
        server_config(&settings(dir, tls), true).unwrap_err()
    )
}

#[test]
fn builds_for_every_client_auth_type() {
    let dir = tempfile::tempdir().unwrap();
    let _pki = test_pki::Pki::write(dir.path());
    for (auth, mandatory) in [
        ("NoClientCert", None),
        ("RequestClientCert", Some(false)),
        ("RequireAnyClientCert", Some(true)),
        ("VerifyClientCertIfGiven", Some(false)),
        ("RequireAndVerifyClientCert", Some(true)),
    ] {
        let ca = if auth == "NoClientCert" {
            String::new()
        } else {
            "  client_ca_file: client-ca.pem\n".to_owned()
        };
        let settings = settings(dir.path(), &format!("  client_auth_type: {auth}\n{ca}"));
        let verifier = client_verifier(&settings, &Arc::new(ring::default_provider())).unwrap();
        let offered = verifier
            .offer_client_auth()
            .then(|| verifier.client_auth_mandatory());
        assert_eq!(offered, mandatory, "{auth}");
        server_config(&settings, true).unwrap_or_else(|e| panic!("{auth}: {e:#}"));
    }
}

#[test]
fn offers_http2_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let _pki = test_pki::Pki::write(dir.path());
    let settings = settings(dir.path(), "");
    assert_eq!(
        server_config(&settings, true).unwrap().alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert_eq!(
        server_config(&settings, false).unwrap().alpn_protocols,
        [b"http/1.1".to_vec()]
    );
}

#[test]
fn bad_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let _pki = test_pki::Pki::write(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    std::fs::write(
        dir.path().join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n",
    )
    .unwrap();

    std::fs::remove_file(dir.path().join("server.pem")).unwrap();
    let e = error(dir.path(), "");
    assert!(
        e.contains(&format!("cannot read cert_file '{}'", path("server.pem"))),
        "{e}"
    );
    let _pki = test_pki::Pki::write(dir.path());

    let with = |key: &str, file: &str| {
        let text = "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n"
            .replace(
                &format!("{key}: {}", default_file(key)),
                &format!("{key}: {file}"),
            );
        let settings = WebConfig::parse(&text, dir.path()).unwrap().tls.unwrap();
        format!("{:#}", server_config(&settings, true).unwrap_err())
    };
    let e = with("cert_file", "empty.pem");
    assert!(
        e.contains("no certificate in it") && e.contains(&path("empty.pem")),
        "{e}"
    );
    let e = with("cert_file", "garbage.pem");
    assert!(
        e.contains("not valid PEM") && e.contains(&path("garbage.pem")),
        "{e}"
    );
    let e = with("key_file", "empty.pem");
    assert!(e.contains("no usable private key"), "{e}");
    // The client's key with the server's certificate.
    let e = with("key_file", "client-key.pem");
    assert!(e.contains("do not go together"), "{e}");
    let e = with("client_ca_file", "empty.pem");
    assert!(e.contains("no certificate in it"), "{e}");
    let e = with("client_ca_file", "missing.pem");
    assert!(e.contains(&path("missing.pem")), "{e}");
}

fn default_file(key: &str) -> &'static str {
    match key {
        "cert_file" => "server.pem",
        "key_file" => "server-key.pem",
        _ => "client-ca.pem",
    }
}

#[test]
fn cipher_suites_and_curves_take_go_names() {
    let dir = tempfile::tempdir().unwrap();
    let _pki = test_pki::Pki::write(dir.path());
    let settings = settings(
        dir.path(),
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256]\n  \
         curve_preferences: [CurveP384, X25519]\n",
    );
    let provider = provider(&settings).unwrap();
    let suites: Vec<&str> = provider
        .cipher_suites
        .iter()
        .filter_map(|s| s.suite().as_str())
        .collect();
    // TLS 1.3 suites stay, as in Go; of TLS 1.2, only the one named.
    assert!(suites.contains(&"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"));
    assert!(!suites.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"));
    assert!(suites.iter().any(|s| s.starts_with("TLS13_")), "{suites:?}");
    let groups: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
    assert_eq!(
        groups,
        [rustls::NamedGroup::secp384r1, rustls::NamedGroup::X25519]
    );

    let e = error(dir.path(), "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n");
    assert!(
        e.contains("'TLS_RSA_WITH_RC4_128_SHA' is not available")
            && e.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        "{e}"
    );
    let e = error(dir.path(), "  curve_preferences: [CurveP521]\n");
    assert!(e.contains("CurveP521 is not available"), "{e}");
    let e = error(dir.path(), "  curve_preferences: [P256]\n");
    assert!(e.contains("'P256' is not one of"), "{e}");
}

#[test]
fn tls_versions_map_onto_what_rustls_speaks() {
    use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
    let dir = tempfile::tempdir().unwrap();
    let _pki = test_pki::Pki::write(dir.path());
    let names = |tls: &str| -> Vec<_> {
        versions(&settings(dir.path(), tls))
            .iter()
            .map(|v| v.version)
            .collect()
    };
    assert_eq!(names(""), [TLSv1_2, TLSv1_3]);
    assert_eq!(names("  min_version: TLS10\n"), [TLSv1_2, TLSv1_3]);
    assert_eq!(names("  min_version: TLS13\n"), [TLSv1_3]);
    assert_eq!(names("  max_version: TLS12\n"), [TLSv1_2]);
}

#[test]
fn reads_subject_alt_names_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let _pki = test_pki::Pki::write(dir.path());
    let der = |name: &str| {
        let pem = std::fs::read(dir.path().join(name)).unwrap();
        CertificateDer::from_pem_slice(&pem).unwrap()
    };
    assert_eq!(
        subject_alt_names(&der("client.pem")).unwrap(),
        [test_pki::CLIENT_SAN]
    );
    assert_eq!(
        subject_alt_names(&der("server.pem")).unwrap(),
        ["127.0.0.1", "::1", "localhost"]
    );
    assert!(subject_alt_names(&CertificateDer::from(vec![1, 2, 3])).is_none());
}
