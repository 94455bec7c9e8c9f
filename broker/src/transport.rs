//! The transport stage of the connection path (ARCHITECTURE.md, "The connection path"): a
//! listener's socket on one shard, and what an accepted connection goes through before
//! framing. A PLAINTEXT or SASL_PLAINTEXT connection goes straight to `net::serve` (the path
//! and cost it always had); an SSL or SASL_SSL one first completes a TLS handshake bounded in
//! time (`net::tls::Acceptor`), and on an SSL listener a client certificate's subject becomes
//! the session's principal: as it is (`ssl.principal.mapping.rules=DEFAULT`), or the name the
//! listener's rules map it to (`principal_mapping`; no rule applying closes the connection, as
//! in Kafka).

use crate::connection::KafkaConnection;
use crate::listeners::{ListenerInfo, SecurityProtocol};
use crate::metrics::ListenerCounters;
use crate::principal_mapping::PrincipalMapper;
use crate::sasl::ListenerSasl;
use crate::session::{Principal, Session};
use crate::shard::Shard;
use crate::tls_reload::{AlteredSsl, TlsSlot};
use glommio::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info};

/// How long a client has to complete its TLS handshake: a silent peer, or a plaintext client
/// waiting for an answer on a TLS port, is closed then.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a TLS listener (SSL, SASL_SSL) does to a connection before framing (the one in force
/// when it was accepted).
#[derive(Clone)]
pub struct ListenerTls {
    pub acceptor: net::tls::Acceptor,
    /// SSL listeners' `ssl.principal.mapping.rules` when not `DEFAULT`.
    pub principal_mapper: Option<Arc<PrincipalMapper>>,
}

/// A listener as one shard serves it.
pub struct BoundListener {
    pub info: Rc<ListenerInfo>,
    pub socket: TcpListener,
    /// The listener's TLS, for SSL and SASL_SSL (replaced when its stores are reloaded).
    pub tls: Option<Rc<TlsSlot>>,
    pub counters: Rc<ListenerCounters>,
}

/// What a node's listener is before each shard binds it.
#[derive(Clone)]
pub struct ListenerPlan {
    pub info: ListenerInfo,
    pub addr: SocketAddr,
    pub tls: Option<ListenerTls>,
    /// Its `ssl.*` settings altered at run time, shared by every shard.
    pub altered_ssl: Arc<AlteredSsl>,
}

impl ListenerPlan {
    /// This shard's socket (SO_REUSEPORT: each shard binds its own), its counters registered
    /// in the shard's metrics.
    pub fn bind(&self, shard: &Shard) -> Result<BoundListener, String> {
        let socket = TcpListener::bind(self.addr)
            .map_err(|e| format!("cannot listen on {} ({}): {e}", self.addr, self.info.name))?;
        let counters = Rc::new(ListenerCounters::default());
        shard
            .metrics
            .listeners
            .borrow_mut()
            .push((Rc::from(self.info.name.as_str()), counters.clone()));
        let tls = self.tls.clone().map(|tls| {
            let slot = TlsSlot::new(&self.info.name, tls, self.altered_ssl.clone());
            let slot = Rc::new(slot);
            shard.tls_slots.borrow_mut().push(slot.clone());
            slot
        });
        Ok(BoundListener {
            info: Rc::new(self.info.clone()),
            socket,
            tls,
            counters,
        })
    }
}

/// Serves one admitted connection of `listener` until it ends.
pub async fn serve(
    shard: Rc<Shard>,
    listener: (
        Rc<ListenerInfo>,
        Option<ListenerTls>,
        Rc<ListenerCounters>,
        Option<Arc<ListenerSasl>>,
    ),
    stream: TcpStream,
    peer: SocketAddr,
) {
    let (info, tls, counters, sasl) = listener;
    let new_session = |info: Rc<ListenerInfo>| {
        let session = Session::new(Some(peer), info);
        if let Some(sasl) = &sasl {
            session.require_sasl(sasl.clone());
        }
        session
    };
    let limits = net::ConnectionLimits {
        frame_bytes_max: shard.config.socket_request_max_bytes,
        in_flight_max: shard.config.queued_max_requests,
    };
    let memory = shard.request_memory.clone();
    let Some(ListenerTls {
        acceptor,
        principal_mapper,
    }) = tls
    else {
        let handler = KafkaConnection::new(shard, new_session(info));
        return net::serve(stream, handler, limits, memory).await;
    };
    let connection = match acceptor.accept(stream, TLS_HANDSHAKE_TIMEOUT).await {
        Ok(connection) => connection,
        Err(reason) => {
            counters.count_tls_handshake_failure();
            debug!(%peer, listener = %info.name, "TLS handshake failed: {reason}");
            return;
        }
    };
    let session = new_session(info.clone());
    if info.security_protocol == SecurityProtocol::Ssl {
        if let Some(subject) = connection.peer_subject() {
            let Some(name) = principal_name(subject, principal_mapper.as_deref()) else {
                info!(
                    %peer,
                    listener = %info.name,
                    "TLS client refused: no ssl.principal.mapping.rules rule applies to its certificate's subject"
                );
                return;
            };
            session.set_principal(Principal::user(name));
        }
    }
    debug!(
        %peer,
        listener = %info.name,
        protocol = connection.protocol(),
        principal = %session.principal(),
        "TLS connection established"
    );
    net::serve_tls(
        connection,
        KafkaConnection::new(shard, session),
        limits,
        memory,
    )
    .await
}

/// A client certificate's principal name: its subject, or what the listener's rules map it to
/// (`None`: no rule applies).
fn principal_name(subject: String, mapper: Option<&PrincipalMapper>) -> Option<String> {
    match mapper {
        None => Some(subject),
        Some(mapper) => mapper.name(&subject),
    }
}
