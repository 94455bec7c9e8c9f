//! One client connection's requests: version checks, decoding, dispatch and encoding.

use crate::handlers;
use crate::metrics::errors;
use crate::protocol::{self, FrameStart};
use crate::shard::Shard;
use crate::splice;
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use net::{Reply, RequestHandler};
use std::rc::Rc;
use std::time::Instant;
use tracing::{debug, warn};

/// Serves the Kafka requests of one connection on one shard.
pub struct KafkaConnection {
    shard: Rc<Shard>,
    /// The peer as Kafka shows client hosts (`/127.0.0.1`); empty when unknown.
    client_host: Rc<str>,
}

impl KafkaConnection {
    pub fn new(shard: Rc<Shard>) -> Self {
        KafkaConnection {
            shard,
            client_host: Rc::from(""),
        }
    }

    pub fn with_peer(mut self, peer: Option<std::net::SocketAddr>) -> Self {
        if let Some(peer) = peer {
            self.client_host = Rc::from(format!("/{}", peer.ip()));
        }
        self
    }
}

impl RequestHandler for KafkaConnection {
    fn handle(&self, frame: Bytes) -> LocalBoxFuture<'static, Reply> {
        Box::pin(serve_request(
            self.shard.clone(),
            frame,
            self.client_host.clone(),
        ))
    }
}

async fn serve_request(shard: Rc<Shard>, frame: Bytes, client_host: Rc<str>) -> Reply {
    let received_at = Instant::now();
    let Some(start) = FrameStart::parse(&frame) else {
        debug!("request shorter than a header: closing");
        return Reply::Close;
    };
    let Ok(api_key) = ApiKey::try_from(start.api_key) else {
        debug!(api_key = start.api_key, "unknown API key: closing");
        return Reply::Close;
    };
    let Some((min, max)) = protocol::advertised_versions(api_key) else {
        debug!(?api_key, "API not served: closing");
        return Reply::Close;
    };
    if api_key == ApiKey::ApiVersions && start.api_version > max {
        // Kafka answers an ApiVersions it does not know with a v0 error response that lists
        // its ranges, so the client can pick a version both sides speak.
        return encode(
            ApiKey::ApiVersions,
            0,
            start.correlation_id,
            handlers::api_versions::unsupported_version(),
        );
    }
    let version = start.api_version;
    if version < min
        || version > max
        || (api_key == ApiKey::Produce && version < protocol::PRODUCE_VERSION_MIN_ACCEPTED)
    {
        debug!(?api_key, version, "unsupported version: closing");
        return Reply::Close;
    }
    let Some(mut request) = protocol::decode_request(api_key, version, frame) else {
        debug!(?api_key, version, "malformed request: closing");
        return Reply::Close;
    };
    request.client_host = client_host.to_string();
    let correlation_id = request.header.correlation_id;
    let answer = handlers::handle(&shard, request).await;
    if let Some(body) = &answer {
        errors::for_each_error_code(body, |code| shard.metrics.record_error(start.api_key, code));
    }
    shard
        .metrics
        .record_request(start.api_key, received_at.elapsed());
    match answer {
        Some(body) => encode(api_key, version, correlation_id, body),
        None => Reply::NoResponse,
    }
}

fn encode(api_key: ApiKey, version: i16, correlation_id: i32, body: ResponseKind) -> Reply {
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
