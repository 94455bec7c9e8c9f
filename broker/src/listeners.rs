//! Kafka's listeners: `listeners`, `advertised.listeners`, `listener.security.protocol.map`
//! and `inter.broker.listener.name`, checked as Kafka checks them (`KafkaConfig`), and the
//! `ListenerInfo` each connection carries into its `Session`. `--listen HOST:PORT` is one
//! listener named PLAINTEXT.

use crate::shard::Advertised;
use std::fmt;

/// Kafka's `SecurityProtocol`: what a listener asks of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    /// Kafka's name (`SASL_SSL`).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Kafka's id (`SecurityProtocol.id`), as broker registrations carry it.
    pub fn id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    /// The connection is wrapped in TLS (SSL, SASL_SSL).
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// The connection must authenticate with SASL (SASL_PLAINTEXT, SASL_SSL).
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener: its name, what it asks of connections, where it binds and what clients that
/// come in on it are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The listener name (`PLAINTEXT`, `SSL`, or a custom name mapped to a protocol).
    pub name: String,
    pub security_protocol: SecurityProtocol,
    /// `HOST:PORT` to bind (an empty host binds every interface).
    pub bind: String,
    /// The address Metadata, FindCoordinator and DescribeCluster give for this broker to the
    /// clients that came in on this listener.
    pub advertised: Advertised,
}

impl ListenerInfo {
    /// The listener `--listen HOST:PORT` means (and the one tests use).
    pub fn plaintext(bind: &str) -> Result<ListenerInfo, String> {
        Ok(ListenerInfo {
            name: "PLAINTEXT".into(),
            security_protocol: SecurityProtocol::Plaintext,
            bind: bind.to_string(),
            advertised: host_port(bind)?,
        })
    }
}

/// Every listener of the node, and which one other brokers use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    pub all: Vec<ListenerInfo>,
    /// Index in `all` of `inter.broker.listener.name`: the address this broker registers.
    pub inter_broker: usize,
}

/// Kafka's default `listener.security.protocol.map`.
pub const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// The four listener settings as text (Kafka's names).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListenerSettings<'a> {
    pub listeners: &'a str,
    pub advertised_listeners: &'a str,
    pub protocol_map: &'a str,
    pub inter_broker_listener_name: &'a str,
}

impl Listeners {
    /// `--listen HOST:PORT`: one PLAINTEXT listener.
    pub fn single_plaintext(bind: &str) -> Result<Listeners, String> {
        Ok(Listeners {
            all: vec![ListenerInfo::plaintext(bind)?],
            inter_broker: 0,
        })
    }

    /// The node's listeners: `listeners` when set, else `listen` (the `--listen` flag) as one
    /// PLAINTEXT listener, which `advertised.listeners` may still rename the address of (and
    /// which advertises a wildcard address as given, as `--listen` always did).
    pub fn from_settings(
        listen: &str,
        settings: ListenerSettings<'_>,
    ) -> Result<Listeners, String> {
        if !settings.listeners.trim().is_empty() {
            return Self::parse(settings, false);
        }
        let listeners = format!("PLAINTEXT://{listen}");
        let settings = ListenerSettings {
            listeners: &listeners,
            ..settings
        };
        Self::parse(settings, true).map_err(|e| {
            e.replace("listeners: invalid address", "invalid --listen address")
                .replace("listeners:", "--listen:")
        })
    }

