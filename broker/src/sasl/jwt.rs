//! The broker's JWT validation for OAUTHBEARER, as Kafka's KIP-768 validator
//! (`OAuthBearerValidatorCallbackHandler`) does it: a JWS in compact form signed with a key
//! of the configured JWKS (chosen by `kid`), `alg` `none` refused, `exp` and `iat`
//! required, `exp`/`nbf`/`iat` checked with a clock skew, `iss` and `aud` checked when
//! expected ones are configured, the subject claim names the principal.
//!
//! Signatures are checked with ring (the crypto rustls already uses): RS256/384/512,
//! PS256/384/512, ES256, ES384. Pure: the clock is an argument.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// JWKS members are base64url, with or without padding.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One public key of the JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The `alg` the key is restricted to, if the JWK says.
    pub alg: Option<String>,
    pub key: PublicKey,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 || x || y) on P-256 or P-384.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// Parses a JWKS document (`{"keys": [...]}`); keys of types Spate cannot check (`oct`,
/// other curves) are skipped, as are private members.
pub fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for key in keys {
        let member = |name: &str| key.get(name).and_then(Value::as_str);
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let text = member(name).ok_or_else(|| format!("a key has no \"{name}\""))?;
            JWK_BASE64
                .decode(text)
                .map_err(|_| format!("a key's \"{name}\" is not base64url"))
        };
        if member("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let public = match member("kty") {
            Some("RSA") => PublicKey::Rsa {
                n: bytes("n")?,
                e: bytes("e")?,
            },
            Some("EC") => {
                let (curve, size) = match member("crv") {
                    Some("P-256") => (Curve::P256, 32),
                    Some("P-384") => (Curve::P384, 48),
                    _ => continue,
                };
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != size || y.len() != size {
                    return Err("an EC key's coordinates have the wrong length".into());
                }
                let mut point = vec![4];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::Ec { curve, point }
            }
            _ => continue,
        };
        out.push(Jwk {
            kid: member("kid").map(str::to_string),
            alg: member("alg").map(str::to_string),
            key: public,
        });
    }
    if out.is_empty() {
        return Err("no RSA or EC (P-256, P-384) signing key".into());
    }
    Ok(out)
}

/// What a token is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    pub keys: Vec<Jwk>,
    pub expected_issuer: Option<String>,
    /// Any one of them in `aud` passes; empty: `aud` is not checked.
    pub expected_audiences: Vec<String>,
    pub sub_claim: String,
    pub scope_claim: String,
    pub clock_skew_s: i64,
}

/// A token that passed.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidToken {
    pub principal: String,
    /// `exp`, in milliseconds since the epoch.
    pub expires_at_ms: i64,
    pub scopes: Vec<String>,
}

/// Why a token was refused (logged; never sent to the client, never holds the token).
#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    Malformed(&'static str),
    Algorithm(String),
    UnknownKey(Option<String>),
    BadSignature,
    Claim(String),
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed(why) => write!(f, "malformed token: {why}"),
            JwtError::Algorithm(alg) => write!(f, "algorithm {alg:?} refused"),
            JwtError::UnknownKey(kid) => write!(f, "no key for kid {kid:?}"),
            JwtError::BadSignature => f.write_str("bad signature"),
            JwtError::Claim(why) => f.write_str(why),
        }
    }
}

