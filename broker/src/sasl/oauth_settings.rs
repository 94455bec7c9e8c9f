//! The OAUTHBEARER and re-authentication settings, with Kafka's names: `sasl.oauthbearer.*`
//! (KIP-768's broker-side validator) and `connections.max.reauth.ms` (KIP-368), each also
//! under `listener.name.<listener>.` and, mechanism-prefixed, under
//! `listener.name.<listener>.<mechanism>.`. The JWKS (`sasl.oauthbearer.jwks.endpoint.url`)
//! is an `https://` or `http://` URL or a file (a `file:` URL or a path), fetched at start and
//! refreshed (`jwks`). HTTPS trusts the system's CAs, or, as in Kafka, the `ssl.truststore.*`
//! options of the listener's OAUTHBEARER `sasl.jaas.config` (PEM only).

use super::jwks::{self, Jwks};
use super::jwks_fetch::{parse_http_url, system_roots_pem, Location};
use super::jwt::Validator;
use super::{ListenerSasl, Mechanism};
use spate_bench::security::{tls_client_config, TlsClientConfig};
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
const REFRESH_MS: &str = "sasl.oauthbearer.jwks.endpoint.refresh.ms";
const RETRY_BACKOFF_MS: &str = "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms";
const RETRY_BACKOFF_MAX_MS: &str = "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms";
/// The login module whose `ssl.*` options say whom an `https://` JWKS endpoint is trusted by.
const OAUTH_LOGIN_MODULE: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

/// Whether `name` (without a listener prefix) is one of the validator's settings.
pub fn is_oauth_setting(name: &str) -> bool {
    [
        JWKS_URL,
        ISSUER,
        AUDIENCE,
        SUB_CLAIM,
        SCOPE_CLAIM,
        CLOCK_SKEW,
        REFRESH_MS,
        RETRY_BACKOFF_MS,
        RETRY_BACKOFF_MAX_MS,
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
    let setting = |name: &'static str| oauth(name).map(|(v, n)| (v.to_string(), n));
    let source = source(
        url,
        &url_name,
        find(Some(Mechanism::OAuthBearer), "sasl.jaas.config"),
    )?;
    let timing = jwks::Timing {
        refresh_ms: ms(setting(REFRESH_MS), 3_600_000)?.max(1),
        retry_backoff_ms: ms(setting(RETRY_BACKOFF_MS), 100)?,
        retry_backoff_max_ms: ms(setting(RETRY_BACKOFF_MAX_MS), 10_000)?,
    };
    let text_of = |setting| oauth(setting).map(|(v, _)| v.to_string());
    let clock_skew_s = match oauth(CLOCK_SKEW) {
        None => 30,
        Some((v, name)) => v
            .parse::<i64>()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| format!("{name}: not a number of seconds >= 0"))?,
    };
    let checks = Validator {
        keys: Vec::new(),
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
    };
    sasl.oauth = Some(Arc::new(Jwks::new(source, checks, timing)));
    Ok(())
}

/// At start, for a SASL listener that enables OAUTHBEARER: the first fetch of its JWKS and
/// its refresh thread (a JWKS that cannot be had refuses the start).
pub fn start_jwks(sasl: &ListenerSasl, listener: &str) -> Result<(), String> {
    match &sasl.oauth {
        Some(jwks) if sasl.mechanisms.contains(&Mechanism::OAuthBearer) => jwks
            .start()
            .map_err(|e| format!("listener {listener}: {JWKS_URL}: {e}")),
        _ => Ok(()),
    }
}

/// A number of milliseconds >= 0 (`default` when not set).
fn ms(value: Option<(String, String)>, default: u64) -> Result<u64, String> {
    match value {
        None => Ok(default),
        Some((v, name)) => v
            .parse::<u64>()
            .map_err(|_| format!("{name}: not a number of milliseconds >= 0")),
    }
}

