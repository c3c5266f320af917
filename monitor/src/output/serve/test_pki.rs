//! Certificates made when the tests run, so that no private key is committed: a server CA with
//! a server certificate for `127.0.0.1`, `::1` and `localhost`; a client CA with one client;
//! and a "rogue" client signed by a CA nobody trusts. Used by the unit tests of `serve` and by
//! `tests/metrics_tls_e2e.rs`.
#![allow(
    dead_code,
    reason = "each user (unit tests, an integration test) takes a different part"
)]

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The SAN every client certificate carries (rogue included).
pub const CLIENT_SAN: &str = "prometheus.kvmtop.test";

/// Writes into `dir`: `ca.pem`, `server.pem`, `server-key.pem`, `client-ca.pem`, `client.pem`,
/// `client-key.pem`, `rogue.pem`, `rogue-key.pem`.
pub struct Pki {
    server_ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    #[must_use]
    pub fn write(dir: &Path) -> Self {
        let server_ca = authority("kvmtop test server CA");
        let client_ca = authority("kvmtop test client CA");
        let rogue_ca = authority("kvmtop test rogue CA");
        std::fs::write(dir.join("ca.pem"), server_ca.pem()).unwrap();
        std::fs::write(dir.join("client-ca.pem"), client_ca.pem()).unwrap();
        leaf(
            dir,
            "client",
            &client_ca,
            CLIENT_SAN,
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        leaf(
            dir,
            "rogue",
            &rogue_ca,
            CLIENT_SAN,
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pki = Self { server_ca };
        pki.renew_server(dir);
        pki
    }

    /// Writes a new server certificate and key, as a renewal would.
    pub fn renew_server(&self, dir: &Path) {
        let mut params = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        params.distinguished_name.push(DnType::CommonName, "kvmtop");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.server_ca).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    san: &str,
    usage: ExtendedKeyUsagePurpose,
) {
    let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}
