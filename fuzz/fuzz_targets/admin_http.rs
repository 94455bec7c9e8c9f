//! The admin endpoint's HTTP request parsing (`net::http`): the bytes a client sends, cut at
//! the blank line that ends the head as the reader does, through `parse_head`, then the
//! admin routing decision (`broker::admin::route`).
//!
//! Asserts: no panic; an accepted head has an upper-case method and a path starting with
//! `/` without a query; re-rendering the accepted request line parses to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net::http::{find_head_end, parse_head, HEAD_BYTES_MAX};

fuzz_target!(
    init: spate_fuzz::write_seeds_if_asked("admin_http"),
    |data: &[u8]| {
        let Some(end) = find_head_end(data) else {
            return;
        };
        if end > HEAD_BYTES_MAX {
            return;
        }
        let Some(request) = parse_head(&data[..end]) else {
            return;
        };
        assert!(!request.method.is_empty());
        assert!(request.method.bytes().all(|b| b.is_ascii_uppercase()));
        assert!(request.path.starts_with('/') && !request.path.contains('?'));
        let line = format!("{} {} HTTP/1.1", request.method, request.path);
        let again = parse_head(line.as_bytes()).expect("a rendered request line parses");
        assert_eq!((again.method.as_str(), again.path.as_str()), (request.method.as_str(), request.path.as_str()));
        let status = broker::admin::route_status(&request.method, &request.path);
        assert!(matches!(status, None | Some(404) | Some(405)));
    }
);
