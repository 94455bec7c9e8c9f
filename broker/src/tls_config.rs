//! The `ssl.*` settings of a TLS listener (SSL, SASL_SSL), by Kafka's names, turned into
//! `net::tls::ServerSettings`. Each may be given for one listener with Kafka's prefix
//! `listener.name.<name>.` (the listener name in lower case), which wins over the plain name.
//!
//! The keystore: `ssl.keystore.type=PEM` (the default) with either `ssl.keystore.location` (a
//! PEM file holding the private key and the certificate chain) or the PEM text itself in
//! `ssl.keystore.certificate.chain` and `ssl.keystore.key`, the key unencrypted or an
//! encrypted PKCS#8 one with `ssl.key.password`; or `PKCS12` / `JKS` at
//! `ssl.keystore.location` with `ssl.keystore.password` (and, for JKS, `ssl.key.password`
//! when the key's differs), its first private key entry served. The truststore likewise:
//! `ssl.truststore.location` (PEM, PKCS12 or JKS, `ssl.truststore.password`) or PEM text in
//! `ssl.truststore.certificates`. Stores are turned into PEM here (`tls_stores`), so
//! `net::tls` and the inter-broker client take one form.

use crate::config::BrokerConfig;
use crate::principal_mapping::PrincipalMapper;
use crate::tls_stores::{self, StoreType};
use net::tls::{ClientAuth, ServerSettings};
use std::collections::BTreeMap;

/// The `ssl.*` settings a listener reads: (name, default).
pub const SSL_SETTINGS: &[(&str, &str)] = &[
    ("ssl.keystore.type", "PEM"),
    ("ssl.keystore.location", ""),
    ("ssl.keystore.certificate.chain", ""),
    ("ssl.keystore.key", ""),
    ("ssl.keystore.password", ""),
    ("ssl.key.password", ""),
    ("ssl.truststore.type", "PEM"),
    ("ssl.truststore.location", ""),
    ("ssl.truststore.password", ""),
    ("ssl.truststore.certificates", ""),
    ("ssl.client.auth", "none"),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3"),
    ("ssl.principal.mapping.rules", "DEFAULT"),
];

/// Whether `name` is an `ssl.*` setting for one listener (`listener.name.<name>.ssl.…`).
pub fn is_listener_ssl_setting(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("listener.name.") else {
        return false;
    };
    let Some((listener, setting)) = rest.split_once('.') else {
        return false;
    };
    !listener.is_empty() && SSL_SETTINGS.iter().any(|(s, _)| *s == setting)
}

/// The TLS settings of listener `listener_name`, read (files included) and checked.
pub fn server_settings(
    config: &BrokerConfig,
    listener_name: &str,
) -> Result<ServerSettings, String> {
    server_settings_altered(config, listener_name, &BTreeMap::new())
}

/// [`server_settings`] with the settings altered at run time (`listener.name.<name>.ssl.*`,
/// by full name: `tls_reload`) over the static ones; files are read again either way.
pub fn server_settings_altered(
    config: &BrokerConfig,
    listener_name: &str,
    altered: &BTreeMap<String, String>,
) -> Result<ServerSettings, String> {
    let prefix = listener_prefix(listener_name);
    let get = |name: &str| match altered.get(&format!("{prefix}{name}")) {
        Some(value) => value.trim().to_string(),
        None => listener_value(config, listener_name, name),
    };
    let context = |e: String| format!("listener {listener_name}: {e}");
    let (certificate_chain_pem, key_pem) = keystore(&get).map_err(context)?;
    let truststore_pem = truststore(&get).map_err(context)?;
    let client_auth = match get("ssl.client.auth").to_ascii_lowercase().as_str() {
        "none" => ClientAuth::None,
        "requested" => ClientAuth::Requested,
        "required" => ClientAuth::Required,
        other => {
            return Err(context(format!(
                "ssl.client.auth={other}: expected none, requested or required"
            )))
        }
    };
    let (tls12, tls13) = protocols(&get("ssl.enabled.protocols")).map_err(context)?;
    Ok(ServerSettings {
        certificate_chain_pem,
        key_pem,
        truststore_pem,
        client_auth,
        tls12,
        tls13,
    })
}

