//! Broker settings, by their Kafka names.
//!
//! Every setting has a Kafka-style name, a default and a type; `--set NAME=VALUE` overrides it.
//! The typed fields are what the broker reads; `entries()` is what DescribeConfigs shows.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Long,
    Bool,
    /// Checked where the typed field is built.
    Text,
}

/// (name, default, kind): the settings `--set` accepts.
const SETTINGS: &[(&str, &str, Kind)] = &[
    ("node.id", "1", Kind::Int),
    ("num.partitions", "1", Kind::Int),
    ("default.replication.factor", "3", Kind::Int),
    ("auto.create.topics.enable", "true", Kind::Bool),
    ("socket.request.max.bytes", "104857600", Kind::Int),
    ("queued.max.requests", "500", Kind::Int),
    ("queued.max.request.bytes", "104857600", Kind::Long),
    ("max.connections", "2147483647", Kind::Int),
    ("max.connections.per.ip", "2147483647", Kind::Int),
    ("max.connections.per.ip.overrides", "", Kind::Text),
    ("message.max.bytes", "1048588", Kind::Int),
    ("fetch.max.bytes", "57671680", Kind::Int),
    ("log.segment.bytes", "1073741824", Kind::Long),
    ("log.index.interval.bytes", "4096", Kind::Int),
    ("log.retention.ms", "604800000", Kind::Long),
    ("log.retention.bytes", "-1", Kind::Long),
    ("log.retention.check.interval.ms", "300000", Kind::Long),
    ("log.roll.ms", "604800000", Kind::Long),
    ("log.cache.bytes.per.partition", "8388608", Kind::Long),
    ("log.cache.bytes.per.shard", "134217728", Kind::Long),
    ("log.read.ahead.bytes.per.shard", "268435456", Kind::Long),
    (
        "log.cleaner.io.max.bytes.per.second",
        "67108864",
        Kind::Long,
    ),
    ("log.cleaner.dedupe.buffer.size", "33554432", Kind::Long),
    ("log.cleaner.min.cleanable.ratio", "0.5", Kind::Text),
    ("offsets.topic.num.partitions", "50", Kind::Int),
    ("offsets.topic.replication.factor", "3", Kind::Int),
    ("offsets.retention.minutes", "10080", Kind::Int),
    ("offsets.retention.check.interval.ms", "600000", Kind::Long),
    ("offsets.commit.timeout.ms", "5000", Kind::Int),
    ("offset.metadata.max.bytes", "4096", Kind::Int),
    ("producer.id.expiration.ms", "86400000", Kind::Long),
    (
        "producer.id.expiration.check.interval.ms",
        "600000",
        Kind::Long,
    ),
    ("group.initial.rebalance.delay.ms", "3000", Kind::Int),
    ("group.min.session.timeout.ms", "6000", Kind::Int),
    ("group.max.session.timeout.ms", "1800000", Kind::Int),
    ("broker.session.timeout.ms", "9000", Kind::Int),
    ("broker.heartbeat.interval.ms", "2000", Kind::Int),
    ("min.insync.replicas", "1", Kind::Int),
    ("replica.lag.time.max.ms", "30000", Kind::Long),
    ("replica.fetch.wait.max.ms", "500", Kind::Int),
    ("replica.fsync.before.ack", "true", Kind::Bool),
    ("auto.leader.rebalance.enable", "true", Kind::Bool),
    ("leader.imbalance.check.interval.seconds", "300", Kind::Long),
    ("leader.imbalance.per.broker.percentage", "10", Kind::Int),
    // Listeners (`listeners.rs`); an empty `listeners` means the `listen` node option.
    ("listeners", "", Kind::Text),
    ("advertised.listeners", "", Kind::Text),
    (
        "listener.security.protocol.map",
        crate::listeners::DEFAULT_PROTOCOL_MAP,
        Kind::Text,
    ),
    ("inter.broker.listener.name", "", Kind::Text),
    // SASL between brokers (`inter_broker.rs`): Kafka's default, GSSAPI, is not served.
    (
        "sasl.mechanism.inter.broker.protocol",
        crate::inter_broker::DEFAULT_MECHANISM,
        Kind::Text,
    ),
    // The controller port's listener (`cluster/security.rs`): its name in
    // `listener.security.protocol.map` and the SASL mechanism its clients use.
    ("controller.listener.names", "", Kind::Text),
    (
        "sasl.mechanism.controller.protocol",
        crate::cluster::security::DEFAULT_MECHANISM,
        Kind::Text,
    ),
    // TLS of the SSL and SASL_SSL listeners (`tls_config.rs`; per listener with the prefix
    // `listener.name.<name>.`).
    ("ssl.keystore.type", "PEM", Kind::Text),
    ("ssl.keystore.location", "", Kind::Text),
    ("ssl.keystore.certificate.chain", "", Kind::Text),
    ("ssl.keystore.key", "", Kind::Text),
    ("ssl.keystore.password", "", Kind::Text),
    ("ssl.key.password", "", Kind::Text),
    ("ssl.truststore.type", "PEM", Kind::Text),
    ("ssl.truststore.location", "", Kind::Text),
    ("ssl.truststore.certificates", "", Kind::Text),
    ("ssl.truststore.password", "", Kind::Text),
    ("ssl.client.auth", "none", Kind::Text),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3", Kind::Text),
    ("ssl.principal.mapping.rules", "DEFAULT", Kind::Text),
    ("authorizer.class.name", "", Kind::Text),
    ("super.users", "", Kind::Text),
    ("allow.everyone.if.no.acl.found", "false", Kind::Bool),
];

