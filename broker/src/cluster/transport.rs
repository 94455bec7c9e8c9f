//! The controller port's transport (issue 19): what a connection does before it carries
//! controller frames, on both sides, as `security::ControllerSecurity` says. Blocking std
//! sockets, like the rest of the controller: rustls's `StreamOwned` over the `TcpStream` for
//! SSL and SASL_SSL, then, on SASL_PLAINTEXT and SASL_SSL, Kafka's own SaslHandshake v1 and
//! SaslAuthenticate v2 frames (the client is the project's, `spate_bench::sasl`, run to
//! completion on the connection's thread; the server steps the broker's
//! `sasl::authenticator`). A PLAINTEXT connection is the bare `TcpStream`, as before.

use super::security::{ClientSide, ServerSide};
use crate::connection::{route, Routed};
use crate::sasl::authenticator::{Answer, Authenticator, Credentials, Expect, Outcome};
use crate::session::Principal;
use controller::acl::{AclVerdict, Acls, Operation, Requester, ResourceType, CLUSTER_NAME};
use controller::scram::{ScramCredential, ScramMechanism};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The longest a TLS handshake or a SASL exchange may take on the server side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A SASL frame larger than this is no SASL frame (a PLAIN token is a name and a password).
const SASL_FRAME_BYTES_MAX: usize = 64 << 10;
/// The client id the controller port's SASL clients send.
const CLIENT_ID: &str = "spate-controller-client";

/// A controller connection's byte stream.
pub enum ControllerStream {
    Plain(TcpStream),
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl ControllerStream {
    /// The socket under it.
    pub fn socket(&self) -> &TcpStream {
        match self {
            ControllerStream::Plain(s) => s,
            ControllerStream::TlsClient(s) => s.get_ref(),
            ControllerStream::TlsServer(s) => s.get_ref(),
        }
    }
}

impl Read for ControllerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ControllerStream::Plain(s) => s.read(buf),
            ControllerStream::TlsClient(s) => s.read(buf),
            ControllerStream::TlsServer(s) => s.read(buf),
        }
    }
}

impl Write for ControllerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ControllerStream::Plain(s) => s.write(buf),
            ControllerStream::TlsClient(s) => s.write(buf),
            ControllerStream::TlsServer(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ControllerStream::Plain(s) => s.flush(),
            ControllerStream::TlsClient(s) => s.flush(),
            ControllerStream::TlsServer(s) => s.flush(),
        }
    }
}

/// Connects to the controller port at `address` (`HOST:PORT`) as `client` says: TCP within
/// `connect_timeout`, then TLS (verifying HOST) and SASL, each bounded by `io_timeout`,
/// which stays the socket's read and write timeout. The error says which step failed.
pub fn connect(
    address: &str,
    client: &ClientSide,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> io::Result<ControllerStream> {
    let socket = TcpStream::connect_timeout(&resolve(address)?, connect_timeout)?;
    socket.set_read_timeout(Some(io_timeout))?;
    socket.set_write_timeout(Some(io_timeout))?;
    socket.set_nodelay(true)?;
    let mut stream = match &client.tls {
        None => ControllerStream::Plain(socket),
        Some(config) => {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| io::Error::other(format!("TLS server name '{host}': {e}")))?
                .to_owned();
            let connection = ClientConnection::new(config.clone(), name)
                .map_err(|e| io::Error::other(format!("TLS with {address}: {e}")))?;
            let mut tls = StreamOwned::new(connection, socket);
            handshake(&mut tls.conn, &mut tls.sock)
                .map_err(|e| io::Error::other(format!("TLS handshake with {address}: {e}")))?;
            ControllerStream::TlsClient(Box::new(tls))
        }
    };
    if let Some(sasl) = &client.sasl {
        let mut io = futures::io::AllowStdIo::new(&mut stream);
        futures::executor::block_on(spate_bench::sasl::authenticate(
            &mut io, sasl, address, CLIENT_ID,
        ))
        .map_err(io::Error::other)?;
    }
    Ok(stream)
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    std::net::ToSocketAddrs::to_socket_addrs(address)?
        .next()
        .ok_or_else(|| io::Error::other(format!("{address} resolves to no address")))
}

/// Drives a handshake to its end (the socket's timeouts bound each read and write).
fn handshake<C, D>(connection: &mut C, socket: &mut TcpStream) -> io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    while connection.is_handshaking() {
        connection.complete_io(socket)?;
    }
    // The last flight (a client's Finished) may still be buffered.
    while connection.wants_write() {
        connection.write_tls(socket)?;
    }
    Ok(())
}

