//! One client connection's requests: version checks, decoding, dispatch and encoding.

use crate::handlers;
use crate::metrics::errors;
use crate::protocol::{self, FrameStart};
use crate::sasl;
use crate::session::{Gate, Session};
use crate::shard::Shard;
use crate::splice;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use latency::{ConnectionStage, Traced};
use net::{Reply, RequestHandler};
use std::rc::Rc;
use std::time::Instant;
use tracing::{debug, warn};

/// Serves the Kafka requests of one connection on one shard.
pub struct KafkaConnection {
    shard: Rc<Shard>,
    session: Rc<Session>,
}

impl KafkaConnection {
    pub fn new(shard: Rc<Shard>, session: Session) -> Self {
        KafkaConnection {
            shard,
            session: Rc::new(session),
        }
    }
}

impl RequestHandler for KafkaConnection {
    fn handle(&self, frame: Bytes) -> LocalBoxFuture<'static, Reply> {
        let frame = match self.session.gate() {
            Gate::Open => frame,
            Gate::Authenticating => {
                // Synchronous, so the SASL exchange is stepped in the order the frames came.
                let reply = sasl::gate::serve(&self.shard, &self.session, frame);
                return Box::pin(std::future::ready(reply));
            }
            Gate::Until(until) => {
                match sasl::gate::session_with_lifetime(&self.shard, &self.session, frame, until) {
                    Ok(reply) => return Box::pin(std::future::ready(reply)),
                    Err(frame) => frame,
                }
            }
        };
        Box::pin(serve_request(
            self.shard.clone(),
            frame,
            self.session.clone(),
        ))
    }
}

/// What a request frame asks for, decided before any handler runs (pure: fuzzed in
/// `fuzz/fuzz_targets/request.rs`).
// Returned once per request and unpacked at once: boxing would add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Routed {
    /// Close the connection: shorter than a header, unknown or unserved API, unsupported
    /// version, or a malformed body.
    Close,
    /// An ApiVersions newer than served: answered with the v0 error response.
    ApiVersionsFallback { correlation_id: i32 },
    /// A decoded request of a served API and version, for `handlers::handle`.
    Request(protocol::Request),
}

/// Checks the header of `frame` against the served APIs and decodes it.
pub fn route(frame: Bytes) -> Routed {
    let Some(start) = FrameStart::parse(&frame) else {
        debug!("request shorter than a header: closing");
        return Routed::Close;
    };
    let Ok(api_key) = ApiKey::try_from(start.api_key) else {
        debug!(api_key = start.api_key, "unknown API key: closing");
        return Routed::Close;
    };
    let Some((min, max)) = protocol::advertised_versions(api_key) else {
        debug!(?api_key, "API not served: closing");
        return Routed::Close;
    };
    if api_key == ApiKey::ApiVersions && start.api_version > max {
        // Kafka answers an ApiVersions it does not know with a v0 error response that lists
        // its ranges, so the client can pick a version both sides speak.
        return Routed::ApiVersionsFallback {
            correlation_id: start.correlation_id,
        };
    }
    let version = start.api_version;
    if version < min
        || version > max
        || (api_key == ApiKey::Produce && version < protocol::PRODUCE_VERSION_MIN_ACCEPTED)
    {
        debug!(?api_key, version, "unsupported version: closing");
        return Routed::Close;
    }
    match protocol::decode_request(api_key, version, frame) {
        Some(request) => Routed::Request(request),
        None => {
            debug!(?api_key, version, "malformed request: closing");
            Routed::Close
        }
    }
}

async fn serve_request(shard: Rc<Shard>, frame: Bytes, session: Rc<Session>) -> Reply {
    let received_at = Instant::now();
    let traced = Traced::of_frame(&frame);
    let request = match route(frame) {
        Routed::Close => return Reply::Close,
        Routed::ApiVersionsFallback { correlation_id } => {
            return encode(
                ApiKey::ApiVersions,
                0,
                correlation_id,
                handlers::api_versions::unsupported_version(),
            )
        }
        Routed::Request(request) => request,
    };
    if let Some(traced) = traced {
        traced.record_since(ConnectionStage::Decode, received_at);
    }
    let (api_key, version) = (request.api_key, request.version);
    let correlation_id = request.header.correlation_id;
    let answer = handlers::handle(&shard, request, &session).await;
    if let Some(body) = &answer {
        errors::for_each_error_code(body, |code| {
            shard.metrics.record_error(api_key as i16, code)
        });
    }
    shard
        .metrics
        .record_request(api_key as i16, received_at.elapsed());
    let Some(body) = answer else {
        return Reply::NoResponse;
    };
    let encoding = traced.map(|traced| (traced, Instant::now()));
    let reply = encode(api_key, version, correlation_id, body);
    if let Some((traced, started)) = encoding {
        traced.record_since(ConnectionStage::Encode, started);
    }
    reply
}

pub(crate) fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: ResponseKind,
) -> Reply {
    let frame = match &body {
        // The records stay the read's buffers: the frame is pieces, written vectored.
        ResponseKind::Fetch(fetch) => {
            splice::encode_fetch_response(version, correlation_id, fetch).map(Reply::Segments)
        }
        _ => protocol::encode_response(api_key, version, correlation_id, &body, 512)
            .map(Reply::Frame),
    };
    frame.unwrap_or_else(|e| {
        warn!("cannot encode a response, closing the connection: {e}");
        Reply::Close
    })
}
