//! Certificate reload without a restart (issue 19). Kafka's way: IncrementalAlterConfigs on
//! this broker (`kafka-configs.sh --entity-type brokers --entity-name <id> --alter
//! --add-config listener.name.<listener>.ssl.keystore.location=<path>`) changes a listener's
//! keystore or truststore settings; the stores are read again (also at an unchanged path),
//! checked, and the new `net::tls::Acceptor` is installed on every shard. Spate's own way:
//! SIGHUP reads every TLS listener's stores again (an operator renews the files, then signals:
//! nothing reads a file half-copied, and nothing polls). New connections get the new
//! certificate; open connections keep theirs; stores that do not load are refused
//! (INVALID_CONFIG with the reason, or a warning after SIGHUP) and the old ones stay in use.
//!
//! On the hot path: each shard holds a listener's current TLS in a [`TlsSlot`], read once per
//! accepted connection (a `RefCell` borrow and an `Arc` clone). Altered settings live in
//! memory, as the node's [`AlteredSsl`] per listener: a restart goes back to the static ones.

use crate::handlers::code;
use crate::shard::Shard;
use crate::transport::ListenerTls;
use controller::ConfigOp;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// The settings an alter may change, after `listener.name.<listener>.` (as in Kafka, security
/// settings change at run time only per listener).
pub const DYNAMIC_SSL_SETTINGS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
];

/// How often shard 0 looks whether SIGHUP came.
const SIGHUP_POLL: Duration = Duration::from_secs(1);

/// A listener's settings altered at run time, node-wide (every shard's slot shares it).
#[derive(Default)]
pub struct AlteredSsl {
    state: Mutex<Altered>,
}

impl AlteredSsl {
    /// The state (a panic elsewhere cannot leave it half-written: it is replaced whole).
    fn state(&self) -> std::sync::MutexGuard<'_, Altered> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Altered {
    /// Counts installs: a shard keeps the newest it was given, whatever order they arrive in.
    generation: u64,
    /// By full name (`listener.name.<listener>.ssl.…`).
    settings: BTreeMap<String, String>,
}

/// One shard's TLS of one listener: what its new connections get.
pub struct TlsSlot {
    pub listener: String,
    current: RefCell<(u64, ListenerTls)>,
    altered: Arc<AlteredSsl>,
}

impl TlsSlot {
    pub fn new(listener: &str, tls: ListenerTls, altered: Arc<AlteredSsl>) -> TlsSlot {
        TlsSlot {
            listener: listener.to_string(),
            current: RefCell::new((0, tls)),
            altered,
        }
    }

    /// The listener's settings altered at run time, by full name.
    pub fn altered_settings(&self) -> BTreeMap<String, String> {
        self.altered.state().settings.clone()
    }

    /// What a connection accepted now goes through.
    pub fn current(&self) -> ListenerTls {
        self.current.borrow().1.clone()
    }

    fn install(&self, generation: u64, acceptor: &net::tls::Acceptor) {
        let mut current = self.current.borrow_mut();
        if generation > current.0 {
            current.0 = generation;
            current.1.acceptor = acceptor.clone();
        }
    }
}

/// A listener's new TLS, checked, ready to install on every shard.
#[derive(Clone)]
struct Change {
    listener: String,
    generation: u64,
    acceptor: net::tls::Acceptor,
}

/// IncrementalAlterConfigs of broker `broker` (the resource name): `Err` is the answer's
/// error code and message; nothing is installed then.
pub async fn alter(
    shard: &Rc<Shard>,
    broker: &str,
    ops: &[ConfigOp],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    check_broker(broker, shard.config.node_id)?;
    let mut prepared = Vec::new();
    for (listener, ops) in by_listener(ops)? {
        let slot = shard.tls_slot(&listener).ok_or_else(|| {
            let message = format!("listener {listener} is not a TLS listener of this broker");
            (code::INVALID_CONFIG, message)
        })?;
        let settings = apply(&slot.altered.state().settings, ops)?;
        let acceptor = build(shard, &slot.listener, &settings)
            .map_err(|e| (code::INVALID_CONFIG, format!("{e}; the current one stays")))?;
        prepared.push((slot, settings, acceptor));
    }
    if validate_only {
        return Ok(());
    }
    let changes: Vec<Change> = prepared
        .into_iter()
        .map(|(slot, settings, acceptor)| {
            let mut state = slot.altered.state();
            state.generation += 1;
            state.settings = settings;
            Change {
                listener: slot.listener.clone(),
                generation: state.generation,
                acceptor,
            }
        })
        .collect();
    install(shard, changes.clone()).await;
    for change in changes {
        info!(listener = %change.listener, "TLS stores altered: new connections use them");
    }
    Ok(())
}

/// Kafka's rule: a listener's stores are per broker, never the cluster default (an empty
/// name), and this broker alters its own.
fn check_broker(broker: &str, node_id: i32) -> Result<(), (i16, String)> {
    let message = match broker.parse::<i32>() {
        Ok(id) if id == node_id => return Ok(()),
        Ok(id) => format!("broker {id}'s settings are altered on broker {id} (this is {node_id})"),
        Err(_) if broker.is_empty() => {
            "Cannot update these configs at default cluster level, broker id must be specified"
                .into()
        }
        Err(_) => format!("{broker} is not a broker id"),
    };
    Err((code::INVALID_REQUEST, message))
}

