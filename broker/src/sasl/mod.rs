//! SASL authentication (issue 19): the settings, the mechanisms (PLAIN from the JAAS
//! configuration, SCRAM-SHA-256/512 from the credentials in the metadata image), and the
//! per-connection state machine (`authenticator`) that the session stage steps before a
//! connection on a SASL listener may do anything but ApiVersions and the SASL exchange.

pub mod authenticator;
pub mod gate;
pub mod jwks;
pub mod jwks_fetch;
pub mod jwt;
pub mod metrics;
pub mod oauth_settings;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

/// The JAAS parser lives with the client (it reads `sasl.jaas.config` too).
pub use spate_bench::jaas;

use controller::scram::ScramMechanism;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A SASL mechanism Spate serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
        Mechanism::OAuthBearer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Index for per-mechanism counters.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|m| *m == self).expect("in ALL")
    }
}

/// `sasl.enabled.mechanisms` when not set. Kafka's default is GSSAPI (Kerberos), which
/// Spate does not serve; PLAIN and both SCRAMs are what it serves without more settings
/// (OAUTHBEARER needs a JWKS).
pub const DEFAULT_MECHANISMS: &str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";

/// The class Kafka's PLAIN users are configured under.
pub const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";

/// What one SASL listener accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct ListenerSasl {
    /// In the order configured (the handshake answer lists them so).
    pub mechanisms: Vec<Mechanism>,
    /// PLAIN users and passwords (`user_<name>="<password>"` of the PlainLoginModule).
    pub plain_users: BTreeMap<String, String>,
    /// How OAUTHBEARER tokens are checked (`sasl.oauthbearer.*`), with the JWKS kept fresh;
    /// `None`: no JWKS, so OAUTHBEARER is not offered.
    pub oauth: Option<Arc<jwks::Jwks>>,
    /// `connections.max.reauth.ms` per mechanism (by `Mechanism::index`); 0: sessions do not
    /// expire (but an OAUTHBEARER session still ends with its token, as in Kafka).
    pub reauth_ms: [i64; Mechanism::ALL.len()],
}

impl ListenerSasl {
    /// The mechanisms the handshake offers (OAUTHBEARER only with a validator).
    pub fn offers(&self, mechanism: Mechanism) -> bool {
        self.mechanisms.contains(&mechanism)
            && (mechanism != Mechanism::OAuthBearer || self.oauth.is_some())
    }

    /// A listener with `mechanisms` and nothing else configured (tests).
    pub fn with_mechanisms(mechanisms: Vec<Mechanism>) -> Self {
        ListenerSasl {
            mechanisms,
            plain_users: BTreeMap::new(),
            oauth: None,
            reauth_ms: [0; Mechanism::ALL.len()],
        }
    }
}

impl std::fmt::Debug for ListenerSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&String> = self.plain_users.keys().collect();
        write!(
            f,
            "ListenerSasl({:?}, PLAIN users {users:?}, JWKS keys {}, reauth {:?})",
            self.mechanisms,
            self.oauth.as_ref().map_or(0, |j| j.validator().keys.len()),
            self.reauth_ms
        )
    }
}

/// The SASL settings of the node: a default and per-listener overrides
/// (`listener.name.<listener>.` prefixed, listener names lower-cased as Kafka does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslSettings {
    default: Arc<ListenerSasl>,
    listeners: BTreeMap<String, Arc<ListenerSasl>>,
}

impl Default for SaslSettings {
    fn default() -> Self {
        SaslSettings::from_overrides(&BTreeMap::new()).expect("defaults are valid")
    }
}

/// Whether `name` is a SASL setting (kept out of the config table: the JAAS text holds
/// passwords, and some names carry a listener or a mechanism).
pub fn is_setting(name: &str) -> bool {
    matches!(
        name,
        "sasl.enabled.mechanisms" | "sasl.jaas.config" | oauth_settings::REAUTH
    ) || oauth_settings::is_oauth_setting(name)
        || listener_setting(name).is_some()
}

