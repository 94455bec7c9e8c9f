//! Kafka 4.x topic configs: names, defaults, types and validation.
//!
//! Topics store only the configs set explicitly; [`effective`] fills in the defaults.

use std::collections::BTreeMap;

use crate::error::ApplyError;
use crate::image::TopicMeta;

/// Longest config value accepted, in bytes.
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;

/// The type and range of a config value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConfigType {
    /// A 64-bit integer in `[min, max]`.
    Long {
        min: i64,
        max: i64,
    },
    /// A 32-bit integer in `[min, max]`.
    Int {
        min: i32,
        max: i32,
    },
    /// A float in `[min, max]`.
    Double {
        min: f64,
        max: f64,
    },
    Boolean,
    /// One of these strings, matched exactly.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of `partition:broker` pairs, or `*` (throttled replicas).
    ReplicaList,
    /// An int that is either `special` or in `[min, max]` (compression levels).
    IntOrSpecial {
        min: i32,
        max: i32,
        special: i32,
    },
}

/// One topic config: name, default value (as Kafka prints it) and type.
#[derive(Clone, Copy, Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
}

const LONG_MAX: &str = "9223372036854775807";

const fn long(min: i64) -> ConfigType {
    ConfigType::Long { min, max: i64::MAX }
}

const fn int(min: i32) -> ConfigType {
    ConfigType::Int { min, max: i32::MAX }
}

const fn def(name: &'static str, default: &'static str, kind: ConfigType) -> ConfigDef {
    ConfigDef {
        name,
        default,
        kind,
    }
}

/// Kafka 4.x topic configs (LogConfig / TopicConfig), sorted by name.
pub const CONFIGS: &[ConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        ConfigType::OneOf(&["delete", "compact", "compact,delete", "delete,compact"]),
    ),
    def(
        "compression.gzip.level",
        "-1",
        ConfigType::IntOrSpecial {
            min: 1,
            max: 9,
            special: -1,
        },
    ),
    def(
        "compression.lz4.level",
        "9",
        ConfigType::Int { min: 1, max: 17 },
    ),
    def(
        "compression.type",
        "producer",
        ConfigType::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    ),
    def(
        "compression.zstd.level",
        "3",
        ConfigType::Int {
            min: -131072,
            max: 22,
        },
    ),
    def("delete.retention.ms", "86400000", long(0)),
    def("file.delete.delay.ms", "60000", long(0)),
    def("flush.messages", LONG_MAX, long(1)),
    def("flush.ms", LONG_MAX, long(0)),
    def(
        "follower.replication.throttled.replicas",
        "",
        ConfigType::ReplicaList,
    ),
    def("index.interval.bytes", "4096", int(0)),
    def(
        "leader.replication.throttled.replicas",
        "",
        ConfigType::ReplicaList,
    ),
    def("local.retention.bytes", "-2", long(-2)),
    def("local.retention.ms", "-2", long(-2)),
    def("max.compaction.lag.ms", LONG_MAX, long(1)),
    def("max.message.bytes", "1048588", int(0)),
    def("message.timestamp.after.max.ms", "3600000", long(0)),
    def("message.timestamp.before.max.ms", LONG_MAX, long(0)),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigType::Double { min: 0.0, max: 1.0 },
    ),
    def("min.compaction.lag.ms", "0", long(0)),
    def("min.insync.replicas", "1", int(1)),
    def("preallocate", "false", ConfigType::Boolean),
    def("remote.log.copy.disable", "false", ConfigType::Boolean),
    def("remote.log.delete.on.disable", "false", ConfigType::Boolean),
    def("remote.storage.enable", "false", ConfigType::Boolean),
    def(
        "retention.bytes",
        "-1",
        ConfigType::Long {
            min: i64::MIN,
            max: i64::MAX,
        },
    ),
    def("retention.ms", "604800000", long(-1)),
    // Kafka's minimum is LegacyRecord.RECORD_OVERHEAD_V0.
    def("segment.bytes", "1073741824", int(14)),
    def("segment.index.bytes", "10485760", int(4)),
    def("segment.jitter.ms", "0", long(0)),
    def("segment.ms", "604800000", long(1)),
    def(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
    ),
];

/// The definition of config `name`, if Kafka has such a topic config.
pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    CONFIGS
        .binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &CONFIGS[i])
}

/// All topic configs with their default values, sorted by name.
pub fn defaults() -> impl Iterator<Item = (&'static str, &'static str)> {
    CONFIGS.iter().map(|d| (d.name, d.default))
}

/// Checks that `name` is a topic config and `value` is valid for it.
pub fn validate(name: &str, value: &str) -> Result<(), ApplyError> {
    let Some(def) = lookup(name) else {
        return Err(ApplyError::config(name, value, "unknown topic config"));
    };
    if value.len() > CONFIG_VALUE_BYTES_MAX {
        return Err(ApplyError::config(
            name,
            value,
            format!("longer than {CONFIG_VALUE_BYTES_MAX} bytes"),
        ));
    }
    check_type(def.kind, value.trim()).map_err(|reason| ApplyError::config(name, value, reason))
}

