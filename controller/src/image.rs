//! The metadata image and the pure state machine that moves it forward.
//!
//! A command is first turned into a [`MetadataRecord`] by [`MetadataImage::propose`]
//! (validation, plus every non-deterministic choice such as the topic id), then the record is
//! made durable (or, later, replicated by Raft) and finally applied with
//! [`MetadataImage::apply`], which is deterministic: every node replaying the same records
//! reaches the same image.

use std::collections::BTreeMap;

use crate::error::ApplyError;
use crate::topic_config;

/// A topic id: the 16 bytes of a UUID, never all-zero.
pub type TopicId = [u8; 16];

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 100_000;
/// Partitions of a topic created with `partitions = -1` (Kafka's `num.partitions`).
pub const DEFAULT_PARTITIONS: i32 = 1;
/// Replication factor used for `-1`; also the only one a single-node cluster accepts.
pub const DEFAULT_REPLICATION_FACTOR: i16 = 1;
/// Longest topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most topics in the cluster.
pub const TOPICS_MAX: usize = 100_000;
/// Most producer ids handed out by one allocation.
pub const PRODUCER_IDS_PER_ALLOCATION_MAX: i64 = 1_000_000;

/// Topic metadata as stored in the image, the log and snapshots.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicMeta {
    pub id: TopicId,
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Only the configs set explicitly; see [`topic_config::effective`].
    pub configs: BTreeMap<String, String>,
}

/// A request to change the metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataCommand {
    CreateTopic {
        name: String,
        /// `-1` for [`DEFAULT_PARTITIONS`].
        partitions: i32,
        /// `-1` for [`DEFAULT_REPLICATION_FACTOR`].
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    AllocateProducerIds {
        count: i64,
    },
    /// IncrementalAlterConfigs on a topic: `ops` apply in order to its explicit configs.
    AlterTopicConfigs {
        name: String,
        ops: Vec<topic_config::ConfigOp>,
    },
}

/// The result of an applied command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    TopicCreated(TopicMeta),
    TopicDeleted(TopicMeta),
    /// The topic with its new configs.
    TopicConfigsAltered(TopicMeta),
    /// Producer ids `first..first + count` now belong to the caller.
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// The cluster id was set (first record of a new metadata log).
    ClusterInitialized {
        cluster_id: String,
    },
}

/// One entry of the metadata log: the resolved, deterministic form of a command.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum MetadataRecord {
    /// First record of every metadata log.
    ClusterInit {
        cluster_id: String,
    },
    TopicCreated(TopicMeta),
    TopicDeleted {
        id: TopicId,
        name: String,
    },
    ProducerIdsAllocated {
        first: i64,
        count: i64,
    },
    /// A topic's explicit configs replaced (same id, name, partitions). Last variant: it is
    /// no larger than `TopicCreated`, so records written before it still decode.
    TopicConfigsAltered(TopicMeta),
}

/// An immutable view of the cluster metadata after `version` records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataImage {
    /// Empty until the `ClusterInit` record is applied.
    pub cluster_id: String,
    pub node_id: i32,
    /// Offset of the last applied record; 0 before the first (offsets start at 1, as Raft
    /// log indexes do).
    pub version: u64,
    pub topics: BTreeMap<String, TopicMeta>,
    pub next_producer_id: i64,
    /// Topic id -> name; maintained by [`MetadataImage::apply`] only.
    ids: BTreeMap<TopicId, String>,
}

