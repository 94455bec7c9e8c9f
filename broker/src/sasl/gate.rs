//! The session stage's gate on a SASL listener: until the connection is authenticated every
//! frame comes here instead of the handlers. It runs synchronously, in the order the frames
//! arrived (`KafkaConnection::handle` is called in order; the handlers' futures run
//! concurrently), so the exchange is ordered however the client pipelines.

use super::authenticator::{Answer, Credentials, Expect, Failure, Outcome};
use super::metrics;
use crate::connection::{encode, route, Routed};
use crate::handlers::api_versions;
use crate::session::{Principal, Session};
use crate::shard::Shard;
use bytes::{BufMut, Bytes, BytesMut};
use controller::scram::{ScramCredential, ScramMechanism};
use controller::MetadataImage;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use net::Reply;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, info};

/// Serves one frame of a connection that is not authenticated yet.
pub fn serve(shard: &Shard, session: &Session, frame: Bytes) -> Reply {
    let received_at = Instant::now();
    let credentials = NodeCredentials(shard.image());
    let mut slot = session.authenticator();
    let Some(authenticator) = slot.as_mut() else {
        return Reply::Close;
    };
    if authenticator.expects() == Expect::RawToken {
        let outcome = authenticator.raw_token(&frame, &credentials);
        drop(slot);
        return finish(session, outcome, None);
    }
    let request = match route(frame) {
        Routed::Close => return Reply::Close,
        Routed::ApiVersionsFallback { correlation_id } => {
            return match authenticator.api_versions_unsupported() {
                Ok(()) => encode(
                    ApiKey::ApiVersions,
                    0,
                    correlation_id,
                    api_versions::unsupported_version(),
                ),
                Err(failure) => refuse(session, failure),
            };
        }
        Routed::Request(request) => request,
    };
    let (api_key, version) = (request.api_key, request.version);
    let header = Some((api_key, version, request.header.correlation_id));
    let outcome = match &request.body {
        RequestKind::ApiVersions(_) => match authenticator.api_versions() {
            Ok(()) => Outcome::Continue(Answer::Versions),
            Err(failure) => Outcome::Fail(None, failure),
        },
        RequestKind::SaslHandshake(r) => authenticator.handshake(version, r),
        RequestKind::SaslAuthenticate(r) => authenticator.authenticate(r, &credentials),
        _ => Outcome::Fail(None, authenticator.unexpected(&format!("{api_key:?}"))),
    };
    drop(slot);
    let reply = finish(session, outcome, header);
    shard
        .metrics
        .record_request(api_key as i16, received_at.elapsed());
    reply
}

/// A request on a session with a lifetime (KIP-368), as Kafka's SocketServer takes it: a
/// SaslHandshake begins a re-authentication; anything else after the lifetime closes the
/// connection. `Err` gives the frame back for the handlers.
pub fn session_with_lifetime(
    shard: &Shard,
    session: &Session,
    frame: Bytes,
    until: Instant,
) -> Result<Reply, Bytes> {
    let handshake = crate::protocol::FrameStart::parse(&frame)
        .is_some_and(|start| start.api_key == ApiKey::SaslHandshake as i16);
    if handshake && session.begin_reauthentication() {
        debug!(client = %session.client_host, principal = %session.principal(), "SASL re-authentication begins");
        return Ok(serve(shard, session, frame));
    }
    if Instant::now() < until {
        return Err(frame);
    }
    metrics::record_expired_close();
    info!(
        client = %session.client_host,
        principal = %session.principal(),
        "SASL session expired without re-authentication: closing the connection"
    );
    Ok(Reply::Close)
}