/// The endpoint of `url`, with its TLS trust for `https://`: the `ssl.*` options of the
/// OAUTHBEARER login module in `jaas` (Kafka's `JaasOptionsUtils`), else the system CAs.
fn source(url: &str, url_name: &str, jaas: Option<(&str, String)>) -> Result<jwks::Source, String> {
    let Some(http) = parse_http_url(url) else {
        let path = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"))
            .unwrap_or(url);
        return Ok(jwks::Source {
            url: url.to_string(),
            location: Location::File(path.into()),
            tls: None,
        });
    };
    let http = http.map_err(|e| format!("{url_name}: {e}"))?;
    let tls = match http.https {
        false => None,
        true => Some(trust(jaas).map_err(|e| format!("{url_name}: {e}"))?),
    };
    Ok(jwks::Source {
        url: url.to_string(),
        location: Location::Http(http),
        tls,
    })
}

fn trust(jaas: Option<(&str, String)>) -> Result<TlsClientConfig, String> {
    let mut ssl = BTreeMap::new();
    if let Some((text, name)) = jaas {
        let modules = super::jaas::parse(text).map_err(|e| format!("{name}: {e}"))?;
        for module in modules.iter().filter(|m| m.class == OAUTH_LOGIN_MODULE) {
            for (option, value) in module.options.iter().filter(|(o, _)| o.starts_with("ssl.")) {
                ssl.insert(option.clone(), value.clone());
            }
        }
    }
    let has_truststore = ["ssl.truststore.location", "ssl.truststore.certificates"]
        .iter()
        .any(|o| ssl.contains_key(*o));
    if !has_truststore {
        ssl.insert("ssl.truststore.certificates".into(), system_roots_pem()?);
    }
    tls_client_config(&ssl).map_err(|e| format!("the OAUTHBEARER JAAS ssl options: {e}"))
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
        let v = l.oauth.as_ref().unwrap().validator();
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
    fn oauthbearer_without_a_jwks_or_with_an_unreachable_one_is_refused() {
        let s =
            SaslSettings::from_overrides(&overrides(&[("sasl.enabled.mechanisms", "OAUTHBEARER")]))
                .unwrap();
        let e = check_listener(&s.for_listener("SASL_SSL"), "SASL_SSL").unwrap_err();
        assert!(e.contains(JWKS_URL), "{e}");
        assert!(!s.for_listener("SASL_SSL").offers(Mechanism::OAuthBearer));
        // An endpoint that cannot be reached at start fails the start, naming the setting.
        let s = SaslSettings::from_overrides(&overrides(&[
            ("sasl.enabled.mechanisms", "OAUTHBEARER"),
            (JWKS_URL, "http://127.0.0.1:1/jwks"),
            (RETRY_BACKOFF_MAX_MS, "0"),
        ]))
        .unwrap();
        let e = start_jwks(&s.for_listener("SASL_SSL"), "SASL_SSL").unwrap_err();
        assert!(e.contains(JWKS_URL) && e.contains("could not fetch"), "{e}");
        let e = SaslSettings::from_overrides(&overrides(&[(JWKS_URL, "https://u:p@idp/jwks")]))
            .unwrap_err();
        assert!(e.contains("credentials"), "{e}");
        let e = SaslSettings::from_overrides(&overrides(&[(REFRESH_MS, "soon"), (JWKS_URL, "x")]))
            .unwrap_err();
        assert!(e.contains(REFRESH_MS), "{e}");
        // HTTPS trust comes from the OAUTHBEARER login module's ssl options, PEM only.
        let jaas = format!("{OAUTH_LOGIN_MODULE} required ssl.truststore.type=\"JKS\";");
        let e = SaslSettings::from_overrides(&overrides(&[
            (JWKS_URL, "https://idp.example/jwks"),
            ("listener.name.l.oauthbearer.sasl.jaas.config", &jaas),
        ]))
        .unwrap_err();
        assert!(e.contains("JKS is not supported"), "{e}");
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
