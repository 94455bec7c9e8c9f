//! How this broker connects to other brokers (`inter.broker.listener.name`): its followers
//! fetch from each leader's registered endpoint of that listener, over TLS when the listener
//! is SSL or SASL_SSL, authenticated with SASL when it is SASL_PLAINTEXT or SASL_SSL.
//!
//! TLS: as in Kafka, the client takes the listener's own `ssl.*` settings (`listener.name.<name>.`
//! prefix first): it trusts the listener's truststore and presents the listener's keystore as
//! its client certificate, so a leader whose listener has `ssl.client.auth=required`
//! authenticates its followers by certificate (their principal is the certificate's subject,
//! mapped by the listener's `ssl.principal.mapping.rules`, which ACLs and `super.users` can name).
//!
//! SASL: the mechanism is `sasl.mechanism.inter.broker.protocol` (PLAIN, SCRAM-SHA-256 or
//! SCRAM-SHA-512; Kafka's default GSSAPI is not served, so Spate's default is PLAIN), which the
//! listener must enable; the broker's own credentials are the `username` and `password` of the
//! listener's JAAS text for that mechanism, found as the server side finds it
//! (`listener.name.<name>.<mechanism>.sasl.jaas.config` first, `sasl::lookup`). The leader
//! sees the follower as `User:<username>`: it needs ClusterAction on the cluster (an ACL, or
//! `super.users`) when an authorizer is on. A SCRAM user must exist in the metadata (created
//! like any other, `kafka-configs`/`spate user add`) before followers can fetch.

use crate::config::BrokerConfig;
use crate::listeners::Listeners;
use crate::sasl::Mechanism;
use spate_bench::sasl::SaslConfig;
use spate_bench::security::TlsClientConfig;
use std::collections::BTreeMap;

/// `sasl.mechanism.inter.broker.protocol` when not set (Kafka's GSSAPI is not served).
pub const DEFAULT_MECHANISM: &str = "PLAIN";

/// What follower fetch connections use.
#[derive(Clone, Default)]
pub struct InterBrokerClient {
    /// The listener name whose endpoint of the leader followers connect to.
    pub listener: String,
    /// The TLS client, when that listener uses TLS.
    pub tls: Option<TlsClientConfig>,
    /// The mechanism and the broker's own credentials, when that listener uses SASL.
    pub sasl: Option<SaslConfig>,
}

impl std::fmt::Debug for InterBrokerClient {
    /// `SaslConfig`'s own Debug leaves the password out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterBrokerClient")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl InterBrokerClient {
    /// The client of `listeners`' inter-broker listener, its TLS and SASL read from `config`.
    pub fn of(config: &BrokerConfig, listeners: &Listeners) -> Result<InterBrokerClient, String> {
        let listener = listeners.inter_broker();
        let protocol = listener.security_protocol;
        let tls = match protocol.uses_tls() {
            false => None,
            true => Some(listener_tls_client(config, &listener.name, "inter-broker")?),
        };
        let sasl = match protocol.uses_sasl() {
            false => None,
            true => Some(sasl_client(config, &listener.name)?),
        };
        Ok(InterBrokerClient {
            listener: listener.name.clone(),
            tls,
            sasl,
        })
    }
}

/// The SASL client of listener `name`: `sasl.mechanism.inter.broker.protocol` with the
/// username and password of the listener's JAAS text for it. Errors never carry the text.
fn sasl_client(config: &BrokerConfig, name: &str) -> Result<SaslConfig, String> {
    let context = |e: String| format!("inter-broker listener {name}: {e}");
    let setting = "sasl.mechanism.inter.broker.protocol";
    let wanted = config
        .value(setting)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MECHANISM)
        .to_ascii_uppercase();
    let mechanism = Mechanism::from_name(&wanted)
        .filter(|m| *m != Mechanism::OAuthBearer)
        .ok_or_else(|| {
            context(format!(
                "{setting}={wanted} is not supported between brokers (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
            ))
        })?;
    if !config
        .sasl
        .for_listener(name)
        .mechanisms
        .contains(&mechanism)
    {
        return Err(context(format!(
            "{setting}={wanted} is not in the listener's sasl.enabled.mechanisms"
        )));
    }
    listener_credentials(config, name, mechanism).map_err(context)
}

