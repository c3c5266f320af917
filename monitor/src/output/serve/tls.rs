//! TLS of `kvmtop serve`: a rustls server configuration made from the `tls_server_config` of the
//! web config. It is made afresh for every connection, from the files as they are then, so a
//! renewed certificate is served without a restart.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use anyhow::{Context as _, bail};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    ServerConfig, SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
    client::danger::HandshakeSignatureValid,
    crypto::{
        CryptoProvider, WebPkiSupportedAlgorithms, ring, verify_tls12_signature,
        verify_tls13_signature,
    },
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject as _},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use x509_parser::extensions::GeneralName;

use super::web_config::{ClientAuth, Material, TlsSettings, TlsVersion};

/// The rustls configuration for `settings`; `http2` offers HTTP/2 by ALPN.
pub fn server_config(settings: &TlsSettings, http2: bool) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(provider(settings)?);
    let chain = certificates(&settings.cert, "cert")?;
    let key = private_key(&settings.key)?;
    let verifier = client_verifier(settings, &provider)?;
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions(settings))
        .context("min_version/max_version")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| anyhow::anyhow!("the certificate and key do not go together: {e}"))?;
    config.ignore_client_order = settings.prefer_server_cipher_suites;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// ring's algorithms, narrowed to the cipher suites and curves the file names.
fn provider(settings: &TlsSettings) -> anyhow::Result<CryptoProvider> {
    let mut provider = ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        // As in Go, the list governs TLS 1.2 only; TLS 1.3 suites stay on.
        let (mut chosen, tls12): (Vec<SupportedCipherSuite>, Vec<SupportedCipherSuite>) = provider
            .cipher_suites
            .iter()
            .partition(|s| s.version() == &rustls::version::TLS13);
        for name in &settings.cipher_suites {
            if [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
            ]
            .contains(&name.as_str())
            {
                continue;
            }
            let Some(suite) = tls12.iter().find(|s| s.suite().as_str() == Some(name)) else {
                let names: Vec<&str> = tls12.iter().filter_map(|s| s.suite().as_str()).collect();
                bail!(
                    "cipher_suites: '{name}' is not available; the TLS 1.2 suites are {}",
                    names.join(", ")
                );
            };
            chosen.push(*suite);
        }
        provider.cipher_suites = chosen;
    }
    if !settings.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for name in &settings.curve_preferences {
            let wanted = match name.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                "CurveP521" => bail!("curve_preferences: CurveP521 is not available in kvmtop"),
                other => bail!(
                    "curve_preferences: '{other}' is not one of X25519, CurveP256, CurveP384, \
                     CurveP521"
                ),
            };
            groups.extend(provider.kx_groups.iter().filter(|g| g.name() == wanted));
        }
        provider.kx_groups = groups;
    }
    Ok(provider)
}

fn versions(settings: &TlsSettings) -> Vec<&'static SupportedProtocolVersion> {
    // rustls has nothing older than TLS 1.2, so TLS10 and TLS11 as minimum mean TLS 1.2.
    let mut versions = Vec::new();
    if settings.min_version <= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if settings.max_version == TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    versions
}

/// The PEM bytes of `material`, and how to name it in an error.
fn read(material: &Material, key: &str) -> anyhow::Result<(Vec<u8>, String)> {
    match material {
        Material::Inline(pem) => Ok((pem.expose().as_bytes().to_vec(), key.to_owned())),
        Material::File(path) => {
            let what = format!("{key}_file '{}'", path.display());
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {what}"))?;
            Ok((bytes, what))
        }
    }
}

fn certificates(material: &Material, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let (pem, what) = read(material, key)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what}: not valid PEM"))?;
    if chain.is_empty() {
        bail!("{what}: no certificate in it");
    }
    Ok(chain)
}

fn private_key(material: &Material) -> anyhow::Result<PrivateKeyDer<'static>> {
    let (pem, what) = read(material, "key")?;
    // The PEM error names the PEM section at fault, never the key's bytes.
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| anyhow::anyhow!("{what}: no usable private key in it ({e})"))
}

fn client_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let algorithms = provider.signature_verification_algorithms;
    let verified = |optional: bool| -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
        let Some(ca) = &settings.client_ca else {
            bail!("no client CA to verify client certificates with");
        };
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca, "client_ca")? {
            roots
                .add(cert)
                .context("client_ca_file: a certificate in it cannot serve as a CA")?;
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().context("client_ca_file")
    };
    let chosen: Arc<dyn ClientCertVerifier> = match settings.client_auth {
        ClientAuth::NoClientCert => return Ok(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::RequestClientCert => Arc::new(AnyCertificate {
            mandatory: false,
            algorithms,
        }),
        ClientAuth::RequireAnyClientCert => Arc::new(AnyCertificate {
            mandatory: true,
            algorithms,
        }),
        ClientAuth::VerifyClientCertIfGiven => verified(true)?,
        ClientAuth::RequireAndVerifyClientCert => verified(false)?,
    };
    Ok(match &settings.client_allowed_sans {
        Some(allowed) => Arc::new(AllowedSans {
            inner: chosen,
            allowed: allowed.clone(),
        }),
        None => chosen,
    })
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: the client proves it holds the key of
/// the certificate it sends, but the certificate itself is not checked against any CA.
#[derive(Debug)]
struct AnyCertificate {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: after `inner` accepts the certificate, one of its subject alternative
/// names (DNS, e-mail, IP or URI, compared exactly as the toolkit does) must be in the list.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the client certificate has none of client_allowed_sans (it has {found:?})")]
struct SanNotAllowed {
    found: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let found = subject_alt_names(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        if found.iter().any(|name| self.allowed.contains(name)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(SanNotAllowed { found })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The subject alternative names of a DER certificate as text, `None` if it does not parse.
fn subject_alt_names(der: &CertificateDer<'_>) -> Option<Vec<String>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let Some(extension) = cert.subject_alternative_name().ok()? else {
        return Some(Vec::new());
    };
    Some(
        extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some((*s).to_owned())
                }
                GeneralName::IPAddress(bytes) => ip_address(bytes).map(|ip| ip.to_string()),
                _ => None,
            })
            .collect(),
    )
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
