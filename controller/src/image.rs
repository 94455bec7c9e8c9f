//! The metadata image and the pure state machine that moves it forward.
//!
//! A command is first turned into a [`MetadataRecord`] by [`MetadataImage::propose`]
//! (validation, plus every non-deterministic choice such as the topic id), then the record is
//! made durable (or, later, replicated by Raft) and finally applied with
//! [`MetadataImage::apply`], which is deterministic: every node replaying the same records
//! reaches the same image.

use std::collections::BTreeMap;

use crate::cluster::{self, BrokerRegistration, Placement};
use crate::codec::SnapshotPayload;
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

/// A request to change the metadata (rkyv: brokers send it to the active controller).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
    /// A broker (re)registers: it is unfenced and gets a new epoch. Cluster mode only.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: u16,
        shards: u32,
        rack: Option<String>,
    },
    /// Fences (`fenced = true`, missed heartbeats) or unfences a registered broker.
    SetBrokerFenced {
        node_id: i32,
        fenced: bool,
    },
    /// CreatePartitions: grows topic `name` to `total` partitions, placed on live brokers.
    /// Cluster mode only.
    CreatePartitions {
        name: String,
        total: i32,
    },
}

/// The result of an applied command (rkyv: the active controller sends it back to brokers).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
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
    BrokerRegistered(BrokerRegistration),
    BrokerFenced {
        node_id: i32,
        fenced: bool,
    },
    /// Partitions of the topic placed (new topic or CreatePartitions); the topic after it.
    PartitionsPlaced(TopicMeta),
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
    /// A topic's explicit configs replaced (same id, name, partitions). Variants added after
    /// the first five are no larger than `TopicCreated` (boxed where needed), so records
    /// written before them still decode (`tests/format_compat.rs`).
    TopicConfigsAltered(TopicMeta),
    /// A broker registered (or re-registered after a restart, with a new epoch).
    BrokerRegistered(Box<BrokerRegistration>),
    BrokerFenced {
        node_id: i32,
        fenced: bool,
    },
    /// Partitions `first..first + placements.len()` of topic `id` live where `placements`
    /// says; `first` is the number already placed, and the topic grows to the end if needed.
    PartitionsPlaced {
        id: TopicId,
        first: i32,
        placements: Vec<Placement>,
    },
    /// CreatePartitions on a single node: topic `id` (without placements) grows to
    /// `partitions`.
    PartitionsAdded {
        id: TopicId,
        partitions: i32,
    },
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
    /// Registered brokers (cluster mode; empty on a single node).
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Where each partition of a topic lives (cluster mode; a topic without placements lives
    /// on the single node, its shard chosen by hash).
    pub placements: BTreeMap<TopicId, Vec<Placement>>,
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
            brokers: BTreeMap::new(),
            placements: BTreeMap::new(),
            ids: BTreeMap::new(),
        }
    }

    /// The leader of a partition: the broker it is placed on while that broker is unfenced
    /// (`None`: offline), or this node for a topic without placements (single node).
    pub fn partition_leader(&self, id: &TopicId, partition: i32) -> Option<i32> {
        let Some(placements) = self.placements.get(id) else {
            return Some(self.node_id);
        };
        let placement = placements.get(usize::try_from(partition).ok()?)?;
        let broker = self.brokers.get(&placement.broker)?;
        (!broker.fenced).then_some(broker.node_id)
    }

    /// Where partition `partition` of topic `id` is placed, if the topic has placements.
    pub fn placement(&self, id: &TopicId, partition: i32) -> Option<Placement> {
        let placements = self.placements.get(id)?;
        placements.get(usize::try_from(partition).ok()?).copied()
    }

    /// Unfenced brokers, by node id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Validates `cmd` for a multi-node cluster and resolves it into the records of one
    /// atomic batch: like [`MetadataImage::propose`], except that new partitions are placed
    /// on the live brokers and the broker commands are accepted.
    pub fn propose_records(
        &self,
        cmd: MetadataCommand,
        new_topic_id: impl FnMut() -> TopicId,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        match cmd {
            MetadataCommand::RegisterBroker {
                node_id,
                host,
                port,
                shards,
                rack,
            } => {
                if node_id < 0 || shards == 0 || host.is_empty() {
                    return Err(ApplyError::InvalidRequest(format!(
                        "bad broker registration: node {node_id}, {host}:{port}, {shards} shards"
                    )));
                }
                let registration = BrokerRegistration {
                    node_id,
                    epoch: self.version + 1,
                    host,
                    port,
                    shards,
                    rack,
                    fenced: false,
                };
                Ok(vec![MetadataRecord::BrokerRegistered(Box::new(
                    registration,
                ))])
            }
            MetadataCommand::SetBrokerFenced { node_id, fenced } => {
                match self.brokers.get(&node_id) {
                    None => Err(ApplyError::InvalidRequest(format!(
                        "broker {node_id} is not registered"
                    ))),
                    Some(b) if b.fenced == fenced => Err(ApplyError::InvalidRequest(format!(
                        "broker {node_id} is already {}",
                        if fenced { "fenced" } else { "unfenced" }
                    ))),
                    Some(_) => Ok(vec![MetadataRecord::BrokerFenced { node_id, fenced }]),
                }
            }
            MetadataCommand::CreatePartitions { name, total } => {
                let topic = self
                    .topics
                    .get(&name)
                    .ok_or_else(|| ApplyError::UnknownTopic(name.clone()))?;
                if total <= topic.partitions || total > PARTITIONS_MAX {
                    return Err(ApplyError::InvalidPartitions(total));
                }
                let first = topic.partitions;
                let placements = self.place((total - first) as usize)?;
                Ok(vec![MetadataRecord::PartitionsPlaced {
                    id: topic.id,
                    first,
                    placements,
                }])
            }
            cmd @ MetadataCommand::CreateTopic { .. } => {
                let record = self.propose(cmd, new_topic_id)?;
                let MetadataRecord::TopicCreated(meta) = &record else {
                    unreachable!("CreateTopic resolves to TopicCreated")
                };
                let placements = self.place(meta.partitions as usize)?;
                let id = meta.id;
                Ok(vec![
                    record,
                    MetadataRecord::PartitionsPlaced {
                        id,
                        first: 0,
                        placements,
                    },
                ])
            }
            cmd => Ok(vec![self.propose(cmd, new_topic_id)?]),
        }
    }

    fn place(&self, count: usize) -> Result<Vec<Placement>, ApplyError> {
        let existing = self.placements.values().flatten();
        cluster::place(&self.brokers, existing, count).ok_or(ApplyError::NoLiveBrokers)
    }

    /// Applies the records of one batch at offsets `version + 1 ..`: all of them or, when
    /// one does not fit, none (the image is unchanged and the error says why).
    pub fn apply_batch(
        &self,
        records: &[MetadataRecord],
    ) -> Result<(MetadataImage, Vec<ApplyOutcome>), ApplyError> {
        let mut image = self.clone();
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let (next, outcome) = image.apply(image.version + 1, record)?;
            image = next;
            outcomes.push(outcome);
        }
        Ok((image, outcomes))
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
            MetadataCommand::CreatePartitions { name, total } => {
                let topic = self
                    .topics
                    .get(&name)
                    .ok_or(ApplyError::UnknownTopic(name))?;
                if total <= topic.partitions || total > PARTITIONS_MAX {
                    return Err(ApplyError::InvalidPartitions(total));
                }
                Ok(MetadataRecord::PartitionsAdded {
                    id: topic.id,
                    partitions: total,
                })
            }
            MetadataCommand::RegisterBroker { .. } | MetadataCommand::SetBrokerFenced { .. } => {
                Err(ApplyError::InvalidRequest(
                    "only a multi-node cluster (--controller-quorum) has brokers to register"
                        .into(),
                ))
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
                next.placements.remove(id);
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
            MetadataRecord::BrokerRegistered(registration) => {
                let registration = BrokerRegistration::clone(registration);
                if registration.node_id < 0 || registration.shards == 0 {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: bad broker registration {registration:?}"
                    )));
                }
                next.brokers
                    .insert(registration.node_id, registration.clone());
                ApplyOutcome::BrokerRegistered(registration)
            }
            MetadataRecord::BrokerFenced { node_id, fenced } => {
                let Some(broker) = next.brokers.get_mut(node_id) else {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: fencing unknown broker {node_id}"
                    )));
                };
                broker.fenced = *fenced;
                ApplyOutcome::BrokerFenced {
                    node_id: *node_id,
                    fenced: *fenced,
                }
            }
            MetadataRecord::PartitionsPlaced {
                id,
                first,
                placements,
            } => ApplyOutcome::PartitionsPlaced(
                next.apply_placements(offset, id, *first, placements)?,
            ),
            MetadataRecord::PartitionsAdded { id, partitions } => {
                let grows = next
                    .topic_by_id(id)
                    .is_some_and(|t| t.partitions < *partitions && *partitions <= PARTITIONS_MAX);
                if !grows || next.placements.contains_key(id) {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: partitions added to an unknown or placed topic"
                    )));
                }
                let name = next.ids[id].clone();
                let topic = next.topics.get_mut(&name).expect("ids and topics agree");
                topic.partitions = *partitions;
                ApplyOutcome::PartitionsPlaced(topic.clone())
            }
        };
        debug_assert_eq!(next.ids.len(), next.topics.len());
        Ok((next, outcome))
    }

    /// Records `placements` for partitions `first..` of topic `id`, growing the topic.
    fn apply_placements(
        &mut self,
        offset: u64,
        id: &TopicId,
        first: i32,
        placements: &[Placement],
    ) -> Result<TopicMeta, ApplyError> {
        let corrupt = |what: &str| {
            ApplyError::corrupt(format!("offset {offset}: partition placement {what}"))
        };
        let name = self
            .ids
            .get(id)
            .ok_or_else(|| corrupt("of an unknown topic"))?;
        let topic = self.topics.get_mut(name).expect("ids and topics agree");
        let placed = self.placements.entry(*id).or_default();
        let end = i32::try_from(placements.len())
            .ok()
            .and_then(|n| first.checked_add(n))
            .filter(|end| *end <= PARTITIONS_MAX);
        let Some(end) = end else {
            return Err(corrupt("beyond the partition limit"));
        };
        if usize::try_from(first).ok() != Some(placed.len()) || end < topic.partitions {
            return Err(corrupt("does not follow the placed partitions"));
        }
        if placements
            .iter()
            .any(|p| !self.brokers.contains_key(&p.broker))
        {
            return Err(corrupt("names an unregistered broker"));
        }
        placed.extend_from_slice(placements);
        topic.partitions = end;
        Ok(topic.clone())
    }

    /// Builds an image from snapshot contents, checking its invariants.
    pub fn from_snapshot(node_id: i32, payload: SnapshotPayload) -> Result<Self, ApplyError> {
        let mut image = MetadataImage::empty(node_id);
        if payload.cluster_id.is_empty() || payload.version == 0 || payload.next_producer_id < 0 {
            return Err(ApplyError::corrupt("snapshot header fields out of range"));
        }
        image.cluster_id = payload.cluster_id;
        image.version = payload.version;
        image.next_producer_id = payload.next_producer_id;
        for t in payload.topics {
            if image.ids.insert(t.id, t.name.clone()).is_some() {
                return Err(ApplyError::corrupt("snapshot has a duplicate topic id"));
            }
            let name = t.name.clone();
            if image.topics.insert(name, t).is_some() {
                return Err(ApplyError::corrupt("snapshot has a duplicate topic name"));
            }
        }
        for b in payload.brokers {
            if image.brokers.insert(b.node_id, b).is_some() {
                return Err(ApplyError::corrupt("snapshot has a duplicate broker"));
            }
        }
        for (id, placements) in payload.placements {
            let partitions = image.topic_by_id(&id).map(|t| t.partitions);
            let fits = partitions.is_some_and(|n| usize::try_from(n) == Ok(placements.len()))
                && placements
                    .iter()
                    .all(|p| image.brokers.contains_key(&p.broker));
            if !fits || image.placements.insert(id, placements).is_some() {
                return Err(ApplyError::corrupt("snapshot has inconsistent placements"));
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
    fn create_partitions_on_a_single_node() {
        let (image, _) = run(&initialized(), create("t", 2, 1)).expect("create");
        let grow = |total| MetadataCommand::CreatePartitions {
            name: "t".into(),
            total,
        };
        let (image, out) = run(&image, grow(5)).expect("grow");
        assert!(matches!(out, ApplyOutcome::PartitionsPlaced(t) if t.partitions == 5));
        let id = image.topic("t").expect("t").id;
        assert_eq!(image.partition_leader(&id, 4), Some(1));
        for total in [5, 3, PARTITIONS_MAX + 1] {
            let code = run(&image, grow(total)).unwrap_err().kafka_error_code();
            assert_eq!(code, 37, "{total}");
        }
        let unknown = MetadataCommand::CreatePartitions {
            name: "x".into(),
            total: 3,
        };
        assert_eq!(run(&image, unknown).unwrap_err().kafka_error_code(), 3);
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

#[cfg(test)]
mod cluster_tests {
    use super::*;

    fn ids() -> impl FnMut() -> TopicId {
        let mut n = 0x20u8;
        move || {
            n += 1;
            [n; 16]
        }
    }

    fn run(image: &MetadataImage, cmd: MetadataCommand) -> Result<MetadataImage, ApplyError> {
        let records = image.propose_records(cmd, ids())?;
        Ok(image.apply_batch(&records)?.0)
    }

    fn register(node_id: i32) -> MetadataCommand {
        MetadataCommand::RegisterBroker {
            node_id,
            host: "127.0.0.1".into(),
            port: 9000 + node_id as u16,
            shards: 2,
            rack: None,
        }
    }

    fn create(name: &str, partitions: i32) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        }
    }

    fn cluster() -> MetadataImage {
        let init = MetadataRecord::ClusterInit {
            cluster_id: "c".into(),
        };
        let mut image = MetadataImage::empty(1).apply(1, &init).expect("init").0;
        for node in 1..=3 {
            image = run(&image, register(node)).expect("register");
        }
        image
    }

    #[test]
    fn create_places_partitions_and_fencing_takes_leaders_offline() {
        let no_brokers = MetadataImage::empty(1)
            .apply(
                1,
                &MetadataRecord::ClusterInit {
                    cluster_id: "c".into(),
                },
            )
            .expect("init")
            .0;
        let err = run(&no_brokers, create("t", 3)).expect_err("nowhere to place");
        assert_eq!(err.kafka_error_code(), 38);
        let image = run(&cluster(), create("t", 12)).expect("create");
        let id = image.topic("t").expect("t").id;
        let leaders: Vec<_> = (0..12)
            .map(|p| image.partition_leader(&id, p).expect("online"))
            .collect();
        for node in 1..=3 {
            assert_eq!(leaders.iter().filter(|l| **l == node).count(), 4);
        }
        let fence = MetadataCommand::SetBrokerFenced {
            node_id: 2,
            fenced: true,
        };
        let fenced = run(&image, fence.clone()).expect("fence");
        assert_eq!(run(&fenced, fence).unwrap_err().kafka_error_code(), 42);
        for p in 0..12 {
            let expect = (leaders[p as usize] != 2).then_some(leaders[p as usize]);
            assert_eq!(fenced.partition_leader(&id, p), expect);
        }
        assert_eq!(fenced.live_brokers().count(), 2);
        // The fenced broker gets none of the new partitions; re-registering unfences it.
        let grown = run(
            &fenced,
            MetadataCommand::CreatePartitions {
                name: "t".into(),
                total: 16,
            },
        )
        .expect("create partitions");
        assert_eq!(grown.topic("t").expect("t").partitions, 16);
        assert!((12..16).all(|p| grown.placement(&id, p).expect("placed").broker != 2));
        let back = run(&grown, register(2)).expect("re-register");
        assert_eq!(back.partition_leader(&id, 1), Some(leaders[1]));
        assert!(back.brokers[&2].epoch > image.brokers[&2].epoch);
        let smaller = MetadataCommand::CreatePartitions {
            name: "t".into(),
            total: 16,
        };
        assert_eq!(run(&back, smaller).unwrap_err().kafka_error_code(), 37);
        let deleted = run(&back, MetadataCommand::DeleteTopic { name: "t".into() }).expect("del");
        assert!(deleted.placements.is_empty());
    }

    #[test]
    fn a_failed_batch_changes_nothing() {
        let image = run(&cluster(), create("t", 2)).expect("create");
        let id = image.topic("t").expect("t").id;
        let records = vec![
            MetadataRecord::BrokerFenced {
                node_id: 1,
                fenced: true,
            },
            MetadataRecord::PartitionsPlaced {
                id,
                first: 0,
                placements: vec![],
            },
        ];
        assert!(image.apply_batch(&records).is_err());
        let snapshot = crate::codec::SnapshotPayload::of(&image);
        let restored = MetadataImage::from_snapshot(1, snapshot).expect("restore");
        assert_eq!(restored, image);
    }
}
