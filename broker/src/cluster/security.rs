//! The controller listener's security (issue 19, "between nodes"), by Kafka's KRaft names:
//! `controller.listener.names` names the listener of the controller port (one name: Spate's
//! voter has one port; default `CONTROLLER`), `listener.security.protocol.map` gives its
//! protocol (PLAINTEXT when the name is defaulted and unmapped, so a node without these
//! settings is what it always was), its server settings are that listener's `ssl.*`
//! (`listener.name.controller.` first, `tls_config`) and SASL settings, and
//! `sasl.mechanism.controller.protocol` picks the mechanism voters and brokers authenticate
//! with as its clients.
//!
//! As clients, nodes take the listener's own settings, as followers do on the inter-broker
//! listener (`inter_broker`): its truststore trusted, its keystore presented as client
//! certificate, and on SASL the `username`/`password` of the listener's JAAS text for the
//! mechanism. Only PLAIN is served here: SCRAM credentials live in the metadata log the
//! controllers themselves serve (Kafka refuses SCRAM on the controller listener for that
//! reason), and OAUTHBEARER and GSSAPI have no client in Spate.

use crate::authorizer::AuthorizerConfig;
use crate::config::BrokerConfig;
use crate::listeners::SecurityProtocol;
use crate::principal_mapping::PrincipalMapper;
use crate::sasl::{ListenerSasl, Mechanism};
use spate_bench::sasl::SaslConfig;
use spate_bench::security::{Security, TlsClientConfig};
use std::sync::Arc;

/// The controller listener's name when `controller.listener.names` is not set.
pub const DEFAULT_LISTENER_NAME: &str = "CONTROLLER";
/// `sasl.mechanism.controller.protocol` when not set (Kafka's GSSAPI is not served).
pub const DEFAULT_MECHANISM: &str = "PLAIN";

/// What the server side of the controller port asks of a connection.
#[derive(Clone, Default)]
pub struct ServerSide {
    /// TLS (SSL, SASL_SSL).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `ssl.principal.mapping.rules` of the listener (`None`: DEFAULT, the subject as is).
    pub mapper: Option<Arc<PrincipalMapper>>,
    /// SASL (SASL_PLAINTEXT, SASL_SSL): PLAIN with the listener's JAAS users.
    pub sasl: Option<Arc<ListenerSasl>>,
    /// With an authorizer on, a peer needs ClusterAction on the cluster or `super.users`.
    pub authorizer: Option<AuthorizerConfig>,
}

/// What a client of the controller port (a voter to another, a broker's link,
/// `spate cluster-admin`) does on a new connection.
#[derive(Clone, Default)]
pub struct ClientSide {
    pub tls: Option<TlsClientConfig>,
    pub sasl: Option<SaslConfig>,
}

/// The controller port's security, both sides; `Default` is PLAINTEXT.
#[derive(Clone, Default)]
pub struct ControllerSecurity {
    pub listener: String,
    pub protocol: Option<SecurityProtocol>,
    pub server: ServerSide,
    pub client: ClientSide,
}

impl std::fmt::Debug for ControllerSecurity {
    /// No key, no password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerSecurity")
            .field("listener", &self.listener)
            .field("protocol", &self.protocol_name())
            .field("client_sasl", &self.client.sasl)
            .finish()
    }
}

impl ControllerSecurity {
    /// The node's controller listener from its settings, files read and checked: a start
    /// refused with the reason (never a secret) when it cannot work. The server side only
    /// for a `voter` (a broker-only node is a client of the port, and needs no PLAIN users).
    pub fn of(config: &BrokerConfig, voter: bool) -> Result<ControllerSecurity, String> {
        let (listener, protocol) = listener_and_protocol(config)?;
        let context = |e: String| format!("controller listener {listener}: {e}");
        let mut security = ControllerSecurity {
            listener: listener.clone(),
            protocol: Some(protocol),
            ..Default::default()
        };
        if protocol.uses_tls() && voter {
            let settings = crate::tls_config::server_settings(config, &listener)?;
            security.server.tls = Some(net::tls::server_config(&settings).map_err(context)?);
            security.server.mapper =
                crate::tls_config::principal_mapper(config, &listener)?.map(Arc::new);
        }
        if protocol.uses_tls() {
            security.client.tls = Some(crate::inter_broker::listener_tls_client(
                config,
                &listener,
                "controller",
            )?);
        }
        if protocol.uses_sasl() {
            check_mechanism(config).map_err(context)?;
            if voter {
                security.server.sasl = Some(plain_server(config, &listener).map_err(context)?);
            }
            security.client.sasl = Some(
                crate::inter_broker::listener_credentials(config, &listener, Mechanism::Plain)
                    .map_err(context)?,
            );
        }
        security.server.authorizer = config.authorizer.clone().filter(|_| voter);
        Ok(security)
    }

    /// A client only (`spate cluster-admin --command-config`): Kafka client properties.
    pub fn client_of(client: &Security) -> ControllerSecurity {
        ControllerSecurity {
            client: ClientSide {
                tls: client.tls.clone(),
                sasl: client.sasl.clone(),
            },
            ..Default::default()
        }
    }

    /// Kafka's name of the protocol (PLAINTEXT by default).
    pub fn protocol_name(&self) -> &'static str {
        self.protocol.unwrap_or(SecurityProtocol::Plaintext).name()
    }
}

