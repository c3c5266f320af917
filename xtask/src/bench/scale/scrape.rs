//! One scrape of `/metrics` as Prometheus does it: a new connection, the whole body, timed from
//! connecting to the last byte.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// A scrape that takes longer than this has failed (Prometheus's default scrape timeout).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The body of `GET /metrics` and how long the whole exchange took.
pub fn get(address: SocketAddr) -> Result<(String, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the response from {address}"))?;
    let took = started.elapsed();
    Ok((body(&response)?, took))
}

/// The body of an HTTP/1.1 response with status 200, de-chunked if it was sent in chunks.
fn body(response: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("the response has no end of headers");
    };
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("status {status:?}");
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        dechunk(body)
    } else {
        Ok(body.to_owned())
    }
}

fn dechunk(mut rest: &str) -> Result<String> {
    let mut body = String::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            bail!("a chunk has no size line");
        };
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .with_context(|| format!("chunk size {size:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        let Some(chunk) = after.get(..size) else {
            bail!("a chunk of {size} bytes is cut short");
        };
        body.push_str(chunk);
        rest = after[size..]
            .strip_prefix("\r\n")
            .context("a chunk does not end with CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\na 1\n";
        assert_eq!(body(plain).unwrap(), "a 1\n");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na 1\r\n2\r\n\nb\r\n0\r\n\r\n";
        assert_eq!(body(chunked).unwrap(), "a 1\nb");
        assert!(body(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab").is_err());
    }
}
