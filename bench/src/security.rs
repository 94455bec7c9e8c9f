//! How the project's client connects: a Kafka client properties file (`--command-config`, as
//! Kafka's tools take it) read in one place, and the TLS stream it asks for.
//!
//! Keys read: `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); for SASL the
//! mechanism and credentials (`crate::sasl::SaslConfig`); for SSL and SASL_SSL the CAs trusted (`ssl.truststore.location` with
//! `ssl.truststore.type=PEM`, librdkafka's `ssl.ca.location`, or `ssl.truststore.certificates`
//! as PEM text) and, for mTLS, the client's key and certificate chain (`ssl.keystore.location`
//! with `ssl.keystore.type=PEM`: the key and the chain in one PEM file; librdkafka's
//! `ssl.certificate.location` with `ssl.key.location`; or `ssl.keystore.certificate.chain` with
//! `ssl.keystore.key` as PEM text). Other keys are kept in `properties` and ignored.

use crate::sasl::SaslConfig;
use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// What a client's connections do before they speak Kafka.
#[derive(Clone, Default)]
pub struct Security {
    /// `security.protocol` as given (PLAINTEXT when absent).
    pub protocol: String,
    /// The TLS configuration, for SSL and SASL_SSL.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The SASL mechanism and credentials, for SASL_PLAINTEXT and SASL_SSL.
    pub sasl: Option<SaslConfig>,
    /// Every key of the properties file.
    pub properties: BTreeMap<String, String>,
}

impl Security {
    /// Reads a Kafka client properties file.
    pub fn from_file(path: &str) -> Result<Security, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --command-config {path}: {e}"))?;
        Self::from_properties(parse_properties(&text))
            .map_err(|e| format!("--command-config {path}: {e}"))
    }

    pub fn from_properties(properties: BTreeMap<String, String>) -> Result<Security, String> {
        let protocol = properties
            .get("security.protocol")
            .map(|p| p.to_ascii_uppercase())
            .unwrap_or_else(|| "PLAINTEXT".into());
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => return Err(format!("unknown security.protocol '{other}'")),
        };
        let tls = tls
            .then(|| client_config(&properties).map(Arc::new))
            .transpose()?;
        let sasl = sasl
            .then(|| SaslConfig::from_properties(&properties))
            .transpose()?;
        Ok(Security {
            protocol,
            tls,
            sasl,
            properties,
        })
    }
}

static PROCESS_SECURITY: OnceLock<Security> = OnceLock::new();

/// Makes every connection this process's client opens use `security` (set once, by the
/// command line of `spate topic|produce|...` or `spate bench`, before it connects).
pub fn use_for_process(security: Security) -> Result<(), String> {
    PROCESS_SECURITY
        .set(security)
        .map_err(|_| "client security is already set".to_string())
}

/// The TLS configuration every connection of this process uses, if any.
pub(crate) fn process_tls() -> Option<Arc<rustls::ClientConfig>> {
    PROCESS_SECURITY.get().and_then(|s| s.tls.clone())
}

/// A TLS client configuration, shared by the connections that use it.
pub type TlsClientConfig = Arc<rustls::ClientConfig>;

/// A TLS client configuration from Kafka client properties (the `ssl.*` keys above), for
/// connections that do not use the process's security: a broker's follower fetches.
pub fn tls_client_config(properties: &BTreeMap<String, String>) -> Result<TlsClientConfig, String> {
    client_config(properties).map(Arc::new)
}

/// The SASL mechanism and credentials every connection of this process uses, if any.
pub(crate) fn process_sasl() -> Option<&'static SaslConfig> {
    PROCESS_SECURITY.get().and_then(|s| s.sasl.as_ref())
}

/// Java properties: `key=value` or `key: value` lines, `#` and `!` comments.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .filter_map(|line| {
            let at = line.find(['=', ':'])?;
            Some((
                line[..at].trim().to_string(),
                line[at + 1..].trim().to_string(),
            ))
        })
        .collect()
}

