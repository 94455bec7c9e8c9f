//! The SASL parsers (issue 19), picked by the first byte:
//! 0 a SaslHandshake body (v0-1), 1 a SaslAuthenticate body (v0-2) whose bytes then go to
//! PLAIN, 2 a PLAIN token (`broker::sasl::plain`), 3 SCRAM client-first NUL client-final
//! through the server's state machine (`broker::sasl::scram`), 4 a SCRAM server-first through
//! the client (`spate_bench::sasl`), 5 a JAAS configuration (`jaas::parse`, and the
//! client's credentials from it).
//!
//! Asserts: no panic; decoded bodies re-encode to what decodes the same; PLAIN accepts only
//! the configured password; a SCRAM challenge extends the client's nonce; a parsed JAAS text
//! re-rendered (values quoted and escaped) parses to the same modules.
#![no_main]

use broker::sasl::{jaas, plain, scram};
use bytes::{Bytes, BytesMut};
use controller::scram::{ScramCredential, ScramMechanism};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Decodable, Encodable};
use libfuzzer_sys::fuzz_target;
use spate_bench::sasl::{parse_server_first, ScramClient, ScramHash};
use std::collections::BTreeMap;
use std::sync::OnceLock;

fuzz_target!(
    init: spate_fuzz::write_seeds_if_asked("sasl"),
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        match mode % 6 {
            0 => handshake(rest),
            1 => authenticate(rest),
            2 => check_plain(rest),
            3 => scram_server(rest),
            4 => scram_client(rest),
            _ => jaas_text(rest),
        }
    }
);

fn round_trip<T: Encodable + Decodable + PartialEq + std::fmt::Debug>(value: &T, version: i16) {
    let mut buf = BytesMut::new();
    value
        .encode(&mut buf, version)
        .expect("a decoded body encodes");
    let again = T::decode(&mut buf.freeze(), version).expect("a re-encoded body decodes");
    assert_eq!(&again, value);
}

fn handshake(data: &[u8]) {
    let Some((&v, body)) = data.split_first() else {
        return;
    };
    let version = (v % 2) as i16;
    if let Ok(request) = SaslHandshakeRequest::decode(&mut Bytes::copy_from_slice(body), version) {
        round_trip(&request, version);
    }
}

fn authenticate(data: &[u8]) {
    let Some((&v, body)) = data.split_first() else {
        return;
    };
    let version = (v % 3) as i16;
    if let Ok(request) = SaslAuthenticateRequest::decode(&mut Bytes::copy_from_slice(body), version)
    {
        round_trip(&request, version);
        check_plain(&request.auth_bytes);
    }
}

fn check_plain(token: &[u8]) {
    let users = BTreeMap::from([("alice".to_string(), "alice-secret".to_string())]);
    if let Ok(user) = plain::authenticate(token, &users) {
        assert_eq!(user, "alice");
        assert!(token.ends_with(b"\0alice\0alice-secret"));
    }
}

/// alice's stored SCRAM-SHA-256 credential (computed once: PBKDF2 is slow on purpose).
fn alice() -> ScramCredential {
    static CREDENTIAL: OnceLock<ScramCredential> = OnceLock::new();
    CREDENTIAL
        .get_or_init(|| {
            let m = ScramMechanism::Sha256;
            let salt = b"fuzz-salt";
            scram::credential(
                m,
                salt,
                &scram::salted_password(m, b"alice-secret", salt, 4096),
                4096,
            )
        })
        .clone()
}

fn scram_server(data: &[u8]) {
    let (first, last) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let mut server = scram::ScramServer::new(ScramMechanism::Sha256);
    let lookup = |user: &str| (user == "alice").then(alice);
    let Ok(scram::ScramStep::Challenge(challenge)) =
        server.step(first, lookup, "servernonce", |_| b"fake".to_vec())
    else {
        return;
    };
    let challenge = String::from_utf8(challenge).expect("server-first is text");
    let text = std::str::from_utf8(first).expect("accepted client-first is text");
    let nonce = text
        .split(",r=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("");
    assert!(
        challenge.starts_with(&format!("r={nonce}servernonce,s=")),
        "{challenge}"
    );
    if let Some(last) = last {
        let _ = server.step(last, |_| None, "", |_| vec![]);
    }
}

fn scram_client(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(first) = parse_server_first(text) else {
        return;
    };
    assert!(first.iterations > 0 && !first.salt.is_empty());
    if first.iterations <= 64 {
        let client = ScramClient::new(ScramHash::Sha512, "alice", "pw", "fuzz");
        if let Ok((last, expected)) = client.client_final(text) {
            assert!(first.nonce.starts_with("fuzz") && last.starts_with("c=biws,r=fuzz"));
            assert!(expected.starts_with(b"v="));
        }
    }
}

fn jaas_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = spate_bench::sasl::jaas_credentials(text);
    let Ok(modules) = jaas::parse(text) else {
        return;
    };
    assert!(!modules.is_empty());
    let rendered: String = modules
        .iter()
        .map(|m| {
            let options: String = m
                .options
                .iter()
                .map(|(k, v)| format!(" {k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            format!("{} {}{options};\n", m.class, m.flag)
        })
        .collect();
    assert_eq!(jaas::parse(&rendered).as_ref(), Ok(&modules), "{rendered}");
}