/// `listener.name.<listener>.<rest>` -> (listener, rest) for the SASL settings.
fn listener_setting(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("listener.name.")?;
    let (listener, setting) = rest.split_once('.')?;
    let per_mechanism = |suffix: &str| {
        setting
            .strip_suffix(suffix)
            .is_some_and(|m| Mechanism::from_name(&m.to_ascii_uppercase()).is_some())
    };
    let known = setting == "sasl.enabled.mechanisms"
        || setting == "sasl.jaas.config"
        || setting == oauth_settings::REAUTH
        || oauth_settings::is_oauth_setting(setting)
        || setting
            .strip_prefix("oauthbearer.")
            .is_some_and(oauth_settings::is_oauth_setting)
        || per_mechanism(".sasl.jaas.config")
        || per_mechanism(".connections.max.reauth.ms");
    (known && !listener.is_empty()).then_some((listener, setting))
}

/// The value of `setting` for `listener` (`None`: the node's default) and `mechanism`, the
/// most specific name set winning, as Kafka resolves listener and mechanism prefixes:
/// `listener.name.<listener>.<mechanism>.<setting>`, `listener.name.<listener>.<setting>`,
/// then `<setting>`. Returns the value and the name it was found under (for error messages,
/// which never carry the value: it may be a password).
pub fn lookup<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    listener: Option<&str>,
    mechanism: Option<Mechanism>,
    setting: &str,
) -> Option<(&'a str, String)> {
    let mut names = Vec::with_capacity(3);
    if let Some(l) = listener {
        if let Some(m) = mechanism {
            let m = m.name().to_ascii_lowercase();
            names.push(format!("listener.name.{l}.{m}.{setting}"));
        }
        names.push(format!("listener.name.{l}.{setting}"));
    }
    names.push(setting.to_string());
    names.into_iter().find_map(|n| get(&n).map(|v| (v, n)))
}

impl SaslSettings {
    /// Builds the settings from the node's `NAME=VALUE` overrides; the error names the
    /// setting that is wrong (never its value: it may hold passwords).
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        let global = |name: &str| overrides.get(name).map(String::as_str);
        let names: std::collections::BTreeSet<&str> = overrides
            .keys()
            .filter_map(|k| listener_setting(k).map(|(l, _)| l))
            .collect();
        let mut default = listener_sasl(
            global("sasl.enabled.mechanisms").unwrap_or(DEFAULT_MECHANISMS),
            "sasl.enabled.mechanisms",
            global("sasl.jaas.config").map(|j| (j, "sasl.jaas.config")),
        )?;
        oauth_settings::apply(&mut default, overrides, None)?;
        let mut listeners = BTreeMap::new();
        let get = |name: &str| overrides.get(name).map(String::as_str);
        for listener in names {
            let (mechanisms, mechanisms_key) =
                lookup(get, Some(listener), None, "sasl.enabled.mechanisms").unwrap_or((
                    DEFAULT_MECHANISMS,
                    format!("listener.name.{listener}.sasl.enabled.mechanisms"),
                ));
            let jaas = lookup(
                get,
                Some(listener),
                Some(Mechanism::Plain),
                "sasl.jaas.config",
            );
            let mut settings = listener_sasl(
                mechanisms,
                &mechanisms_key,
                jaas.as_ref().map(|(v, k)| (*v, k.as_str())),
            )?;
            oauth_settings::apply(&mut settings, overrides, Some(listener))?;
            listeners.insert(listener.to_ascii_lowercase(), Arc::new(settings));
        }
        Ok(SaslSettings {
            default: Arc::new(default),
            listeners,
        })
    }

    /// What the listener named `listener` (any case) accepts.
    pub fn for_listener(&self, listener: &str) -> Arc<ListenerSasl> {
        self.listeners
            .get(&listener.to_ascii_lowercase())
            .unwrap_or(&self.default)
            .clone()
    }
}