fn check_type(kind: ConfigType, value: &str) -> Result<(), String> {
    match kind {
        ConfigType::Long { min, max } => {
            let v: i64 = value.parse().map_err(|_| "not a long".to_owned())?;
            in_range(v, min, max)
        }
        ConfigType::Int { min, max } => {
            let v: i32 = value.parse().map_err(|_| "not an int".to_owned())?;
            in_range(v, min, max)
        }
        ConfigType::IntOrSpecial { min, max, special } => {
            let v: i32 = value.parse().map_err(|_| "not an int".to_owned())?;
            if v == special {
                Ok(())
            } else {
                in_range(v, min, max)
            }
        }
        ConfigType::Double { min, max } => {
            let v: f64 = value.parse().map_err(|_| "not a double".to_owned())?;
            if v.is_nan() {
                return Err("not a number".to_owned());
            }
            in_range(v, min, max)
        }
        ConfigType::Boolean => {
            if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") {
                Ok(())
            } else {
                Err("expected true or false".to_owned())
            }
        }
        ConfigType::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(format!("must be one of {allowed:?}"))
            }
        }
        ConfigType::ReplicaList => check_replica_list(value),
    }
}

fn in_range<T: PartialOrd + std::fmt::Display>(v: T, min: T, max: T) -> Result<(), String> {
    if v < min || v > max {
        Err(format!("must be in [{min}, {max}]"))
    } else {
        Ok(())
    }
}

fn check_replica_list(value: &str) -> Result<(), String> {
    if value.is_empty() || value == "*" {
        return Ok(());
    }
    for item in value.split(',') {
        let ok = item.trim().split_once(':').is_some_and(|(p, b)| {
            p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        });
        if !ok {
            return Err("expected '*' or a list of partition:broker pairs".to_owned());
        }
    }
    Ok(())
}

/// One change of IncrementalAlterConfigs (Kafka's `AlterConfigOp`).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ConfigOp {
    /// Set the value.
    Set { name: String, value: String },
    /// Back to the default.
    Delete { name: String },
    /// Add items to a list config (`cleanup.policy`, the throttled-replica lists).
    Append { name: String, value: String },
    /// Remove items from a list config.
    Subtract { name: String, value: String },
}

fn is_list(def: &ConfigDef) -> bool {
    matches!(def.kind, ConfigType::ReplicaList) || def.name == "cleanup.policy"
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The explicit configs after `ops`, in order, each checked; nothing changes on an error.
pub fn apply_ops(
    configs: &BTreeMap<String, String>,
    ops: &[ConfigOp],
) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut out = configs.clone();
    for op in ops {
        let (ConfigOp::Set { name, .. }
        | ConfigOp::Delete { name }
        | ConfigOp::Append { name, .. }
        | ConfigOp::Subtract { name, .. }) = op;
        let def =
            lookup(name).ok_or_else(|| ApplyError::config(name, "", "unknown topic config"))?;
        let current = || out.get(name).map_or(def.default, String::as_str).to_owned();
        let list_op = |value: &str| {
            if is_list(def) {
                Ok(())
            } else {
                Err(ApplyError::config(
                    name,
                    value,
                    "APPEND and SUBTRACT need a list config",
                ))
            }
        };
        match op {
            ConfigOp::Set { value, .. } => {
                validate(name, value)?;
                out.insert(name.clone(), value.trim().to_owned());
            }
            ConfigOp::Delete { .. } => {
                out.remove(name);
            }
            ConfigOp::Append { value, .. } => {
                list_op(value)?;
                let mut items = list_items(&current());
                for item in list_items(value) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                let joined = items.join(",");
                validate(name, &joined)?;
                out.insert(name.clone(), joined);
            }
            ConfigOp::Subtract { value, .. } => {
                list_op(value)?;
                let remove = list_items(value);
                let items: Vec<String> = list_items(&current())
                    .into_iter()
                    .filter(|i| !remove.contains(i))
                    .collect();
                let joined = items.join(",");
                validate(name, &joined)?;
                out.insert(name.clone(), joined);
            }
        }
    }
    Ok(out)
}

