//! SaslHandshake (17) and SaslAuthenticate (36) outside the exchange: on a listener without
//! SASL, or after the connection authenticated. Kafka answers both with ILLEGAL_SASL_STATE
//! (a session with a lifetime re-authenticates instead, KIP-368: `sasl::gate::session_with_lifetime`
//! takes its SaslHandshake before the handlers). The exchange itself is `sasl::gate`.

use crate::handlers::code;
use crate::session::Session;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

pub fn handshake(_session: &Session) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(code::ILLEGAL_SASL_STATE)
}

pub fn authenticate() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(code::ILLEGAL_SASL_STATE)
        .with_error_message(Some(StrBytes::from_static_str(
            "Unexpected SASL request: the connection needs no SASL authentication now",
        )))
}
