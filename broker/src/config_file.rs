//! The effective configuration of `spate start`: defaults, then a TOML file (`--config`), then
//! `SPATE_*` environment variables, then command-line flags; a later layer wins.
//!
//! Keys are the broker settings by their Kafka names (`log.retention.ms`, see
//! `config::SETTINGS`) plus the node options below (`data-dir`, `listen`, ...). Every value is
//! checked as its layer is applied, so an error names where the bad key or value came from.

use crate::config::{self, BrokerConfig};
use crate::listeners::Listeners;
use crate::server::StartOptions;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Node options that are not Kafka broker settings: (key, default).
pub const NODE_OPTIONS: &[(&str, &str)] = &[
    ("data-dir", "./spate-data"),
    ("listen", "127.0.0.1:9092"),
    ("admin-listen", "127.0.0.1:9644"),
    ("cores", "all"),
    ("unsafe-no-fsync", "false"),
];

/// `SPATE_*` variables that belong to something else (log level, the CLI, tests, benchmarks):
/// never read as settings.
const ENV_NOT_SETTINGS: &[&str] = &[
    "SPATE_LOG",
    "SPATE_BROKERS",
    "SPATE_FAULT_PANIC_AFTER_MS",
    "SPATE_FAULT_COMPACTION_KILL_AT",
    "SPATE_FAULT_DISK_FULL_WHILE",
    "SPATE_FAULT_DISK_BYTES_PER_SEC",
];

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

/// Every key with its effective value and source, in the order of `spate.toml`.
#[derive(Clone, Debug)]
pub struct Layered {
    values: BTreeMap<String, (String, Source)>,
}

impl Default for Layered {
    fn default() -> Self {
        let values = all_keys()
            .map(|(key, default)| (key.to_string(), (default.to_string(), Source::Default)))
            .collect();
        Layered { values }
    }
}

impl Layered {
    /// Defaults, then `file` (if any), then the environment, then `flags` (key, value).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(String, String)],
    ) -> Result<Layered, String> {
        let mut layered = Layered::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            layered.apply_toml(&text, path)?;
        }
        for (var, value) in env {
            if let Some(key) = env_key(&var) {
                layered.set(&key, &value, Source::Env(var))?;
            }
        }
        for (key, value) in flags {
            layered.set(key, value, Source::Flag)?;
        }
        Ok(layered)
    }

    fn apply_toml(&mut self, text: &str, path: &Path) -> Result<(), String> {
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        let mut flat = Vec::new();
        flatten("", &table, &mut flat)
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        for (key, value) in flat {
            self.set(&key, &value, Source::File(path.to_path_buf()))?;
        }
        Ok(())
    }

    /// Checks and records one value; the error names the key, the value and `source`.
    fn set(&mut self, key: &str, value: &str, source: Source) -> Result<(), String> {
        let value = value.trim();
        if is_node_option(key) {
            check_node_option(key, value).map_err(|e| format!("{source}: {e}"))?;
        } else {
            BrokerConfig::with_overrides([format!("{key}={value}").as_str()])
                .map_err(|e| format!("{source}: {e}"))?;
        }
        self.values
            .insert(key.to_string(), (value.to_string(), source));
        Ok(())
    }

    /// The effective value of `key`.
    pub fn get(&self, key: &str) -> &str {
        &self.values[key].0
    }

    /// What `spate start` runs with.
    pub fn start_options(&self) -> Result<StartOptions, String> {
        let mut overrides: Vec<String> = config::settings()
            .filter(|(name, _, _)| self.values[*name].1 != Source::Default)
            .map(|(name, _, _)| format!("{name}={}", self.get(name)))
            .collect();
        // Settings outside the table (SASL's, some named after a listener or mechanism).
        overrides.extend(
            self.values
                .iter()
                .filter(|(key, _)| !all_keys().any(|(k, _)| k == key.as_str()))
                .map(|(key, (value, _))| format!("{key}={value}")),
        );
        let mut config = BrokerConfig::with_overrides(overrides.iter().map(String::as_str))
            .map_err(|e| e.to_string())?;
        config.fsync = self.get("unsafe-no-fsync") != "true";
        let admin_listen = match self.get("admin-listen") {
            "none" | "" => None,
            addr => Some(addr.to_string()),
        };
        let cores = match self.get("cores") {
            "all" => None,
            n => Some(n.parse().expect("checked when set")),
        };
        let listeners = Listeners::from_settings(self.get("listen"), config.listener_settings())?;
        let has_listeners = !config.listener_settings().listeners.trim().is_empty();
        if has_listeners && self.values["listen"].1 != Source::Default {
            eprintln!(
                "spate: `listeners` is set, so `listen` ({}, {}) is ignored",
                self.get("listen"),
                self.values["listen"].1
            );
        }
        Ok(StartOptions {
            data_dir: PathBuf::from(self.get("data-dir")),
            listen: match has_listeners {
                true => listeners.describe(),
                false => self.get("listen").to_string(),
            },
            listeners,
            cores,
            config,
            admin_listen,
            admin_listen_is_default: self.values["admin-listen"].1 == Source::Default,
            cluster: None,
        })
    }

    /// The effective configuration as TOML, each line commented with its source.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# spate: effective configuration (value # source)\n");
        for (key, _) in all_keys() {
            let (value, source) = &self.values[key];
            let _ = writeln!(
                out,
                "{} = {}  # {source}",
                toml_key(key),
                toml_value(key, value)
            );
        }
        out
    }
}

/// Node options first, then broker settings, as `spate.toml` lists them.
fn all_keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    NODE_OPTIONS
        .iter()
        .copied()
        .chain(config::settings().map(|(name, default, _)| (name, default)))
}