/// Whether `topic` sets `unclean.leader.election.enable` (Kafka's booleans ignore case):
/// a partition with no live in-sync replica may then elect any live replica.
pub fn unclean_leader_election(topic: &TopicMeta) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Every topic config of `topic` as `(name, value, is_default)`, sorted by name.
pub fn effective(topic: &TopicMeta) -> Vec<(String, String, bool)> {
    CONFIGS
        .iter()
        .map(|d| match topic.configs.get(d.name) {
            Some(v) => (d.name.to_owned(), v.clone(), false),
            None => (d.name.to_owned(), d.default.to_owned(), true),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn table_is_sorted_and_defaults_are_valid() {
        for pair in CONFIGS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} out of order", pair[1].name);
        }
        for (name, value) in defaults() {
            validate(name, value).unwrap_or_else(|e| panic!("default of {name}: {e}"));
        }
    }

    #[test]
    fn documented_defaults() {
        let defaults: BTreeMap<_, _> = defaults().collect();
        for (name, value) in [
            ("cleanup.policy", "delete"),
            ("compression.type", "producer"),
            ("delete.retention.ms", "86400000"),
            ("file.delete.delay.ms", "60000"),
            ("flush.messages", "9223372036854775807"),
            ("flush.ms", "9223372036854775807"),
            ("index.interval.bytes", "4096"),
            ("max.compaction.lag.ms", "9223372036854775807"),
            ("max.message.bytes", "1048588"),
            ("message.timestamp.type", "CreateTime"),
            ("message.timestamp.before.max.ms", "9223372036854775807"),
            ("message.timestamp.after.max.ms", "3600000"),
            ("min.cleanable.dirty.ratio", "0.5"),
            ("min.compaction.lag.ms", "0"),
            ("min.insync.replicas", "1"),
            ("retention.bytes", "-1"),
            ("retention.ms", "604800000"),
            ("segment.bytes", "1073741824"),
            ("segment.ms", "604800000"),
            ("segment.index.bytes", "10485760"),
            ("segment.jitter.ms", "0"),
            ("unclean.leader.election.enable", "false"),
            ("preallocate", "false"),
        ] {
            assert_eq!(defaults.get(name), Some(&value), "{name}");
        }
    }

    #[test]
    fn validate_cases() {
        for (name, value, ok) in [
            ("cleanup.policy", "compact", true),
            ("cleanup.policy", "compact,delete", true),
            ("cleanup.policy", "delete,compact", true),
            ("cleanup.policy", "shred", false),
            ("compression.type", "zstd", true),
            ("compression.type", "brotli", false),
            ("compression.gzip.level", "-1", true),
            ("compression.gzip.level", "0", false),
            ("compression.gzip.level", "9", true),
            ("retention.ms", "-1", true),
            ("retention.ms", "-2", false),
            ("retention.ms", " 1000 ", true),
            ("retention.ms", "1e3", false),
            ("retention.bytes", "-1", true),
            ("segment.bytes", "14", true),
            ("segment.bytes", "13", false),
            ("segment.bytes", "4294967296", false),
            ("segment.ms", "0", false),
            ("min.insync.replicas", "0", false),
            ("min.insync.replicas", "2", true),
            ("min.cleanable.dirty.ratio", "0.9", true),
            ("min.cleanable.dirty.ratio", "1.5", false),
            ("min.cleanable.dirty.ratio", "NaN", false),
            ("message.timestamp.type", "LogAppendTime", true),
            ("message.timestamp.type", "logappendtime", false),
            ("unclean.leader.election.enable", "TRUE", true),
            ("unclean.leader.election.enable", "yes", false),
            ("leader.replication.throttled.replicas", "*", true),
            ("leader.replication.throttled.replicas", "0:1,1:2", true),
            ("leader.replication.throttled.replicas", "0-1", false),
            ("flush.messages", "0", false),
            ("no.such.config", "1", false),
        ] {
            let got = validate(name, value);
            assert_eq!(got.is_ok(), ok, "{name}={value}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.kafka_error_code(), 40);
            }
        }
    }

    #[test]
    fn apply_ops_cases() {
        let set = |n: &str, v: &str| ConfigOp::Set {
            name: n.into(),
            value: v.into(),
        };
        let append = |n: &str, v: &str| ConfigOp::Append {
            name: n.into(),
            value: v.into(),
        };
        let subtract = |n: &str, v: &str| ConfigOp::Subtract {
            name: n.into(),
            value: v.into(),
        };
        let base = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        let got = apply_ops(
            &base,
            &[
                set("retention.bytes", "5"),
                ConfigOp::Delete {
                    name: "retention.ms".into(),
                },
                append("cleanup.policy", "compact"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            BTreeMap::from([
                ("retention.bytes".to_owned(), "5".to_owned()),
                ("cleanup.policy".to_owned(), "delete,compact".to_owned()),
            ])
        );
        let got = apply_ops(&got, &[subtract("cleanup.policy", "delete")]).unwrap();
        assert_eq!(got["cleanup.policy"], "compact");
        for bad in [
            vec![set("retention.ms", "x")],
            vec![set("no.such", "1")],
            vec![append("retention.ms", "5")],
            vec![subtract("cleanup.policy", "delete,compact")],
            vec![ConfigOp::Delete {
                name: "nope".into(),
            }],
        ] {
            let e = apply_ops(&base, &bad).unwrap_err();
            assert_eq!(e.kafka_error_code(), 40, "{bad:?}");
        }
    }

    #[test]
    fn effective_marks_defaults() {
        let topic = TopicMeta {
            id: [7; 16],
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
        };
        let eff = effective(&topic);
        assert_eq!(eff.len(), CONFIGS.len());
        assert!(eff.contains(&("retention.ms".into(), "1000".into(), false)));
        assert!(eff.contains(&("segment.ms".into(), "604800000".into(), true)));
    }
}