/// The ops grouped by listener (lower case), each a dynamic `ssl.*` setting of one.
fn by_listener(ops: &[ConfigOp]) -> Result<BTreeMap<String, Vec<&ConfigOp>>, (i16, String)> {
    let mut grouped: BTreeMap<String, Vec<&ConfigOp>> = BTreeMap::new();
    for op in ops {
        let name = op_name(op);
        let listener = name
            .strip_prefix("listener.name.")
            .and_then(|rest| rest.split_once('.'))
            .filter(|(l, setting)| !l.is_empty() && DYNAMIC_SSL_SETTINGS.contains(setting))
            .map(|(l, _)| l.to_ascii_lowercase())
            .ok_or_else(|| {
                let message = format!(
                    "{name} cannot change at run time: only a listener's stores do \
                     (listener.name.<listener>.ssl.keystore.*, .ssl.key.password, \
                     .ssl.truststore.*); set the others with --set at start"
                );
                (code::INVALID_CONFIG, message)
            })?;
        grouped.entry(listener).or_default().push(op);
    }
    Ok(grouped)
}

fn op_name(op: &ConfigOp) -> &str {
    match op {
        ConfigOp::Set { name, .. }
        | ConfigOp::Delete { name }
        | ConfigOp::Append { name, .. }
        | ConfigOp::Subtract { name, .. } => name,
    }
}

/// `altered` with `ops` applied (SET and DELETE; the stores' settings are not lists).
fn apply(
    altered: &BTreeMap<String, String>,
    ops: Vec<&ConfigOp>,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let mut settings = altered.clone();
    for op in ops {
        match op {
            ConfigOp::Set { name, value } => settings.insert(name.clone(), value.clone()),
            ConfigOp::Delete { name } => settings.remove(name),
            ConfigOp::Append { name, .. } | ConfigOp::Subtract { name, .. } => {
                let message = format!("{name} is not a list: use SET or DELETE");
                return Err((code::INVALID_CONFIG, message));
            }
        };
    }
    Ok(settings)
}

/// The listener's acceptor from its static settings under `altered`, stores read now.
fn build(
    shard: &Shard,
    listener: &str,
    altered: &BTreeMap<String, String>,
) -> Result<net::tls::Acceptor, String> {
    let settings = crate::tls_config::server_settings_altered(&shard.config, listener, altered)?;
    net::tls::Acceptor::new(&settings).map_err(|e| format!("listener {listener}: {e}"))
}

async fn install(shard: &Rc<Shard>, changes: Vec<Change>) {
    shard
        .run_on_all(move |shard| {
            let changes = changes.clone();
            async move {
                for change in &changes {
                    if let Some(slot) = shard.tls_slot(&change.listener) {
                        slot.install(change.generation, &change.acceptor);
                    }
                }
            }
        })
        .await;
}

/// Shard 0's task: after each SIGHUP (`requested`), every TLS listener's stores are read again.
pub async fn reload_on_sighup(shard: Rc<Shard>, requested: Arc<AtomicBool>) {
    loop {
        glommio::timer::sleep(SIGHUP_POLL).await;
        if requested.swap(false, Ordering::SeqCst) {
            reload_all(&shard).await;
        }
    }
}

async fn reload_all(shard: &Rc<Shard>) {
    let slots: Vec<Rc<TlsSlot>> = shard.tls_slots.borrow().clone();
    let mut changes = Vec::new();
    for slot in slots {
        let mut state = slot.altered.state();
        match build(shard, &slot.listener, &state.settings) {
            Ok(acceptor) => {
                state.generation += 1;
                changes.push(Change {
                    listener: slot.listener.clone(),
                    generation: state.generation,
                    acceptor,
                });
                info!(listener = %slot.listener, "TLS stores read again (SIGHUP): new connections use them");
            }
            Err(e) => {
                warn!(listener = %slot.listener, "TLS stores not reloaded (SIGHUP), the current ones stay: {e}")
            }
        }
    }
    install(shard, changes).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> ConfigOp {
        ConfigOp::Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn only_this_brokers_id_is_altered() {
        assert!(check_broker("3", 3).is_ok());
        for (name, want) in [
            ("", "default cluster level"),
            ("4", "altered on broker 4"),
            ("x", "not a broker id"),
        ] {
            let (code, message) = check_broker(name, 3).unwrap_err();
            assert_eq!(code, code::INVALID_REQUEST);
            assert!(message.contains(want), "{name}: {message}");
        }
    }

    #[test]
    fn only_listener_store_settings_are_dynamic() {
        let ops = [
            set("listener.name.SSL.ssl.keystore.location", "/a"),
            set("listener.name.ssl.ssl.truststore.location", "/b"),
            set("listener.name.other.ssl.key.password", "p"),
        ];
        let grouped = by_listener(&ops).unwrap();
        assert_eq!(grouped.keys().collect::<Vec<_>>(), ["other", "ssl"]);
        assert_eq!(grouped["ssl"].len(), 2);
        for name in [
            "ssl.keystore.location",
            "log.retention.ms",
            "listener.name.ssl.ssl.client.auth",
            "listener.name..ssl.keystore.location",
        ] {
            let (code, message) = by_listener(&[set(name, "x")]).unwrap_err();
            assert_eq!(code, code::INVALID_CONFIG);
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn set_and_delete_apply_over_earlier_alters() {
        let earlier = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let delete = ConfigOp::Delete { name: "a".into() };
        let (new, gone) = (set("b", "2"), delete);
        let settings = apply(&earlier, vec![&new, &gone]).unwrap();
        assert_eq!(settings, BTreeMap::from([("b".into(), "2".into())]));
        let append = ConfigOp::Append {
            name: "b".into(),
            value: "3".into(),
        };
        assert_eq!(
            apply(&earlier, vec![&append]).unwrap_err().0,
            code::INVALID_CONFIG
        );
    }
}
