//! One connection's SASL exchange, as Kafka's `SaslServerAuthenticator` runs it: an optional
//! ApiVersions, a SaslHandshake naming an enabled mechanism, then the mechanism's tokens —
//! in SaslAuthenticate requests after a v1 handshake, or as raw size-prefixed frames after a
//! v0 handshake (very old clients) — until the mechanism says who the client is. Anything
//! out of that order fails the exchange and the connection closes.
//!
//! Pure: stepped by `gate` with decoded requests, so it can be tested and fuzzed alone.

use super::oauthbearer::{self, OAuthServer};
use super::plain::{self, PlainError};
use super::scram::{ScramError, ScramServer, ScramStep};
use super::{ListenerSasl, Mechanism};
use crate::handlers::code;
use bytes::Bytes;
use controller::scram::{ScramCredential, ScramMechanism};
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

/// The message of every failed authentication: it does not say which half was wrong.
pub const FAILED_MESSAGE: &str = "Authentication failed: Invalid username or password";

/// What the exchange needs from the node: SCRAM credentials, randomness.
pub trait Credentials {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
    /// A fresh server nonce (printable, no commas).
    fn nonce(&self) -> String;
    /// The salt shown for an unknown user: the same each time for one user.
    fn fake_salt(&self, user: &str) -> Vec<u8>;
    /// Now, in milliseconds since the epoch (token expiry).
    fn now_ms(&self) -> i64;
}

/// What the next frame of the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A Kafka request (ApiVersions, SaslHandshake or SaslAuthenticate).
    Request,
    /// A raw SASL token (after a v0 handshake).
    RawToken,
}

/// What goes back to the client.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The ApiVersions response.
    Versions,
    Handshake(SaslHandshakeResponse),
    Authenticate(SaslAuthenticateResponse),
    /// A raw token, sent size-prefixed without a response header.
    Raw(Bytes),
}

/// A failed exchange, for the log and the metrics (never a secret).
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// `None` when the exchange failed before a mechanism was chosen.
    pub mechanism: Option<Mechanism>,
    pub user: Option<String>,
    pub reason: String,
}

/// The result of one step.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Send the answer and wait for the next message.
    Continue(Answer),
    /// Send the answer: the connection is `user` from now on.
    Authenticated {
        answer: Answer,
        mechanism: Mechanism,
        user: String,
        /// When the credential expires (an OAUTHBEARER token's `exp`), in ms since the epoch.
        expires_at_ms: Option<i64>,
        /// A re-authentication (KIP-368) of the same principal.
        reauthenticated: bool,
    },
    /// Send the answer, if any, then close the connection.
    Fail(Option<Answer>, Failure),
}

enum State {
    /// Waiting for ApiVersions (once) or SaslHandshake.
    Handshake { versions_seen: bool },
    /// The mechanism chosen; its tokens come framed (SaslAuthenticate) or raw.
    Tokens {
        mechanism: Mechanism,
        framed: bool,
        server: Server,
    },
    /// A re-authentication asked for another mechanism than the session's: the next
    /// request fails (Kafka's REAUTH_BAD_MECHANISM).
    BadMechanism(String),
    /// Authenticated or failed: no more steps.
    Over,
}

/// The chosen mechanism's server state.
enum Server {
    Plain,
    Scram(ScramMechanism, ScramServer),
    OAuth(OAuthServer),
}

/// A step of a mechanism that did not fail: the user once known, the bytes to answer.
struct Step {
    user: Option<String>,
    bytes: Bytes,
    expires_at_ms: Option<i64>,
}

/// A failed mechanism step: the message for the client, and what the log says.
struct Refusal {
    user: Option<String>,
    reason: String,
    message: String,
}

pub struct Authenticator {
    listener: Arc<ListenerSasl>,
    state: State,
    /// Re-authenticating (KIP-368): the session's mechanism and user, both kept.
    previous: Option<(Mechanism, String)>,
}

impl Authenticator {
    pub fn new(listener: Arc<ListenerSasl>) -> Self {
        Authenticator {
            listener,
            state: State::Handshake {
                versions_seen: false,
            },
            previous: None,
        }
    }

    /// A re-authentication of an authenticated connection: it starts at the SaslHandshake
    /// (no ApiVersions), must use `mechanism` again and prove the same `user`.
    pub fn reauthenticate(listener: Arc<ListenerSasl>, mechanism: Mechanism, user: String) -> Self {
        Authenticator {
            listener,
            state: State::Handshake {
                versions_seen: true,
            },
            previous: Some((mechanism, user)),
        }
    }