/// Why a connection is refused (never a secret).
#[derive(Debug)]
pub struct Refusal {
    pub reason: String,
    /// The authenticated stream of a peer refused by the authorizer, which can be told why.
    pub unauthorized: Option<ControllerStream>,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal {
            reason,
            unauthorized: None,
        }
    }
}

impl std::fmt::Debug for ControllerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ControllerStream({:?})", self.socket().peer_addr().ok())
    }
}

/// The server side of a new connection, as `server` says: TLS (the peer's certificate
/// subject, mapped, is its principal), then SASL (the user is), each within
/// [`HANDSHAKE_TIMEOUT`]; then, with an authorizer on, ClusterAction on the cluster from
/// `acls` (or `super.users`).
pub fn accept(
    socket: TcpStream,
    server: &ServerSide,
    acls: impl FnOnce() -> std::sync::Arc<Acls>,
) -> Result<(ControllerStream, Principal), Refusal> {
    let peer = socket.peer_addr().ok();
    let (mut stream, mut principal) = match &server.tls {
        None if server.sasl.is_none() => (ControllerStream::Plain(socket), Principal::anonymous()),
        tls => {
            bounded(&socket, Some(HANDSHAKE_TIMEOUT))?;
            match tls {
                None => (ControllerStream::Plain(socket), Principal::anonymous()),
                Some(config) => tls_accept(socket, config.clone(), server)?,
            }
        }
    };
    if let Some(sasl) = &server.sasl {
        let user = sasl_accept(&mut stream, sasl.clone())?;
        principal = Principal::user(user);
    }
    if server.tls.is_some() || server.sasl.is_some() {
        bounded(stream.socket(), None)?;
    }
    if let Some(authorizer) = &server.authorizer {
        let host = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        if let Err(reason) = authorize(authorizer, &acls(), &principal, &host) {
            return Err(Refusal {
                reason,
                unauthorized: Some(stream),
            });
        }
    }
    Ok((stream, principal))
}

fn bounded(socket: &TcpStream, timeout: Option<Duration>) -> Result<(), String> {
    socket
        .set_read_timeout(timeout)
        .and_then(|()| socket.set_write_timeout(timeout))
        .map_err(|e| format!("socket: {e}"))
}

fn tls_accept(
    socket: TcpStream,
    config: std::sync::Arc<rustls::ServerConfig>,
    server: &ServerSide,
) -> Result<(ControllerStream, Principal), String> {
    let connection = ServerConnection::new(config).map_err(|e| format!("TLS: {e}"))?;
    let mut tls = StreamOwned::new(connection, socket);
    handshake(&mut tls.conn, &mut tls.sock).map_err(|e| format!("TLS handshake failed: {e}"))?;
    let subject = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| net::tls::certificate_subject(cert.as_ref()));
    let principal = match subject {
        None => Principal::anonymous(),
        Some(subject) => {
            let name = match &server.mapper {
                None => Some(subject.clone()),
                Some(mapper) => mapper.name(&subject),
            };
            let name = name.ok_or_else(|| {
                format!("no ssl.principal.mapping.rules rule applies to the certificate subject {subject}")
            })?;
            Principal::user(name)
        }
    };
    Ok((ControllerStream::TlsServer(Box::new(tls)), principal))
}

/// Kafka's rule for the controller listener: ClusterAction on the cluster, or a super user.
pub fn authorize(
    authorizer: &crate::authorizer::AuthorizerConfig,
    acls: &Acls,
    principal: &Principal,
    host: &str,
) -> Result<(), String> {
    if authorizer.super_users.contains(principal) {
        return Ok(());
    }
    let requester = Requester {
        principal_type: &principal.principal_type,
        principal_name: &principal.name,
        host,
    };
    let allowed = match acls.verdict(
        &requester,
        Operation::ClusterAction,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) {
        AclVerdict::Allowed => true,
        AclVerdict::Denied => false,
        AclVerdict::NoAcls => authorizer.allow_if_no_acl,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "{principal} is not authorized on the controller port: it needs ClusterAction on the cluster (an ACL, or super.users)"
        ))
    }
}

/// The server's half of the SASL exchange, Kafka frames on `stream`: the user, or why not.
fn sasl_accept(
    stream: &mut ControllerStream,
    listener: std::sync::Arc<crate::sasl::ListenerSasl>,
) -> Result<String, String> {
    let mut authenticator = Authenticator::new(listener);
    loop {
        let frame = read_kafka_frame(stream).map_err(|e| format!("SASL: {e}"))?;
        let (outcome, header) = if authenticator.expects() == Expect::RawToken {
            (authenticator.raw_token(&frame, &NoScram), None)
        } else {
            step(&mut authenticator, frame)?
        };
        match outcome {
            Outcome::Continue(answer) => send(stream, answer, header)?,
            Outcome::Authenticated { answer, user, .. } => {
                send(stream, answer, header)?;
                return Ok(user);
            }
            Outcome::Fail(answer, failure) => {
                if let Some(answer) = answer {
                    let _ = send(stream, answer, header);
                }
                let user = failure.user.as_deref().unwrap_or("-");
                return Err(format!(
                    "SASL authentication failed (user {user}): {}",
                    failure.reason
                ));
            }
        }
    }
}