/// The node's own credentials for `mechanism` on listener `name`: the `username` and
/// `password` of the listener's JAAS text for it (`listener.name.<name>.<mechanism>.` first,
/// `sasl::lookup`). Errors never carry the text.
pub(crate) fn listener_credentials(
    config: &BrokerConfig,
    name: &str,
    mechanism: Mechanism,
) -> Result<SaslConfig, String> {
    let wanted = mechanism.name();
    let listener = name.to_ascii_lowercase();
    let get = |key: &str| config.value(key);
    let jaas_key = "sasl.jaas.config";
    let (jaas, found) =
        crate::sasl::lookup(get, Some(listener.as_str()), Some(mechanism), jaas_key).ok_or_else(|| {
            let m = wanted.to_ascii_lowercase();
            format!(
                "the broker's own credentials: set listener.name.{listener}.{m}.{jaas_key} with username and password"
            )
        })?;
    let properties: BTreeMap<String, String> = [("sasl.mechanism", wanted), (jaas_key, jaas)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    SaslConfig::from_properties(&properties).map_err(|e| format!("{found}: {e}"))
}

/// The TLS client of listener `name` (`who`: `inter-broker`, `controller`): its truststore
/// trusted, its keystore presented.
pub(crate) fn listener_tls_client(
    config: &BrokerConfig,
    name: &str,
    who: &str,
) -> Result<TlsClientConfig, String> {
    let server = crate::tls_config::server_settings(config, name)?;
    let context = |e: String| format!("{who} listener {name}: {e}");
    let truststore = server.truststore_pem.ok_or_else(|| {
        context("its clients verify servers with ssl.truststore.location or ssl.truststore.certificates; set one".into())
    })?;
    let text =
        |pem: Vec<u8>| String::from_utf8(pem).map_err(|_| context("PEM is not UTF-8".into()));
    let properties: BTreeMap<String, String> = [
        ("security.protocol", "SSL".to_owned()),
        ("ssl.truststore.certificates", text(truststore)?),
        (
            "ssl.keystore.certificate.chain",
            text(server.certificate_chain_pem)?,
        ),
        ("ssl.keystore.key", text(server.key_pem)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    spate_bench::security::tls_client_config(&properties).map_err(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_bench::sasl::{Mechanism as ClientMechanism, ScramHash};

    const SCRAM_JAAS: &str = "org.apache.kafka.common.security.scram.ScramLoginModule required \
        username=\"broker\" password=\"broker-secret\";";

    fn config(pairs: &[&str]) -> BrokerConfig {
        BrokerConfig::with_overrides(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn the_brokers_credentials_are_the_listeners_jaas_for_the_mechanism() {
        let jaas = format!("listener.name.internal.scram-sha-512.sasl.jaas.config={SCRAM_JAAS}");
        let c = config(&[
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            jaas.as_str(),
        ]);
        let sasl = sasl_client(&c, "INTERNAL").unwrap();
        assert_eq!(sasl.mechanism, ClientMechanism::Scram(ScramHash::Sha512));
        assert_eq!(sasl.username, "broker");
        assert!(!format!("{sasl:?}").contains("secret"));
        // PLAIN (the default) from the listener's PLAIN JAAS, users and all.
        let plain = "listener.name.internal.plain.sasl.jaas.config=\
            org.apache.kafka.common.security.plain.PlainLoginModule required \
            username=\"b\" password=\"p\" user_b=\"p\";";
        let sasl = sasl_client(&config(&[plain]), "INTERNAL").unwrap();
        assert_eq!(
            (sasl.mechanism, sasl.username.as_str()),
            (ClientMechanism::Plain, "b")
        );
    }

    #[test]
    fn followers_present_and_trust_pkcs12_and_jks_stores() {
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls_stores/testdata");
        let (keystore, truststore) = (
            format!("listener.name.internal.ssl.keystore.location={data}/server.p12"),
            format!("listener.name.internal.ssl.truststore.location={data}/server.jks"),
        );
        let c = config(&[
            "listener.name.internal.ssl.keystore.type=PKCS12",
            keystore.as_str(),
            "listener.name.internal.ssl.keystore.password=store-secret",
            "listener.name.internal.ssl.truststore.type=JKS",
            truststore.as_str(),
            "listener.name.internal.ssl.truststore.password=store-secret",
        ]);
        assert!(listener_tls_client(&c, "INTERNAL", "inter-broker").is_ok());
        let wrong = config(&[
            "listener.name.internal.ssl.keystore.type=PKCS12",
            keystore.as_str(),
            "listener.name.internal.ssl.keystore.password=wrong",
        ]);
        let err = listener_tls_client(&wrong, "INTERNAL", "inter-broker").unwrap_err();
        assert!(err.contains("ssl.keystore.password"), "{err}");
    }

    #[test]
    fn what_cannot_authenticate_refuses_the_start_without_the_secret() {
        let jaas = format!("listener.name.internal.scram-sha-512.sasl.jaas.config={SCRAM_JAAS}");
        for (pairs, want) in [
            (
                vec!["sasl.mechanism.inter.broker.protocol=GSSAPI"],
                "not supported",
            ),
            (
                vec!["sasl.mechanism.inter.broker.protocol=OAUTHBEARER"],
                "not supported",
            ),
            (
                vec![
                    "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                    "listener.name.internal.sasl.enabled.mechanisms=PLAIN",
                    jaas.as_str(),
                ],
                "sasl.enabled.mechanisms",
            ),
            (
                vec![
                    "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256",
                    jaas.as_str(),
                ],
                "listener.name.internal.scram-sha-256.sasl.jaas.config",
            ),
        ] {
            let err = sasl_client(&config(&pairs), "INTERNAL").unwrap_err();
            assert!(
                err.contains(want) && err.contains("INTERNAL"),
                "{pairs:?}: {err}"
            );
            assert!(!err.contains("broker-secret"), "{err}");
        }
    }
}
