//! Kafka wire framing and glommio TCP connection handling, plus the tiny HTTP/1.1 server of the
//! admin endpoint (`http`).
//!
//! This crate is the only place that touches glommio sockets. It knows Kafka's framing (a
//! big-endian `i32` size followed by that many bytes) and nothing about what a frame means:
//! each request frame goes to a [`RequestHandler`], and replies go back in request order, as
//! Kafka requires, while later requests of the same connection are already being served.

mod connection;
mod frame;
pub mod http;
mod outbox;
pub mod quotas;
pub mod tls;
mod x500;

pub use connection::{serve, serve_tls, ConnectionLimits, Reply, RequestHandler, RequestMemory};
pub use frame::{read_frame, FrameError};
