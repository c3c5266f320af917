//! The HTTP endpoint of `kvmtop serve`: `GET /metrics` and nothing else.
//!
//! The request is never trusted: only the method and path are looked at, bodies are ignored, and
//! anything else gets a short error response. Clients cannot hold the server: headers must
//! arrive within a few seconds, a connection lives at most a minute, and at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed on accept).
//!
//! With `--web.config.file`, the exporter toolkit's web config ([`web_config`]) adds TLS
//! ([`tls`]), client certificates, basic authentication ([`auth`]) and response headers. The
//! file is read again for every connection, as the toolkit does, so renewed certificates and
//! changed passwords apply without a restart; a file that has become invalid refuses new
//! connections with a logged error until it is fixed.

mod auth;
#[cfg(test)]
mod test_pki;
#[cfg(test)]
mod tests;
mod tls;
pub mod web_config;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, LazyLock},
    time::Duration,
};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{HeaderName, HeaderValue},
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};

use web_config::{Secret, WebConfig};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Connections served at once: a Prometheus server or two, and people with curl.
pub const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Also the limit for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = HEADER_TIMEOUT;
const CONNECTION_LIFETIME: Duration = Duration::from_mins(1);
/// Requests in flight on one HTTP/2 connection; a scraper sends one at a time.
const MAX_STREAMS: u32 = 8;

/// One window's exposition (or why it could not be rendered), served to every scrape until the
/// next window. It is rendered by the first scrape that asks for it, once, so a window no
/// scrape asks for costs nothing here.
#[derive(Clone)]
pub struct Exposition(Arc<LazyLock<Rendered, Render>>);

type Rendered = Result<Bytes, String>;
type Render = Box<dyn FnOnce() -> Rendered + Send>;

impl Exposition {
    /// An exposition rendered already.
    #[must_use]
    pub fn new(rendered: anyhow::Result<String>) -> Self {
        let rendered = rendered.map(Bytes::from).map_err(|e| format!("{e:#}"));
        Self(Arc::new(LazyLock::new(Box::new(move || rendered))))
    }

    /// A window's exposition, rendered when first scraped.
    #[must_use]
    pub fn pending(pending: crate::output::metrics::Pending) -> Self {
        Self(Arc::new(LazyLock::new(Box::new(move || {
            pending
                .render()
                .map(Bytes::from)
                .map_err(|e| format!("{e:#}"))
        }))))
    }

    /// The text, rendering it if no scrape has yet. Rendering a hundred VMs at the `full` level
    /// takes milliseconds, so it runs on a blocking thread, not on the server's.
    async fn rendered(self) -> Rendered {
        tokio::task::spawn_blocking(move || (*self.0).clone())
            .await
            .unwrap_or_else(|e| Err(format!("rendering the metrics failed: {e}")))
    }
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exposition")
    }
}

/// Serves `listener` until Ctrl-C. The caller binds it, while it may still bind any port: by the
/// time this runs kvmtop has given up its capabilities.
pub async fn run(
    listener: std::net::TcpListener,
    expositions: watch::Receiver<Option<Exposition>>,
    web_config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (access, config) = match web_config {
        Some(path) => {
            let (access, config) = Access::open(path)?;
            (Some(access), Some(config))
        }
        None => (None, None),
    };
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let listen = listener.local_addr()?;
    let scheme = if config.as_ref().is_some_and(|c| c.tls.is_some()) {
        "https"
    } else {
        "http"
    };
    eprintln!("kvmtop: serving metrics at {scheme}://{listen}/metrics");
    for warning in exposure_warnings(listen, config.as_ref()) {
        eprintln!("kvmtop: warning: {warning}");
    }
    serve(listener, expositions, access, tokio::signal::ctrl_c()).await
}

/// Why serving on `listen` with `config` may expose the metrics, with what to do about it.
#[must_use]
pub fn exposure_warnings(listen: SocketAddr, config: Option<&WebConfig>) -> Vec<String> {
    if listen.ip().is_loopback() {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    let authenticates = config.is_some_and(WebConfig::authenticates);
    if config.is_none_or(|c| c.tls.is_none()) {
        let what = if authenticates {
            "metrics and passwords"
        } else {
            "metrics"
        };
        warnings.push(format!(
            "{listen} is reachable beyond this host and TLS is off: {what} cross the network in \
             clear text. Set tls_server_config in a --web.config.file (see \"Exposing /metrics\" \
             in the README), or listen on 127.0.0.1."
        ));
    }
    if !authenticates {
        warnings.push(format!(
            "{listen} is reachable beyond this host and asks no one who they are: anyone who \
             can reach the port can read the metrics. Set basic_auth_users, or client_auth_type: \
             RequireAndVerifyClientCert, in a --web.config.file."
        ));
    }
    warnings
}

/// Serves `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    expositions: watch::Receiver<Option<Exposition>>,
    access: Option<Access>,
    shutdown: impl Future,
) -> anyhow::Result<()> {
    let access = access.map(Arc::new);
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => return Ok(()),
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            log::warn!("metrics: {MAX_CONNECTIONS} connections open; closing one from {peer}");
            continue;
        };
        let expositions = expositions.clone();
        let access = access.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let connection = connection(stream, peer, expositions, access);
            if tokio::time::timeout(CONNECTION_LIFETIME, connection)
                .await
                .is_err()
            {
                log::debug!("metrics connection from {peer}: closed after a minute");
            }
        });
    }
}

