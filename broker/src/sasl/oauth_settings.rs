//! The OAUTHBEARER and re-authentication settings, with Kafka's names: `sasl.oauthbearer.*`
//! (KIP-768's broker-side validator) and `connections.max.reauth.ms` (KIP-368), each also
//! under `listener.name.<listener>.` and, mechanism-prefixed, under
//! `listener.name.<listener>.<mechanism>.`. The JWKS is read from a file at start (a `file:`
//! URL or a path): Spate fetches nothing over the network.

use super::jwt::{parse_jwks, Validator};
use super::{ListenerSasl, Mechanism};
use std::collections::BTreeMap;
use std::sync::Arc;

/// KIP-368's session lifetime setting.
pub const REAUTH: &str = "connections.max.reauth.ms";

const JWKS_URL: &str = "sasl.oauthbearer.jwks.endpoint.url";
const ISSUER: &str = "sasl.oauthbearer.expected.issuer";
const AUDIENCE: &str = "sasl.oauthbearer.expected.audience";
const SUB_CLAIM: &str = "sasl.oauthbearer.sub.claim.name";
const SCOPE_CLAIM: &str = "sasl.oauthbearer.scope.claim.name";
const CLOCK_SKEW: &str = "sasl.oauthbearer.clock.skew.seconds";

/// Whether `name` (without a listener prefix) is one of the validator's settings.
pub fn is_oauth_setting(name: &str) -> bool {
    [
        JWKS_URL,
        ISSUER,
        AUDIENCE,
        SUB_CLAIM,
        SCOPE_CLAIM,
        CLOCK_SKEW,
    ]
    .contains(&name)
}

/// At start, for each SASL listener: OAUTHBEARER enabled there needs a JWKS (Kafka's
/// unsecured validator is not served). Not checked with the settings themselves: those are
/// also checked one at a time (`spate config`).
pub fn check_listener(sasl: &ListenerSasl, listener: &str) -> Result<(), String> {
    if sasl.mechanisms.contains(&Mechanism::OAuthBearer) && sasl.oauth.is_none() {
        return Err(format!(
            "listener {listener}: OAUTHBEARER is enabled but {JWKS_URL} is not set (Kafka's unsecured validator is not served)"
        ));
    }
    Ok(())
}

/// Sets `listener`'s validator and session lifetimes from `overrides`; `listener_name`:
/// `None` for the default.
pub fn apply(
    sasl: &mut ListenerSasl,
    overrides: &BTreeMap<String, String>,
    listener_name: Option<&str>,
) -> Result<(), String> {
    let find = |mechanism: Option<Mechanism>, setting: &str| {
        let get = |name: &str| overrides.get(name).map(String::as_str);
        super::lookup(get, listener_name, mechanism, setting)
    };
    for mechanism in Mechanism::ALL {
        if let Some((value, name)) = find(Some(mechanism), REAUTH) {
            let ms = value
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms >= 0)
                .ok_or_else(|| format!("{name}: not a number of milliseconds >= 0"))?;
            sasl.reauth_ms[mechanism.index()] = ms;
        }
    }
    let oauth = |setting| find(Some(Mechanism::OAuthBearer), setting);
    let Some((url, url_name)) = oauth(JWKS_URL) else {
        return Ok(());
    };
    let path = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("file:"))
        .unwrap_or(url);
    if path.starts_with("http:") || path.starts_with("https:") {
        return Err(format!(
            "{url_name}: only a file: URL or a path is served (no network fetches)"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{url_name}: {path}: {e}"))?;
    let keys = parse_jwks(&text).map_err(|e| format!("{url_name}: {path}: {e}"))?;
    let text_of = |setting| oauth(setting).map(|(v, _)| v.to_string());
    let clock_skew_s = match oauth(CLOCK_SKEW) {
        None => 30,
        Some((v, name)) => v
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| format!("{name}: not a number of seconds >= 0"))?,
    };
    sasl.oauth = Some(Arc::new(Validator {
        keys,
        expected_issuer: text_of(ISSUER).filter(|s| !s.is_empty()),
        expected_audiences: text_of(AUDIENCE)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
        sub_claim: text_of(SUB_CLAIM).unwrap_or_else(|| "sub".into()),
        scope_claim: text_of(SCOPE_CLAIM).unwrap_or_else(|| "scope".into()),
        clock_skew_s,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::SaslSettings;
    use super::*;
    use crate::sasl::jwt::tests::rsa_jwks;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_validator_comes_from_kafkas_names_per_listener() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, rsa_jwks("k")).unwrap();
        let url = format!("file://{}", jwks.display());
        let s = SaslSettings::from_overrides(&overrides(&[
            ("sasl.enabled.mechanisms", "PLAIN,OAUTHBEARER"),
            (
                "listener.name.sasl_plaintext.sasl.oauthbearer.jwks.endpoint.url",
                &url,
            ),
            ("sasl.oauthbearer.expected.audience", "a, b"),
            (
                "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.expected.issuer",
                "iss",
            ),
            ("connections.max.reauth.ms", "5000"),
            (
                "listener.name.sasl_plaintext.oauthbearer.connections.max.reauth.ms",
                "2000",
            ),
        ]))
        .unwrap();
        let l = s.for_listener("SASL_PLAINTEXT");
        let v = l.oauth.as_ref().unwrap();
        assert_eq!(v.expected_audiences, ["a", "b"]);
        assert_eq!(v.expected_issuer.as_deref(), Some("iss"));
        assert_eq!((v.sub_claim.as_str(), v.clock_skew_s), ("sub", 30));
        assert!(l.offers(Mechanism::OAuthBearer));
        assert_eq!(l.reauth_ms[Mechanism::Plain.index()], 5000);
        assert_eq!(l.reauth_ms[Mechanism::OAuthBearer.index()], 2000);
        // The default (other listeners) has no JWKS: OAUTHBEARER is not offered there.
        assert!(!s.for_listener("other").offers(Mechanism::OAuthBearer));
    }

    #[test]
    fn oauthbearer_without_a_jwks_or_with_a_network_url_is_refused() {
        let s =
            SaslSettings::from_overrides(&overrides(&[("sasl.enabled.mechanisms", "OAUTHBEARER")]))
                .unwrap();
        let e = check_listener(&s.for_listener("SASL_SSL"), "SASL_SSL").unwrap_err();
        assert!(e.contains(JWKS_URL), "{e}");
        assert!(!s.for_listener("SASL_SSL").offers(Mechanism::OAuthBearer));
        let e = SaslSettings::from_overrides(&overrides(&[(JWKS_URL, "https://idp.example/jwks")]))
            .unwrap_err();
        assert!(e.contains("no network"), "{e}");
        let e = SaslSettings::from_overrides(&overrides(&[(REAUTH, "-1")])).unwrap_err();
        assert!(e.contains(REAUTH), "{e}");
        assert!(super::super::is_setting(
            "listener.name.x.oauthbearer.sasl.oauthbearer.jwks.endpoint.url"
        ));
        assert!(super::super::is_setting(
            "listener.name.x.plain.connections.max.reauth.ms"
        ));
        assert!(super::super::is_setting(
            "sasl.oauthbearer.clock.skew.seconds"
        ));
    }
}
