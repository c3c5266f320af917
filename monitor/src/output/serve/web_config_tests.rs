//! Parsing and checking of web configs, against the files in `tests/fixtures/web-config`:
//! `good-*.yml` must parse; each `bad-*.yml` must be refused with an error containing the text
//! of its first line, `# error: TEXT`.

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/web-config");

fn fixtures(prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
                && p.extension().is_some_and(|e| e == "yml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_good_file_parses() {
    let files = fixtures("good-");
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        if let Err(e) = WebConfig::load(&file) {
            panic!("{}: {e:#}", file.display());
        }
    }
}

#[test]
fn every_bad_file_is_refused_with_its_reason() {
    let files = fixtures("bad-");
    assert!(files.len() >= 20, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| panic!("{}: no '# error:' first line", file.display()));
        let error = match WebConfig::load(&file) {
            Ok(config) => panic!("{}: accepted: {config:?}", file.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains(expected),
            "{}: expected {expected:?} in:\n{error}",
            file.display()
        );
        // Every error names the file it is about, and quotes none of its secrets.
        assert!(error.contains(&*file.to_string_lossy()), "{error}");
        assert!(
            !error.contains("SECRET") && !error.contains("-->"),
            "{error}"
        );
    }
}

#[test]
fn the_full_file_means_what_it_says() {
    let config = WebConfig::load(&Path::new(FIXTURES).join("good-full.yml")).unwrap();
    let tls = config.tls.as_ref().unwrap();
    // Relative paths start at the file's directory, as in the toolkit.
    let Material::File(cert) = &tls.cert else {
        panic!("{:?}", tls.cert)
    };
    assert_eq!(cert, &Path::new(FIXTURES).join("server.pem"));
    assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
    assert!(matches!(&tls.client_ca, Some(Material::File(p)) if p.ends_with("client-ca.pem")));
    assert_eq!(
        tls.client_allowed_sans.as_deref(),
        Some(["prometheus.kvmtop.test".to_owned()].as_slice())
    );
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::Tls12, TlsVersion::Tls13)
    );
    assert!(tls.prefer_server_cipher_suites);
    assert!(!config.http2);
    let headers: Vec<String> = config
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [
            "strict-transport-security: max-age=31536000",
            "x-content-type-options: nosniff",
            "x-frame-options: deny"
        ]
    );
    assert_eq!(config.users.keys().collect::<Vec<_>>(), ["prometheus"]);
    assert!(config.authenticates());
    // Secrets stay out of debug output.
    assert!(!format!("{config:?}").contains("$2y$"));
}

#[test]
fn defaults_follow_the_toolkit() {
    let config = WebConfig::parse(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
        Path::new("/etc/kvmtop"),
    )
    .unwrap();
    let tls = config.tls.as_ref().unwrap();
    assert_eq!(tls.client_auth, ClientAuth::NoClientCert);
    assert_eq!(
        (tls.min_version, tls.max_version),
        (TlsVersion::Tls12, TlsVersion::Tls13)
    );
    assert!(config.http2, "HTTP/2 is on unless turned off");
    assert!(config.users.is_empty() && !config.authenticates());

    // Empty sections mean nothing is set.
    let config = WebConfig::load(&Path::new(FIXTURES).join("good-empty-sections.yml")).unwrap();
    assert!(config.tls.is_none() && config.users.is_empty() && config.headers.is_empty());
}

#[test]
fn client_auth_types_take_the_toolkit_names() {
    for (name, expected) in [
        ("NoClientCert", ClientAuth::NoClientCert),
        ("RequestClientCert", ClientAuth::RequestClientCert),
        ("RequireAnyClientCert", ClientAuth::RequireAnyClientCert),
        ("RequireClientCert", ClientAuth::RequireAnyClientCert),
        (
            "VerifyClientCertIfGiven",
            ClientAuth::VerifyClientCertIfGiven,
        ),
        (
            "RequireAndVerifyClientCert",
            ClientAuth::RequireAndVerifyClientCert,
        ),
    ] {
        let ca = if matches!(name, "NoClientCert") {
            ""
        } else {
            "  client_ca_file: ca.pem\n"
        };
        let text = format!(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: {name}\n{ca}"
        );
        let config =
            WebConfig::parse(&text, Path::new(".")).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(config.tls.unwrap().client_auth, expected, "{name}");
    }
}

#[test]
fn inline_pem_is_taken_as_is() {
    let text = "tls_server_config:\n  cert: |\n    PEM CERT\n  key: |\n    PEM KEY\n";
    let tls = WebConfig::parse(text, Path::new(".")).unwrap().tls.unwrap();
    assert!(matches!(&tls.cert, Material::Inline(s) if s.expose() == "PEM CERT\n"));
    assert!(!format!("{tls:?}").contains("PEM KEY"));
}

#[test]
fn a_missing_file_is_named() {
    let error = format!(
        "{:#}",
        WebConfig::load(Path::new("/nonexistent/web.yml")).unwrap_err()
    );
    assert!(error.contains("/nonexistent/web.yml"), "{error}");
}