/// The session lifetime Kafka gives an authentication: `connections.max.reauth.ms` (0:
/// none) and the credential's expiry, whichever comes first; `None`: no lifetime.
pub fn session_lifetime_ms(reauth_ms: i64, expires_at_ms: Option<i64>, now_ms: i64) -> Option<i64> {
    let credential = expires_at_ms.map(|at| at.saturating_sub(now_ms).max(0));
    match (credential, reauth_ms > 0) {
        (None, false) => None,
        (None, true) => Some(reauth_ms),
        (Some(left), false) => Some(left),
        (Some(left), true) => Some(left.min(reauth_ms)),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Acts on an outcome: answers, marks the session authenticated, or closes.
fn finish(session: &Session, outcome: Outcome, header: Option<(ApiKey, i16, i32)>) -> Reply {
    match outcome {
        Outcome::Continue(answer) => reply(answer, header),
        Outcome::Authenticated {
            mut answer,
            mechanism,
            user,
            expires_at_ms,
            reauthenticated,
        } => {
            metrics::record(mechanism, true);
            if reauthenticated {
                metrics::record_reauthentication(mechanism);
            }
            let reauth_ms = session.sasl_reauth_ms(mechanism);
            let lifetime = session_lifetime_ms(reauth_ms, expires_at_ms, now_ms());
            if let (Answer::Authenticate(r), Some((_, version, _)), Some(ms)) =
                (&mut answer, header, lifetime)
            {
                if version >= 1 {
                    r.session_lifetime_ms = ms;
                }
            }
            debug!(client = %session.client_host, %user, mechanism = mechanism.name(), reauthenticated, lifetime_ms = ?lifetime, "SASL authentication succeeded");
            let until = lifetime.map(|ms| Instant::now() + Duration::from_millis(ms as u64));
            session.authenticated(Principal::user(user), mechanism, until);
            reply(answer, header)
        }
        Outcome::Fail(answer, failure) => {
            let last = answer.map(|a| reply(a, header));
            let closed = refuse(session, failure);
            match last {
                Some(Reply::Frame(frame)) => Reply::Last(frame),
                _ => closed,
            }
        }
    }
}

/// Counts and logs a failed exchange (without secrets); the connection closes.
fn refuse(session: &Session, failure: Failure) -> Reply {
    if let Some(mechanism) = failure.mechanism {
        metrics::record(mechanism, false);
    }
    info!(
        client = %session.client_host,
        user = failure.user.as_deref().unwrap_or("-"),
        mechanism = failure.mechanism.map_or("-", |m| m.name()),
        reason = %failure.reason,
        "SASL authentication failed: closing the connection"
    );
    Reply::Close
}

fn reply(answer: Answer, header: Option<(ApiKey, i16, i32)>) -> Reply {
    let body = match answer {
        Answer::Raw(token) => {
            let mut frame = BytesMut::with_capacity(4 + token.len());
            frame.put_u32(token.len() as u32);
            frame.put_slice(&token);
            return Reply::Frame(frame.freeze());
        }
        Answer::Versions => ResponseKind::ApiVersions(api_versions::handle(0)),
        Answer::Handshake(r) => ResponseKind::SaslHandshake(r),
        Answer::Authenticate(r) => ResponseKind::SaslAuthenticate(r),
    };
    let Some((api_key, version, correlation_id)) = header else {
        return Reply::Close;
    };
    encode(api_key, version, correlation_id, body)
}

/// SCRAM credentials from the shard's metadata image; randomness from the OS.
struct NodeCredentials(Arc<MetadataImage>);

impl Credentials for NodeCredentials {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.0
            .scram_credentials
            .get(&(user.to_string(), mechanism))
            .cloned()
    }

    fn nonce(&self) -> String {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        format!("{}{}", a.simple(), b.simple())
    }

    fn fake_salt(&self, user: &str) -> Vec<u8> {
        static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
        let secret = SECRET.get_or_init(|| {
            let mut s = [0; 32];
            s[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            s[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            s
        });
        super::scram::hmac(ScramMechanism::Sha256, secret, user.as_bytes())
    }

    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::session_lifetime_ms;

    #[test]
    fn the_session_lifetime_is_the_sooner_of_reauth_and_the_credentials_expiry() {
        assert_eq!(session_lifetime_ms(0, None, 1000), None);
        assert_eq!(session_lifetime_ms(2000, None, 1000), Some(2000));
        assert_eq!(session_lifetime_ms(0, Some(61_000), 1000), Some(60_000));
        assert_eq!(session_lifetime_ms(2000, Some(61_000), 1000), Some(2000));
        assert_eq!(
            session_lifetime_ms(90_000, Some(61_000), 1000),
            Some(60_000)
        );
        assert_eq!(session_lifetime_ms(2000, Some(500), 1000), Some(0));
    }
}