type Header = Option<(ApiKey, i16, i32)>;

/// One request of the exchange through the authenticator.
fn step(
    authenticator: &mut Authenticator,
    frame: bytes::Bytes,
) -> Result<(Outcome, Header), String> {
    let request = match route(frame) {
        Routed::Request(request) => request,
        _ => return Err("SASL: not a Kafka request the exchange expects".into()),
    };
    let header = Some((
        request.api_key,
        request.version,
        request.header.correlation_id,
    ));
    let outcome = match &request.body {
        RequestKind::ApiVersions(_) => match authenticator.api_versions() {
            Ok(()) => Outcome::Continue(Answer::Versions),
            Err(failure) => Outcome::Fail(None, failure),
        },
        RequestKind::SaslHandshake(r) => authenticator.handshake(request.version, r),
        RequestKind::SaslAuthenticate(r) => authenticator.authenticate(r, &NoScram),
        _ => {
            let api = format!("{:?}", request.api_key);
            Outcome::Fail(None, authenticator.unexpected(&api))
        }
    };
    Ok((outcome, header))
}

fn send(stream: &mut ControllerStream, answer: Answer, header: Header) -> Result<(), String> {
    let bytes = match answer {
        Answer::Raw(token) => {
            let mut frame = (token.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&token);
            frame
        }
        answer => {
            let (api_key, version, correlation_id) = header.ok_or("SASL: no request to answer")?;
            let body = match answer {
                Answer::Versions => {
                    ResponseKind::ApiVersions(crate::handlers::api_versions::handle(0))
                }
                Answer::Handshake(r) => ResponseKind::SaslHandshake(r),
                Answer::Authenticate(r) => ResponseKind::SaslAuthenticate(r),
                Answer::Raw(_) => unreachable!("matched above"),
            };
            crate::protocol::encode_response(api_key, version, correlation_id, &body, 256)?.to_vec()
        }
    };
    stream
        .write_all(&bytes)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("SASL: {e}"))
}

/// A Kafka frame (big-endian size, then the bytes), at most [`SASL_FRAME_BYTES_MAX`].
fn read_kafka_frame(stream: &mut impl Read) -> io::Result<bytes::Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if !(0..=SASL_FRAME_BYTES_MAX as i32).contains(&size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {size} bytes, not a SASL request"),
        ));
    }
    let mut frame = vec![0; size as usize];
    stream.read_exact(&mut frame)?;
    Ok(frame.into())
}

/// The controller port serves PLAIN only: no SCRAM credentials, no token clock needed.
struct NoScram;

impl Credentials for NoScram {
    fn scram(&self, _: &str, _: ScramMechanism) -> Option<ScramCredential> {
        None
    }