/// The listener `controller.listener.names` names and its protocol from the map.
fn listener_and_protocol(config: &BrokerConfig) -> Result<(String, SecurityProtocol), String> {
    let setting = "controller.listener.names";
    let names: Vec<String> = config
        .value(setting)
        .unwrap_or_default()
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    let (name, given) = match names.as_slice() {
        [] => (DEFAULT_LISTENER_NAME.to_owned(), false),
        [one] => (one.clone(), true),
        _ => {
            return Err(format!(
                "{setting}: give one name (a Spate controller has one port, --controller-listen)"
            ))
        }
    };
    let map = config
        .value("listener.security.protocol.map")
        .unwrap_or_default();
    let map = crate::listeners::parse_protocol_map(map)?;
    match map.iter().find(|(n, _)| *n == name) {
        Some((_, protocol)) => Ok((name, *protocol)),
        None if !given => Ok((name, SecurityProtocol::Plaintext)),
        None => Err(format!(
            "{setting}: no security protocol defined for listener {name} (listener.security.protocol.map)"
        )),
    }
}

/// `sasl.mechanism.controller.protocol` must be PLAIN (see the module's docs for why).
fn check_mechanism(config: &BrokerConfig) -> Result<(), String> {
    let setting = "sasl.mechanism.controller.protocol";
    let wanted = config
        .value(setting)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MECHANISM)
        .to_ascii_uppercase();
    match Mechanism::from_name(&wanted) {
        Some(Mechanism::Plain) => Ok(()),
        Some(Mechanism::Scram(_)) => Err(format!(
            "{setting}={wanted}: SCRAM credentials live in the metadata log the controllers serve, \
             so, as in Kafka, the controller listener cannot use SCRAM; use PLAIN"
        )),
        _ => Err(format!(
            "{setting}={wanted} is not supported on the controller listener (PLAIN)"
        )),
    }
}

/// The server side's SASL: PLAIN only, with the listener's JAAS users.
fn plain_server(config: &BrokerConfig, listener: &str) -> Result<Arc<ListenerSasl>, String> {
    let settings = config.sasl.for_listener(listener);
    if !settings.mechanisms.contains(&Mechanism::Plain) {
        return Err("PLAIN is not in the listener's sasl.enabled.mechanisms".into());
    }
    if settings.plain_users.is_empty() {
        let l = listener.to_ascii_lowercase();
        return Err(format!(
            "no PLAIN users: set listener.name.{l}.plain.sasl.jaas.config with user_<name>=\"<password>\" entries"
        ));
    }
    Ok(Arc::new(ListenerSasl {
        plain_users: settings.plain_users.clone(),
        ..ListenerSasl::with_mechanisms(vec![Mechanism::Plain])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
        username=\"ctl\" password=\"ctl-secret\" user_ctl=\"ctl-secret\";";

    fn config(pairs: &[&str]) -> BrokerConfig {
        BrokerConfig::with_overrides(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn without_settings_the_port_stays_plaintext() {
        let s = ControllerSecurity::of(&BrokerConfig::default(), true).unwrap();
        assert_eq!(
            (s.listener.as_str(), s.protocol_name()),
            ("CONTROLLER", "PLAINTEXT")
        );
        assert!(s.server.tls.is_none() && s.server.sasl.is_none());
        assert!(s.client.tls.is_none() && s.client.sasl.is_none());
        assert_eq!(ControllerSecurity::default().protocol_name(), "PLAINTEXT");
    }

    #[test]
    fn sasl_plaintext_serves_plain_with_the_listeners_users_and_credentials() {
        let jaas = format!("listener.name.controller.plain.sasl.jaas.config={JAAS}");
        let c = config(&[
            "controller.listener.names=controller",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            jaas.as_str(),
        ]);
        let s = ControllerSecurity::of(&c, true).unwrap();
        assert_eq!(s.protocol, Some(SecurityProtocol::SaslPlaintext));
        let server = s.server.sasl.as_ref().unwrap();
        assert_eq!(server.mechanisms, vec![Mechanism::Plain]);
        assert_eq!(server.plain_users["ctl"], "ctl-secret");
        assert_eq!(s.client.sasl.as_ref().unwrap().username, "ctl");
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn what_cannot_work_refuses_the_start_with_the_reason() {
        let map = "listener.security.protocol.map=CONTROLLER:SASL_SSL";
        let sasl_map = "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT";
        let jaas = format!("listener.name.controller.plain.sasl.jaas.config={JAAS}");
        let no_users = "listener.name.controller.plain.sasl.jaas.config=\
            org.apache.kafka.common.security.plain.PlainLoginModule required \
            username=\"ctl\" password=\"ctl-secret\";";
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["controller.listener.names=A,B"], "give one name"),
            (
                vec!["controller.listener.names=CTL"],
                "no security protocol",
            ),
            (vec![map], "needs ssl.keystore.location"),
            (
                vec![sasl_map, "sasl.mechanism.controller.protocol=SCRAM-SHA-512"],
                "cannot use SCRAM",
            ),
            (
                vec![sasl_map, "sasl.mechanism.controller.protocol=GSSAPI"],
                "not supported",
            ),
            (
                vec![
                    sasl_map,
                    "listener.name.controller.sasl.enabled.mechanisms=SCRAM-SHA-256",
                    jaas.as_str(),
                ],
                "sasl.enabled.mechanisms",
            ),
            (vec![sasl_map, no_users], "no PLAIN users"),
            (vec![sasl_map], "no PLAIN users"),
        ];
        for (pairs, want) in cases {
            let err = ControllerSecurity::of(&config(&pairs), true).unwrap_err();
            assert!(err.contains(want), "{pairs:?}: {err}");
            assert!(!err.contains("ctl-secret"), "{err}");
        }
        // A broker-only node is a client: its own credentials suffice.
        let broker = ControllerSecurity::of(&config(&[sasl_map, no_users]), false).unwrap();
        assert_eq!(broker.client.sasl.as_ref().unwrap().username, "ctl");
        assert!(broker.server.sasl.is_none());
    }
}