/// Settings whose values are secrets: DescribeConfigs answers them as Kafka does (no value,
/// `is_sensitive`), and the start line does not print them.
pub fn is_sensitive(name: &str) -> bool {
    let setting = match name.strip_prefix("listener.name.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, setting)| setting),
        None => name,
    };
    matches!(
        setting,
        "ssl.keystore.key"
            | "ssl.key.password"
            | "ssl.keystore.password"
            | "ssl.truststore.password"
    )
}

/// A `--set` that cannot be applied.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    UnknownSetting(String),
    InvalidValue {
        name: String,
        value: String,
    },
    Malformed(String),
    /// A setting whose value may be secret: the reason names the setting, not the value.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownSetting(name) => write!(f, "unknown setting '{name}'"),
            ConfigError::InvalidValue { name, value } => {
                write!(f, "invalid value '{value}' for setting '{name}'")
            }
            ConfigError::Malformed(arg) => write!(f, "expected NAME=VALUE, got '{arg}'"),
            ConfigError::Invalid(reason) => write!(f, "invalid setting: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The broker's effective settings.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    overrides: BTreeMap<String, String>,
    pub node_id: i32,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub socket_request_max_bytes: usize,
    pub queued_max_requests: usize,
    /// Bytes of request frames the node's connections hold between reading a frame and
    /// sending its reply (Kafka's node-wide bound), split evenly over the shards.
    pub queued_max_request_bytes: usize,
    /// `max.connections`, `max.connections.per.ip` and its overrides.
    pub connection_quotas: net::quotas::QuotaSettings,
    pub message_max_bytes: usize,
    /// The most record bytes one Fetch answer carries, whatever the request's `max_bytes`
    /// (Kafka's `fetch.max.bytes`); the first batch still goes when it alone is larger.
    pub fetch_max_bytes: usize,
    pub log_segment_bytes: u64,
    pub log_index_interval_bytes: usize,
    pub log_cache_bytes_per_partition: usize,
    /// Bound on the tail caches of all partitions of one shard: each partition's cache gets at
    /// most an equal share of it (and at most `log_cache_bytes_per_partition`).
    pub log_cache_bytes_per_shard: usize,
    /// Bound on the catch-up read-ahead windows of all segment files of one shard (3 MiB
    /// per reader, see `storage::segment::set_read_ahead_bytes_max`).
    pub log_read_ahead_bytes_per_shard: usize,
    /// Compaction's IO budget on one shard: bytes written per second at most.
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// Memory of one compaction pass's key map (keys past it wait for the next pass).
    pub log_cleaner_dedupe_buffer_size: usize,
    /// Default `min.cleanable.dirty.ratio`, in millionths (`storage::DIRTY_RATIO_SCALE`).
    pub log_cleaner_min_cleanable_ratio: u64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: u64,
    pub log_roll_ms: i64,
    pub offsets_topic_num_partitions: i32,
    pub offsets_retention_minutes: i64,
    pub offsets_retention_check_interval_ms: i64,
    /// How long a group write (commit or group metadata) waits for the in-sync replicas of
    /// its `__consumer_offsets` partition before the request fails.
    pub offsets_commit_timeout_ms: u64,
    pub offset_metadata_max_bytes: usize,
    /// An idempotent producer's state on a partition is dropped this long after its last
    /// batch's timestamp (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// How often the maintenance task looks for expired producer state.
    pub producer_id_expiration_check_interval_ms: u64,
    pub group_initial_rebalance_delay_ms: i64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// `--unsafe-no-fsync`: acks=all does not wait for fdatasync (development only).
    pub fsync: bool,
    /// Replicas of `__consumer_offsets` (capped at the live brokers).
    pub offsets_topic_replication_factor: i16,
    /// The broker default of the topic config `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// A follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// true (default): a follower fdatasyncs what it fetched before it fetches again, so
    /// acks=all means durable on every in-sync replica; false: written (page cache) on the
    /// followers, Kafka's behaviour, for benchmarks. The leader always syncs its own copy.
    pub replica_fsync_before_ack: bool,
    /// How long a leader holds a follower's fetch that finds no records.
    pub replica_fetch_wait_max_ms: u64,
    /// The active controller moves leadership back to preferred replicas on its own.
    pub auto_leader_rebalance_enable: bool,
    /// How often the active controller checks the leader imbalance.
    pub leader_imbalance_check_interval_seconds: u64,
    /// A broker's share (0-100) of the partitions it prefers but does not lead, above
    /// which they are moved back.
    pub leader_imbalance_per_broker_percentage: u32,
    /// SASL mechanisms and PLAIN users, per listener (`sasl.enabled.mechanisms`,
    /// `[listener.name.<listener>.<mechanism>.]sasl.jaas.config`); outside the settings
    /// table so DescribeConfigs never shows the JAAS text.
    pub sasl: crate::sasl::SaslSettings,
    /// The authorizer (`authorizer.class.name`, `super.users`,
    /// `allow.everyone.if.no.acl.found`); `None`: off, everything allowed.
    pub authorizer: Option<crate::authorizer::AuthorizerConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::from_overrides(BTreeMap::new()).expect("defaults are valid")
    }
}