/// Checks a topic name against Kafka's rules (`org.apache.kafka.common.internals.Topic`).
pub fn validate_topic_name(name: &str) -> Result<(), ApplyError> {
    let invalid = |reason: String| Err(ApplyError::InvalidTopicName(reason));
    if name.is_empty() {
        return invalid("topic name is illegal, it can't be empty".to_owned());
    }
    if name == "." || name == ".." {
        return invalid(format!("topic name cannot be \"{name}\""));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(format!(
            "topic name is illegal, it can't be longer than {TOPIC_NAME_BYTES_MAX} characters"
        ));
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(legal) {
        return invalid(format!(
            "topic name \"{name}\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka treats `.` and `_` as the same character when looking for colliding topic names,
/// because both map to `_` in metric names.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Whether `id` may be used as a topic id: Kafka reserves the zero and one UUIDs and avoids
/// ids whose base64 form starts with '-' (it would look like a command-line flag).
pub fn is_valid_topic_id(id: &TopicId) -> bool {
    let value = u128::from_be_bytes(*id);
    value > 1 && (id[0] >> 2) != 62
}

impl MetadataImage {
    /// The image before any record: no cluster id, no topics.
    pub fn empty(node_id: i32) -> Self {
        MetadataImage {
            cluster_id: String::new(),
            node_id,
            version: 0,
            topics: BTreeMap::new(),
            next_producer_id: 0,
            ids: BTreeMap::new(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<&TopicMeta> {
        self.ids.get(id).and_then(|name| self.topics.get(name))
    }

    /// Validates `cmd` against this image and resolves it into the record to persist.
    /// `new_topic_id` supplies candidate ids; invalid or taken ones are skipped.
    pub fn propose(
        &self,
        cmd: MetadataCommand,
        mut new_topic_id: impl FnMut() -> TopicId,
    ) -> Result<MetadataRecord, ApplyError> {
        match cmd {
            MetadataCommand::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                let (partitions, replication_factor) =
                    self.validate_create(&name, partitions, replication_factor, &configs)?;
                let id = loop {
                    let id = new_topic_id();
                    if is_valid_topic_id(&id) && !self.ids.contains_key(&id) {
                        break id;
                    }
                };
                Ok(MetadataRecord::TopicCreated(TopicMeta {
                    id,
                    name,
                    partitions,
                    replication_factor,
                    configs,
                }))
            }
            MetadataCommand::DeleteTopic { name } => match self.topics.get(&name) {
                Some(t) => Ok(MetadataRecord::TopicDeleted { id: t.id, name }),
                None => Err(ApplyError::UnknownTopic(name)),
            },
            MetadataCommand::AllocateProducerIds { count } => {
                if !(1..=PRODUCER_IDS_PER_ALLOCATION_MAX).contains(&count) {
                    return Err(ApplyError::InvalidRequest(format!(
                        "producer id count {count} not in [1, {PRODUCER_IDS_PER_ALLOCATION_MAX}]"
                    )));
                }
                let first = self.next_producer_id;
                if first.checked_add(count).is_none() {
                    return Err(ApplyError::InvalidRequest("producer ids exhausted".into()));
                }
                Ok(MetadataRecord::ProducerIdsAllocated { first, count })
            }
            MetadataCommand::AlterTopicConfigs { name, ops } => {
                let topic = self
                    .topics
                    .get(&name)
                    .ok_or(ApplyError::UnknownTopic(name))?;
                let configs = topic_config::apply_ops(&topic.configs, &ops)?;
                Ok(MetadataRecord::TopicConfigsAltered(TopicMeta {
                    configs,
                    ..topic.clone()
                }))
            }
        }
    }

    /// Returns the resolved `(partitions, replication_factor)`.
    fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(i32, i16), ApplyError> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(ApplyError::TopicAlreadyExists(name.to_owned()));
        }
        let key = collision_key(name);
        if let Some(other) = self.topics.keys().find(|t| collision_key(t) == key) {
            return Err(ApplyError::InvalidTopicName(format!(
                "topic '{name}' collides with existing topic '{other}'"
            )));
        }
        if self.topics.len() >= TOPICS_MAX {
            return Err(ApplyError::InvalidRequest(format!(
                "the cluster already has {TOPICS_MAX} topics"
            )));
        }
        let partitions = match partitions {
            -1 => DEFAULT_PARTITIONS,
            1..=PARTITIONS_MAX => partitions,
            _ => return Err(ApplyError::InvalidPartitions(partitions)),
        };
        let replication_factor = match replication_factor {
            -1 | DEFAULT_REPLICATION_FACTOR => DEFAULT_REPLICATION_FACTOR,
            _ => return Err(ApplyError::InvalidReplicationFactor(replication_factor)),
        };
        for (k, v) in configs {
            topic_config::validate(k, v)?;
        }
        Ok((partitions, replication_factor))
    }

    /// Applies the record at `offset` (which must be `version + 1`) and returns the next
    /// image. Refuses records that do not fit this image: a log holding one is corrupt.
    pub fn apply(
        &self,
        offset: u64,
        record: &MetadataRecord,
    ) -> Result<(MetadataImage, ApplyOutcome), ApplyError> {
        if offset != self.version + 1 {
            return Err(ApplyError::corrupt(format!(
                "metadata record at offset {offset} does not follow version {}",
                self.version
            )));
        }
        let initialized = !self.cluster_id.is_empty();
        if initialized == matches!(record, MetadataRecord::ClusterInit { .. }) {
            return Err(ApplyError::corrupt(format!(
                "metadata record at offset {offset}: ClusterInit must be first and only first"
            )));
        }
        let mut next = self.clone();
        next.version = offset;
        let outcome = match record {
            MetadataRecord::ClusterInit { cluster_id } => {
                if cluster_id.is_empty() {
                    return Err(ApplyError::corrupt("empty cluster id"));
                }
                next.cluster_id = cluster_id.clone();
                ApplyOutcome::ClusterInitialized {
                    cluster_id: cluster_id.clone(),
                }
            }
            MetadataRecord::TopicCreated(meta) => {
                if self.topics.contains_key(&meta.name) || self.ids.contains_key(&meta.id) {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: topic '{}' or its id already exists",
                        meta.name
                    )));
                }
                next.topics.insert(meta.name.clone(), meta.clone());
                next.ids.insert(meta.id, meta.name.clone());
                ApplyOutcome::TopicCreated(meta.clone())
            }
            MetadataRecord::TopicDeleted { id, name } => {
                match next.topics.get(name) {
                    Some(t) if t.id == *id => {}
                    _ => {
                        return Err(ApplyError::corrupt(format!(
                            "offset {offset}: deleting unknown topic '{name}'"
                        )))
                    }
                }
                next.ids.remove(id);
                let meta = next.topics.remove(name).expect("checked above");
                ApplyOutcome::TopicDeleted(meta)
            }
            MetadataRecord::TopicConfigsAltered(meta) => {
                let same = next.topics.get(&meta.name).is_some_and(|t| {
                    t.id == meta.id
                        && t.partitions == meta.partitions
                        && t.replication_factor == meta.replication_factor
                });
                if !same {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: configs of unknown topic '{}'",
                        meta.name
                    )));
                }
                next.topics.insert(meta.name.clone(), meta.clone());
                ApplyOutcome::TopicConfigsAltered(meta.clone())
            }
            MetadataRecord::ProducerIdsAllocated { first, count } => {
                let end = first.checked_add(*count);
                if *first != self.next_producer_id || *count < 1 || end.is_none() {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: producer ids {first}+{count} do not follow {}",
                        self.next_producer_id
                    )));
                }
                next.next_producer_id = end.expect("checked above");
                ApplyOutcome::ProducerIds {
                    first: *first,
                    count: *count,
                }
            }
        };
        debug_assert_eq!(next.ids.len(), next.topics.len());
        Ok((next, outcome))
    }

    /// Builds an image from snapshot contents, checking its invariants.
    pub(crate) fn from_parts(
        node_id: i32,
        cluster_id: String,
        version: u64,
        next_producer_id: i64,
        topics: Vec<TopicMeta>,
    ) -> Result<Self, ApplyError> {
        let mut image = MetadataImage::empty(node_id);
        if cluster_id.is_empty() || version == 0 || next_producer_id < 0 {
            return Err(ApplyError::corrupt("snapshot header fields out of range"));
        }
        image.cluster_id = cluster_id;
        image.version = version;
        image.next_producer_id = next_producer_id;
        for t in topics {
            if image.ids.insert(t.id, t.name.clone()).is_some() {
                return Err(ApplyError::corrupt("snapshot has a duplicate topic id"));
            }
            let name = t.name.clone();
            if image.topics.insert(name, t).is_some() {
                return Err(ApplyError::corrupt("snapshot has a duplicate topic name"));
            }
        }
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, partitions: i32, rf: i16) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
        }
    }

    /// A deterministic id source: 0x10.., 0x11.., ...
    fn ids() -> impl FnMut() -> TopicId {
        let mut n = 0x10u8;
        move || {
            n += 1;
            [n; 16]
        }
    }

    fn initialized() -> MetadataImage {
        let rec = MetadataRecord::ClusterInit {
            cluster_id: "c".into(),
        };
        MetadataImage::empty(1).apply(1, &rec).expect("init").0
    }

    /// Proposes and applies `cmd`, returning the next image and the outcome.
    fn run(
        image: &MetadataImage,
        cmd: MetadataCommand,
    ) -> Result<(MetadataImage, ApplyOutcome), ApplyError> {
        let rec = image.propose(cmd, ids())?;
        image.apply(image.version + 1, &rec)
    }

    #[test]
    fn topic_names() {
        let long = "a".repeat(249);
        let too_long = "a".repeat(250);
        for (name, ok) in [
            ("orders", true),
            ("a.b_c-D9", true),
            (long.as_str(), true),
            ("", false),
            (".", false),
            ("..", false),
            ("...", true),
            (too_long.as_str(), false),
            ("with space", false),
            ("slash/", false),
            ("ünïcode", false),
        ] {
            assert_eq!(validate_topic_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn create_validation_cases() {
        let (base, _) = run(&initialized(), create("existing.topic", 1, 1)).expect("create");
        let bad_config = MetadataCommand::CreateTopic {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::from([("segment.bytes".into(), "1".into())]),
        };
        let cases: Vec<(MetadataCommand, i16)> = vec![
            (create("ok", 3, 1), 0),
            (create("ok", -1, -1), 0),
            (create("bad name", 1, 1), 17),
            (create("existing.topic", 1, 1), 36),
            (create("existing_topic", 1, 1), 17),
            (create("t", 0, 1), 37),
            (create("t", -2, 1), 37),
            (create("t", PARTITIONS_MAX + 1, 1), 37),
            (create("t", 1, 3), 38),
            (create("t", 1, 0), 38),
            (bad_config, 40),
            (
                MetadataCommand::DeleteTopic {
                    name: "nope".into(),
                },
                3,
            ),
            (MetadataCommand::AllocateProducerIds { count: 0 }, 42),
        ];
        for (cmd, code) in cases {
            let got = run(&base, cmd.clone()).map_err(|e| e.kafka_error_code());
            match got {
                Ok(_) => assert_eq!(code, 0, "{cmd:?} succeeded"),
                Err(got) => assert_eq!(got, code, "{cmd:?}"),
            }
        }
    }

    #[test]
    fn create_delete_and_producer_ids() {
        let image = initialized();
        let (image, out) = run(&image, create("t", -1, -1)).expect("create");
        let ApplyOutcome::TopicCreated(meta) = out else {
            panic!("{out:?}")
        };
        assert_eq!((meta.partitions, meta.replication_factor), (1, 1));
        assert_eq!(image.topic_by_id(&meta.id), Some(&meta));
        assert_eq!(image.version, 2);
        let (image, out) =
            run(&image, MetadataCommand::AllocateProducerIds { count: 1000 }).expect("alloc");
        assert_eq!(
            out,
            ApplyOutcome::ProducerIds {
                first: 0,
                count: 1000
            }
        );
        let (image, out) =
            run(&image, MetadataCommand::AllocateProducerIds { count: 5 }).expect("alloc");
        assert_eq!(
            out,
            ApplyOutcome::ProducerIds {
                first: 1000,
                count: 5
            }
        );
        let (image, out) =
            run(&image, MetadataCommand::DeleteTopic { name: "t".into() }).expect("delete");
        assert_eq!(out, ApplyOutcome::TopicDeleted(meta.clone()));
        assert!(image.topic("t").is_none() && image.topic_by_id(&meta.id).is_none());
        assert_eq!((image.version, image.next_producer_id), (5, 1005));
    }

    #[test]
    fn alter_topic_configs_keeps_the_topic_and_replaces_configs() {
        let (image, out) = run(&initialized(), create("t", 2, 1)).expect("create");
        let ApplyOutcome::TopicCreated(meta) = out else {
            panic!("{out:?}")
        };
        let alter = |ops| MetadataCommand::AlterTopicConfigs {
            name: "t".into(),
            ops,
        };
        let set = topic_config::ConfigOp::Set {
            name: "retention.ms".into(),
            value: "5000".into(),
        };
        let (image, out) = run(&image, alter(vec![set.clone()])).expect("alter");
        let t = image.topic("t").unwrap();
        assert_eq!(out, ApplyOutcome::TopicConfigsAltered(t.clone()));
        assert_eq!((t.id, t.partitions), (meta.id, 2));
        assert_eq!(t.configs["retention.ms"], "5000");
        let missing = MetadataCommand::AlterTopicConfigs {
            name: "nope".into(),
            ops: vec![set],
        };
        assert_eq!(run(&image, missing).unwrap_err().kafka_error_code(), 3);
        // A record for a topic that is not there is corruption.
        let stray = MetadataRecord::TopicConfigsAltered(TopicMeta {
            id: [1; 16],
            ..t.clone()
        });
        assert!(image.apply(image.version + 1, &stray).is_err());
    }

    #[test]
    fn topic_ids_skip_reserved_and_taken() {
        let image = initialized();
        let mut candidates = vec![[0u8; 16], [0xf8; 16], [0x42; 16]].into_iter();
        let rec = image
            .propose(create("a", 1, 1), || candidates.next().expect("candidate"))
            .expect("propose");
        let MetadataRecord::TopicCreated(meta) = &rec else {
            panic!("{rec:?}")
        };
        assert_eq!(meta.id, [0x42; 16]);
        let (image, _) = image.apply(2, &rec).expect("apply");
        let mut candidates = vec![[0x42u8; 16], [0x43; 16]].into_iter();
        let rec = image
            .propose(create("b", 1, 1), || candidates.next().expect("candidate"))
            .expect("propose");
        assert!(matches!(&rec, MetadataRecord::TopicCreated(m) if m.id == [0x43; 16]));
    }

    #[test]
    fn apply_refuses_inconsistent_records() {
        let image = initialized();
        let init = MetadataRecord::ClusterInit {
            cluster_id: "x".into(),
        };
        let delete = MetadataRecord::TopicDeleted {
            id: [9; 16],
            name: "t".into(),
        };
        let pids = MetadataRecord::ProducerIdsAllocated { first: 7, count: 1 };
        for (offset, rec) in [(2, &init), (3, &pids), (2, &delete), (2, &pids)] {
            assert!(image.apply(offset, rec).is_err(), "{offset} {rec:?}");
        }
        assert!(MetadataImage::empty(1).apply(1, &pids).is_err());
    }
}
