//! Where the JWKS comes from (`sasl.oauthbearer.jwks.endpoint.url`) and how one copy of it
//! is fetched: a file (a `file:` URL or a path) is read; an `http://` or `https://` URL is
//! fetched with one blocking HTTP/1.1 GET (std sockets, rustls for HTTPS, `Connection:
//! close`, no redirects followed, no proxy), bounded in time ([`IO_TIMEOUT`]) and in size
//! ([`JWKS_BYTES_MAX`]). Blocking: called at start and from the refresh thread only, never
//! from a shard.

use spate_bench::security::TlsClientConfig;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Bound on a JWKS document (an identity provider's is a few KiB).
pub const JWKS_BYTES_MAX: usize = 1024 * 1024;
/// Bound on the status line plus the headers of a response.
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Connect, read and write timeout of one fetch.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A JWKS endpoint.
#[derive(Clone)]
pub enum Location {
    File(PathBuf),
    Http(HttpUrl),
}

/// An `http://` or `https://` URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The path and query, starting with `/`.
    pub target: String,
}

/// Splits an HTTP(S) URL; `None` when `url` is not one.
pub fn parse_http_url(url: &str) -> Option<Result<HttpUrl, String>> {
    let (https, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
        _ => return None,
    };
    let (authority, target) = match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => (&rest[..at], rest[at..].to_string()),
        Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
        None => (rest, "/".to_string()),
    };
    let target = target.split('#').next().unwrap_or("/").to_string();
    Some(
        split_authority(authority, https).map(|(host, port)| HttpUrl {
            https,
            host,
            port,
            target,
        }),
    )
}

fn split_authority(authority: &str, https: bool) -> Result<(String, u16), String> {
    if authority.contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            (host, rest.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
    };
    Ok((host.to_string(), port))
}

impl Location {
    /// One copy of the JWKS document; `tls` is used for `https://`.
    pub fn fetch(&self, tls: Option<&TlsClientConfig>) -> Result<String, String> {
        match self {
            Location::File(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
            }
            Location::Http(url) => get(url, tls),
        }
    }
}

fn get(url: &HttpUrl, tls: Option<&TlsClientConfig>) -> Result<String, String> {
    let stream = connect(&url.host, url.port)?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nAccept: application/json\r\nUser-Agent: spate\r\nConnection: close\r\n\r\n",
        url.target, url.port
    );
    let body = if url.https {
        let config = tls
            .ok_or("no TLS configuration for an https:// URL")?
            .clone();
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("host {:?}: {e}", url.host))?;
        let connection =
            rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        exchange(rustls::StreamOwned::new(connection, stream), &request)?
    } else {
        exchange(stream, &request)?
    };
    String::from_utf8(body).map_err(|_| "the JWKS is not UTF-8".to_string())
}

fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?;
    let mut last = format!("{host}: no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connecting to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Sends `request` and reads the answer's body (status 200 only).
fn exchange<S: Read + Write>(mut stream: S, request: &str) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| e.to_string();
    stream.write_all(request.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)?;
    read_response(BufReader::new(stream))
}

/// Reads an HTTP/1.1 response: status 200, then a body framed by `Content-Length`, chunked,
/// or the end of the connection.
pub fn read_response(mut reader: impl BufRead) -> Result<Vec<u8>, String> {
    let mut head_bytes = 0;
    let status = line(&mut reader, &mut head_bytes)?;
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("the endpoint answered {status:?}"));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        let header = line(&mut reader, &mut head_bytes)?;
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err("malformed header".into());
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        }
    }
    let too_big = || format!("the JWKS is over {JWKS_BYTES_MAX} bytes");
    if chunked {
        return read_chunked(reader, &mut head_bytes);
    }
    let mut body = Vec::new();
    match length {
        Some(n) if n > JWKS_BYTES_MAX => return Err(too_big()),
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        }
        None => {
            reader
                .take(JWKS_BYTES_MAX as u64 + 1)
                .read_to_end(&mut body)
                .map_err(|e| e.to_string())?;
            if body.len() > JWKS_BYTES_MAX {
                return Err(too_big());
            }
        }
    }
    Ok(body)
}