/// How a JWS `alg` is checked.
#[derive(Clone, Copy)]
enum Algorithm {
    Rsa(&'static signature::RsaParameters),
    Ec(&'static signature::EcdsaVerificationAlgorithm, Curve),
}

fn algorithm(alg: &str) -> Option<Algorithm> {
    use Algorithm::{Ec, Rsa};
    Some(match alg {
        "RS256" => Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => Rsa(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => Rsa(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => Rsa(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => Ec(&signature::ECDSA_P256_SHA256_FIXED, Curve::P256),
        "ES384" => Ec(&signature::ECDSA_P384_SHA384_FIXED, Curve::P384),
        _ => return None,
    })
}

impl Jwk {
    /// Whether this key can check `alg` (its type and curve, and its own `alg` if any).
    fn fits(&self, name: &str, alg: Algorithm) -> bool {
        let kind = match (&self.key, alg) {
            (PublicKey::Rsa { .. }, Algorithm::Rsa(_)) => true,
            (PublicKey::Ec { curve, .. }, Algorithm::Ec(_, c)) => *curve == c,
            _ => false,
        };
        kind && self.alg.as_deref().is_none_or(|a| a == name)
    }

    fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        match (&self.key, alg) {
            (PublicKey::Rsa { n, e }, Algorithm::Rsa(params)) => RsaPublicKeyComponents { n, e }
                .verify(params, message, sig)
                .is_ok(),
            (PublicKey::Ec { point, .. }, Algorithm::Ec(params, _)) => {
                UnparsedPublicKey::new(params, point)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

fn segment(text: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwtError::Malformed("not base64url"))
}

fn json_object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, JwtError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed("not a JSON object")),
    }
}

impl Validator {
    /// Checks `token` (compact JWS) at `now_ms` (milliseconds since the epoch).
    pub fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated parts"));
        };
        let head = json_object(&segment(header)?)?;
        let alg = head.get("alg").and_then(Value::as_str).unwrap_or("none");
        let verifier = algorithm(alg).ok_or_else(|| JwtError::Algorithm(alg.into()))?;
        let kid = head.get("kid").and_then(Value::as_str);
        let key = self.key_for(kid, alg, verifier)?;
        let message = &token.as_bytes()[..header.len() + 1 + payload.len()];
        if !key.verify(verifier, message, &segment(sig)?) {
            return Err(JwtError::BadSignature);
        }
        self.check_claims(&json_object(&segment(payload)?)?, now_ms)
    }

    fn key_for(&self, kid: Option<&str>, name: &str, alg: Algorithm) -> Result<&Jwk, JwtError> {
        let unknown = || JwtError::UnknownKey(kid.map(str::to_string));
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.fits(name, alg))
                .ok_or_else(unknown),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(name, alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(unknown()),
                }
            }
        }
    }

    fn check_claims(
        &self,
        claims: &serde_json::Map<String, Value>,
        now_ms: i64,
    ) -> Result<ValidToken, JwtError> {
        let claim = |why: String| JwtError::Claim(why);
        let date = |name: &str| -> Result<Option<i64>, JwtError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(|s| Some((s * 1000.0) as i64))
                    .ok_or_else(|| claim(format!("\"{name}\" is not a number"))),
            }
        };
        let skew_ms = self.clock_skew_s.saturating_mul(1000);
        let exp = date("exp")?.ok_or_else(|| claim("no \"exp\" claim".into()))?;
        let iat = date("iat")?.ok_or_else(|| claim("no \"iat\" claim".into()))?;
        if now_ms >= exp.saturating_add(skew_ms) {
            return Err(claim("the token expired".into()));
        }
        if iat > now_ms.saturating_add(skew_ms) {
            return Err(claim("\"iat\" is in the future".into()));
        }
        if date("nbf")?.is_some_and(|nbf| nbf > now_ms.saturating_add(skew_ms)) {
            return Err(claim("the token is not valid yet (\"nbf\")".into()));
        }
        if let Some(expected) = &self.expected_issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(claim("unexpected issuer".into()));
            }
        }
        if !self.expected_audiences.is_empty() {
            let audiences = strings(claims.get("aud"), false);
            if !audiences
                .iter()
                .any(|a| self.expected_audiences.contains(a))
            {
                return Err(claim("unexpected audience".into()));
            }
        }
        let principal = claims
            .get(&self.sub_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| claim(format!("no \"{}\" claim", self.sub_claim)))?;
        Ok(ValidToken {
            principal: principal.to_string(),
            expires_at_ms: exp,
            scopes: strings(claims.get(&self.scope_claim), true),
        })
    }
}