impl BrokerConfig {
    /// Applies `NAME=VALUE` overrides (in order; later ones win) on top of the defaults.
    pub fn with_overrides<'a>(
        args: impl IntoIterator<Item = &'a str>,
    ) -> Result<BrokerConfig, ConfigError> {
        let mut overrides = BTreeMap::new();
        for arg in args {
            let (name, value) = arg
                .split_once('=')
                .ok_or_else(|| ConfigError::Malformed(arg.to_string()))?;
            let (name, value) = (name.trim(), value.trim());
            let kind = kind_of(name).ok_or_else(|| ConfigError::UnknownSetting(name.into()))?;
            if !valid(kind, value) {
                return Err(ConfigError::InvalidValue {
                    name: name.into(),
                    value: value.into(),
                });
            }
            overrides.insert(name.to_string(), value.to_string());
        }
        Self::from_overrides(overrides)
    }

    fn from_overrides(overrides: BTreeMap<String, String>) -> Result<BrokerConfig, ConfigError> {
        let get = |name: &str| -> &str {
            overrides
                .get(name)
                .map(String::as_str)
                .or_else(|| default_of(name))
                .expect("setting is in SETTINGS")
        };
        let int = |name: &str, min: i64, max: i64| -> Result<i64, ConfigError> {
            match get(name).parse::<i64>() {
                Ok(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(ConfigError::InvalidValue {
                    name: name.into(),
                    value: get(name).into(),
                }),
            }
        };
        Ok(BrokerConfig {
            node_id: int("node.id", 0, i32::MAX as i64)? as i32,
            num_partitions: int("num.partitions", 1, 100_000)? as i32,
            default_replication_factor: int("default.replication.factor", 1, i16::MAX as i64)?
                as i16,
            auto_create_topics_enable: get("auto.create.topics.enable") == "true",
            socket_request_max_bytes: int("socket.request.max.bytes", 1024, i32::MAX as i64)?
                as usize,
            queued_max_requests: int("queued.max.requests", 1, 100_000)? as usize,
            queued_max_request_bytes: match int("queued.max.request.bytes", -1, i64::MAX)? {
                -1 => usize::MAX,
                0 => {
                    return Err(ConfigError::InvalidValue {
                        name: "queued.max.request.bytes".into(),
                        value: "0".into(),
                    })
                }
                bytes => bytes as usize,
            },
            connection_quotas: net::quotas::QuotaSettings {
                max_connections: int("max.connections", 0, i32::MAX as i64)? as usize,
                max_connections_per_ip: int("max.connections.per.ip", 0, i32::MAX as i64)? as usize,
                per_ip_overrides: net::quotas::parse_overrides(get(
                    "max.connections.per.ip.overrides",
                ))
                .map_err(|_| ConfigError::InvalidValue {
                    name: "max.connections.per.ip.overrides".into(),
                    value: get("max.connections.per.ip.overrides").into(),
                })?,
            },
            message_max_bytes: int("message.max.bytes", 0, i32::MAX as i64)? as usize,
            fetch_max_bytes: int("fetch.max.bytes", 1024, i32::MAX as i64)? as usize,
            log_segment_bytes: int("log.segment.bytes", 14, i64::MAX)? as u64,
            log_index_interval_bytes: int("log.index.interval.bytes", 1, i32::MAX as i64)? as usize,
            log_cache_bytes_per_partition: int("log.cache.bytes.per.partition", 0, i64::MAX)?
                as usize,
            log_cache_bytes_per_shard: int("log.cache.bytes.per.shard", 0, i64::MAX)? as usize,
            log_read_ahead_bytes_per_shard: int("log.read.ahead.bytes.per.shard", 0, i64::MAX)?
                as usize,
            log_cleaner_io_max_bytes_per_second: int(
                "log.cleaner.io.max.bytes.per.second",
                1,
                i64::MAX,
            )? as u64,
            log_cleaner_dedupe_buffer_size: int(
                "log.cleaner.dedupe.buffer.size",
                1 << 16,
                i64::MAX,
            )? as usize,
            log_cleaner_min_cleanable_ratio: dirty_ratio(get("log.cleaner.min.cleanable.ratio"))
                .ok_or_else(|| ConfigError::InvalidValue {
                    name: "log.cleaner.min.cleanable.ratio".into(),
                    value: get("log.cleaner.min.cleanable.ratio").into(),
                })?,
            log_retention_ms: int("log.retention.ms", -1, i64::MAX)?,
            log_retention_bytes: int("log.retention.bytes", i64::MIN, i64::MAX)?,
            log_retention_check_interval_ms: int("log.retention.check.interval.ms", 1, i64::MAX)?
                as u64,
            log_roll_ms: int("log.roll.ms", 1, i64::MAX)?,
            offsets_topic_num_partitions: int("offsets.topic.num.partitions", 1, 100_000)? as i32,
            offsets_retention_minutes: int("offsets.retention.minutes", 1, i32::MAX as i64)?,
            offsets_retention_check_interval_ms: int(
                "offsets.retention.check.interval.ms",
                1,
                i64::MAX,
            )?,
            offsets_commit_timeout_ms: int("offsets.commit.timeout.ms", 1, i32::MAX as i64)? as u64,
            producer_id_expiration_ms: int("producer.id.expiration.ms", 1, i64::MAX)?,
            producer_id_expiration_check_interval_ms: int(
                "producer.id.expiration.check.interval.ms",
                1,
                i64::MAX,
            )? as u64,
            // Stored as an i16-length string in __consumer_offsets.
            offset_metadata_max_bytes: int("offset.metadata.max.bytes", 0, i16::MAX as i64)?
                as usize,
            group_initial_rebalance_delay_ms: int(
                "group.initial.rebalance.delay.ms",
                0,
                i32::MAX as i64,
            )?,
            group_min_session_timeout_ms: int("group.min.session.timeout.ms", 0, i32::MAX as i64)?
                as i32,
            group_max_session_timeout_ms: int("group.max.session.timeout.ms", 0, i32::MAX as i64)?
                as i32,
            fsync: true,
            min_insync_replicas: int("min.insync.replicas", 1, i32::MAX as i64)? as i32,
            offsets_topic_replication_factor: int(
                "offsets.topic.replication.factor",
                1,
                i16::MAX as i64,
            )? as i16,
            replica_lag_time_max_ms: int("replica.lag.time.max.ms", 1, i64::MAX)? as u64,
            replica_fetch_wait_max_ms: int("replica.fetch.wait.max.ms", 0, i32::MAX as i64)? as u64,
            replica_fsync_before_ack: get("replica.fsync.before.ack") == "true",
            auto_leader_rebalance_enable: get("auto.leader.rebalance.enable") == "true",
            leader_imbalance_check_interval_seconds: int(
                "leader.imbalance.check.interval.seconds",
                1,
                i32::MAX as i64,
            )? as u64,
            leader_imbalance_per_broker_percentage: int(
                "leader.imbalance.per.broker.percentage",
                0,
                100,
            )? as u32,
            sasl: crate::sasl::SaslSettings::from_overrides(&overrides)
                .map_err(ConfigError::Invalid)?,
            authorizer: crate::authorizer::AuthorizerConfig::parse(
                get("authorizer.class.name"),
                get("super.users"),
                get("allow.everyone.if.no.acl.found") == "true",
            )
            .map_err(|_| ConfigError::InvalidValue {
                name: "authorizer.class.name / super.users".into(),
                value: format!("{} / {}", get("authorizer.class.name"), get("super.users")),
            })?,
            overrides,
        })
    }

    /// The effective value of a setting by its Kafka name (`None` for an unknown name, or a
    /// per-listener `listener.name.<name>.ssl.*` that is not set).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.overrides
            .get(name)
            .map(String::as_str)
            .or_else(|| default_of(name))
    }

    /// The listener settings as text (`listeners.rs` checks them together).
    pub fn listener_settings(&self) -> crate::listeners::ListenerSettings<'_> {
        let get = |name| self.value(name).expect("a listener setting");
        crate::listeners::ListenerSettings {
            listeners: get("listeners"),
            advertised_listeners: get("advertised.listeners"),
            protocol_map: get("listener.security.protocol.map"),
            inter_broker_listener_name: get("inter.broker.listener.name"),
        }
    }

    /// The per-listener settings given (`listener.name.<name>.ssl.*`), by name.
    pub fn listener_overrides(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.overrides
            .iter()
            .filter(|(name, _)| crate::tls_config::is_listener_ssl_setting(name))
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// Every setting with its effective value and whether it is the default.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str, bool)> + '_ {
        SETTINGS
            .iter()
            .map(|(name, default, _)| match self.overrides.get(*name) {
                Some(value) => (*name, value.as_str(), false),
                None => (*name, *default, true),
            })
    }
}

