//! The HTTP endpoint of `kvmtop serve`: `GET /metrics` and nothing else.
//!
//! The request is never trusted: only the method and path are looked at, bodies are ignored, and
//! anything else gets a short error response. Clients cannot hold the server: headers must
//! arrive within a few seconds, a connection lives at most a minute, and at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed on accept).

pub mod web_config;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use crate::{model::Snapshot, output::metrics};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Connections served at once: a Prometheus server or two, and people with curl.
pub const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_LIFETIME: Duration = Duration::from_mins(1);

pub async fn run(
    listen: SocketAddr,
    snapshots: watch::Receiver<Option<Snapshot>>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "kvmtop: serving metrics at http://{}/metrics",
        listener.local_addr()?
    );
    let shutdown = tokio::signal::ctrl_c();
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
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| respond(request, snapshots.clone()));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("metrics connection from {peer}: {e}"),
                Err(_) => log::debug!("metrics connection from {peer}: closed after a minute"),
            }
        });
    }
}

#[expect(
    clippy::unused_async,
    reason = "hyper's service_fn takes a function returning a future"
)]
async fn respond(
    request: Request<Incoming>,
    snapshots: watch::Receiver<Option<Snapshot>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n".into(),
        ));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is supported\n".into(),
        ));
    }
    let Some(snapshot) = snapshots.borrow().clone() else {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "first sample not taken yet\n".into(),
        ));
    };
    Ok(match metrics::render(&snapshot) {
        Ok(text) => {
            let mut response = reply(StatusCode::OK, text);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
    })
}
