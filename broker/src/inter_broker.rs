//! How this broker connects to other brokers (`inter.broker.listener.name`): its followers
//! fetch from each leader's registered endpoint of that listener, over TLS when the listener
//! is SSL or SASL_SSL. As in Kafka, the TLS client takes the listener's own `ssl.*` settings
//! (`listener.name.<name>.` prefix first): it trusts the listener's truststore and presents
//! the listener's keystore as its client certificate, so a leader whose listener has
//! `ssl.client.auth=required` authenticates its followers by certificate (their principal is
//! the certificate's subject, which ACLs and `super.users` can name).

use crate::config::BrokerConfig;
use crate::listeners::Listeners;
use spate_bench::security::TlsClientConfig;
use std::collections::BTreeMap;

/// What follower fetch connections use.
#[derive(Clone, Default)]
pub struct InterBrokerClient {
    /// The listener name whose endpoint of the leader followers connect to.
    pub listener: String,
    /// The TLS client, when that listener uses TLS.
    pub tls: Option<TlsClientConfig>,
}

impl std::fmt::Debug for InterBrokerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterBrokerClient")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl InterBrokerClient {
    /// The client of `listeners`' inter-broker listener, its TLS read from `config`.
    pub fn of(config: &BrokerConfig, listeners: &Listeners) -> Result<InterBrokerClient, String> {
        let listener = listeners.inter_broker();
        if listener.security_protocol.uses_sasl() {
            return Err(format!(
                "inter.broker.listener.name: {} is {}; SASL between brokers is not supported \
                 yet (use PLAINTEXT or SSL)",
                listener.name, listener.security_protocol
            ));
        }
        let tls = match listener.security_protocol.uses_tls() {
            false => None,
            true => Some(tls_client(config, &listener.name)?),
        };
        Ok(InterBrokerClient {
            listener: listener.name.clone(),
            tls,
        })
    }
}

/// The TLS client of listener `name`: its truststore trusted, its keystore presented.
fn tls_client(config: &BrokerConfig, name: &str) -> Result<TlsClientConfig, String> {
    let server = crate::tls_config::server_settings(config, name)?;
    let context = |e: String| format!("inter-broker listener {name}: {e}");
    let truststore = server.truststore_pem.ok_or_else(|| {
        context("followers verify leaders with ssl.truststore.location or ssl.truststore.certificates; set one".into())
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
