//! A minimal HTTP/1.1 server for the admin endpoint: one request per connection (answered with
//! `Connection: close`), request line and headers only (no request bodies), at most
//! [`HEAD_BYTES_MAX`] of them, at most [`CONNECTIONS_MAX`] connections at once. A malformed request closes the connection without an answer.

use futures::future::LocalBoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tracing::debug;

/// Bound on the request line plus headers.
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// A client that sends no complete request head within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed as soon as they are accepted.
pub const CONNECTIONS_MAX: usize = 64;

/// A parsed request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// The path without the query string.
    pub path: String,
}

/// An answer.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl HttpResponse {
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// What the server asks of the application.
pub trait HttpHandler: 'static {
    fn handle(&self, request: HttpRequest) -> LocalBoxFuture<'static, HttpResponse>;
}

/// A bound admin listener.
pub struct HttpListener {
    listener: TcpListener,
}

impl HttpListener {
    pub fn bind(addr: SocketAddr) -> std::io::Result<HttpListener> {
        Ok(HttpListener {
            listener: TcpListener::bind(addr).map_err(std::io::Error::from)?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts connections forever, serving each in its own task.
    pub async fn serve<H: HttpHandler>(self, handler: Rc<H>) {
        let open = Rc::new(std::cell::Cell::new(0usize));
        loop {
            match self.listener.accept().await {
                Ok(stream) if open.get() >= CONNECTIONS_MAX => {
                    debug!("admin connections at {CONNECTIONS_MAX}: closing a new one");
                    drop(stream);
                }
                Ok(stream) => {
                    open.set(open.get() + 1);
                    let (handler, open) = (handler.clone(), open.clone());
                    glommio::spawn_local(async move {
                        serve_connection(stream, handler).await;
                        open.set(open.get() - 1);
                    })
                    .detach();
                }
                Err(e) => {
                    debug!("admin accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

async fn serve_connection<H: HttpHandler>(mut stream: TcpStream, handler: Rc<H>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Some(request) = read_head(&mut stream).await else {
        return;
    };
    let response = handler.handle(request).await;
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_ok()
        && stream.write_all(response.body.as_bytes()).await.is_ok()
    {
        let _ = stream.flush().await;
    }
    let _ = stream.close().await;
}

/// Reads up to the blank line ending the head; `None` when the request is malformed, too
/// large, or the peer goes away first.
async fn read_head(stream: &mut TcpStream) -> Option<HttpRequest> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = find_head_end(&head) {
            return parse_head(&head[..end]);
        }
        if head.len() >= HEAD_BYTES_MAX {
            debug!("admin request head over {HEAD_BYTES_MAX} bytes: closing");
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// Where the head ends: the position of the blank line (`\r\n\r\n`), if there is one yet.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses `METHOD SP TARGET SP HTTP/1.x` and checks each header line has a colon.
pub fn parse_head(head: &[u8]) -> Option<HttpRequest> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if parts.next().is_some()
        || !method_ok
        || !target.starts_with('/')
        || !(version == "HTTP/1.1" || version == "HTTP/1.0")
    {
        return None;
    }
    if !lines.all(|line| line.contains(':')) {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some(HttpRequest {
        method: method.to_string(),
        path: path.to_string(),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_or_refused() {
        let ok = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a").unwrap();
        assert_eq!((ok.method.as_str(), ok.path.as_str()), ("GET", "/metrics"));
        assert_eq!(
            parse_head(b"POST /v1/status HTTP/1.0").unwrap().method,
            "POST"
        );
        for bad in [
            &b"GET /metrics"[..],
            b"GET metrics HTTP/1.1",
            b"get /metrics HTTP/1.1",
            b"GET /metrics HTTP/2",
            b"GET /metrics HTTP/1.1 extra",
            b"GET /metrics HTTP/1.1\r\nno colon here",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_head(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(14));
    }
}