fn listener_sasl(
    mechanisms: &str,
    mechanisms_key: &str,
    jaas: Option<(&str, &str)>,
) -> Result<ListenerSasl, String> {
    let mut enabled = Vec::new();
    for name in mechanisms
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let mechanism = Mechanism::from_name(name)
            .ok_or_else(|| format!("{mechanisms_key}: mechanism {name} is not supported"))?;
        if !enabled.contains(&mechanism) {
            enabled.push(mechanism);
        }
    }
    let mut plain_users = BTreeMap::new();
    if let Some((text, key)) = jaas {
        let modules = jaas::parse(text).map_err(|e| format!("{key}: {e}"))?;
        for module in modules.iter().filter(|m| m.class == PLAIN_LOGIN_MODULE) {
            for (option, value) in &module.options {
                if let Some(user) = option.strip_prefix("user_") {
                    plain_users.insert(user.to_string(), value.clone());
                }
            }
        }
    }
    Ok(ListenerSasl {
        plain_users,
        ..ListenerSasl::with_mechanisms(enabled)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
        username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
        user_alice=\"alice-secret\";";

    #[test]
    fn defaults_serve_plain_and_scram_without_users() {
        let s = SaslSettings::default();
        let l = s.for_listener("SASL_PLAINTEXT");
        assert_eq!(l.mechanisms, Mechanism::ALL[..3].to_vec());
        assert!(l.oauth.is_none() && l.reauth_ms == [0; 4]);
        assert!(l.plain_users.is_empty());
    }

    #[test]
    fn plain_users_come_from_the_listener_prefixed_or_plain_jaas_config() {
        let s = SaslSettings::from_overrides(&overrides(&[(
            "listener.name.sasl_plaintext.plain.sasl.jaas.config",
            JAAS,
        )]))
        .unwrap();
        let l = s.for_listener("SASL_PLAINTEXT");
        assert_eq!(l.plain_users["alice"], "alice-secret");
        assert_eq!(l.plain_users.len(), 2);
        assert!(s.for_listener("OTHER").plain_users.is_empty());
        assert!(!format!("{s:?}").contains("secret"));

        let s = SaslSettings::from_overrides(&overrides(&[
            ("sasl.jaas.config", JAAS),
            ("sasl.enabled.mechanisms", "SCRAM-SHA-512, PLAIN"),
        ]))
        .unwrap();
        let l = s.for_listener("anything");
        assert_eq!(l.plain_users["admin"], "admin-secret");
        assert_eq!(
            l.mechanisms,
            vec![Mechanism::Scram(ScramMechanism::Sha512), Mechanism::Plain]
        );
    }

    #[test]
    fn unsupported_mechanisms_and_bad_jaas_are_refused_without_the_value() {
        let e = SaslSettings::from_overrides(&overrides(&[("sasl.enabled.mechanisms", "GSSAPI")]))
            .unwrap_err();
        assert!(e.contains("GSSAPI"), "{e}");
        let e = SaslSettings::from_overrides(&overrides(&[(
            "listener.name.sasl_ssl.plain.sasl.jaas.config",
            "x.Y required password=\"hunter2\"",
        )]))
        .unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_most_specific_name_set_wins() {
        let o = overrides(&[
            ("listener.name.a.plain.sasl.jaas.config", "mechanism"),
            ("listener.name.a.sasl.jaas.config", "listener"),
            ("sasl.jaas.config", "node"),
        ]);
        let get = |name: &str| o.get(name).map(String::as_str);
        let value = |listener, mechanism| {
            lookup(get, listener, mechanism, "sasl.jaas.config").map(|(v, _)| v)
        };
        assert_eq!(value(Some("a"), Some(Mechanism::Plain)), Some("mechanism"));
        let sha512 = Mechanism::Scram(ScramMechanism::Sha512);
        assert_eq!(value(Some("a"), Some(sha512)), Some("listener"));
        assert_eq!(value(Some("b"), Some(Mechanism::Plain)), Some("node"));
        assert_eq!(value(None, Some(Mechanism::Plain)), Some("node"));
        let (_, name) = lookup(get, Some("a"), Some(Mechanism::Plain), "sasl.jaas.config").unwrap();
        assert_eq!(name, "listener.name.a.plain.sasl.jaas.config");
        assert_eq!(
            lookup(get, Some("a"), None, "sasl.enabled.mechanisms"),
            None
        );
    }

    #[test]
    fn prefixed_setting_names_are_recognised() {
        assert!(is_setting("listener.name.sasl_ssl.plain.sasl.jaas.config"));
        assert!(is_setting("listener.name.x.scram-sha-512.sasl.jaas.config"));
        assert!(is_setting("listener.name.x.sasl.enabled.mechanisms"));
        assert!(is_setting("sasl.jaas.config"));
        assert!(!is_setting("listener.name.x.gssapi.sasl.jaas.config"));
        assert!(!is_setting("listener.name..sasl.jaas.config"));
        assert!(!is_setting("sasl.jaas"));
    }
}
