//! SASL/PLAIN (RFC 4616) as Kafka's `PlainServerCallbackHandler` checks it: the token is
//! `authzid NUL authcid NUL password`, the authzid empty or the user itself, the password
//! compared in constant time with the configured one.

use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// Why a PLAIN token was refused (all answer the client the same).
#[derive(Debug, PartialEq, Eq)]
pub enum PlainError {
    Malformed(&'static str),
    /// With the user named, when there was one (for the log, never the password).
    BadCredentials(String),
}

/// Checks one PLAIN token; `Ok(user)` when it authenticates.
pub fn authenticate(token: &[u8], users: &BTreeMap<String, String>) -> Result<String, PlainError> {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed("expected 3 tokens"));
    };
    let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed("user not UTF-8"))?;
    if user.is_empty() {
        return Err(PlainError::Malformed("user name not specified"));
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(PlainError::Malformed(
            "authorization id differs from the user name",
        ));
    }
    // Unknown users are compared against a dummy so both cases take the same path.
    let expected = users.get(user).map(String::as_bytes);
    let matches: bool = password.ct_eq(expected.unwrap_or(b"\0unknown-user")).into();
    if expected.is_some() && matches {
        Ok(user.to_string())
    } else {
        Err(PlainError::BadCredentials(user.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, String> {
        [("alice".to_string(), "alice-secret".to_string())].into()
    }

    #[test]
    fn the_right_password_authenticates() {
        assert_eq!(
            authenticate(b"\0alice\0alice-secret", &users()),
            Ok("alice".into())
        );
        assert_eq!(
            authenticate(b"alice\0alice\0alice-secret", &users()),
            Ok("alice".into())
        );
    }

    #[test]
    fn wrong_passwords_unknown_users_and_bad_tokens_are_refused() {
        let bad = |t: &[u8]| authenticate(t, &users());
        assert_eq!(
            bad(b"\0alice\0alice-secreT"),
            Err(PlainError::BadCredentials("alice".into()))
        );
        assert_eq!(
            bad(b"\0alice\0"),
            Err(PlainError::BadCredentials("alice".into()))
        );
        assert_eq!(
            bad(b"\0bob\0alice-secret"),
            Err(PlainError::BadCredentials("bob".into()))
        );
        for malformed in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"bob\0alice\0alice-secret",
            b"\0alice\0alice-secret\0x",
            b"\0\xff\0pw",
        ] {
            assert!(
                matches!(bad(malformed), Err(PlainError::Malformed(_))),
                "{malformed:?}"
            );
        }
    }
}