/// Every setting `--set` accepts: (name, default, whether it is a boolean), in table order.
pub fn settings() -> impl Iterator<Item = (&'static str, &'static str, bool)> {
    SETTINGS
        .iter()
        .map(|(name, default, kind)| (*name, *default, *kind == Kind::Bool))
}

fn kind_of(name: &str) -> Option<Kind> {
    if crate::tls_config::is_listener_ssl_setting(name) {
        return Some(Kind::Text);
    }
    SETTINGS
        .iter()
        .find(|s| s.0 == name)
        .map(|s| s.2)
        .or_else(|| crate::sasl::is_setting(name).then_some(Kind::Text))
}

fn default_of(name: &str) -> Option<&'static str> {
    SETTINGS.iter().find(|s| s.0 == name).map(|s| s.1)
}

fn valid(kind: Kind, value: &str) -> bool {
    match kind {
        Kind::Int => value.parse::<i32>().is_ok(),
        Kind::Long => value.parse::<i64>().is_ok(),
        Kind::Bool => value == "true" || value == "false",
        Kind::Text => true,
    }
}

/// A cleanable ratio (`0.5`) in millionths, as the log keeps it; `None` outside [0, 1].
pub fn dirty_ratio(text: &str) -> Option<u64> {
    let ratio: f64 = text.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&ratio)
        .then(|| (ratio * storage::DIRTY_RATIO_SCALE as f64).round() as u64)
}

