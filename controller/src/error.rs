//! Errors of the controller, each mapped to a Kafka protocol error code.

use std::fmt;

/// Why a metadata command was refused or could not be made durable.
#[derive(Debug)]
pub enum ApplyError {
    InvalidTopicName(String),
    TopicAlreadyExists(String),
    UnknownTopic(String),
    InvalidPartitions(i32),
    /// The replication factor is out of range or cannot be reached; Kafka's message.
    InvalidReplicationFactor(String),
    /// A partition cannot be placed: no broker is registered and unfenced.
    NoLiveBrokers,
    /// AlterPartition from a leader whose leader epoch is not the partition's.
    FencedLeaderEpoch(String),
    /// AlterPartition against a partition epoch that is not the current one.
    InvalidUpdateVersion(String),
    /// AlterPartition from a broker that does not lead the partition.
    NotLeaderOrFollower(String),
    /// AlterPartition adding a replica that may not join the ISR (fenced).
    IneligibleReplica(String),
    /// A preferred-leader election where the preferred replica leads already.
    ElectionNotNeeded(String),
    /// A preferred-leader election where the preferred replica is fenced or out of sync.
    PreferredLeaderNotAvailable(String),
    /// An unclean election where no replica is live.
    EligibleLeadersNotAvailable(String),
    InvalidConfig {
        name: String,
        value: String,
        reason: String,
    },
    /// A malformed command outside the cases above (e.g. a bad producer id count).
    InvalidRequest(String),
    /// The metadata log or a snapshot could not be read or written.
    Storage {
        context: String,
        source: std::io::Error,
    },
    /// Refused by the active controller of a multi-node cluster: its Kafka error code and
    /// message.
    Refused {
        code: i16,
        message: String,
    },
    /// No active controller answered in time (multi-node cluster).
    Unavailable(String),
}

impl ApplyError {
    /// The Kafka protocol error code for this error.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ApplyError::InvalidTopicName(_) => 17, // INVALID_TOPIC_EXCEPTION
            ApplyError::TopicAlreadyExists(_) => 36, // TOPIC_ALREADY_EXISTS
            ApplyError::UnknownTopic(_) => 3,      // UNKNOWN_TOPIC_OR_PARTITION
            ApplyError::InvalidPartitions(_) => 37, // INVALID_PARTITIONS
            ApplyError::InvalidReplicationFactor(_) => 38, // INVALID_REPLICATION_FACTOR
            ApplyError::NoLiveBrokers => 38,
            ApplyError::FencedLeaderEpoch(_) => 74, // FENCED_LEADER_EPOCH
            ApplyError::InvalidUpdateVersion(_) => 95, // INVALID_UPDATE_VERSION
            ApplyError::NotLeaderOrFollower(_) => 6, // NOT_LEADER_OR_FOLLOWER
            ApplyError::IneligibleReplica(_) => 107, // INELIGIBLE_REPLICA
            ApplyError::ElectionNotNeeded(_) => 84, // ELECTION_NOT_NEEDED
            ApplyError::PreferredLeaderNotAvailable(_) => 80, // PREFERRED_LEADER_NOT_AVAILABLE
            ApplyError::EligibleLeadersNotAvailable(_) => 83, // ELIGIBLE_LEADERS_NOT_AVAILABLE
            ApplyError::InvalidConfig { .. } => 40, // INVALID_CONFIG
            ApplyError::InvalidRequest(_) => 42,    // INVALID_REQUEST
            ApplyError::Storage { .. } => 56,       // KAFKA_STORAGE_ERROR
            ApplyError::Refused { code, .. } => *code,
            ApplyError::Unavailable(_) => 7, // REQUEST_TIMED_OUT
        }
    }

    /// The active controller's refusal (its Kafka error code and message) as the proposer
    /// sees it: the typed variant where the code names one that callers tell apart (an
    /// AlterPartition refusal means the same from a remote controller as from a local one),
    /// [`ApplyError::Refused`] otherwise.
    pub fn from_refusal(code: i16, message: String) -> Self {
        match code {
            74 => ApplyError::FencedLeaderEpoch(message),
            95 => ApplyError::InvalidUpdateVersion(message),
            6 => ApplyError::NotLeaderOrFollower(message),
            107 => ApplyError::IneligibleReplica(message),
            84 => ApplyError::ElectionNotNeeded(message),
            80 => ApplyError::PreferredLeaderNotAvailable(message),
            _ => ApplyError::Refused { code, message },
        }
    }

    /// The topic to create exists already (here or at the active controller).
    pub fn is_topic_already_exists(&self) -> bool {
        self.kafka_error_code() == 36
    }

    pub(crate) fn storage(context: impl Into<String>, source: std::io::Error) -> Self {
        ApplyError::Storage {
            context: context.into(),
            source,
        }
    }

    /// A storage error for data that is present but unusable (corruption, gaps).
    pub(crate) fn corrupt(context: impl Into<String>) -> Self {
        let context = context.into();
        let source = std::io::Error::new(std::io::ErrorKind::InvalidData, context.clone());
        ApplyError::Storage { context, source }
    }

    pub(crate) fn config(name: &str, value: &str, reason: impl Into<String>) -> Self {
        ApplyError::InvalidConfig {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::InvalidTopicName(reason) => write!(f, "invalid topic name: {reason}"),
            ApplyError::TopicAlreadyExists(name) => write!(f, "topic '{name}' already exists"),
            ApplyError::UnknownTopic(name) => write!(f, "unknown topic '{name}'"),
            ApplyError::InvalidPartitions(n) => write!(f, "invalid number of partitions: {n}"),
            ApplyError::InvalidReplicationFactor(message) => write!(f, "{message}"),
            ApplyError::FencedLeaderEpoch(m)
            | ApplyError::InvalidUpdateVersion(m)
            | ApplyError::NotLeaderOrFollower(m)
            | ApplyError::IneligibleReplica(m)
            | ApplyError::ElectionNotNeeded(m)
            | ApplyError::PreferredLeaderNotAvailable(m)
            | ApplyError::EligibleLeadersNotAvailable(m) => write!(f, "{m}"),
            ApplyError::NoLiveBrokers => write!(
                f,
                "replication factor 1 cannot be reached: no broker is registered and unfenced"
            ),
            ApplyError::InvalidConfig {
                name,
                value,
                reason,
            } => write!(f, "invalid value '{value}' for config {name}: {reason}"),
            ApplyError::InvalidRequest(reason) => write!(f, "invalid request: {reason}"),
            ApplyError::Storage { context, source } => write!(f, "{context}: {source}"),
            ApplyError::Refused { message, .. } => write!(f, "{message}"),
            ApplyError::Unavailable(why) => write!(f, "no active controller: {why}"),
        }
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApplyError::Storage { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApplyError;

    #[test]
    fn a_remote_refusal_keeps_the_variant_its_code_names() {
        let typed = [74, 95, 6, 107, 84, 80];
        for code in typed {
            let e = ApplyError::from_refusal(code, format!("refused with {code}"));
            assert!(!matches!(e, ApplyError::Refused { .. }), "{code}: {e:?}");
            assert_eq!(e.kafka_error_code(), code);
            assert_eq!(e.to_string(), format!("refused with {code}"));
        }
        let other = ApplyError::from_refusal(36, "exists".into());
        assert!(matches!(other, ApplyError::Refused { code: 36, .. }));
        assert!(other.is_topic_already_exists());
    }
}
