//! TLS on the transport stage (rustls with the ring provider, over glommio's `TcpStream`):
//! what an SSL or SASL_SSL listener does to a connection before framing. The broker builds an
//! [`Acceptor`] per listener from its settings (PEM certificate chain and key, trusted CAs for
//! client certificates, `ssl.client.auth`, `ssl.enabled.protocols`); each connection then
//! goes through [`Acceptor::accept`], a handshake bounded in time, and is served by
//! `serve_tls` like a plaintext one.

use futures::future::{select, Either};
use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::sync::Arc;
use std::time::Duration;

/// Kafka's `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// Asked for; a client without one is still served (as `User:ANONYMOUS`).
    Requested,
    /// A client without a certificate the trusted CAs signed is refused.
    Required,
}

/// What one TLS listener serves with.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The certificate chain, leaf first (PEM).
    pub certificate_chain_pem: Vec<u8>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub key_pem: Vec<u8>,
    /// CAs that sign client certificates (PEM); needed unless `client_auth` is `None`.
    pub truststore_pem: Option<Vec<u8>>,
    pub client_auth: ClientAuth,
    pub tls12: bool,
    pub tls13: bool,
}

/// Accepts the TLS connections of one listener; clones share the configuration.
#[derive(Clone)]
pub struct Acceptor {
    inner: futures_rustls::TlsAcceptor,
}

/// A connection after its handshake.
pub struct TlsConnection {
    pub(crate) stream: futures_rustls::server::TlsStream<TcpStream>,
}

impl TlsConnection {
    /// The client's certificate (DER), when it sent one (the trusted CAs signed it).
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        let (_, connection) = self.stream.get_ref();
        connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref())
    }

    /// The client certificate's subject as Java's `X500Principal.getName()` writes it.
    pub fn peer_subject(&self) -> Option<String> {
        self.peer_certificate().and_then(crate::x500::subject_name)
    }

    /// `TLSv1.3` or `TLSv1.2`, as Kafka names them.
    pub fn protocol(&self) -> &'static str {
        match self.stream.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        }
    }
}

impl Acceptor {
    /// Checks the settings and builds the rustls configuration; errors are one-line reasons.
    pub fn new(settings: &ServerSettings) -> Result<Acceptor, String> {
        Ok(Acceptor {
            inner: futures_rustls::TlsAcceptor::from(server_config(settings)?),
        })
    }

    /// The server side of the handshake, given at most `timeout` (a silent peer, or a
    /// plaintext client waiting for an answer, is closed then); the error says why it failed.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<TlsConnection, String> {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("set_nodelay failed: {e}");
        }
        let handshake = Box::pin(self.inner.accept(stream));
        let expired = Box::pin(glommio::timer::sleep(timeout));
        match select(handshake, expired).await {
            Either::Left((Ok(stream), _)) => Ok(TlsConnection { stream }),
            Either::Left((Err(e), _)) => Err(e.to_string()),
            Either::Right(_) => Err(format!("no TLS handshake within {timeout:?}")),
        }
    }
}

/// The rustls server configuration of `settings` (for [`Acceptor`], and for blocking
/// servers that run rustls over std sockets: the controller port); errors are one-line
/// reasons.
pub fn server_config(settings: &ServerSettings) -> Result<Arc<ServerConfig>, String> {
    // ring (no aws-lc, no cmake): deprecated in rustls 0.23.3x only for lacking the
    // post-quantum key exchange; TLS 1.2/1.3 with X25519 and P-256 as before.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut versions = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if versions.is_empty() {
        return Err("ssl.enabled.protocols: neither TLSv1.2 nor TLSv1.3".into());
    }
    let chain = certificates(&settings.certificate_chain_pem, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(&settings.key_pem)
        .map_err(|e| format!("ssl.keystore key: no unencrypted private key in PEM ({e})"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("ssl.enabled.protocols: {e}"))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let pem = settings.truststore_pem.as_deref().ok_or(
                "ssl.client.auth needs ssl.truststore.location or ssl.truststore.certificates",
            )?;
            let mut roots = RootCertStore::empty();
            for cert in certificates(pem, "truststore")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ssl.truststore: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Requested => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("ssl.truststore: {e}"))?,
            )
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("ssl.keystore: {e}"))?;
    Ok(Arc::new(config))
}

/// The subject of a certificate (DER) as Java's `X500Principal.getName()` writes it.
pub fn certificate_subject(certificate: &[u8]) -> Option<String> {
    crate::x500::subject_name(certificate)
}

/// Every certificate in a PEM text (at least one).
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ssl {what}: bad PEM ({e})"))?;
    if certs.is_empty() {
        return Err(format!("ssl {what}: no certificate in PEM"));
    }
    Ok(certs)
}
