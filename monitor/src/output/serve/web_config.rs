//! The file of `kvmtop serve --web.config.file`, in the format of the Prometheus exporter
//! toolkit (`docs/web-configuration.md` of prometheus/exporter-toolkit), so one file and the same
//! tooling serve kvmtop and the Go exporters alike.
//!
//! [`WebConfig::parse`] checks the structure and every value that needs no other file; the
//! certificate and key files are read by [`super::tls`]. Where the toolkit would silently ignore
//! a setting (a certificate given both inline and as a file, TLS settings without a
//! certificate), this refuses the file instead: a setting the operator wrote must not be dropped
//! without a word.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

/// A parsed, checked web configuration.
#[derive(Debug)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Offer HTTP/2 (by ALPN) on TLS connections. The toolkit's default is on.
    pub http2: bool,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name → bcrypt hash. Empty: no basic authentication.
    pub users: BTreeMap<String, Secret>,
}

#[derive(Debug)]
pub struct TlsSettings {
    pub cert: Material,
    pub key: Material,
    pub client_ca: Option<Material>,
    pub client_auth: ClientAuth,
    /// When set, a client certificate must carry one of these subject alternative names.
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Go names of the TLS 1.2 cipher suites to allow; empty: the defaults.
    pub cipher_suites: Vec<String>,
    pub prefer_server_cipher_suites: bool,
    /// Go names of the key-exchange groups, in order of preference; empty: the defaults.
    pub curve_preferences: Vec<String>,
}

/// PEM given inline in the file, or the path of a file holding it.
#[derive(Debug, Clone)]
pub enum Material {
    Inline(Secret),
    File(PathBuf),
}

/// Go's `crypto/tls` client authentication policies, by the names the toolkit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    /// Ask for a certificate, accept any or none, verify nothing.
    RequestClientCert,
    /// Require a certificate, verify nothing.
    RequireAnyClientCert,
    /// Verify a certificate against the client CA when one is sent.
    VerifyClientCertIfGiven,
    /// Require a certificate signed by the client CA: the only policy that authenticates.
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tls10 => "TLS10",
            Self::Tls11 => "TLS11",
            Self::Tls12 => "TLS12",
            Self::Tls13 => "TLS13",
        })
    }
}

/// A string that never appears in debug output or logs: private keys and password hashes.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The headers the toolkit lets a file set, with the only values it accepts (`None`: any).
/// Kept identical, so a file accepted here is accepted by the Go exporters too.
const HEADERS: [(&str, Option<&[&str]>); 5] = [
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, Secret>>,
    rate_limit: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Secret>,
    key: Option<Secret>,
    client_ca: Option<Secret>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

impl WebConfig {
    /// Reads and checks the file at `path`. Relative paths in it are taken from the file's
    /// directory, as the toolkit does.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the web config '{}'", path.display()))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, dir).with_context(|| format!("web config '{}'", path.display()))
    }

    /// Parses and checks the text of a web config; `dir` is where relative paths start.
    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        // An empty file is a valid config: no TLS, no authentication.
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            // No snippet of the file in errors: it could show lines of an inline private key.
            let options = serde_saphyr::options! { with_snippet: false };
            serde_saphyr::from_str_with_options::<Option<RawConfig>>(text, options)
                .map_err(|e| {
                    // The parser's advice there is about its own API, not about the file.
                    let hint = ", set DuplicateKeyPolicy in Options if acceptable";
                    anyhow::anyhow!("{}", e.to_string().replace(hint, ""))
                })?
                .unwrap_or_default()
        };
        if raw.rate_limit.is_some() {
            bail!(
                "rate_limit is not supported by kvmtop serve; remove it (kvmtop already serves at \
                 most {} connections at once, each for at most a minute)",
                super::MAX_CONNECTIONS
            );
        }
        let http = raw.http_server_config.unwrap_or_default();
        Ok(Self {
            tls: raw
                .tls_server_config
                .map(|tls| tls_settings(tls, dir))
                .transpose()
                .context("tls_server_config")?
                .flatten(),
            http2: http.http2.unwrap_or(true),
            headers: headers(http.headers.unwrap_or_default())
                .context("http_server_config.headers")?,
            users: users(raw.basic_auth_users.unwrap_or_default()).context("basic_auth_users")?,
        })
    }

    /// Whether a client must prove who it is: by password, or by a certificate from the
    /// client CA.
    #[must_use]
    pub fn authenticates(&self) -> bool {
        !self.users.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|t| t.client_auth == ClientAuth::RequireAndVerifyClientCert)
    }
}