fn is_node_option(key: &str) -> bool {
    NODE_OPTIONS.iter().any(|(k, _)| *k == key)
}

fn check_node_option(key: &str, value: &str) -> Result<(), String> {
    let ok = match key {
        "cores" => value == "all" || value.parse::<usize>().is_ok(),
        "unsafe-no-fsync" => value == "true" || value == "false",
        "data-dir" => !value.is_empty(),
        _ => true, // addresses are resolved (and refused with a reason) at start
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value '{value}' for setting '{key}'"))
    }
}

/// `SPATE_LOG_RETENTION_MS` -> `log.retention.ms`, `SPATE_DATA_DIR` -> `data-dir`; `None` for
/// variables that name no setting (they belong to other tools).
pub fn env_key(var: &str) -> Option<String> {
    if ENV_NOT_SETTINGS.contains(&var) {
        return None;
    }
    let rest = var.strip_prefix("SPATE_")?.to_ascii_lowercase();
    let node = rest.replace('_', "-");
    if is_node_option(&node) {
        return Some(node);
    }
    let setting = rest.replace('_', ".");
    config::settings()
        .any(|(name, _, _)| name == setting)
        .then_some(setting)
}

/// Nested tables (`[log] retention.ms = 1` or unquoted dotted keys) become dotted names.
fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out)?,
            toml::Value::Integer(v) => out.push((name, v.to_string())),
            toml::Value::Boolean(v) => out.push((name, v.to_string())),
            toml::Value::String(v) => out.push((name, v.clone())),
            other => {
                return Err(format!(
                    "'{name}': expected a number, a boolean or a string, got {}",
                    other.type_str()
                ))
            }
        }
    }
    Ok(())
}

fn toml_key(key: &str) -> String {
    if key.contains('.') {
        format!("\"{key}\"")
    } else {
        key.to_string()
    }
}

fn toml_value(key: &str, value: &str) -> String {
    let is_bool = key == "unsafe-no-fsync"
        || config::settings().any(|(name, _, is_bool)| name == key && is_bool);
    let is_number = !is_node_option(key) || (key == "cores" && value != "all");
    if is_bool || (is_number && value.parse::<i64>().is_ok()) {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn spate_toml_lists_every_setting_with_its_default() {
        let text = include_str!("../../spate.toml");
        let table: toml::Table = text.parse().expect("spate.toml parses");
        let mut listed = Vec::new();
        flatten("", &table, &mut listed).unwrap();
        let listed: BTreeMap<String, String> = listed.into_iter().collect();
        let expected: BTreeMap<String, String> = all_keys()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn later_layers_win_and_sources_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spate.toml");
        std::fs::write(
            &path,
            "\"num.partitions\" = 3\nlog.retention.ms = 1000\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let env = [
            ("SPATE_LOG_RETENTION_MS".to_string(), "2000".to_string()),
            ("SPATE_LISTEN".to_string(), "127.0.0.1:2".to_string()),
            ("SPATE_LOG".to_string(), "debug".to_string()),
            ("SPATE_IT_KEEP".to_string(), "1".to_string()),
        ];
        let layered =
            Layered::load(Some(&path), env, &flags(&[("listen", "127.0.0.1:3")])).unwrap();
        assert_eq!(layered.get("num.partitions"), "3");
        assert_eq!(layered.get("log.retention.ms"), "2000");
        assert_eq!(layered.get("listen"), "127.0.0.1:3");
        let options = layered.start_options().unwrap();
        assert_eq!(options.config.num_partitions, 3);
        assert_eq!(options.config.log_retention_ms, 2000);
        assert!(options.admin_listen_is_default);
        let printed = layered.to_toml();
        assert!(
            printed.contains("\"log.retention.ms\" = 2000  # environment SPATE_LOG_RETENTION_MS")
        );
        assert!(printed.contains("listen = \"127.0.0.1:3\"  # command line"));
        assert!(printed.contains("\"node.id\" = 1  # default"));
        let reparsed: toml::Table = printed.parse().expect("printed config is TOML");
        assert_eq!(reparsed["num.partitions"].as_integer(), Some(3));
    }

    #[test]
    fn bad_keys_and_values_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "\"no.such.setting\" = 1\n").unwrap();
        let err = Layered::load(Some(&path), [], &[]).unwrap_err();
        assert!(
            err.contains("bad.toml") && err.contains("unknown setting 'no.such.setting'"),
            "{err}"
        );
        let env = [("SPATE_NUM_PARTITIONS".to_string(), "zero".to_string())];
        let err = Layered::load(None, env, &[]).unwrap_err();
        assert!(
            err.contains("environment SPATE_NUM_PARTITIONS") && err.contains("'zero'"),
            "{err}"
        );
        let err = Layered::load(None, [], &flags(&[("cores", "many")])).unwrap_err();
        assert!(err.contains("command line"), "{err}");
        std::fs::write(&path, "listen = [1, 2]\n").unwrap();
        assert!(Layered::load(Some(&path), [], &[])
            .unwrap_err()
            .contains("got array"));
    }

    #[test]
    fn env_names_map_to_settings() {
        assert_eq!(
            env_key("SPATE_LOG_RETENTION_MS").as_deref(),
            Some("log.retention.ms")
        );
        assert_eq!(env_key("SPATE_DATA_DIR").as_deref(), Some("data-dir"));
        assert_eq!(
            env_key("SPATE_ADMIN_LISTEN").as_deref(),
            Some("admin-listen")
        );
        assert_eq!(env_key("SPATE_LOG"), None);
        assert_eq!(env_key("SPATE_BROKERS"), None);
        assert_eq!(env_key("SPATE_BIN"), None);
        assert_eq!(env_key("PATH"), None);
    }
}