/// Setting `name` of listener `listener_name`: `listener.name.<name>.`-prefixed first, then
/// plain, then its default; trimmed.
fn listener_value(config: &BrokerConfig, listener_name: &str, name: &str) -> String {
    let prefix = listener_prefix(listener_name);
    config
        .value(&format!("{prefix}{name}"))
        .or_else(|| config.value(name))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `listener.name.<name>.`, Kafka's prefix of one listener's settings (the name in lower case).
pub fn listener_prefix(listener_name: &str) -> String {
    format!("listener.name.{}.", listener_name.to_ascii_lowercase())
}

/// `ssl.principal.mapping.rules` of listener `listener_name`, parsed; `None` for `DEFAULT`
/// (the subject is the name, nothing to do per connection).
pub fn principal_mapper(
    config: &BrokerConfig,
    listener_name: &str,
) -> Result<Option<PrincipalMapper>, String> {
    let rules = listener_value(config, listener_name, "ssl.principal.mapping.rules");
    let mapper =
        PrincipalMapper::new(&rules).map_err(|e| format!("listener {listener_name}: {e}"))?;
    Ok((!mapper.is_default()).then_some(mapper))
}

/// (certificate chain, key) as PEM, the key decrypted.
fn keystore(get: &dyn Fn(&str) -> String) -> Result<(Vec<u8>, Vec<u8>), String> {
    let kind = StoreType::parse(&get("ssl.keystore.type"), "ssl.keystore.type")?;
    let location = get("ssl.keystore.location");
    let (chain, key) = (
        get("ssl.keystore.certificate.chain"),
        get("ssl.keystore.key"),
    );
    let passwords = (get("ssl.keystore.password"), get("ssl.key.password"));
    match (location.is_empty(), chain.is_empty(), key.is_empty()) {
        (false, true, true) => {
            let bytes = read(&location, "ssl.keystore.location")?;
            tls_stores::keystore(kind, &bytes, &passwords.0, &passwords.1)
        }
        (true, false, false) if kind == StoreType::Pem => {
            let (_, key) =
                tls_stores::keystore(kind, key.as_bytes(), &passwords.0, &passwords.1)?;
            Ok((chain.into_bytes(), key))
        }
        (true, false, false) => {
            Err("ssl.keystore.certificate.chain and ssl.keystore.key need ssl.keystore.type=PEM".into())
        }
        (true, true, true) => Err(
            "a TLS listener needs ssl.keystore.location, or ssl.keystore.certificate.chain and ssl.keystore.key".into(),
        ),
        _ => Err("give either ssl.keystore.location or ssl.keystore.certificate.chain with ssl.keystore.key".into()),
    }
}

fn truststore(get: &dyn Fn(&str) -> String) -> Result<Option<Vec<u8>>, String> {
    let kind = StoreType::parse(&get("ssl.truststore.type"), "ssl.truststore.type")?;
    let location = get("ssl.truststore.location");
    let certificates = get("ssl.truststore.certificates");
    match (location.is_empty(), certificates.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => {
            let bytes = read(&location, "ssl.truststore.location")?;
            let password = get("ssl.truststore.password");
            tls_stores::truststore(kind, &bytes, &password).map(Some)
        }
        (true, false) => Ok(Some(certificates.into_bytes())),
        (false, false) => {
            Err("give ssl.truststore.location or ssl.truststore.certificates, not both".into())
        }
    }
}

/// `ssl.enabled.protocols` → (TLS 1.2, TLS 1.3).
fn protocols(text: &str) -> Result<(bool, bool), String> {
    let (mut tls12, mut tls13) = (false, false);
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            other => {
                return Err(format!(
                    "ssl.enabled.protocols: {other} is not supported (TLSv1.2, TLSv1.3)"
                ))
            }
        }
    }
    Ok((tls12, tls13))
}

fn read(path: &str, setting: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting}: cannot read {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_prefixed_settings_are_recognised() {
        assert!(is_listener_ssl_setting(
            "listener.name.external.ssl.client.auth"
        ));
        assert!(!is_listener_ssl_setting(
            "listener.name.external.num.partitions"
        ));
        assert!(!is_listener_ssl_setting("listener.name..ssl.client.auth"));
        assert!(!is_listener_ssl_setting("ssl.client.auth"));
    }

    #[test]
    fn settings_are_checked_with_the_listener_named() {
        let config = BrokerConfig::with_overrides([
            "ssl.keystore.certificate.chain=CHAIN",
            "ssl.keystore.key=KEY",
            "ssl.client.auth=required",
            "listener.name.internal.ssl.client.auth=none",
            "ssl.enabled.protocols=TLSv1.3",
        ])
        .unwrap();
        let s = server_settings(&config, "INTERNAL").unwrap();
        assert_eq!(s.client_auth, ClientAuth::None);
        assert_eq!((s.tls12, s.tls13), (false, true));
        assert_eq!(s.key_pem, b"KEY");
        let s = server_settings(&config, "SSL").unwrap();
        assert_eq!(s.client_auth, ClientAuth::Required);
        for (bad, want) in [
            ("ssl.keystore.type=BCFKS", "PEM, PKCS12 or JKS"),
            ("ssl.keystore.type=JKS", "need ssl.keystore.type=PEM"),
            ("ssl.client.auth=maybe", "expected none"),
            ("ssl.enabled.protocols=TLSv1.1", "not supported"),
            ("ssl.keystore.location=/nonexistent", "either"),
        ] {
            let mut with = vec![
                "ssl.keystore.certificate.chain=CHAIN",
                "ssl.keystore.key=KEY",
            ];
            with.push(bad);
            let config = BrokerConfig::with_overrides(with).unwrap();
            let err = server_settings(&config, "SSL").unwrap_err();
            assert!(
                err.contains(want) && err.contains("listener SSL"),
                "{bad}: {err}"
            );
        }
        let err = server_settings(&BrokerConfig::default(), "SSL").unwrap_err();
        assert!(err.contains("needs ssl.keystore.location"), "{err}");
    }

    #[test]
    fn principal_mapping_rules_are_per_listener() {
        let config = BrokerConfig::with_overrides([
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*$/$1/L,DEFAULT",
            "listener.name.internal.ssl.principal.mapping.rules=DEFAULT",
        ])
        .unwrap();
        let mapper = principal_mapper(&config, "MTLS").unwrap().unwrap();
        assert_eq!(mapper.name("CN=Alice,O=x").as_deref(), Some("alice"));
        assert!(principal_mapper(&config, "INTERNAL").unwrap().is_none());
        let config = BrokerConfig::with_overrides(["ssl.principal.mapping.rules=RULE:x"]).unwrap();
        let err = principal_mapper(&config, "SSL").unwrap_err();
        assert!(
            err.contains("listener SSL") && err.contains("invalid rule"),
            "{err}"
        );
    }
}
