//! The session stage of the connection path (ARCHITECTURE.md, "The connection path"): what
//! one connection is and what it has proven. One `Session` per connection, shared by the
//! requests it carries; `handlers::handle` gets it with each request, and handlers read the
//! principal from it when they ask for authorization.
//!
//! A connection is `User:ANONYMOUS` until security sets the principal here: the SASL
//! exchange (`Session::require_sasl`, stepped by `sasl::gate`, which also gates every API but
//! ApiVersions and SaslHandshake/SaslAuthenticate until it completes), or the client
//! certificate on an SSL listener. A SASL session may have a lifetime (KIP-368, `Gate::Until`):
//! it re-authenticates before it ends, or is closed at its next request after.

use crate::listeners::{ListenerInfo, SecurityProtocol};
use crate::sasl::authenticator::Authenticator;
use crate::sasl::{ListenerSasl, Mechanism};
use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// A Kafka principal, `type:name` as Kafka writes it (`User:alice`, `User:ANONYMOUS`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    pub principal_type: String,
    pub name: String,
}

impl Principal {
    /// Kafka's `KafkaPrincipal.USER_TYPE`.
    pub const USER_TYPE: &'static str = "User";

    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            principal_type: Self::USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    /// The principal of an unauthenticated connection (Kafka's `KafkaPrincipal.ANONYMOUS`).
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Parses `type:name` (the form ACLs and `super.users` use); `None` without a colon.
    pub fn parse(text: &str) -> Option<Self> {
        let (principal_type, name) = text.split_once(':')?;
        Some(Principal {
            principal_type: principal_type.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// What a request of the connection passes before the handlers (one `Cell` read per
/// request; `Open` on listeners without SASL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Straight to the handlers.
    Open,
    /// The SASL exchange (or a re-authentication) runs: every frame goes to `sasl::gate`.
    Authenticating,
    /// Authenticated until then (KIP-368): a SaslHandshake re-authenticates; any other
    /// request after it closes the connection.
    Until(Instant),
}

/// How the connection authenticated over SASL (kept for re-authentication).
struct SaslIdentity {
    listener: Arc<ListenerSasl>,
    mechanism: Option<Mechanism>,
}

/// One connection's session state.
pub struct Session {
    /// The peer as Kafka shows client hosts (`/127.0.0.1`); empty when unknown.
    pub client_host: Rc<str>,
    /// The listener the connection came in on (shared by its connections).
    pub listener: Rc<ListenerInfo>,
    principal: RefCell<Rc<Principal>>,
    gate: Cell<Gate>,
    authenticator: RefCell<Option<Authenticator>>,
    sasl: RefCell<Option<SaslIdentity>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client_host", &self.client_host)
            .field("listener", &self.listener.name)
            .field("principal", &self.principal())
            .field("gate", &self.gate.get())
            .finish()
    }
}

impl Session {
    pub fn new(peer: Option<std::net::SocketAddr>, listener: Rc<ListenerInfo>) -> Self {
        Session {
            client_host: match peer {
                Some(peer) => Rc::from(format!("/{}", peer.ip())),
                None => Rc::from(""),
            },
            listener,
            principal: RefCell::new(Rc::new(Principal::anonymous())),
            gate: Cell::new(Gate::Open),
            authenticator: RefCell::new(None),
            sasl: RefCell::new(None),
        }
    }

    /// What the listener the connection came in on asks of it (SASL gates SASL_* ones).
    pub fn security_protocol(&self) -> SecurityProtocol {
        self.listener.security_protocol
    }

    /// A connection on a SASL listener: nothing but ApiVersions and the SASL exchange until
    /// it authenticates with one of the listener's mechanisms.
    pub fn require_sasl(&self, listener: Arc<ListenerSasl>) {
        self.gate.set(Gate::Authenticating);
        *self.authenticator.borrow_mut() = Some(Authenticator::new(listener.clone()));
        *self.sasl.borrow_mut() = Some(SaslIdentity {
            listener,
            mechanism: None,
        });
    }

    /// `connections.max.reauth.ms` of the connection's listener for `mechanism` (0: none).
    pub fn sasl_reauth_ms(&self, mechanism: Mechanism) -> i64 {
        self.sasl
            .borrow()
            .as_ref()
            .map_or(0, |s| s.listener.reauth_ms[mechanism.index()])
    }

    /// What a request passes first (one `Cell` read per request).
    pub fn gate(&self) -> Gate {
        self.gate.get()
    }

    /// Whether the SASL exchange (or a re-authentication) is running.
    pub fn authenticating(&self) -> bool {
        self.gate.get() == Gate::Authenticating
    }

    /// The SASL exchange's state (`None` once it is over).
    pub fn authenticator(&self) -> RefMut<'_, Option<Authenticator>> {
        self.authenticator.borrow_mut()
    }

    /// The SASL exchange succeeded: the connection is `principal` and may do the rest, until
    /// `expires` if the session has a lifetime.
    pub fn authenticated(
        &self,
        principal: Principal,
        mechanism: Mechanism,
        expires: Option<Instant>,
    ) {
        self.set_principal(principal);
        self.authenticator.borrow_mut().take();
        if let Some(identity) = self.sasl.borrow_mut().as_mut() {
            identity.mechanism = Some(mechanism);
        }
        self.gate.set(expires.map_or(Gate::Open, Gate::Until));
    }

    /// A SaslHandshake on a session with a lifetime: re-authenticate (KIP-368) with the
    /// same mechanism and principal. `false` when the session cannot (no lifetime).
    pub fn begin_reauthentication(&self) -> bool {
        if !matches!(self.gate.get(), Gate::Until(_)) {
            return false;
        }
        let sasl = self.sasl.borrow();
        let Some(SaslIdentity {
            listener,
            mechanism: Some(mechanism),
        }) = sasl.as_ref()
        else {
            return false;
        };
        let user = self.principal().name.clone();
        *self.authenticator.borrow_mut() = Some(Authenticator::reauthenticate(
            listener.clone(),
            *mechanism,
            user,
        ));
        self.gate.set(Gate::Authenticating);
        true
    }

    /// Who the connection is now (a request keeps the principal it was decoded under).
    pub fn principal(&self) -> Rc<Principal> {
        self.principal.borrow().clone()
    }

    /// Sets who the connection is (TLS client certificate, SASL authentication).
    pub fn set_principal(&self, principal: Principal) {
        *self.principal.borrow_mut() = Rc::new(principal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_print_and_parse_as_kafka_writes_them() {
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
        let alice = Principal::parse("User:alice").unwrap();
        assert_eq!(alice, Principal::user("alice"));
        assert_eq!(Principal::parse("User:CN=a:b").unwrap().name, "CN=a:b");
        assert!(Principal::parse("alice").is_none());
    }

    #[test]
    fn a_session_starts_anonymous_and_keeps_what_it_is_told() {
        let listener = Rc::new(ListenerInfo::plaintext("127.0.0.1:9092").unwrap());
        let session = Session::new(Some("127.0.0.1:5000".parse().unwrap()), listener.clone());
        assert_eq!(session.security_protocol(), SecurityProtocol::Plaintext);
        assert_eq!(&*session.client_host, "/127.0.0.1");
        assert_eq!(*session.principal(), Principal::anonymous());
        session.set_principal(Principal::user("alice"));
        assert_eq!(session.principal().name, "alice");
        assert_eq!(&*Session::new(None, listener).client_host, "");
        assert!(!session.authenticating());
    }

    #[test]
    fn a_sasl_session_authenticates_once() {
        let listener = Arc::new(ListenerSasl::with_mechanisms(vec![Mechanism::Plain]));
        let info = Rc::new(ListenerInfo::plaintext("127.0.0.1:9092").unwrap());
        let session = Session::new(None, info);
        session.require_sasl(listener);
        assert!(session.authenticating() && session.authenticator().is_some());
        assert_eq!(*session.principal(), Principal::anonymous());
        assert!(!session.begin_reauthentication());
        session.authenticated(Principal::user("alice"), Mechanism::Plain, None);
        assert!(!session.authenticating() && session.authenticator().is_none());
        assert_eq!(session.gate(), Gate::Open);
        assert_eq!(session.principal().to_string(), "User:alice");
        assert!(
            !session.begin_reauthentication(),
            "no lifetime, no re-authentication"
        );
    }

    #[test]
    fn a_session_with_a_lifetime_can_reauthenticate() {
        let listener = Arc::new(ListenerSasl::with_mechanisms(vec![Mechanism::Plain]));
        let info = Rc::new(ListenerInfo::plaintext("127.0.0.1:9092").unwrap());
        let session = Session::new(None, info);
        session.require_sasl(listener);
        let until = Instant::now();
        session.authenticated(Principal::user("alice"), Mechanism::Plain, Some(until));
        assert_eq!(session.gate(), Gate::Until(until));
        assert!(session.begin_reauthentication());
        assert!(session.authenticating() && session.authenticator().is_some());
        assert_eq!(
            session.principal().name,
            "alice",
            "kept while re-authenticating"
        );
    }
}