    fn nonce(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    fn fake_salt(&self, user: &str) -> Vec<u8> {
        user.as_bytes().to_vec()
    }

    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorizer::AuthorizerConfig;
    use crate::cluster::protocol::{
        read_frame, write_frame, ControllerFrame, ControllerRequest, ControllerResponse,
    };
    use crate::cluster::security::ControllerSecurity;
    use crate::config::BrokerConfig;
    use controller::acl::{AclBinding, PatternType, Permission};
    use std::net::TcpListener;
    use std::sync::Arc;

    const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
        username=\"ctl\" password=\"PASSWORD\" user_ctl=\"ctl-secret\";";

    fn testdata(name: &str) -> String {
        format!("{}/src/cluster/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    /// The controller listener on `protocol` with mTLS required, `keystore` as the node's.
    fn security(protocol: &str, keystore: &str, password: &str) -> ControllerSecurity {
        let pairs = [
            format!("listener.security.protocol.map=CONTROLLER:{protocol}"),
            format!(
                "listener.name.controller.ssl.keystore.location={}",
                testdata(keystore)
            ),
            format!(
                "listener.name.controller.ssl.truststore.location={}",
                testdata("ca.crt")
            ),
            "listener.name.controller.ssl.client.auth=required".to_owned(),
            format!(
                "listener.name.controller.plain.sasl.jaas.config={}",
                JAAS.replace("PASSWORD", password)
            ),
        ];
        let config = BrokerConfig::with_overrides(pairs.iter().map(String::as_str)).unwrap();
        ControllerSecurity::of(&config, true).unwrap()
    }

    /// One connection from `client` to `server` carrying a request and its answer: the
    /// principal the server saw (or why it refused), and whether the client got its answer.
    fn exchange(
        server: &ControllerSecurity,
        client: &ControllerSecurity,
    ) -> (Result<Principal, String>, io::Result<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = server.server.clone();
        let served = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let (mut stream, principal) =
                accept(socket, &server, Arc::default).map_err(|r| r.reason)?;
            let frame = read_frame(&mut stream).map_err(|e| e.to_string())?;
            assert!(matches!(
                frame,
                ControllerFrame::Request(ControllerRequest::DescribeQuorum)
            ));
            let answer = ControllerFrame::Response(ControllerResponse::Ok);
            write_frame(&mut stream, &answer).map_err(|e| e.to_string())?;
            Ok(principal)
        });
        let timeout = Duration::from_secs(5);
        let asked = connect(&address, &client.client, timeout, timeout).and_then(|mut s| {
            let request = ControllerFrame::Request(ControllerRequest::DescribeQuorum);
            write_frame(&mut s, &request)?;
            match read_frame(&mut s)? {
                ControllerFrame::Response(ControllerResponse::Ok) => Ok(()),
                other => Err(io::Error::other(format!("answered {other:?}"))),
            }
        });
        (served.join().unwrap(), asked)
    }

    #[test]
    fn plaintext_is_the_bare_socket_and_anonymous() {
        let plain = ControllerSecurity::default();
        let (principal, asked) = exchange(&plain, &plain);
        assert_eq!(principal.unwrap(), Principal::anonymous());
        asked.unwrap();
    }

    #[test]
    fn mtls_names_the_peer_by_its_certificate_and_refuses_another_ca() {
        let server = security("SSL", "node.pem", "ctl-secret");
        let (principal, asked) = exchange(&server, &server);
        assert_eq!(principal.unwrap().to_string(), "User:CN=spate-node,O=spate");
        asked.unwrap();

        let rogue = security("SSL", "rogue.pem", "ctl-secret");
        let (refused, asked) = exchange(&server, &rogue);
        let why = refused.unwrap_err();
        assert!(why.contains("TLS handshake failed"), "{why}");
        assert!(asked.is_err());
        let plain = ControllerSecurity::default();
        let (refused, asked) = exchange(&server, &plain);
        assert!(refused.unwrap_err().contains("TLS handshake failed"));
        assert!(asked.is_err());
    }

    #[test]
    fn sasl_ssl_authenticates_plain_with_the_listeners_users() {
        for protocol in ["SASL_SSL", "SASL_PLAINTEXT"] {
            let server = security(protocol, "node.pem", "ctl-secret");
            let (principal, asked) = exchange(&server, &server);
            assert_eq!(principal.unwrap(), Principal::user("ctl"), "{protocol}");
            asked.unwrap();
        }
        let server = security("SASL_SSL", "node.pem", "ctl-secret");

        let wrong = security("SASL_SSL", "node.pem", "wrong-secret");
        let (refused, asked) = exchange(&server, &wrong);
        let why = refused.unwrap_err();
        assert!(
            why.contains("SASL authentication failed (user ctl)"),
            "{why}"
        );
        let client_error = asked.unwrap_err().to_string();
        assert!(
            client_error.contains("SaslAuthenticationFailed"),
            "{client_error}"
        );
        assert!(!why.contains("secret") && !client_error.contains("secret"));
    }

    #[test]
    fn the_authorizer_wants_cluster_action_or_a_super_user() {
        let config = AuthorizerConfig::parse(
            crate::authorizer::AUTHORIZER_CLASSES[0],
            "User:admin",
            false,
        )
        .unwrap()
        .unwrap();
        let grant = AclBinding {
            resource_type: ResourceType::Cluster,
            resource_name: CLUSTER_NAME.into(),
            pattern_type: PatternType::Literal,
            principal: "User:node".into(),
            host: "*".into(),
            operation: Operation::ClusterAction,
            permission: Permission::Allow,
        };
        let acls = Acls::new([grant].into_iter().collect());
        let host = "127.0.0.1";
        assert!(authorize(&config, &acls, &Principal::user("admin"), host).is_ok());
        assert!(authorize(&config, &acls, &Principal::user("node"), host).is_ok());
        let why = authorize(&config, &acls, &Principal::anonymous(), host).unwrap_err();
        assert!(
            why.contains("User:ANONYMOUS") && why.contains("ClusterAction"),
            "{why}"
        );
        let open = AuthorizerConfig {
            allow_if_no_acl: true,
            ..config
        };
        assert!(authorize(&open, &Acls::default(), &Principal::anonymous(), host).is_ok());
    }
}