    /// The listeners the settings describe, refused with Kafka's reasons.
    fn parse(
        settings: ListenerSettings<'_>,
        wildcard_advertised: bool,
    ) -> Result<Listeners, String> {
        let map = parse_protocol_map(settings.protocol_map)?;
        let bound = endpoints(settings.listeners, "listeners")?;
        if bound.is_empty() {
            return Err("listeners: no listener".into());
        }
        let advertised = endpoints(settings.advertised_listeners, "advertised.listeners")?;
        let mut all = Vec::with_capacity(bound.len());
        for (name, bind) in &bound {
            let security_protocol = map
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    format!("listeners: no security protocol defined for listener {name} (listener.security.protocol.map)")
                })?;
            if bound.iter().filter(|(other, _)| other == name).count() > 1 {
                return Err(format!("listeners: listener name {name} is used twice"));
            }
            let shown = advertised
                .iter()
                .find(|(n, _)| n == name)
                .map_or(bind, |(_, address)| address);
            let advertised = host_port(shown)?;
            let wildcard = advertised.host == "0.0.0.0" || advertised.host == "::";
            if wildcard && !wildcard_advertised {
                return Err(format!(
                    "advertised.listeners: {name} cannot use the nonroutable meta-address {}; set advertised.listeners",
                    advertised.host
                ));
            }
            all.push(ListenerInfo {
                name: name.clone(),
                security_protocol,
                bind: bind.clone(),
                advertised,
            });
        }
        for (name, _) in &advertised {
            if !all.iter().any(|l| &l.name == name) {
                return Err(format!(
                    "advertised.listeners: {name} is not one of the listeners"
                ));
            }
        }
        check_ports_distinct(&all)?;
        let inter_broker = inter_broker_index(&all, settings.inter_broker_listener_name)?;
        Ok(Listeners { all, inter_broker })
    }

    /// The listener other brokers (and this broker's registration) use.
    pub fn inter_broker(&self) -> &ListenerInfo {
        &self.all[self.inter_broker]
    }

    /// `NAME://HOST:PORT,...` as Kafka writes `listeners`.
    pub fn describe(&self) -> String {
        self.all
            .iter()
            .map(|l| format!("{}://{}", l.name, l.bind))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn check_ports_distinct(all: &[ListenerInfo]) -> Result<(), String> {
    for (i, a) in all.iter().enumerate() {
        let port = host_port(&a.bind)?.port;
        if port == 0 {
            continue;
        }
        if let Some(b) = all[..i]
            .iter()
            .find(|b| host_port(&b.bind).is_ok_and(|p| p.port == port))
        {
            return Err(format!(
                "listeners: {} and {} use the same port {port}",
                b.name, a.name
            ));
        }
    }
    Ok(())
}

/// Kafka's default is the listener of `security.inter.broker.protocol` (PLAINTEXT).
fn inter_broker_index(all: &[ListenerInfo], name: &str) -> Result<usize, String> {
    let name = name.trim();
    let wanted = if name.is_empty() { "PLAINTEXT" } else { name };
    all.iter().position(|l| l.name == wanted).ok_or_else(|| {
        if name.is_empty() {
            "inter.broker.listener.name: no listener named PLAINTEXT; set inter.broker.listener.name to one of the listeners".to_string()
        } else {
            format!("inter.broker.listener.name: {name} is not one of the listeners")
        }
    })
}

/// `NAME:PROTOCOL,...`.
pub(crate) fn parse_protocol_map(text: &str) -> Result<Vec<(String, SecurityProtocol)>, String> {
    let mut map = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry.split_once(':').ok_or_else(|| {
            format!("listener.security.protocol.map: expected NAME:PROTOCOL, got '{entry}'")
        })?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            format!("listener.security.protocol.map: unknown security protocol '{protocol}'")
        })?;
        map.push((name.trim().to_ascii_uppercase(), protocol));
    }
    Ok(map)
}

/// `NAME://HOST:PORT,...` (names upper-cased, as Kafka does).
fn endpoints(text: &str, setting: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = entry
            .split_once("://")
            .ok_or_else(|| format!("{setting}: expected NAME://HOST:PORT, got '{entry}'"))?;
        if name.is_empty() {
            return Err(format!("{setting}: no listener name in '{entry}'"));
        }
        host_port(address).map_err(|e| format!("{setting}: {e}"))?;
        out.push((name.trim().to_ascii_uppercase(), address.to_string()));
    }
    Ok(out)
}