    pub fn expects(&self) -> Expect {
        match self.state {
            State::Tokens { framed: false, .. } => Expect::RawToken,
            _ => Expect::Request,
        }
    }

    /// An ApiVersions request: allowed once, before the handshake.
    pub fn api_versions(&mut self) -> Result<(), Failure> {
        match &mut self.state {
            State::Handshake { versions_seen } if !*versions_seen => {
                *versions_seen = true;
                Ok(())
            }
            _ => Err(self.fail(None, "unexpected ApiVersions request")),
        }
    }

    /// An ApiVersions request at a version this broker does not have: answered with
    /// UNSUPPORTED_VERSION (naming the versions it has) where an ApiVersions may come, and the
    /// exchange stays where it was, so the client asks again at one of them (Kafka's
    /// `SaslServerAuthenticator`; franz-go asks at v5 first).
    pub fn api_versions_unsupported(&mut self) -> Result<(), Failure> {
        match self.state {
            State::Handshake {
                versions_seen: false,
            } => Ok(()),
            _ => Err(self.fail(None, "unexpected ApiVersions request")),
        }
    }

    /// Any other request than the SASL ones and ApiVersions: the exchange fails.
    pub fn unexpected(&mut self, api: &str) -> Failure {
        self.fail(
            None,
            &format!("unexpected {api} request before authentication"),
        )
    }

    pub fn handshake(&mut self, version: i16, request: &SaslHandshakeRequest) -> Outcome {
        if !matches!(self.state, State::Handshake { .. }) {
            return Outcome::Fail(None, self.fail(None, "unexpected SaslHandshake request"));
        }
        let enabled = self
            .listener
            .mechanisms
            .iter()
            .filter(|m| self.listener.offers(**m))
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(enabled);
        let chosen =
            Mechanism::from_name(request.mechanism.as_str()).filter(|m| self.listener.offers(*m));
        let Some(mechanism) = chosen else {
            let reason = format!("unsupported mechanism {:?}", request.mechanism.as_str());
            let answer = response.with_error_code(code::UNSUPPORTED_SASL_MECHANISM);
            return Outcome::Fail(Some(Answer::Handshake(answer)), self.fail(None, &reason));
        };
        if let Some((previous, _)) = &self.previous {
            if *previous != mechanism {
                self.state = State::BadMechanism(format!(
                    "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
                    mechanism.name(),
                    previous.name()
                ));
                return Outcome::Continue(Answer::Handshake(response));
            }
        }
        self.state = State::Tokens {
            mechanism,
            framed: version >= 1,
            server: match mechanism {
                Mechanism::Scram(m) => Server::Scram(m, ScramServer::new(m)),
                Mechanism::Plain => Server::Plain,
                Mechanism::OAuthBearer => Server::OAuth(OAuthServer::default()),
            },
        };
        Outcome::Continue(Answer::Handshake(response))
    }

    pub fn authenticate(
        &mut self,
        request: &SaslAuthenticateRequest,
        credentials: &dyn Credentials,
    ) -> Outcome {
        if let State::BadMechanism(reason) = &self.state {
            let reason = reason.clone();
            let failure = self.fail(None, &reason);
            return Outcome::Fail(None, failure);
        }
        if !matches!(self.state, State::Tokens { framed: true, .. }) {
            return Outcome::Fail(None, self.fail(None, "unexpected SaslAuthenticate request"));
        }
        self.token(&request.auth_bytes, credentials, |bytes| {
            Answer::Authenticate(SaslAuthenticateResponse::default().with_auth_bytes(bytes))
        })
    }

    /// A raw token after a v0 handshake; a failure closes without an answer (the v0
    /// exchange has no way to carry an error).
    pub fn raw_token(&mut self, token: &[u8], credentials: &dyn Credentials) -> Outcome {
        match self.token(token, credentials, Answer::Raw) {
            Outcome::Fail(_, failure) => Outcome::Fail(None, failure),
            outcome => outcome,
        }
    }