#[cfg(test)]
mod tests {

    #[test]
    fn cleanable_ratios_are_kept_in_millionths_and_checked() {
        assert_eq!(dirty_ratio("0.5"), Some(500_000));
        assert_eq!(dirty_ratio(" 0 "), Some(0));
        assert_eq!(dirty_ratio("1"), Some(1_000_000));
        for bad in ["1.5", "-0.1", "NaN", "half", ""] {
            assert_eq!(dirty_ratio(bad), None, "{bad}");
        }
    }
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let c = BrokerConfig::default();
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert!(c.entries().all(|(_, _, is_default)| is_default));
    }

    #[test]
    fn overrides_apply_and_are_reported() {
        let c =
            BrokerConfig::with_overrides(["num.partitions=4", "auto.create.topics.enable=false"])
                .unwrap();
        assert_eq!(c.num_partitions, 4);
        assert!(!c.auto_create_topics_enable);
        let (_, value, is_default) = c.entries().find(|e| e.0 == "num.partitions").unwrap();
        assert_eq!((value, is_default), ("4", false));
    }

    #[test]
    fn queued_request_bytes_take_kafkas_unbounded_minus_one_and_refuse_zero() {
        assert_eq!(
            BrokerConfig::default().queued_max_request_bytes,
            104_857_600
        );
        let c = BrokerConfig::with_overrides(["queued.max.request.bytes=-1"]).unwrap();
        assert_eq!(c.queued_max_request_bytes, usize::MAX);
        let c = BrokerConfig::with_overrides(["queued.max.request.bytes=65536"]).unwrap();
        assert_eq!(c.queued_max_request_bytes, 65536);
        for bad in ["0", "-2"] {
            let arg = format!("queued.max.request.bytes={bad}");
            assert_eq!(
                BrokerConfig::with_overrides([arg.as_str()]).unwrap_err(),
                ConfigError::InvalidValue {
                    name: "queued.max.request.bytes".into(),
                    value: bad.into(),
                }
            );
        }
    }

    #[test]
    fn leader_rebalancing_settings_follow_kafka() {
        let c = BrokerConfig::default();
        assert!(c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 300);
        assert_eq!(c.leader_imbalance_per_broker_percentage, 10);
        let c = BrokerConfig::with_overrides([
            "auto.leader.rebalance.enable=false",
            "leader.imbalance.check.interval.seconds=2",
            "leader.imbalance.per.broker.percentage=0",
        ])
        .unwrap();
        assert!(!c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 2);
        assert_eq!(c.leader_imbalance_per_broker_percentage, 0);
        for bad in [
            "leader.imbalance.per.broker.percentage=101",
            "leader.imbalance.per.broker.percentage=-1",
            "leader.imbalance.check.interval.seconds=0",
        ] {
            assert!(BrokerConfig::with_overrides([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_overrides_are_refused() {
        for (arg, want) in [
            ("nope=1", ConfigError::UnknownSetting("nope".into())),
            (
                "num.partitions",
                ConfigError::Malformed("num.partitions".into()),
            ),
            (
                "num.partitions=x",
                ConfigError::InvalidValue {
                    name: "num.partitions".into(),
                    value: "x".into(),
                },
            ),
            (
                "num.partitions=0",
                ConfigError::InvalidValue {
                    name: "num.partitions".into(),
                    value: "0".into(),
                },
            ),
            (
                "auto.create.topics.enable=yes",
                ConfigError::InvalidValue {
                    name: "auto.create.topics.enable".into(),
                    value: "yes".into(),
                },
            ),
        ] {
            assert_eq!(
                BrokerConfig::with_overrides([arg]).unwrap_err(),
                want,
                "{arg}"
            );
        }
    }
}