/// `HOST:PORT` (`[::1]:9092` for IPv6; an empty host is allowed).
pub fn host_port(address: &str) -> Result<Advertised, String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid address '{address}': expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid address '{address}': bad port"))?;
    Ok(Advertised {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: port as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(listeners: &str, advertised: &str, map: &str, ibl: &str) -> Result<Listeners, String> {
        let settings = ListenerSettings {
            listeners,
            advertised_listeners: advertised,
            protocol_map: map,
            inter_broker_listener_name: ibl,
        };
        Listeners::from_settings("127.0.0.1:9092", settings)
    }

    #[test]
    fn kafkas_default_map_and_advertised_addresses() {
        let l = parse(
            "PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9093,sasl_ssl://[::1]:9094",
            "SSL://broker.example:19093",
            DEFAULT_PROTOCOL_MAP,
            "",
        )
        .unwrap();
        assert_eq!(l.all.len(), 3);
        assert_eq!(l.all[1].security_protocol, SecurityProtocol::Ssl);
        assert_eq!(l.all[1].advertised.host, "broker.example");
        assert_eq!(l.all[1].advertised.port, 19093);
        assert_eq!(l.all[2].name, "SASL_SSL");
        assert_eq!(l.all[2].advertised.host, "::1");
        assert_eq!(l.inter_broker().name, "PLAINTEXT");
        assert_eq!(
            l.describe(),
            "PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9093,SASL_SSL://[::1]:9094"
        );
    }

    #[test]
    fn custom_names_need_a_mapping_and_an_inter_broker_listener() {
        let map = "INTERNAL:PLAINTEXT,EXTERNAL:SSL";
        let l = parse(
            "INTERNAL://127.0.0.1:1,EXTERNAL://127.0.0.1:2",
            "",
            map,
            "INTERNAL",
        )
        .unwrap();
        assert_eq!(l.all[1].security_protocol, SecurityProtocol::Ssl);
        assert_eq!(l.inter_broker, 0);
        let err = parse("INTERNAL://127.0.0.1:1", "", DEFAULT_PROTOCOL_MAP, "").unwrap_err();
        assert!(err.contains("no security protocol defined"), "{err}");
        let err = parse("INTERNAL://127.0.0.1:1", "", map, "").unwrap_err();
        assert!(err.contains("inter.broker.listener.name"), "{err}");
        let err = parse("INTERNAL://127.0.0.1:1", "", map, "OTHER").unwrap_err();
        assert!(err.contains("OTHER is not one of the listeners"), "{err}");
    }

    #[test]
    fn bad_listeners_are_refused() {
        let m = DEFAULT_PROTOCOL_MAP;
        for (listeners, advertised, want) in [
            ("127.0.0.1:9092", "", "expected NAME://HOST:PORT"),
            ("PLAINTEXT://127.0.0.1:x", "", "bad port"),
            (
                "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
                "",
                "used twice",
            ),
            ("PLAINTEXT://127.0.0.1:1,SSL://127.0.0.2:1", "", "same port"),
            ("PLAINTEXT://0.0.0.0:1", "", "nonroutable"),
            (
                "PLAINTEXT://127.0.0.1:1",
                "SSL://h:2",
                "not one of the listeners",
            ),
        ] {
            let err = parse(listeners, advertised, m, "").unwrap_err();
            assert!(err.contains(want), "{listeners}: {err}");
        }
        let err = parse("PLAINTEXT://h:1", "", "PLAINTEXT:TLS", "").unwrap_err();
        assert!(err.contains("unknown security protocol"), "{err}");
    }

    #[test]
    fn the_listen_flag_is_one_plaintext_listener() {
        let l = parse("", "", DEFAULT_PROTOCOL_MAP, "").unwrap();
        assert_eq!(l, Listeners::single_plaintext("127.0.0.1:9092").unwrap());
        let settings = ListenerSettings {
            protocol_map: DEFAULT_PROTOCOL_MAP,
            advertised_listeners: "PLAINTEXT://broker.example:9092",
            ..Default::default()
        };
        let l = Listeners::from_settings("0.0.0.0:9092", settings).unwrap();
        assert_eq!(l.all[0].bind, "0.0.0.0:9092");
        assert_eq!(l.all[0].advertised.host, "broker.example");
        let settings = ListenerSettings {
            protocol_map: DEFAULT_PROTOCOL_MAP,
            ..Default::default()
        };
        let l = Listeners::from_settings("0.0.0.0:9092", settings).unwrap();
        assert_eq!(
            l.all[0].advertised.host, "0.0.0.0",
            "as --listen always did"
        );
        let l = Listeners::single_plaintext(":9092").unwrap();
        assert_eq!(l.all[0].name, "PLAINTEXT");
        assert_eq!(l.all[0].advertised.host, "");
        assert!(!l.all[0].security_protocol.uses_tls());
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
    }
}