fn read_chunked(mut reader: impl BufRead, head_bytes: &mut usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let size_line = line(&mut reader, head_bytes)?;
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > JWKS_BYTES_MAX {
            return Err(format!("the JWKS is over {JWKS_BYTES_MAX} bytes"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        if !line(&mut reader, head_bytes)?.is_empty() {
            return Err("malformed chunk".into());
        }
    }
}

/// One CRLF- (or LF-) terminated line, counted against [`HEAD_BYTES_MAX`].
fn line(reader: &mut impl BufRead, bytes: &mut usize) -> Result<String, String> {
    let mut text = Vec::new();
    let limit = (HEAD_BYTES_MAX.saturating_sub(*bytes) + 1) as u64;
    reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut text)
        .map_err(|e| e.to_string())?;
    *bytes += text.len();
    if *bytes > HEAD_BYTES_MAX {
        return Err("the response head is too long".into());
    }
    if !text.ends_with(b"\n") {
        return Err("the connection closed early".into());
    }
    let text = String::from_utf8(text).map_err(|_| "a header is not UTF-8")?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The system's CA bundle (PEM), as OpenSSL finds it on Linux: `SSL_CERT_FILE`, then the
/// usual distribution paths.
pub fn system_roots_pem() -> Result<String, String> {
    const BUNDLES: [&str; 4] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let from_env = std::env::var("SSL_CERT_FILE").ok();
    let found = from_env
        .iter()
        .map(String::as_str)
        .chain(BUNDLES)
        .find_map(|path| std::fs::read_to_string(path).ok());
    found.ok_or_else(|| "no system CA bundle found (SSL_CERT_FILE or /etc/ssl/certs)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> HttpUrl {
        parse_http_url(text).unwrap().unwrap()
    }

    #[test]
    fn urls_split_into_host_port_and_target() {
        let u = url("https://idp.example/.well-known/jwks.json?x=1#frag");
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.target.as_str()),
            (true, "idp.example", 443, "/.well-known/jwks.json?x=1")
        );
        let u = url("http://127.0.0.1:8080");
        assert_eq!((u.https, u.port, u.target.as_str()), (false, 8080, "/"));
        let u = url("HTTPS://[::1]:9443?a");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 9443, "/?a")
        );
        assert!(parse_http_url("file:///tmp/jwks.json").is_none());
        assert!(parse_http_url("/tmp/jwks.json").is_none());
        for bad in ["https://u:p@idp/", "https://idp:x/", "https:///jwks"] {
            assert!(parse_http_url(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_are_read_by_length_chunks_or_close() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyEXTRA";
        assert_eq!(read_response(&by_length[..]).unwrap(), b"body");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(read_response(&chunked[..]).unwrap(), b"abcde");
        let by_close = b"HTTP/1.0 200 OK\nServer: x\n\n{\"keys\":[]}";
        assert_eq!(read_response(&by_close[..]).unwrap(), b"{\"keys\":[]}");
    }

    #[test]
    fn bad_responses_are_errors() {
        let e = read_response(&b"HTTP/1.1 404 Not Found\r\n\r\n"[..]).unwrap_err();
        assert!(e.contains("404"), "{e}");
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            JWKS_BYTES_MAX + 1
        );
        assert!(read_response(big.as_bytes()).unwrap_err().contains("over"));
        assert!(read_response(&b"HTTP/1.1 200 OK\r\nContent-"[..]).is_err());
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(read_response(&short[..]).is_err());
        let head = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(HEAD_BYTES_MAX)
        );
        assert!(read_response(head.as_bytes())
            .unwrap_err()
            .contains("too long"));
    }
}