/// The web config of a running server: where it is, whether the server started with TLS (the
/// scheme of a listening address cannot change under its clients), and the logins remembered
/// across connections.
pub struct Access {
    path: PathBuf,
    tls: bool,
    auth: auth::Authenticator,
}

/// What one connection is served under: the web config as it was when the connection opened.
struct Policy {
    tls: Option<Arc<rustls::ServerConfig>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    users: BTreeMap<String, Secret>,
}

impl Access {
    /// Reads and checks the file at `path` and the files it names, so that a bad file stops
    /// start-up rather than every scrape.
    pub fn open(path: PathBuf) -> anyhow::Result<(Self, WebConfig)> {
        let config = WebConfig::load(&path)?;
        let access = Self {
            tls: config.tls.is_some(),
            path,
            auth: auth::Authenticator::new()?,
        };
        access.policy()?;
        Ok((access, config))
    }

    fn policy(&self) -> anyhow::Result<Policy> {
        let config = WebConfig::load(&self.path)?;
        let tls = match (&config.tls, self.tls) {
            (Some(settings), true) => Some(
                tls::server_config(settings, config.http2)
                    .with_context(|| format!("web config '{}'", self.path.display()))?,
            ),
            (None, false) => None,
            (Some(_), false) => bail!(
                "web config '{}' now sets up TLS; restart kvmtop to serve HTTPS",
                self.path.display()
            ),
            (None, true) => bail!(
                "web config '{}' no longer sets up TLS; restart kvmtop to serve plain HTTP",
                self.path.display()
            ),
        };
        Ok(Policy {
            tls,
            headers: config.headers,
            users: config.users,
        })
    }
}

/// Everything a request on one connection is answered with.
struct Context {
    expositions: watch::Receiver<Option<Exposition>>,
    policy: Option<Policy>,
    access: Option<Arc<Access>>,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    expositions: watch::Receiver<Option<Exposition>>,
    access: Option<Arc<Access>>,
) {
    let policy = match &access {
        None => None,
        Some(access) => {
            // Reading files and parsing certificates is blocking work.
            let access = Arc::clone(access);
            match tokio::task::spawn_blocking(move || access.policy()).await {
                Ok(Ok(policy)) => Some(policy),
                Ok(Err(e)) => {
                    log::error!("metrics: refusing the connection from {peer}: {e:#}");
                    return;
                }
                Err(e) => {
                    log::error!("metrics: refusing the connection from {peer}: {e}");
                    return;
                }
            }
        }
    };
    let tls = policy.as_ref().and_then(|p| p.tls.clone());
    let context = Arc::new(Context {
        expositions,
        policy,
        access,
    });
    let served = match tls {
        None => drive(TokioIo::new(stream), false, context).await,
        Some(config) => {
            let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    log::info!("metrics: TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => {
                    log::debug!("metrics: TLS handshake with {peer} timed out");
                    return;
                }
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            drive(TokioIo::new(stream), h2, context).await
        }
    };
    if let Err(e) = served {
        log::debug!("metrics connection from {peer}: {e}");
    }
}

/// Serves HTTP/1.1, or HTTP/2 when TLS negotiated it, on one connection.
async fn drive<I>(io: I, h2: bool, context: Arc<Context>) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let context = Arc::clone(&context);
        async move { respond(&request, &context).await }
    });
    if h2 {
        http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .serve_connection(io, service)
            .await
    } else {
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(io, service)
            .await
    }
}

async fn respond(
    request: &Request<Incoming>,
    context: &Context,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = match (&context.policy, &context.access) {
        (Some(policy), Some(access))
            if !policy.users.is_empty()
                && !access
                    .auth
                    .admits(
                        &policy.users,
                        request.headers().get(hyper::header::AUTHORIZATION),
                    )
                    .await =>
        {
            let mut response = reply(StatusCode::UNAUTHORIZED, "unauthorized\n".into());
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic"),
            );
            response
        }
        _ => metrics_response(request, &context.expositions).await,
    };
    if let Some(policy) = &context.policy {
        for (name, value) in &policy.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(response)
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

async fn metrics_response(
    request: &Request<Incoming>,
    expositions: &watch::Receiver<Option<Exposition>>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is supported\n".into(),
        );
    }
    let Some(exposition) = expositions.borrow().clone() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "first sample not taken yet\n".into(),
        );
    };
    match exposition.rendered().await {
        Ok(text) => {
            let mut response = Response::new(Full::new(text));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
