//! A Kafka request frame (size prefix stripped, as the connection hands it over) through
//! `connection::route`: header checks against the served APIs and versions, then the
//! header and body decode into the `RequestKind` that `handlers::handle` dispatches on.
//!
//! Asserts: no panic; a decoded request re-encodes and decodes to an equal request (header
//! and body) of the same API; what routing answers without a shard (ApiVersions, the v0
//! fallback for a newer ApiVersions) encodes. The handlers behind `handlers::handle` need a
//! running shard and are not reached here.
#![no_main]

use broker::connection::{route, Routed};
use broker::protocol::{decode_request, encode_response};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use kafka_protocol::protocol::Encodable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: spate_fuzz::write_seeds_if_asked("request"),
    |data: &[u8]| {
        match route(Bytes::copy_from_slice(data)) {
            Routed::Close => {}
            Routed::ApiVersionsFallback { correlation_id } => {
                let body = broker::handlers::api_versions::unsupported_version();
                encode_response(ApiKey::ApiVersions, 0, correlation_id, &body, 64)
                    .expect("the v0 fallback answer encodes");
            }
            Routed::Request(request) => check_round_trip(request),
        }
    }
);

fn check_round_trip(request: broker::protocol::Request) {
    let (api_key, version) = (request.api_key, request.version);
    assert_eq!(request.header.request_api_key, api_key as i16);
    assert_eq!(request.header.request_api_version, version);
    let mut buf = BytesMut::new();
    request
        .header
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("a decoded header encodes");
    request
        .body
        .encode(&mut buf, version)
        .expect("a decoded body encodes");
    let again =
        decode_request(api_key, version, buf.freeze()).expect("a re-encoded request decodes");
    assert_eq!(
        again.header, request.header,
        "{api_key:?} v{version} header round trip"
    );
    assert!(
        again.body == request.body,
        "{api_key:?} v{version} body round trip"
    );
    if api_key == ApiKey::ApiVersions {
        let body = ResponseKind::ApiVersions(broker::handlers::api_versions::handle(version));
        encode_response(api_key, version, request.header.correlation_id, &body, 512)
            .expect("the ApiVersions answer encodes");
    }
}