    fn token(
        &mut self,
        token: &[u8],
        credentials: &dyn Credentials,
        answer: impl Fn(Bytes) -> Answer,
    ) -> Outcome {
        let State::Tokens {
            mechanism, server, ..
        } = &mut self.state
        else {
            unreachable!("checked by the callers")
        };
        let mechanism = *mechanism;
        let result = step(server, token, &self.listener, credentials);
        let result = match (result, &self.previous) {
            (Ok(Step { user: Some(user), .. }), Some((_, previous))) if user != *previous => {
                Err(Refusal {
                    message: format!(
                        "Cannot change principals during re-authentication from User.{previous}: User.{user}"
                    ),
                    reason: format!("re-authentication as another principal (was {previous})"),
                    user: Some(user),
                })
            }
            (result, _) => result,
        };
        match result {
            Ok(Step {
                user: None, bytes, ..
            }) => Outcome::Continue(answer(bytes)),
            Ok(Step {
                user: Some(user),
                bytes,
                expires_at_ms,
            }) => {
                self.state = State::Over;
                Outcome::Authenticated {
                    answer: answer(bytes),
                    mechanism,
                    user,
                    expires_at_ms,
                    reauthenticated: self.previous.is_some(),
                }
            }
            Err(refusal) => {
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(code::SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(refusal.message)));
                let failure = Failure {
                    mechanism: Some(mechanism),
                    user: refusal.user,
                    reason: refusal.reason,
                };
                self.state = State::Over;
                Outcome::Fail(Some(Answer::Authenticate(response)), failure)
            }
        }
    }

    fn fail(&mut self, user: Option<String>, reason: &str) -> Failure {
        let mechanism = match self.state {
            State::Tokens { mechanism, .. } => Some(mechanism),
            _ => None,
        };
        self.state = State::Over;
        Failure {
            mechanism,
            user,
            reason: reason.to_string(),
        }
    }
}

