//! ApiVersions (18).

use crate::handlers::code;
use crate::protocol::{advertised_versions, SUPPORTED_APIS};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, ResponseKind};

/// The ranges of every API this broker serves.
pub fn handle(_version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(code::NONE)
        .with_api_keys(api_keys())
}

/// The v0 answer to an ApiVersions version this broker does not know: as Kafka's
/// `ApiVersionsRequest.getErrorResponse`, it lists ApiVersions' own range only, which is all
/// a client needs to ask again with a version this broker knows.
pub fn unsupported_version() -> ResponseKind {
    let own = api_keys()
        .into_iter()
        .filter(|k| k.api_key == API_VERSIONS_KEY)
        .collect();
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(code::UNSUPPORTED_VERSION)
            .with_api_keys(own),
    )
}

const API_VERSIONS_KEY: i16 = 18;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .filter_map(|(key, _, _)| {
            let (min, max) = advertised_versions(*key)?;
            Some(
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect()
}