/// A claim that is a string or an array of strings; `split` splits a string at spaces
/// (a scope claim as RFC 8693 writes it).
fn strings(value: Option<&Value>, split: bool) -> Vec<String> {
    match value {
        Some(Value::String(s)) if split => s.split_whitespace().map(String::from).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    /// A test-only RSA key (generated for these tests, used nowhere else).
    const RSA_PKCS1: &[u8] = include_bytes!("testdata/rsa2048-pkcs1.der");
    const NOW_MS: i64 = 1_800_000_000_000;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn rsa_key() -> RsaKeyPair {
        RsaKeyPair::from_der(RSA_PKCS1).unwrap()
    }

    /// The JWKS text with the test RSA key under `kid`.
    pub fn rsa_jwks(kid: &str) -> String {
        let public: RsaPublicKeyComponents<Vec<u8>> = rsa_key().public().into();
        json!({"keys": [{
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&public.n),
            "e": b64(&public.e),
        }]})
        .to_string()
    }

    /// An RS256 token signed with the test RSA key.
    pub fn rs256(kid: &str, claims: &Value) -> String {
        let head = b64(json!({"alg": "RS256", "typ": "JWT", "kid": kid})
            .to_string()
            .as_bytes());
        let input = format!("{head}.{}", b64(claims.to_string().as_bytes()));
        let mut sig = vec![0; rsa_key().public().modulus_len()];
        rsa_key()
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", b64(&sig))
    }

    pub fn claims(now_ms: i64) -> Value {
        let now = now_ms / 1000;
        json!({"sub": "alice", "iss": "https://issuer", "aud": ["spate", "other"],
               "iat": now, "exp": now + 60, "scope": "read write"})
    }

    pub fn validator(jwks: &str) -> Validator {
        Validator {
            keys: parse_jwks(jwks).unwrap(),
            expected_issuer: Some("https://issuer".into()),
            expected_audiences: vec!["spate".into()],
            sub_claim: "sub".into(),
            scope_claim: "scope".into(),
            clock_skew_s: 30,
        }
    }

    #[test]
    fn a_valid_rs256_token_names_its_subject() {
        let v = validator(&rsa_jwks("k1"));
        let token = v.validate(&rs256("k1", &claims(NOW_MS)), NOW_MS).unwrap();
        assert_eq!(token.principal, "alice");
        assert_eq!(token.expires_at_ms, NOW_MS + 60_000);
        assert_eq!(token.scopes, ["read", "write"]);
    }

    #[test]
    fn expiry_not_before_and_issued_at_are_checked_with_the_skew() {
        let v = validator(&rsa_jwks("k1"));
        let token = rs256("k1", &claims(NOW_MS));
        assert!(
            v.validate(&token, NOW_MS + 89_000).is_ok(),
            "within the skew"
        );
        assert_eq!(
            v.validate(&token, NOW_MS + 90_000),
            Err(JwtError::Claim("the token expired".into()))
        );
        let mut c = claims(NOW_MS);
        c["nbf"] = json!(NOW_MS / 1000 + 31);
        assert!(v.validate(&rs256("k1", &c), NOW_MS).is_err());
        let mut c = claims(NOW_MS);
        c["iat"] = json!(NOW_MS / 1000 + 31);
        assert!(v.validate(&rs256("k1", &c), NOW_MS).is_err());
        let mut c = claims(NOW_MS);
        c.as_object_mut().unwrap().remove("exp");
        assert!(v.validate(&rs256("k1", &c), NOW_MS).is_err());
    }

    #[test]
    fn wrong_issuer_audience_or_missing_subject_are_refused() {
        let v = validator(&rsa_jwks("k1"));
        for (name, value) in [
            ("iss", json!("https://evil")),
            ("aud", json!("someone-else")),
            ("sub", json!("")),
        ] {
            let mut c = claims(NOW_MS);
            c[name] = value;
            let e = v.validate(&rs256("k1", &c), NOW_MS).unwrap_err();
            assert!(matches!(e, JwtError::Claim(_)), "{name}: {e}");
        }
        let mut c = claims(NOW_MS);
        c["aud"] = json!("spate");
        assert!(v.validate(&rs256("k1", &c), NOW_MS).is_ok());
    }

    #[test]
    fn bad_signatures_unknown_kids_and_alg_none_are_refused() {
        let v = validator(&rsa_jwks("k1"));
        let token = rs256("k1", &claims(NOW_MS));
        let (input, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{input}.{}", b64(&[7; 256]));
        assert_eq!(v.validate(&forged, NOW_MS), Err(JwtError::BadSignature));
        // The payload changed under the signature.
        let mut c = claims(NOW_MS);
        c["sub"] = json!("mallory");
        let other = rs256("k1", &c);
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = other.split('.').nth(1).unwrap();
        assert_eq!(
            v.validate(&parts.join("."), NOW_MS),
            Err(JwtError::BadSignature)
        );
        assert_eq!(
            v.validate(&rs256("k2", &claims(NOW_MS)), NOW_MS),
            Err(JwtError::UnknownKey(Some("k2".into())))
        );
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims(NOW_MS).to_string().as_bytes())
        );
        assert_eq!(
            v.validate(&none, NOW_MS),
            Err(JwtError::Algorithm("none".into()))
        );
        assert!(v.validate("a.b", NOW_MS).is_err());
        assert!(v.validate("!!.??.**", NOW_MS).is_err());
    }

    #[test]
    fn es256_tokens_verify_with_an_ec_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&point[1..33]), "y": b64(&point[33..])},
            {"kty": "oct", "k": "c2VjcmV0"},
        ]})
        .to_string();
        let v = validator(&jwks);
        assert_eq!(v.keys.len(), 1);
        let head = b64(br#"{"alg":"ES256","kid":"ec"}"#);
        let input = format!("{head}.{}", b64(claims(NOW_MS).to_string().as_bytes()));
        let sig = pair.sign(&rng, input.as_bytes()).unwrap();
        let token = format!("{input}.{}", b64(sig.as_ref()));
        assert_eq!(v.validate(&token, NOW_MS).unwrap().principal, "alice");
        // An RSA token finds no RSA key in this set.
        assert!(matches!(
            v.validate(&rs256("ec", &claims(NOW_MS)), NOW_MS),
            Err(JwtError::UnknownKey(_))
        ));
    }

    #[test]
    fn jwks_without_usable_keys_is_an_error() {
        assert!(parse_jwks("{}").is_err());
        assert!(parse_jwks(r#"{"keys":[{"kty":"oct","k":"AA"}]}"#).is_err());
        assert!(parse_jwks("nope").is_err());
    }
}
