//! SASL OAUTHBEARER (RFC 7628) as Kafka's `OAuthBearerSaslServer` runs it: the client's
//! first message `n,[a=<authzid>],\x01auth=Bearer <token>\x01[<key>=<value>\x01]...\x01`
//! carries a JWT (checked by `jwt::Validator`); a refused token is answered with the error
//! JSON `{"status":"invalid_token"}` as a challenge, the client answers `\x01`, and the
//! exchange fails with that JSON as its message.

use super::jwt::{JwtError, ValidToken, Validator};

/// The message of a malformed first message (Kafka's for a `SaslException`).
pub const MALFORMED_MESSAGE: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism OAUTHBEARER";

/// Kafka's error JSON for a token that did not validate.
pub const INVALID_TOKEN_JSON: &str = r#"{"status":"invalid_token"}"#;

/// One step of the exchange.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send the error JSON; the client answers `\x01` and the exchange then fails.
    Challenge(&'static str),
    Authenticated(ValidToken),
}

/// A failed exchange: the message for the client, the reason for the log.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub message: String,
    pub reason: String,
    pub user: Option<String>,
}

/// The server side of one exchange.
#[derive(Default)]
pub struct OAuthServer {
    /// Why the token was refused, once the error JSON was sent.
    refused: Option<JwtError>,
}

impl OAuthServer {
    /// The `kid` of a refused token whose key is not in the JWKS (an early refresh may
    /// find it).
    pub fn unknown_kid(&self) -> Option<&str> {
        match &self.refused {
            Some(JwtError::UnknownKey(Some(kid))) => Some(kid),
            _ => None,
        }
    }

    pub fn step(
        &mut self,
        message: &[u8],
        validator: &Validator,
        now_ms: i64,
    ) -> Result<Step, Refused> {
        if let Some(why) = self.refused.take() {
            // Kafka fails on the client's `\x01` with the error JSON; anything else is a
            // new first message, which this exchange does not take twice.
            return Err(Refused {
                message: INVALID_TOKEN_JSON.to_string(),
                reason: format!("invalid token: {why}"),
                user: None,
            });
        }
        let malformed = |why: &str| Refused {
            message: MALFORMED_MESSAGE.to_string(),
            reason: format!("invalid OAUTHBEARER client first message: {why}"),
            user: None,
        };
        let first = parse(message).map_err(malformed)?;
        match validator.validate(first.token, now_ms) {
            Err(why) => {
                self.refused = Some(why);
                Ok(Step::Challenge(INVALID_TOKEN_JSON))
            }
            Ok(token) => match first.authzid {
                Some(id) if !id.is_empty() && id != token.principal => Err(Refused {
                    message: format!(
                        "Authentication failed: Client requested an authorization id ({id}) that is different from the token's principal name ({})",
                        token.principal
                    ),
                    reason: "authorization id differs from the token's principal".into(),
                    user: Some(token.principal),
                }),
                _ => Ok(Step::Authenticated(token)),
            },
        }
    }
}

/// The parts of a client first message.
#[derive(Debug, PartialEq)]
struct FirstMessage<'a> {
    authzid: Option<&'a str>,
    token: &'a str,
}

fn parse(message: &[u8]) -> Result<FirstMessage<'_>, &'static str> {
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
    let rest = text.strip_prefix("n,").ok_or("no \"n,\" GS2 header")?;
    let (authzid, rest) = rest.split_once(',').ok_or("no GS2 header end")?;
    let authzid = match authzid {
        "" => None,
        a => Some(a.strip_prefix("a=").ok_or("bad authzid")?),
    };
    let pairs = rest
        .strip_prefix('\x01')
        .and_then(|r| r.strip_suffix("\x01\x01"))
        .ok_or("not \\x01-separated")?;
    let mut token = None;
    for pair in pairs.split('\x01') {
        let (key, value) = pair.split_once('=').ok_or("a pair without '='")?;
        if key == "auth" {
            let (scheme, value) = value.split_once(' ').ok_or("no auth scheme")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("auth scheme is not Bearer");
            }
            token = Some(value.trim_start_matches(' '));
        } else if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err("a bad extension name");
        }
    }
    let token = token.ok_or("no auth pair")?;
    let token_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if token.is_empty() || !token.bytes().all(token_char) {
        return Err("the token has characters a JWT does not");
    }
    Ok(FirstMessage { authzid, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::jwt::tests::{claims, rs256, rsa_jwks, validator};

    const NOW_MS: i64 = 1_800_000_000_000;

    fn message(token: &str) -> Vec<u8> {
        format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
    }

    #[test]
    fn first_messages_parse_as_rfc_7628_writes_them() {
        let m = parse(b"n,a=alice,\x01host=h\x01auth=bearer a.b-c_d\x01port=9\x01\x01").unwrap();
        assert_eq!(m.authzid, Some("alice"));
        assert_eq!(m.token, "a.b-c_d");
        for bad in [
            &b"n,,auth=Bearer x"[..],
            b"y,,\x01auth=Bearer x\x01\x01",
            b"n,,\x01auth=Basic x\x01\x01",
            b"n,,\x01host=h\x01\x01",
            b"n,,\x01auth=Bearer x y\x01\x01",
            b"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_valid_token_authenticates_its_subject() {
        let v = validator(&rsa_jwks("k"));
        let mut server = OAuthServer::default();
        let step = server.step(&message(&rs256("k", &claims(NOW_MS))), &v, NOW_MS);
        let Ok(Step::Authenticated(token)) = step else {
            panic!("{step:?}")
        };
        assert_eq!(token.principal, "alice");
    }

    #[test]
    fn a_refused_token_gets_the_error_json_then_fails() {
        let v = validator(&rsa_jwks("k"));
        let mut server = OAuthServer::default();
        let expired = rs256("k", &claims(NOW_MS - 3_600_000));
        assert_eq!(
            server.step(&message(&expired), &v, NOW_MS),
            Ok(Step::Challenge(INVALID_TOKEN_JSON))
        );
        let refused = server.step(b"\x01", &v, NOW_MS).unwrap_err();
        assert_eq!(refused.message, INVALID_TOKEN_JSON);
        assert!(refused.reason.contains("expired"), "{}", refused.reason);
        assert!(!refused.reason.contains(&expired));
    }

    #[test]
    fn malformed_messages_and_foreign_authzids_fail_at_once() {
        let v = validator(&rsa_jwks("k"));
        let refused = OAuthServer::default()
            .step(b"garbage", &v, NOW_MS)
            .unwrap_err();
        assert_eq!(refused.message, MALFORMED_MESSAGE);
        let token = rs256("k", &claims(NOW_MS));
        let m = format!("n,a=bob,\x01auth=Bearer {token}\x01\x01");
        let refused = OAuthServer::default()
            .step(m.as_bytes(), &v, NOW_MS)
            .unwrap_err();
        assert_eq!(refused.user.as_deref(), Some("alice"));
    }
}
