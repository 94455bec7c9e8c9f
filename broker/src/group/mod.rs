//! Consumer groups (Kafka's classic group protocol) and committed offsets.
//!
//! - [`machine`]: the group coordinator state machine of one shard. No IO, no clock: every
//!   call takes the current time, and delayed answers (JoinGroup, SyncGroup) come back as
//!   [`machine::Effects`] addressed to the caller's token. Unit-tested by stepping it.
//! - [`records`]: Kafka's `__consumer_offsets` key and value formats, and the record batches
//!   that carry them. Pure.
//! - [`runtime`]: the glue on a glommio shard: placement of a group on the shard that owns its
//!   `__consumer_offsets` partition, persistence (append, acks=all) of the records the
//!   machine emits and the end of each group's pending write (done or failed), replay at
//!   startup, and the timer that ticks the machine.
//!
//! Architecture invariant: a group lives on exactly one shard, the owner of partition
//! `java_hash(group) % partitions` of `__consumer_offsets`; only that shard's machine touches
//! it, and only that shard appends its records.

pub mod machine;
pub mod records;
pub mod runtime;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka error codes of the group APIs.
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_REQUEST: i16 = 42;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const INVALID_FETCH_SIZE: i16 = 4;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
}

/// The answer to a group request whose `__consumer_offsets` write failed with
/// `append_error` (Kafka's `appendGroupMetadataErrorToResponseError`, which the classic
/// protocol's JoinGroup, SyncGroup and OffsetCommit share in Kafka 4.x): the client looks the
/// coordinator up again, or gives up on an error it cannot retry.
pub fn group_write_error(append_error: i16) -> i16 {
    match append_error {
        // NOT_ENOUGH_REPLICAS_AFTER_APPEND: Kafka's older `storeGroup` mapping; Spate answers
        // it when the ISR shrinks below min.insync.replicas while the write waits.
        code::UNKNOWN_TOPIC_OR_PARTITION
        | code::NOT_ENOUGH_REPLICAS
        | code::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | code::REQUEST_TIMED_OUT => code::COORDINATOR_NOT_AVAILABLE,
        code::NOT_LEADER_OR_FOLLOWER | code::KAFKA_STORAGE_ERROR => code::NOT_COORDINATOR,
        code::MESSAGE_TOO_LARGE | code::RECORD_LIST_TOO_LARGE | code::INVALID_FETCH_SIZE => {
            code::UNKNOWN_SERVER_ERROR
        }
        other => other,
    }
}

/// The `__consumer_offsets` partition of a group: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, so a group lands where Kafka would put it.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "the offsets topic has partitions");
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (hash & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hash_code() {
        // "group".hashCode() == 98629247 in Java; "".hashCode() == 0.
        assert_eq!(partition_for("group", 50), 98629247 % 50);
        assert_eq!(partition_for("", 50), 0);
        // A hash with the sign bit set: Utils.abs masks it off.
        let h = "polygenelubricants"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
        assert!(h < 0);
        assert_eq!(
            partition_for("polygenelubricants", 50),
            (h & 0x7fff_ffff) % 50
        );
    }

    #[test]
    fn failed_group_writes_answer_kafkas_codes() {
        for (append, answer) in [
            (code::REQUEST_TIMED_OUT, code::COORDINATOR_NOT_AVAILABLE),
            (code::NOT_ENOUGH_REPLICAS, code::COORDINATOR_NOT_AVAILABLE),
            (
                code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                code::COORDINATOR_NOT_AVAILABLE,
            ),
            (
                code::UNKNOWN_TOPIC_OR_PARTITION,
                code::COORDINATOR_NOT_AVAILABLE,
            ),
            (code::NOT_LEADER_OR_FOLLOWER, code::NOT_COORDINATOR),
            (code::KAFKA_STORAGE_ERROR, code::NOT_COORDINATOR),
            (code::MESSAGE_TOO_LARGE, code::UNKNOWN_SERVER_ERROR),
            (code::RECORD_LIST_TOO_LARGE, code::UNKNOWN_SERVER_ERROR),
            (code::INVALID_FETCH_SIZE, code::UNKNOWN_SERVER_ERROR),
            (code::UNKNOWN_SERVER_ERROR, code::UNKNOWN_SERVER_ERROR),
        ] {
            assert_eq!(group_write_error(append), answer, "append error {append}");
        }
    }
}