/// `None` when the section sets nothing, as the toolkit treats an empty section: plain HTTP.
fn tls_settings(raw: RawTls, dir: &Path) -> anyhow::Result<Option<TlsSettings>> {
    let material = |inline: Option<Secret>, file: Option<String>, what: &str, file_key: &str| match (
        inline.filter(|s| !s.0.is_empty()),
        file.filter(|f| !f.is_empty()),
    ) {
        (Some(_), Some(_)) => bail!("give either {what} or {file_key}, not both"),
        (Some(pem), None) => Ok(Some(Material::Inline(pem))),
        (None, Some(file)) => Ok(Some(Material::File(dir.join(file)))),
        (None, None) => Ok(None),
    };
    let cert = material(raw.cert, raw.cert_file, "cert", "cert_file")?;
    let key = material(raw.key, raw.key_file, "key", "key_file")?;
    let client_ca = material(
        raw.client_ca,
        raw.client_ca_file,
        "client_ca",
        "client_ca_file",
    )?;
    let client_auth = raw.client_auth_type.filter(|s| !s.is_empty());
    let anything_else = raw.client_allowed_sans.is_some()
        || raw.min_version.is_some()
        || raw.max_version.is_some()
        || raw.cipher_suites.is_some()
        || raw.prefer_server_cipher_suites.is_some()
        || raw.curve_preferences.is_some();
    if cert.is_none() && key.is_none() && client_ca.is_none() && client_auth.is_none() {
        if anything_else {
            bail!("TLS settings are given, but no certificate: set cert_file and key_file");
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        bail!("TLS needs both a certificate and its key: set cert_file and key_file");
    };
    let client_auth = match client_auth.as_deref() {
        None | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("RequestClientCert") => ClientAuth::RequestClientCert,
        // The toolkit keeps the older name for compatibility.
        Some("RequireAnyClientCert" | "RequireClientCert") => ClientAuth::RequireAnyClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other) => bail!(
            "client_auth_type '{other}' is not one of NoClientCert, RequestClientCert, \
             RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
        ),
    };
    let verifies = matches!(
        client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        bail!(
            "a client CA is given but client_auth_type is NoClientCert; set client_auth_type: \
             RequireAndVerifyClientCert"
        );
    }
    if verifies && client_ca.is_none() {
        // Go would fall back to the system roots, which would let any publicly certified
        // client in.
        bail!("client_auth_type {client_auth:?} needs client_ca_file (the CA that signs clients)");
    }
    if raw.client_allowed_sans.is_some()
        && !matches!(
            client_auth,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        )
    {
        bail!(
            "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert (or \
             RequireAnyClientCert): otherwise a client may send no certificate to check"
        );
    }
    let min_version = version(raw.min_version.as_deref(), "min_version", TlsVersion::Tls12)?;
    let max_version = version(raw.max_version.as_deref(), "max_version", TlsVersion::Tls13)?;
    if max_version < TlsVersion::Tls12 {
        bail!("max_version {max_version}: kvmtop speaks TLS12 and TLS13 only");
    }
    if min_version > max_version {
        bail!("min_version {min_version} is above max_version {max_version}");
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        client_allowed_sans: raw.client_allowed_sans,
        min_version,
        max_version,
        cipher_suites: raw.cipher_suites.unwrap_or_default(),
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
        curve_preferences: raw.curve_preferences.unwrap_or_default(),
    }))
}

fn version(text: Option<&str>, key: &str, default: TlsVersion) -> anyhow::Result<TlsVersion> {
    Ok(match text {
        None | Some("") => default,
        Some("TLS10") => TlsVersion::Tls10,
        Some("TLS11") => TlsVersion::Tls11,
        Some("TLS12") => TlsVersion::Tls12,
        Some("TLS13") => TlsVersion::Tls13,
        Some(other) => bail!("{key} '{other}' is not one of TLS10, TLS11, TLS12, TLS13"),
    })
}

fn headers(map: BTreeMap<String, String>) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = Vec::new();
    for (name, value) in map {
        let Some((_, allowed)) = HEADERS.iter().find(|(known, _)| *known == name) else {
            let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
            bail!(
                "header '{name}' cannot be set; the headers are {}",
                names.join(", ")
            );
        };
        // "Unset if blank", as the toolkit documents.
        if value.is_empty() {
            continue;
        }
        if let Some(allowed) = allowed
            && !allowed.contains(&value.as_str())
        {
            bail!("{name}: '{value}' is not one of {}", allowed.join(", "));
        }
        let value = HeaderValue::from_str(&value)
            .with_context(|| format!("{name}: {value:?} is not a valid header value"))?;
        headers.push((HeaderName::from_bytes(name.as_bytes())?, value));
    }
    Ok(headers)
}

fn users(map: BTreeMap<String, Secret>) -> anyhow::Result<BTreeMap<String, Secret>> {
    for (user, hash) in &map {
        if user.contains(':') {
            bail!("user name '{user}' contains ':', which basic authentication cannot carry");
        }
        // The hash is checked now so that a typo shows at start-up, not as a refused scrape.
        hash.0.parse::<bcrypt::HashParts>().map_err(|_| {
            anyhow::anyhow!(
                "the password of '{user}' is not a bcrypt hash (make one with \
                 htpasswd -nBC 10 \"\" | tr -d ':\\n')"
            )
        })?;
    }
    Ok(map)
}

#[cfg(test)]
#[path = "web_config_tests.rs"]
mod tests;