/// Steps the chosen mechanism with the client's `token`.
fn step(
    server: &mut Server,
    token: &[u8],
    listener: &ListenerSasl,
    credentials: &dyn Credentials,
) -> Result<Step, Refusal> {
    let refused = |user, reason: String| Refusal {
        user,
        reason,
        message: FAILED_MESSAGE.to_string(),
    };
    let done = |user: String, bytes: Bytes| Step {
        user: Some(user),
        bytes,
        expires_at_ms: None,
    };
    let challenge = |bytes: Bytes| Step {
        user: None,
        bytes,
        expires_at_ms: None,
    };
    match server {
        Server::Plain => plain::authenticate(token, &listener.plain_users)
            .map(|user| done(user, Bytes::new()))
            .map_err(|e| match e {
                PlainError::Malformed(why) => refused(None, why.to_string()),
                PlainError::BadCredentials(user) => refused(Some(user), "bad credentials".into()),
            }),
        Server::Scram(m, server) => {
            let m = *m;
            let step = server.step(
                token,
                |user| credentials.scram(user, m),
                &credentials.nonce(),
                |user| credentials.fake_salt(user),
            );
            let user = server.user().map(str::to_string);
            match step {
                Ok(ScramStep::Challenge(bytes)) => Ok(challenge(Bytes::from(bytes))),
                Ok(ScramStep::Authenticated { user, response }) => {
                    Ok(done(user, Bytes::from(response)))
                }
                Err(ScramError::Malformed(why)) => Err(refused(user, why.to_string())),
                Err(ScramError::BadCredentials) => Err(refused(user, "bad credentials".into())),
            }
        }
        Server::OAuth(server) => {
            let jwks = listener
                .oauth
                .as_ref()
                .expect("offered only with a validator");
            let now_ms = credentials.now_ms();
            match server.step(token, &jwks.validator(), now_ms) {
                Ok(oauthbearer::Step::Challenge(json)) => {
                    if let Some(kid) = server.unknown_kid() {
                        jwks.key_missing(kid, now_ms.max(0) as u64);
                    }
                    Ok(challenge(Bytes::from_static(json.as_bytes())))
                }
                Ok(oauthbearer::Step::Authenticated(valid)) => Ok(Step {
                    user: Some(valid.principal),
                    bytes: Bytes::new(),
                    expires_at_ms: Some(valid.expires_at_ms),
                }),
                Err(r) => Err(Refusal {
                    user: r.user,
                    reason: r.reason,
                    message: r.message,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::jwks::Jwks;
    use crate::sasl::jwt::tests as jwt;
    use crate::sasl::scram::{credential, salted_password};

    struct Node;

    impl Credentials for Node {
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            let salt = b"0123456789abcdef";
            (user == "bob")
                .then(|| credential(m, salt, &salted_password(m, b"bob-pw", salt, 4096), 4096))
        }
        fn nonce(&self) -> String {
            "srv".into()
        }
        fn fake_salt(&self, _: &str) -> Vec<u8> {
            vec![7; 16]
        }
        fn now_ms(&self) -> i64 {
            NOW_MS
        }
    }

    const NOW_MS: i64 = 1_800_000_000_000;

    fn listener() -> Arc<ListenerSasl> {
        Arc::new(ListenerSasl {
            plain_users: [("alice".to_string(), "alice-secret".to_string())].into(),
            oauth: Some(Arc::new(Jwks::fixed(jwt::validator(&jwt::rsa_jwks("k"))))),
            ..ListenerSasl::with_mechanisms(vec![
                Mechanism::Plain,
                Mechanism::Scram(ScramMechanism::Sha512),
                Mechanism::OAuthBearer,
            ])
        })
    }

    fn bearer(claims: &serde_json::Value) -> Vec<u8> {
        format!("n,,\x01auth=Bearer {}\x01\x01", jwt::rs256("k", claims)).into_bytes()
    }

    #[test]
    fn oauthbearer_authenticates_the_tokens_subject_until_its_expiry() {
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 1, "OAUTHBEARER");
        let outcome = authenticate(&mut a, &bearer(&jwt::claims(NOW_MS)));
        let Outcome::Authenticated {
            user,
            expires_at_ms,
            reauthenticated: false,
            mechanism: Mechanism::OAuthBearer,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (user.as_str(), expires_at_ms),
            ("alice", Some(NOW_MS + 60_000))
        );
    }

    #[test]
    fn a_refused_token_is_challenged_with_kafkas_json_then_fails() {
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 1, "OAUTHBEARER");
        let mut claims = jwt::claims(NOW_MS);
        claims["iss"] = "https://evil".into();
        let Outcome::Continue(Answer::Authenticate(challenge)) =
            authenticate(&mut a, &bearer(&claims))
        else {
            panic!("challenge")
        };
        assert_eq!(&challenge.auth_bytes[..], br#"{"status":"invalid_token"}"#);
        let Outcome::Fail(Some(Answer::Authenticate(r)), failure) = authenticate(&mut a, b"\x01")
        else {
            panic!("failure")
        };
        assert_eq!(r.error_code, code::SASL_AUTHENTICATION_FAILED);
        assert_eq!(
            r.error_message.unwrap().as_str(),
            r#"{"status":"invalid_token"}"#
        );
        assert_eq!(failure.mechanism, Some(Mechanism::OAuthBearer));
        assert!(failure.reason.contains("issuer"), "{}", failure.reason);
    }

    #[test]
    fn reauthentication_keeps_the_mechanism_and_the_principal() {
        let mut a = Authenticator::reauthenticate(listener(), Mechanism::Plain, "alice".into());
        assert!(
            a.api_versions().is_err(),
            "re-authentication starts at the handshake"
        );
        let mut a = Authenticator::reauthenticate(listener(), Mechanism::Plain, "alice".into());
        handshake(&mut a, 1, "PLAIN");
        assert!(matches!(
            authenticate(&mut a, b"\0alice\0alice-secret"),
            Outcome::Authenticated {
                reauthenticated: true,
                ..
            }
        ));
        // Another principal: refused.
        let mut a = Authenticator::reauthenticate(listener(), Mechanism::OAuthBearer, "bob".into());
        handshake(&mut a, 1, "OAUTHBEARER");
        let Outcome::Fail(Some(Answer::Authenticate(r)), _) =
            authenticate(&mut a, &bearer(&jwt::claims(NOW_MS)))
        else {
            panic!("refused")
        };
        let message = r.error_message.unwrap();
        assert!(message.contains("Cannot change principals"), "{message}");
        // Another mechanism: the handshake passes, the next request fails.
        let mut a =
            Authenticator::reauthenticate(listener(), Mechanism::OAuthBearer, "alice".into());
        assert!(matches!(
            handshake(&mut a, 1, "PLAIN"),
            Outcome::Continue(Answer::Handshake(_))
        ));
        assert!(matches!(
            authenticate(&mut a, b"\0alice\0alice-secret"),
            Outcome::Fail(None, _)
        ));
    }

    fn handshake(a: &mut Authenticator, version: i16, mechanism: &'static str) -> Outcome {
        a.handshake(
            version,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
        )
    }

    fn authenticate(a: &mut Authenticator, token: &[u8]) -> Outcome {
        a.authenticate(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
            &Node,
        )
    }

    #[test]
    fn plain_over_a_v1_handshake_authenticates() {
        let mut a = Authenticator::new(listener());
        a.api_versions().unwrap();
        let Outcome::Continue(Answer::Handshake(h)) = handshake(&mut a, 1, "PLAIN") else {
            panic!("handshake")
        };
        assert_eq!(h.error_code, 0);
        assert_eq!(
            h.mechanisms,
            ["PLAIN", "SCRAM-SHA-512", "OAUTHBEARER"].map(StrBytes::from_static_str)
        );
        assert_eq!(a.expects(), Expect::Request);
        let outcome = authenticate(&mut a, b"\0alice\0alice-secret");
        assert!(matches!(
            outcome,
            Outcome::Authenticated { ref user, mechanism: Mechanism::Plain, .. } if user == "alice"
        ));
    }

    #[test]
    fn a_wrong_password_fails_with_kafkas_code_and_a_message_that_names_no_half() {
        for token in [&b"\0alice\0nope"[..], b"\0nobody\0alice-secret", b"garbage"] {
            let mut a = Authenticator::new(listener());
            handshake(&mut a, 1, "PLAIN");
            let Outcome::Fail(Some(Answer::Authenticate(r)), failure) = authenticate(&mut a, token)
            else {
                panic!("failure expected")
            };
            assert_eq!(r.error_code, code::SASL_AUTHENTICATION_FAILED);
            assert_eq!(r.error_message.as_deref(), Some(FAILED_MESSAGE));
            assert_eq!(failure.mechanism, Some(Mechanism::Plain));
            assert!(!failure.reason.contains("secret") && !failure.reason.contains("nope"));
        }
    }

    #[test]
    fn an_unsupported_mechanism_gets_the_enabled_list_then_a_close() {
        let mut a = Authenticator::new(listener());
        let Outcome::Fail(Some(Answer::Handshake(h)), _) = handshake(&mut a, 1, "GSSAPI") else {
            panic!("failure expected")
        };
        assert_eq!(h.error_code, code::UNSUPPORTED_SASL_MECHANISM);
        assert_eq!(h.mechanisms.len(), 3);
        // SCRAM-SHA-256 exists but is not enabled here.
        let mut a = Authenticator::new(listener());
        assert!(matches!(
            handshake(&mut a, 1, "SCRAM-SHA-256"),
            Outcome::Fail(Some(_), _)
        ));
    }

    #[test]
    fn an_unsupported_api_versions_leaves_room_for_the_retry() {
        let mut a = Authenticator::new(listener());
        a.api_versions_unsupported().unwrap();
        a.api_versions_unsupported().unwrap();
        a.api_versions().unwrap();
        assert!(matches!(
            handshake(&mut a, 1, "PLAIN"),
            Outcome::Continue(_)
        ));
        assert!(matches!(
            authenticate(&mut a, b"\0alice\0alice-secret"),
            Outcome::Authenticated { ref user, .. } if user == "alice"
        ));
    }

    #[test]
    fn out_of_order_requests_fail() {
        let mut a = Authenticator::new(listener());
        assert!(matches!(
            authenticate(&mut a, b"\0alice\0alice-secret"),
            Outcome::Fail(None, _)
        ));
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 1, "PLAIN");
        assert!(matches!(
            handshake(&mut a, 1, "PLAIN"),
            Outcome::Fail(None, _)
        ));
        let mut a = Authenticator::new(listener());
        a.api_versions().unwrap();
        assert!(a.api_versions().is_err());
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 1, "PLAIN");
        assert!(a.api_versions().is_err());
        let mut a = Authenticator::new(listener());
        a.api_versions().unwrap();
        assert!(a.api_versions_unsupported().is_err());
        // A v0 handshake: the tokens come raw, SaslAuthenticate is out of order.
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 0, "PLAIN");
        assert_eq!(a.expects(), Expect::RawToken);
        assert!(matches!(
            authenticate(&mut a, b"\0alice\0alice-secret"),
            Outcome::Fail(None, _)
        ));
    }

    #[test]
    fn plain_over_a_v0_handshake_takes_raw_tokens() {
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 0, "PLAIN");
        assert!(matches!(
            a.raw_token(b"\0alice\0alice-secret", &Node),
            Outcome::Authenticated { answer: Answer::Raw(ref b), .. } if b.is_empty()
        ));
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 0, "PLAIN");
        assert!(matches!(
            a.raw_token(b"\0alice\0x", &Node),
            Outcome::Fail(None, _)
        ));
    }

    #[test]
    fn scram_runs_over_two_authenticate_rounds() {
        let mut a = Authenticator::new(listener());
        handshake(&mut a, 1, "SCRAM-SHA-512");
        let Outcome::Continue(Answer::Authenticate(first)) =
            authenticate(&mut a, b"n,,n=bob,r=cli")
        else {
            panic!("challenge")
        };
        assert!(first.auth_bytes.starts_with(b"r=clisrv,s="));
        // A wrong proof fails the exchange.
        let outcome = authenticate(&mut a, b"c=biws,r=clisrv,p=AAAA");
        let Outcome::Fail(Some(_), failure) = outcome else {
            panic!("failure")
        };
        assert_eq!(failure.user.as_deref(), Some("bob"));
    }
}