fn client_config(p: &BTreeMap<String, String>) -> Result<rustls::ClientConfig, String> {
    let get = |key: &str| p.get(key).map(String::as_str).filter(|v| !v.is_empty());
    for store in ["ssl.truststore.type", "ssl.keystore.type"] {
        if let Some(kind) = get(store).filter(|k| !k.eq_ignore_ascii_case("PEM")) {
            return Err(format!("{store}={kind} is not supported; use PEM"));
        }
    }
    let trusted = match (
        get("ssl.truststore.location").or(get("ssl.ca.location")),
        get("ssl.truststore.certificates"),
    ) {
        (Some(path), None) => read(path)?,
        (None, Some(pem)) => pem.as_bytes().to_vec(),
        _ => return Err("SSL needs one of ssl.truststore.location (PEM), ssl.ca.location or ssl.truststore.certificates".into()),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&trusted)? {
        roots.add(cert).map_err(|e| format!("truststore: {e}"))?;
    }
    // ring (no aws-lc, no cmake): deprecated in rustls 0.23.3x only for lacking the
    // post-quantum key exchange; TLS 1.2/1.3 with X25519 and P-256 as before.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let identity = match (
        get("ssl.keystore.location"),
        get("ssl.certificate.location"),
        get("ssl.keystore.certificate.chain"),
    ) {
        (Some(path), None, None) => Some((read(path)?, read(path)?)),
        (None, Some(cert), None) => {
            let key = get("ssl.key.location").ok_or("ssl.certificate.location needs ssl.key.location")?;
            Some((read(cert)?, read(key)?))
        }
        (None, None, Some(chain)) => {
            let key = get("ssl.keystore.key").ok_or("ssl.keystore.certificate.chain needs ssl.keystore.key")?;
            Some((chain.as_bytes().to_vec(), key.as_bytes().to_vec()))
        }
        (None, None, None) => None,
        _ => return Err("give one client certificate: ssl.keystore.location, ssl.certificate.location or ssl.keystore.certificate.chain".into()),
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => {
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| format!("client key: no unencrypted private key in PEM ({e})"))?;
            builder
                .with_client_auth_cert(certificates(&chain)?, key)
                .map_err(|e| format!("client certificate: {e}"))
        }
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in PEM".into());
    }
    Ok(certs)
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// A client connection's byte stream: the socket itself, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// `stream` as the process's security asks: TLS (verifying `host`) or as it is.
    pub async fn over(stream: TcpStream, host: &str) -> Result<Stream, String> {
        Self::over_with(stream, host, process_tls()).await
    }

    /// `stream` wrapped in TLS with `config` (verifying `host`), or as it is without one.
    pub async fn over_with(
        stream: TcpStream,
        host: &str,
        config: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Stream, String> {
        let Some(config) = config else {
            return Ok(Stream::Plain(stream));
        };
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| format!("TLS server name '{host}': {e}"))?
            .to_owned();
        let tls = futures_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl futures::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl futures::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_as_java_reads_them() {
        let p = parse_properties(
            "# comment\n! also\nsecurity.protocol=SSL\n ssl.ca.location : /ca.pem \nempty=\n\n",
        );
        assert_eq!(p["security.protocol"], "SSL");
        assert_eq!(p["ssl.ca.location"], "/ca.pem");
        assert_eq!(p["empty"], "");
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn bad_security_settings_are_refused() {
        let props = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let plain = Security::from_properties(props(&[])).unwrap();
        assert!(plain.tls.is_none());
        for (pairs, want) in [
            (
                vec![("security.protocol", "TLS")],
                "unknown security.protocol",
            ),
            (vec![("security.protocol", "SSL")], "SSL needs"),
            (
                vec![("security.protocol", "SSL"), ("ssl.truststore.type", "JKS")],
                "use PEM",
            ),
            (
                vec![
                    ("security.protocol", "SSL"),
                    ("ssl.ca.location", "/nonexistent/ca.pem"),
                ],
                "cannot read",
            ),
            (
                vec![("security.protocol", "SASL_PLAINTEXT")],
                "needs sasl.mechanism",
            ),
            (
                vec![
                    ("security.protocol", "SASL_SSL"),
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.username", "a"),
                    ("sasl.password", "b"),
                ],
                "SSL needs",
            ),
        ] {
            let err = Security::from_properties(props(&pairs)).err().unwrap();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }
}
