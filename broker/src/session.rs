//! The session stage of the connection path (ARCHITECTURE.md, "The connection path"): what
//! one connection is and what it has proven. One `Session` per connection, shared by the
//! requests it carries; `handlers::handle` gets it with each request, and handlers read the
//! principal from it when they ask for authorization.
//!
//! A connection is `User:ANONYMOUS` until security sets the principal here: the SASL
//! exchange (`Session::with_sasl`, stepped by `sasl::gate`, which also gates every API but
//! ApiVersions and SaslHandshake/SaslAuthenticate until it completes), or the client
//! certificate on an SSL listener.

use crate::listeners::{ListenerInfo, SecurityProtocol};
use crate::sasl::authenticator::Authenticator;
use crate::sasl::ListenerSasl;
use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

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

/// One connection's session state.
pub struct Session {
    /// The peer as Kafka shows client hosts (`/127.0.0.1`); empty when unknown.
    pub client_host: Rc<str>,
    /// The listener the connection came in on (shared by its connections).
    pub listener: Rc<ListenerInfo>,
    principal: RefCell<Rc<Principal>>,
    /// On a SASL listener until the exchange succeeded: every frame goes to `sasl::gate`.
    authenticating: Cell<bool>,
    authenticator: RefCell<Option<Authenticator>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client_host", &self.client_host)
            .field("listener", &self.listener.name)
            .field("principal", &self.principal())
            .field("authenticating", &self.authenticating.get())
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
            authenticating: Cell::new(false),
            authenticator: RefCell::new(None),
        }
    }

    /// What the listener the connection came in on asks of it (SASL gates SASL_* ones).
    pub fn security_protocol(&self) -> SecurityProtocol {
        self.listener.security_protocol
    }

    /// A connection on a SASL listener: nothing but ApiVersions and the SASL exchange until
    /// it authenticates with one of the listener's mechanisms.
    pub fn require_sasl(&self, listener: Arc<ListenerSasl>) {
        self.authenticating.set(true);
        *self.authenticator.borrow_mut() = Some(Authenticator::new(listener));
    }

    /// Whether the SASL exchange is still to complete (one `Cell` read per request).
    pub fn authenticating(&self) -> bool {
        self.authenticating.get()
    }

    /// The SASL exchange's state (`None` once it is over).
    pub fn authenticator(&self) -> RefMut<'_, Option<Authenticator>> {
        self.authenticator.borrow_mut()
    }

    /// The SASL exchange succeeded: the connection is `principal` and may do the rest.
    pub fn authenticated(&self, principal: Principal) {
        self.set_principal(principal);
        self.authenticator.borrow_mut().take();
        self.authenticating.set(false);
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
        let listener = Arc::new(ListenerSasl {
            mechanisms: vec![crate::sasl::Mechanism::Plain],
            plain_users: Default::default(),
        });
        let info = Rc::new(ListenerInfo::plaintext("127.0.0.1:9092").unwrap());
        let session = Session::new(None, info);
        session.require_sasl(listener);
        assert!(session.authenticating() && session.authenticator().is_some());
        assert_eq!(*session.principal(), Principal::anonymous());
        session.authenticated(Principal::user("alice"));
        assert!(!session.authenticating() && session.authenticator().is_none());
        assert_eq!(session.principal().to_string(), "User:alice");
    }
}
