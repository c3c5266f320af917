//! The HTTP endpoint of `kvmtop serve`: `GET /metrics` and nothing else.
//!
//! The request is never trusted: only the method and path are looked at, bodies are ignored, and
//! anything else gets a short error response.

use std::{convert::Infallible, net::SocketAddr};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::watch};

use crate::{model::Snapshot, output::metrics};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => return Ok(()),
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, snapshots.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("metrics connection: {e}");
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
