//! The metadata image and the pure state machine that moves it forward.
//!
//! A command is first resolved into the [`MetadataRecord`]s of one atomic batch by
//! [`MetadataImage::propose_records`] (validation, plus every non-deterministic choice such
//! as the topic id, and the placements and leader elections the command causes), then the
//! batch is made durable (the local metadata log, or Raft) and finally applied with
//! [`MetadataImage::apply_batch`], which is deterministic: every node replaying the same
//! records reaches the same image.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::acl::{AclBinding, AclFilter, Acls};

use crate::cluster::{
    self, BrokerEndpoint, BrokerRegistration, LegacyBrokerRegistration, Placement,
};
use crate::codec::SnapshotPayload;
use crate::error::ApplyError;
use crate::partition::{
    ElectionRefused, ElectionType, LeaderAndIsr, PartitionRegistration, NO_LEADER,
};
use crate::scram::{self, ScramCredentialRemoved, ScramCredentialSet, ScramCredentials};
use crate::topic_config;

/// A topic id: the 16 bytes of a UUID, never all-zero.
pub type TopicId = [u8; 16];

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 100_000;
/// Partitions of a topic created with `partitions = -1` (Kafka's `num.partitions`).
pub const DEFAULT_PARTITIONS: i32 = 1;
/// Kafka's default `default.replication.factor`.
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

/// A request to change the metadata (rkyv: brokers send it to the active controller; only
/// nodes of the same version talk, so its layout may change between versions).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum MetadataCommand {
    CreateTopic {
        name: String,
        /// `-1` for [`DEFAULT_PARTITIONS`].
        partitions: i32,
        /// `-1` for `default_replication_factor`, capped at the unfenced brokers.
        replication_factor: i16,
        /// The caller's `default.replication.factor`.
        default_replication_factor: i16,
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
    /// A broker (re)registers: it is unfenced and gets a new epoch; offline partitions it
    /// can lead get it as leader.
    RegisterBroker {
        node_id: i32,
        /// The inter-broker listener's address.
        host: String,
        port: u16,
        shards: u32,
        rack: Option<String>,
        /// Every advertised listener (empty: `host:port` on every listener).
        endpoints: Vec<BrokerEndpoint>,
    },
    /// Fences (`fenced = true`, missed heartbeats) or unfences a registered broker, with
    /// the leader elections that follow.
    SetBrokerFenced {
        node_id: i32,
        fenced: bool,
    },
    /// CreatePartitions: grows topic `name` to `total` partitions, placed on live brokers
    /// with the topic's replication factor.
    CreatePartitions {
        name: String,
        total: i32,
    },
    /// Controlled shutdown: the broker is fenced and its partitions get new leaders, in
    /// one batch.
    ShutdownBroker {
        node_id: i32,
    },
    /// Leader elections of one type for the given `(topic, partition)`s, or every
    /// partition: ElectLeaders, and the active controller's leader rebalancing (preferred).
    ElectLeaders {
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Broker `node_id`'s replica of a partition failed its storage (an IO error: Kafka's
    /// offline log dir, KIP-858): for that partition alone, as if the broker were fenced.
    ReplicaOffline {
        node_id: i32,
        topic_id: TopicId,
        partition: i32,
    },
    /// A partition leader changes the ISR, compare-and-set on the epochs it knows.
    AlterPartition {
        topic_id: TopicId,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// AlterUserScramCredentials upsertion: a user's credential for one mechanism.
    SetScramCredential(Box<ScramCredentialSet>),
    /// AlterUserScramCredentials deletion (refused when there is none).
    RemoveScramCredential {
        user: String,
        mechanism: scram::ScramMechanism,
    },
    /// CreateAcls: the bindings (validated; ones that exist already are kept, a no-op).
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// DeleteAcls: every binding one of the filters selects.
    DeleteAcls {
        filters: Vec<AclFilter>,
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
    /// A partition's leader or ISR changed (election, AlterPartition): its registration now.
    PartitionChanged {
        id: TopicId,
        partition: i32,
        registration: PartitionRegistration,
    },
    /// A user's SCRAM credentials changed.
    ScramCredentialsChanged {
        user: String,
    },
    /// ACL bindings added (those that existed already included).
    AclsCreated(Vec<AclBinding>),
    /// ACL bindings removed.
    AclsDeleted(Vec<AclBinding>),
}

/// Registrations of partitions `first..first + partitions.len()` of topic `id`.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PartitionsAssigned {
    pub id: TopicId,
    /// The number of partitions registered before; the topic grows to the end if needed.
    pub first: i32,
    pub partitions: Vec<PartitionRegistration>,
}

/// A partition's new leader and ISR (replicas unchanged).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PartitionChange {
    pub id: TopicId,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// Exactly one more than the partition epoch it replaces.
    pub partition_epoch: i32,
}

/// One entry of the metadata log: the resolved, deterministic form of a command.
///
/// Records are read back from logs and snapshots written by every earlier version, so the
/// archived enum must keep its size (48 bytes, `archived_record_size_is_stable`): variants
/// added after the first five are no larger than `TopicCreated`, boxed where needed
/// (`tests/format_compat.rs`).
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
    /// A topic's explicit configs replaced (same id, name, partitions).
    TopicConfigsAltered(TopicMeta),
    /// Older logs only: a broker registered before registrations carried endpoints.
    LegacyBrokerRegistered(Box<LegacyBrokerRegistration>),
    BrokerFenced {
        node_id: i32,
        fenced: bool,
    },
    /// Older logs only (one replica per partition): partitions `first..` of topic `id` live
    /// where `placements` says. Applied as [`PartitionRegistration::single`]s.
    PartitionsPlaced {
        id: TopicId,
        first: i32,
        placements: Vec<Placement>,
    },
    /// Older single-node logs only: topic `id` (without registrations) grows to
    /// `partitions`; the new partitions are registered when the node next opens.
    PartitionsAdded {
        id: TopicId,
        partitions: i32,
    },
    /// New partitions of a topic with their replicas (new topic, CreatePartitions, or the
    /// migration of a single node's topics).
    PartitionsAssigned(Box<PartitionsAssigned>),
    /// A partition's leader or ISR changed.
    PartitionChanged(Box<PartitionChange>),
    /// A user's SCRAM credential for one mechanism, created or replaced.
    ScramCredentialSet(Box<ScramCredentialSet>),
    ScramCredentialRemoved(Box<ScramCredentialRemoved>),
    /// ACL bindings added (`acl.rs`); one that exists already is a no-op.
    AclsCreated(Box<Vec<AclBinding>>),
    /// ACL bindings removed; one that does not exist is a no-op.
    AclsDeleted(Box<Vec<AclBinding>>),
    /// A broker registered (or re-registered after a restart, with a new epoch), with
    /// every listener it advertises.
    BrokerRegistered(Box<BrokerRegistration>),
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
    /// Registered brokers (a single node registers itself).
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// The registration of each partition of a topic, by index. Every topic has them once
    /// its creation's batch is applied; only the replay of an old single-node log passes
    /// through topics without (registered when the node opens).
    pub partitions: BTreeMap<TopicId, Vec<PartitionRegistration>>,
    /// SCRAM credentials by (user, mechanism) (`scram`).
    pub scram_credentials: ScramCredentials,
    /// The ACL bindings and their authorizer index (rebuilt only by ACL records, so an
    /// image copy shares it).
    pub acls: Arc<Acls>,
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

/// Kafka's message for a replication factor that the unfenced brokers cannot reach.
fn unreachable_replication(rf: i16, live: usize) -> ApplyError {
    ApplyError::InvalidReplicationFactor(format!(
        "Unable to replicate the partition {rf} time(s): The target replication factor of \
         {rf} cannot be reached because only {live} broker(s) are registered."
    ))
}

/// The result of one partition of an election ([`MetadataImage::elections`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: i32,
    /// 0: elected; else Kafka's error (ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION).
    pub error_code: i16,
    /// The record that moves the leader, on success.
    pub change: Option<PartitionChange>,
}

/// The resolved form of a CreateTopic: its partitions and replication factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedCreate {
    pub partitions: i32,
    pub replication_factor: i16,
    /// The default replication factor was lowered to the number of unfenced brokers.
    pub capped: bool,
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
            partitions: BTreeMap::new(),
            scram_credentials: ScramCredentials::new(),
            acls: Arc::default(),
            ids: BTreeMap::new(),
        }
    }

    /// The registration of partition `index` of topic `id`.
    pub fn partition(&self, id: &TopicId, index: i32) -> Option<&PartitionRegistration> {
        self.partitions.get(id)?.get(usize::try_from(index).ok()?)
    }

    /// The leader of a partition: `None` while it has none (offline) or its broker is
    /// fenced.
    pub fn partition_leader(&self, id: &TopicId, index: i32) -> Option<i32> {
        let leader = self.partition(id, index)?.leader;
        self.is_live(leader).then_some(leader)
    }

    /// Broker `broker`'s replica of a partition: the shard that broker opens it on.
    pub fn replica_on(&self, id: &TopicId, index: i32, broker: i32) -> Option<Placement> {
        self.partition(id, index)?.replica_on(broker)
    }

    /// Whether `node_id` is a registered, unfenced broker.
    pub fn is_live(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| !b.fenced)
    }

    /// Unfenced brokers, by node id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether topic `id` sets `unclean.leader.election.enable`.
    fn unclean_election(&self, id: &TopicId) -> bool {
        self.topic_by_id(id)
            .is_some_and(topic_config::unclean_leader_election)
    }

    /// Validates `cmd` and resolves it into the records of one atomic batch: new topics and
    /// partitions are placed on the live brokers, and fencing, unfencing and shutdowns carry
    /// the leader elections they cause. `new_topic_id` supplies candidate ids; invalid or
    /// taken ones are skipped.
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
                endpoints,
            } => {
                let registration = BrokerRegistration {
                    node_id,
                    epoch: self.version + 1,
                    host,
                    port,
                    shards,
                    rack,
                    fenced: false,
                    endpoints,
                };
                self.propose_registration(registration)
            }
            MetadataCommand::SetBrokerFenced { node_id, fenced } => {
                self.propose_fencing(node_id, fenced)
            }
            MetadataCommand::ShutdownBroker { node_id } => self.propose_fencing(node_id, true),
            MetadataCommand::ReplicaOffline {
                node_id,
                topic_id,
                partition,
            } => self.propose_replica_offline(node_id, topic_id, partition),
            MetadataCommand::CreatePartitions { name, total } => {
                self.propose_create_partitions(name, total)
            }
            MetadataCommand::CreateTopic {
                name,
                partitions,
                replication_factor,
                default_replication_factor,
                configs,
            } => {
                let resolved = self.validate_create(
                    &name,
                    partitions,
                    replication_factor,
                    default_replication_factor,
                    &configs,
                )?;
                let id = self.new_id(new_topic_id);
                let registrations =
                    self.place(resolved.partitions as usize, resolved.replication_factor)?;
                Ok(vec![
                    MetadataRecord::TopicCreated(TopicMeta {
                        id,
                        name,
                        partitions: resolved.partitions,
                        replication_factor: resolved.replication_factor,
                        configs,
                    }),
                    MetadataRecord::PartitionsAssigned(Box::new(PartitionsAssigned {
                        id,
                        first: 0,
                        partitions: registrations,
                    })),
                ])
            }
            MetadataCommand::ElectLeaders {
                election,
                partitions,
            } => self.propose_elections(election, partitions),
            MetadataCommand::AlterPartition {
                topic_id,
                partition,
                leader_id,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                let change = self.validate_alter_partition(
                    topic_id,
                    partition,
                    leader_id,
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                )?;
                Ok(vec![MetadataRecord::PartitionChanged(Box::new(change))])
            }
            MetadataCommand::CreateAcls { acls } => self.propose_create_acls(acls),
            MetadataCommand::DeleteAcls { filters } => {
                let doomed = filters
                    .iter()
                    .flat_map(|f| self.acls.matching(f))
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>();
                let doomed = Box::new(doomed.into_iter().collect());
                Ok(vec![MetadataRecord::AclsDeleted(doomed)])
            }
            cmd => Ok(vec![self.resolve_simple(cmd)?]),
        }
    }

    fn propose_create_acls(
        &self,
        acls: Vec<AclBinding>,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        if acls.is_empty() {
            return Err(ApplyError::InvalidRequest("no ACL to create".into()));
        }
        for acl in &acls {
            acl.validate().map_err(ApplyError::InvalidRequest)?;
        }
        let new = acls.iter().filter(|a| !self.acls.contains(a)).count();
        if self.acls.len() + new > crate::acl::ACLS_MAX {
            return Err(ApplyError::InvalidRequest(format!(
                "the cluster already has {} ACLs (at most {})",
                self.acls.len(),
                crate::acl::ACLS_MAX
            )));
        }
        Ok(vec![MetadataRecord::AclsCreated(Box::new(acls))])
    }

    /// [`MetadataImage::propose_records`] for validation only (`validate_only` requests).
    pub fn propose(
        &self,
        cmd: MetadataCommand,
        new_topic_id: impl FnMut() -> TopicId,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        self.propose_records(cmd, new_topic_id)
    }

    fn new_id(&self, mut new_topic_id: impl FnMut() -> TopicId) -> TopicId {
        loop {
            let id = new_topic_id();
            if is_valid_topic_id(&id) && !self.ids.contains_key(&id) {
                return id;
            }
        }
    }

    fn place(&self, count: usize, rf: i16) -> Result<Vec<PartitionRegistration>, ApplyError> {
        let live = self.live_brokers().count();
        if live == 0 {
            return Err(ApplyError::NoLiveBrokers);
        }
        let existing = self.partitions.values().flatten();
        cluster::place(&self.brokers, existing, count, rf as usize)
            .ok_or_else(|| unreachable_replication(rf, live))
    }

    /// Applies a broker's registration record.
    fn register_broker(
        &mut self,
        offset: u64,
        registration: BrokerRegistration,
    ) -> Result<ApplyOutcome, ApplyError> {
        if registration.node_id < 0 || registration.shards == 0 {
            return Err(ApplyError::corrupt(format!(
                "offset {offset}: bad broker registration {registration:?}"
            )));
        }
        self.brokers
            .insert(registration.node_id, registration.clone());
        Ok(ApplyOutcome::BrokerRegistered(registration))
    }

    fn propose_registration(
        &self,
        registration: BrokerRegistration,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        let BrokerRegistration {
            node_id,
            ref host,
            port,
            shards,
            ..
        } = registration;
        let bad_endpoint = registration.endpoints.iter().any(|e| {
            e.name.is_empty() || e.host.is_empty() || !(0..=3).contains(&e.security_protocol)
        });
        if node_id < 0 || shards == 0 || host.is_empty() || bad_endpoint {
            return Err(ApplyError::InvalidRequest(format!(
                "bad broker registration: node {node_id}, {host}:{port}, {shards} shards, \
                 endpoints {:?}",
                registration.endpoints
            )));
        }
        let mut records = Vec::new();
        if self.is_live(node_id) {
            // A new incarnation of a broker the controller still takes for live (restarted
            // within its session): the old one is fenced first, so every partition it led
            // gets a new leader epoch. Its log may have lost an unsynced tail its followers
            // hold; under a new epoch they find the divergence and truncate (Kafka fences
            // the old incarnation the same way).
            records.push(MetadataRecord::BrokerFenced {
                node_id,
                fenced: true,
            });
            records.extend(self.elections_after(&records, node_id, true)?);
        }
        records.push(MetadataRecord::BrokerRegistered(Box::new(registration)));
        let elections = self.elections_after(&records, node_id, false)?;
        records.extend(elections);
        Ok(records)
    }

    fn propose_fencing(
        &self,
        node_id: i32,
        fenced: bool,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        match self.brokers.get(&node_id) {
            None => Err(ApplyError::InvalidRequest(format!(
                "broker {node_id} is not registered"
            ))),
            Some(b) if b.fenced == fenced => Err(ApplyError::InvalidRequest(format!(
                "broker {node_id} is already {}",
                if fenced { "fenced" } else { "unfenced" }
            ))),
            Some(_) => {
                let mut records = vec![MetadataRecord::BrokerFenced { node_id, fenced }];
                records.extend(self.elections_after(&records, node_id, fenced)?);
                Ok(records)
            }
        }
    }

    /// Broker `broker`'s replica of a partition is offline (its storage failed): it leaves
    /// the ISR unless it is the last member, and if it led, the first other live ISR member
    /// leads (none: the partition is offline until the broker restarts and registers again,
    /// or an unclean election where the topic allows it).
    fn propose_replica_offline(
        &self,
        broker: i32,
        id: TopicId,
        index: i32,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        let what = || format!("partition {index} of topic {}", hex(&id));
        let current = self
            .partition(&id, index)
            .ok_or_else(|| ApplyError::UnknownTopic(what()))?;
        let live = |b: i32| b != broker && self.is_live(b);
        match current.on_fenced(broker, live, self.unclean_election(&id)) {
            Some(to) => {
                let change = change_record(id, index, current, to);
                Ok(vec![MetadataRecord::PartitionChanged(Box::new(change))])
            }
            None => Err(ApplyError::InvalidRequest(format!(
                "{}: broker {broker} neither leads it nor can leave its ISR",
                what()
            ))),
        }
    }

    /// The leader elections that follow `records` (which fence or unfence `broker`): one
    /// [`MetadataRecord::PartitionChanged`] per partition whose leader or ISR changes.
    fn elections_after(
        &self,
        records: &[MetadataRecord],
        broker: i32,
        fenced: bool,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        let (after, _) = self.apply_batch(records)?;
        let live = |b: i32| after.is_live(b);
        let mut out = Vec::new();
        for (id, registrations) in &after.partitions {
            let unclean = after.unclean_election(id);
            for (index, registration) in registrations.iter().enumerate() {
                let to = if fenced {
                    registration.on_fenced(broker, live, unclean)
                } else {
                    registration.on_unfenced(broker, live, unclean)
                };
                if let Some(to) = to {
                    let change = change_record(*id, index as i32, registration, to);
                    out.push(MetadataRecord::PartitionChanged(Box::new(change)));
                }
            }
        }
        Ok(out)
    }

    fn propose_create_partitions(
        &self,
        name: String,
        total: i32,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        let topic = self
            .topics
            .get(&name)
            .ok_or_else(|| ApplyError::UnknownTopic(name.clone()))?;
        if total <= topic.partitions || total > PARTITIONS_MAX {
            return Err(ApplyError::InvalidPartitions(total));
        }
        let first = topic.partitions;
        let partitions = self.place((total - first) as usize, topic.replication_factor)?;
        Ok(vec![MetadataRecord::PartitionsAssigned(Box::new(
            PartitionsAssigned {
                id: topic.id,
                first,
                partitions,
            },
        ))])
    }

    /// The outcome of an election of type `election` for `targets` (`None`: every
    /// partition, reporting only those that can move or fail for another reason than
    /// ELECTION_NOT_NEEDED), in the order asked. Pure: brokers answer ElectLeaders with it
    /// and propose [`MetadataCommand::ElectLeaders`] for the partitions that can move.
    pub fn elections(
        &self,
        election: ElectionType,
        targets: Option<&[(String, i32)]>,
    ) -> Vec<ElectionResult> {
        let every = targets.is_none();
        let all: Vec<(String, i32)>;
        let targets = match targets {
            Some(targets) => targets,
            None => {
                all = self
                    .topics
                    .values()
                    .flat_map(|t| (0..t.partitions).map(|p| (t.name.clone(), p)))
                    .collect();
                &all
            }
        };
        let live = |b: i32| self.is_live(b);
        let mut out = Vec::with_capacity(targets.len());
        for (topic, partition) in targets {
            let found = self
                .topics
                .get(topic)
                .and_then(|t| Some((t.id, self.partition(&t.id, *partition)?)));
            let (error_code, change) = match found {
                None => (3, None), // UNKNOWN_TOPIC_OR_PARTITION
                Some((id, registration)) => match registration.elect(election, live) {
                    Ok(to) => (0, Some(change_record(id, *partition, registration, to))),
                    Err(ElectionRefused::NotNeeded) if every => continue,
                    Err(why) => (why.kafka_error_code(), None),
                },
            };
            out.push(ElectionResult {
                topic: topic.clone(),
                partition: *partition,
                error_code,
                change,
            });
        }
        out
    }

    /// [`MetadataImage::elections`] of the preferred replicas.
    pub fn preferred_elections(&self, targets: Option<&[(String, i32)]>) -> Vec<ElectionResult> {
        self.elections(ElectionType::Preferred, targets)
    }

    fn propose_elections(
        &self,
        election: ElectionType,
        targets: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<MetadataRecord>, ApplyError> {
        let results = self.elections(election, targets.as_deref());
        let records: Vec<MetadataRecord> = results
            .iter()
            .filter_map(|r| r.change.clone())
            .map(|c| MetadataRecord::PartitionChanged(Box::new(c)))
            .collect();
        if !records.is_empty() {
            return Ok(records);
        }
        // Nothing moves: the first partition's reason (all: nothing needed).
        let what = |r: &ElectionResult| format!("{}-{}", r.topic, r.partition);
        match results.first() {
            Some(r) if r.error_code == 3 => Err(ApplyError::UnknownTopic(r.topic.clone())),
            Some(r) if r.error_code == 80 => Err(ApplyError::PreferredLeaderNotAvailable(format!(
                "the preferred leader of {} is not live and in sync",
                what(r)
            ))),
            Some(r) if r.error_code == 83 => Err(ApplyError::EligibleLeadersNotAvailable(format!(
                "no replica of {} is live",
                what(r)
            ))),
            _ => Err(ApplyError::ElectionNotNeeded(match election {
                ElectionType::Preferred => "the preferred leaders lead already".into(),
                ElectionType::Unclean => "the partitions have live leaders".into(),
            })),
        }
    }

    /// Checks an AlterPartition against the partition's registration (Kafka's order: epoch,
    /// leader, partition epoch, the new ISR) and returns the record that applies it.
    fn validate_alter_partition(
        &self,
        id: TopicId,
        index: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    ) -> Result<PartitionChange, ApplyError> {
        let what = || format!("partition {index} of topic {}", hex(&id));
        let current = self
            .partition(&id, index)
            .ok_or_else(|| ApplyError::UnknownTopic(what()))?;
        if leader_epoch != current.leader_epoch {
            return Err(ApplyError::FencedLeaderEpoch(format!(
                "{}: leader epoch {leader_epoch}, current {}",
                what(),
                current.leader_epoch
            )));
        }
        if leader_id != current.leader {
            return Err(ApplyError::NotLeaderOrFollower(format!(
                "{}: broker {leader_id} is not its leader ({})",
                what(),
                current.leader
            )));
        }
        if partition_epoch != current.partition_epoch {
            return Err(ApplyError::InvalidUpdateVersion(format!(
                "{}: partition epoch {partition_epoch}, current {}",
                what(),
                current.partition_epoch
            )));
        }
        let proposed = LeaderAndIsr {
            leader: current.leader,
            isr: new_isr,
        };
        let invalid = |why: &str| {
            Err(ApplyError::InvalidRequest(format!(
                "{}: new ISR {:?} {why}",
                what(),
                proposed.isr
            )))
        };
        if !proposed.isr.contains(&current.leader) {
            return invalid("does not hold the leader");
        }
        if proposed.isr.iter().any(|b| !current.is_replica(*b)) {
            return invalid("names a broker that is not a replica");
        }
        let mut distinct = proposed.isr.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != proposed.isr.len() {
            return invalid("names a broker twice");
        }
        let added_fenced = proposed
            .isr
            .iter()
            .find(|b| !current.isr.contains(b) && !self.is_live(**b));
        if let Some(b) = added_fenced {
            return Err(ApplyError::IneligibleReplica(format!(
                "{}: broker {b} is fenced and cannot join the ISR",
                what()
            )));
        }
        Ok(change_record(id, index, current, proposed))
    }

    /// Applies the records of one batch at offsets `version + 1 ..`: all of them or, when
    /// one does not fit, none (the image is unchanged and the error says why).
    pub fn apply_batch(
        &self,
        records: &[MetadataRecord],
    ) -> Result<(MetadataImage, Vec<ApplyOutcome>), ApplyError> {
        let mut image: Option<MetadataImage> = None;
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let base = image.as_ref().unwrap_or(self);
            let (next, outcome) = base.apply(base.version + 1, record)?;
            image = Some(next);
            outcomes.push(outcome);
        }
        Ok((image.unwrap_or_else(|| self.clone()), outcomes))
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &TopicId) -> Option<&TopicMeta> {
        self.ids.get(id).and_then(|name| self.topics.get(name))
    }

    /// Topics with fewer registered partitions than they have (only after replaying an old
    /// single-node log): `(id, registered, partitions)`.
    pub fn unregistered_partitions(&self) -> Vec<(TopicId, i32, i32)> {
        self.topics
            .values()
            .filter_map(|t| {
                let registered = self.partitions.get(&t.id).map_or(0, Vec::len) as i32;
                (registered < t.partitions).then_some((t.id, registered, t.partitions))
            })
            .collect()
    }

    /// Validates and resolves a command that becomes exactly one record.
    fn resolve_simple(&self, cmd: MetadataCommand) -> Result<MetadataRecord, ApplyError> {
        match cmd {
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
            MetadataCommand::SetScramCredential(set) => Ok(MetadataRecord::ScramCredentialSet(set)),
            MetadataCommand::RemoveScramCredential { user, mechanism } => {
                let removal = scram::propose_removal(&self.scram_credentials, user, mechanism)?;
                Ok(MetadataRecord::ScramCredentialRemoved(Box::new(removal)))
            }
            other => unreachable!("{other:?} resolves to several records"),
        }
    }

    /// Checks a CreateTopic and resolves its defaults: `-1` partitions is
    /// [`DEFAULT_PARTITIONS`]; a `-1` replication factor is `default_rf` capped at the
    /// unfenced brokers; an explicit one must be reachable.
    pub fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        default_rf: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<ResolvedCreate, ApplyError> {
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
        let (replication_factor, capped) =
            self.resolve_replication(replication_factor, default_rf)?;
        for (k, v) in configs {
            topic_config::validate(k, v)?;
        }
        Ok(ResolvedCreate {
            partitions,
            replication_factor,
            capped,
        })
    }

    /// `(factor, capped)`: the replication factor a new topic gets.
    fn resolve_replication(
        &self,
        requested: i16,
        default_rf: i16,
    ) -> Result<(i16, bool), ApplyError> {
        let live = self.live_brokers().count();
        let invalid = || {
            ApplyError::InvalidReplicationFactor(
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            )
        };
        match requested {
            -1 => {
                if default_rf < 1 {
                    return Err(invalid());
                }
                if live == 0 {
                    return Err(ApplyError::NoLiveBrokers);
                }
                let capped = usize::try_from(default_rf).expect("positive") > live;
                let rf = if capped { live as i16 } else { default_rf };
                Ok((rf, capped))
            }
            rf if rf < 1 => Err(invalid()),
            rf if usize::try_from(rf).expect("positive") > live => {
                Err(unreachable_replication(rf, live))
            }
            rf => Ok((rf, false)),
        }
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
                next.partitions.remove(id);
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
            MetadataRecord::LegacyBrokerRegistered(old) => {
                let registration = BrokerRegistration::from(LegacyBrokerRegistration::clone(old));
                next.register_broker(offset, registration)?
            }
            MetadataRecord::BrokerRegistered(registration) => {
                next.register_broker(offset, BrokerRegistration::clone(registration))?
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
            } => {
                let registrations: Vec<PartitionRegistration> = placements
                    .iter()
                    .map(|p| PartitionRegistration::single(*p))
                    .collect();
                ApplyOutcome::PartitionsPlaced(next.apply_assigned(
                    offset,
                    id,
                    *first,
                    &registrations,
                )?)
            }
            MetadataRecord::PartitionsAssigned(assigned) => ApplyOutcome::PartitionsPlaced(
                next.apply_assigned(offset, &assigned.id, assigned.first, &assigned.partitions)?,
            ),
            MetadataRecord::PartitionChanged(change) => next.apply_change(offset, change)?,
            MetadataRecord::AclsCreated(acls) => {
                if let Some(bad) = acls.iter().find(|a| a.validate().is_err()) {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: invalid ACL {bad:?}"
                    )));
                }
                next.acls = Arc::new(self.acls.changed(acls, &[]));
                ApplyOutcome::AclsCreated(Vec::clone(acls))
            }
            MetadataRecord::AclsDeleted(acls) => {
                next.acls = Arc::new(self.acls.changed(&[], acls));
                ApplyOutcome::AclsDeleted(Vec::clone(acls))
            }
            MetadataRecord::PartitionsAdded { id, partitions } => {
                let grows = next
                    .topic_by_id(id)
                    .is_some_and(|t| t.partitions < *partitions && *partitions <= PARTITIONS_MAX);
                if !grows || next.partitions.contains_key(id) {
                    return Err(ApplyError::corrupt(format!(
                        "offset {offset}: partitions added to an unknown or registered topic"
                    )));
                }
                let name = next.ids[id].clone();
                let topic = next.topics.get_mut(&name).expect("ids and topics agree");
                topic.partitions = *partitions;
                ApplyOutcome::PartitionsPlaced(topic.clone())
            }
            MetadataRecord::ScramCredentialSet(set) => {
                scram::apply_set(&mut next.scram_credentials, set);
                ApplyOutcome::ScramCredentialsChanged {
                    user: set.user.clone(),
                }
            }
            MetadataRecord::ScramCredentialRemoved(removed) => {
                scram::apply_removal(&mut next.scram_credentials, offset, removed)?;
                ApplyOutcome::ScramCredentialsChanged {
                    user: removed.user.clone(),
                }
            }
        };
        debug_assert_eq!(next.ids.len(), next.topics.len());
        Ok((next, outcome))
    }

    /// Registers partitions `first..` of topic `id`, growing the topic.
    fn apply_assigned(
        &mut self,
        offset: u64,
        id: &TopicId,
        first: i32,
        registrations: &[PartitionRegistration],
    ) -> Result<TopicMeta, ApplyError> {
        let corrupt = |what: &str| {
            ApplyError::corrupt(format!("offset {offset}: partition registration {what}"))
        };
        let name = self
            .ids
            .get(id)
            .ok_or_else(|| corrupt("of an unknown topic"))?;
        let topic = self.topics.get_mut(name).expect("ids and topics agree");
        let registered = self.partitions.entry(*id).or_default();
        let end = i32::try_from(registrations.len())
            .ok()
            .and_then(|n| first.checked_add(n))
            .filter(|end| *end <= PARTITIONS_MAX);
        let Some(end) = end else {
            return Err(corrupt("beyond the partition limit"));
        };
        if usize::try_from(first).ok() != Some(registered.len()) || end < topic.partitions {
            return Err(corrupt("does not follow the registered partitions"));
        }
        let known = |r: &PartitionRegistration| {
            r.is_consistent() && r.replica_brokers().all(|b| self.brokers.contains_key(&b))
        };
        if !registrations.iter().all(known) {
            return Err(corrupt("is inconsistent or names an unregistered broker"));
        }
        registered.extend_from_slice(registrations);
        topic.partitions = end;
        Ok(topic.clone())
    }

    /// Applies a leader/ISR change: it must replace the current partition epoch, keep a
    /// consistent registration and name a live leader (or none).
    fn apply_change(
        &mut self,
        offset: u64,
        change: &PartitionChange,
    ) -> Result<ApplyOutcome, ApplyError> {
        let corrupt = |what: &str| {
            ApplyError::corrupt(format!(
                "offset {offset}: change of partition {} {what}",
                change.partition
            ))
        };
        let live_leader = change.leader == NO_LEADER || self.is_live(change.leader);
        let slot = self
            .partitions
            .get_mut(&change.id)
            .and_then(|rs| rs.get_mut(usize::try_from(change.partition).ok()?))
            .ok_or_else(|| corrupt("of an unknown partition"))?;
        let next = PartitionRegistration {
            replicas: slot.replicas.clone(),
            isr: change.isr.clone(),
            leader: change.leader,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
        };
        let epochs_follow = change.partition_epoch == slot.partition_epoch + 1
            && if change.leader == slot.leader {
                change.leader_epoch == slot.leader_epoch
            } else {
                change.leader_epoch > slot.leader_epoch
            };
        if !epochs_follow {
            return Err(corrupt("does not follow its epochs"));
        }
        if !next.is_consistent() || !live_leader {
            return Err(corrupt("is inconsistent or names a fenced leader"));
        }
        *slot = next.clone();
        Ok(ApplyOutcome::PartitionChanged {
            id: change.id,
            partition: change.partition,
            registration: next,
        })
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
        let acls: std::collections::BTreeSet<AclBinding> = payload.acls.into_iter().collect();
        if acls.iter().any(|a| a.validate().is_err()) {
            return Err(ApplyError::corrupt("snapshot has an invalid ACL"));
        }
        image.acls = Arc::new(Acls::new(acls));
        for b in payload.brokers {
            if image.brokers.insert(b.node_id, b).is_some() {
                return Err(ApplyError::corrupt("snapshot has a duplicate broker"));
            }
        }
        for (id, registrations) in payload.partitions {
            let partitions = image.topic_by_id(&id).map(|t| t.partitions);
            let fits = partitions.is_some_and(|n| usize::try_from(n) == Ok(registrations.len()))
                && registrations.iter().all(|r| {
                    r.is_consistent() && r.replica_brokers().all(|b| image.brokers.contains_key(&b))
                });
            if !fits || image.partitions.insert(id, registrations).is_some() {
                return Err(ApplyError::corrupt(
                    "snapshot has inconsistent partition registrations",
                ));
            }
        }
        image.scram_credentials = scram::from_snapshot(payload.scram_credentials)?;
        Ok(image)
    }
}

/// The record that moves partition `index` of topic `id` from `current` to `to`.
fn change_record(
    id: TopicId,
    index: i32,
    current: &PartitionRegistration,
    to: LeaderAndIsr,
) -> PartitionChange {
    let next = current.changed(to);
    PartitionChange {
        id,
        partition: index,
        leader: next.leader,
        leader_epoch: next.leader_epoch,
        isr: next.isr,
        partition_epoch: next.partition_epoch,
    }
}

/// A topic id in hex, for messages.
fn hex(id: &TopicId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, partitions: i32, rf: i16) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            default_replication_factor: 1,
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

    /// A cluster of one: node 1 registered.
    fn initialized() -> MetadataImage {
        let rec = MetadataRecord::ClusterInit {
            cluster_id: "c".into(),
        };
        let image = MetadataImage::empty(1).apply(1, &rec).expect("init").0;
        let register = MetadataCommand::RegisterBroker {
            node_id: 1,
            host: "h".into(),
            port: 9092,
            shards: 2,
            rack: None,
            endpoints: Vec::new(),
        };
        run(&image, register).expect("register").0
    }

    /// Proposes and applies `cmd`, returning the next image and the first outcome.
    fn run(
        image: &MetadataImage,
        cmd: MetadataCommand,
    ) -> Result<(MetadataImage, ApplyOutcome), ApplyError> {
        let records = image.propose_records(cmd, ids())?;
        let (image, outcomes) = image.apply_batch(&records)?;
        Ok((image, outcomes.into_iter().next().expect("an outcome")))
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
            default_replication_factor: 1,
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
        assert_eq!(image.version, 4);
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
        assert_eq!((image.version, image.next_producer_id), (7, 1005));
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
    fn create_partitions_on_a_cluster_of_one() {
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
        let records = image
            .propose_records(create("a", 1, 1), || candidates.next().expect("candidate"))
            .expect("propose");
        let MetadataRecord::TopicCreated(meta) = &records[0] else {
            panic!("{records:?}")
        };
        assert_eq!(meta.id, [0x42; 16]);
        let (image, _) = image.apply_batch(&records).expect("apply");
        let mut candidates = vec![[0x42u8; 16], [0x43; 16]].into_iter();
        let records = image
            .propose_records(create("b", 1, 1), || candidates.next().expect("candidate"))
            .expect("propose");
        assert!(matches!(&records[0], MetadataRecord::TopicCreated(m) if m.id == [0x43; 16]));
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
        let v = image.version;
        for (offset, rec) in [
            (v + 1, &init),
            (v + 2, &pids),
            (v + 1, &delete),
            (v + 1, &pids),
        ] {
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
            endpoints: Vec::new(),
        }
    }

    fn create(name: &str, partitions: i32) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            default_replication_factor: 1,
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
        assert!((12..16).all(|p| grown.partition(&id, p).expect("placed").leader != 2));
        let back = run(&grown, register(2)).expect("re-register");
        assert_eq!(back.partition_leader(&id, 1), Some(leaders[1]));
        assert!(back.brokers[&2].epoch > image.brokers[&2].epoch);
        let smaller = MetadataCommand::CreatePartitions {
            name: "t".into(),
            total: 16,
        };
        assert_eq!(run(&back, smaller).unwrap_err().kafka_error_code(), 37);
        let deleted = run(&back, MetadataCommand::DeleteTopic { name: "t".into() }).expect("del");
        assert!(deleted.partitions.is_empty());
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

    fn create_rf(name: &str, partitions: i32, rf: i16, default_rf: i16) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            default_replication_factor: default_rf,
            configs: BTreeMap::new(),
        }
    }

    fn fence(node_id: i32, fenced: bool) -> MetadataCommand {
        MetadataCommand::SetBrokerFenced { node_id, fenced }
    }

    /// Three brokers and topic "t" with `partitions` partitions of three replicas.
    fn replicated(partitions: i32, configs: &[(&str, &str)]) -> (MetadataImage, TopicId) {
        let cmd = MetadataCommand::CreateTopic {
            name: "t".into(),
            partitions,
            replication_factor: 3,
            default_replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let image = run(&cluster(), cmd).expect("create");
        let id = image.topic("t").expect("t").id;
        (image, id)
    }

    fn reg(image: &MetadataImage, id: &TopicId, p: i32) -> PartitionRegistration {
        image.partition(id, p).expect("registered").clone()
    }

    #[test]
    fn replication_factor_defaults_caps_and_errors() {
        let image = cluster();
        let records = image
            .propose_records(create_rf("d", 2, -1, 5), ids())
            .expect("capped");
        let (after, _) = image.apply_batch(&records).expect("apply");
        assert_eq!(after.topic("d").expect("d").replication_factor, 3);
        let resolved = image
            .validate_create("d", 2, -1, 5, &BTreeMap::new())
            .expect("valid");
        assert_eq!((resolved.replication_factor, resolved.capped), (3, true));
        let resolved = image
            .validate_create("d", 2, -1, 2, &BTreeMap::new())
            .expect("valid");
        assert_eq!((resolved.replication_factor, resolved.capped), (2, false));
        assert!(after
            .partitions
            .values()
            .flatten()
            .all(|r| r.replicas.len() == 3 && r.isr.len() == 3));
        let err = run(&image, create_rf("x", 1, 4, 1)).expect_err("too many");
        assert_eq!(err.kafka_error_code(), 38);
        assert_eq!(
            err.to_string(),
            "Unable to replicate the partition 4 time(s): The target replication factor of 4 \
             cannot be reached because only 3 broker(s) are registered."
        );
        for rf in [0, -2, i16::MIN] {
            let err = run(&image, create_rf("x", 1, rf, 1)).expect_err("invalid");
            assert_eq!(err.kafka_error_code(), 38, "{rf}");
        }
        assert_eq!(
            run(&image, create_rf("x", 1, -1, 0))
                .expect_err("bad default")
                .kafka_error_code(),
            38
        );
        // Fenced brokers do not count.
        let fenced = run(&image, fence(3, true)).expect("fence");
        let err = run(&fenced, create_rf("x", 1, 3, 1)).expect_err("two live");
        assert!(err.to_string().contains("only 2 broker(s)"), "{err}");
        // CreatePartitions keeps the topic's factor and needs as many live brokers.
        let (grown_from, _) = replicated(2, &[]);
        let fenced = run(&grown_from, fence(3, true)).expect("fence");
        let grow = MetadataCommand::CreatePartitions {
            name: "t".into(),
            total: 4,
        };
        assert_eq!(
            run(&fenced, grow.clone()).unwrap_err().kafka_error_code(),
            38
        );
        let grown = run(&grown_from, grow).expect("grow");
        assert!((0..4).all(|p| reg(&grown, &grown.topic("t").unwrap().id, p).replicas.len() == 3));
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_in_one_batch() {
        let (image, id) = replicated(6, &[]);
        let before: Vec<_> = (0..6).map(|p| reg(&image, &id, p)).collect();
        let records = image.propose_records(fence(1, true), ids()).expect("fence");
        let led_by_1 = before.iter().filter(|r| r.leader == 1).count();
        // The fence, then one change per partition (each had broker 1 in its ISR).
        assert_eq!(records.len(), 1 + 6, "{records:?}");
        assert!(led_by_1 > 0);
        let (fenced, _) = image.apply_batch(&records).expect("apply");
        for (p, old) in before.iter().enumerate() {
            let now = reg(&fenced, &id, p as i32);
            assert!(!now.isr.contains(&1), "{now:?}");
            assert_eq!(now.partition_epoch, old.partition_epoch + 1);
            if old.leader == 1 {
                let expected = old.replica_brokers().find(|b| *b != 1).expect("another");
                assert_eq!(now.leader, expected);
                assert_eq!(now.leader_epoch, old.leader_epoch + 1);
            } else {
                assert_eq!(
                    (now.leader, now.leader_epoch),
                    (old.leader, old.leader_epoch)
                );
            }
            assert_eq!(fenced.partition_leader(&id, p as i32), Some(now.leader));
        }
        // Unfencing does not put it back into the ISR (its leader does, by AlterPartition)
        // and moves no leader: every partition has one.
        let back = run(&fenced, fence(1, false)).expect("unfence");
        assert_eq!(back.partitions, fenced.partitions);
    }

    #[test]
    fn a_live_broker_registering_again_gives_what_it_led_a_new_leader_epoch() {
        // A restart within the session: the old incarnation may have lost an unsynced tail
        // its followers hold, so its partitions must not go on in the same epoch.
        let (image, id) = replicated(6, &[]);
        let restarted = run(&image, register(1)).expect("re-register");
        assert!(restarted.is_live(1));
        for p in 0..6 {
            let (old, now) = (reg(&image, &id, p), reg(&restarted, &id, p));
            if old.leader == 1 {
                assert!(now.leader_epoch > old.leader_epoch, "{old:?} -> {now:?}");
                assert_ne!(now.leader, NO_LEADER);
            }
            // It left the ISRs with the old incarnation; its leaders add it back.
            assert!(!now.isr.contains(&1) || now.isr == [1], "{now:?}");
        }
        // Alone in a partition's ISR, it comes straight back as its leader, one epoch on.
        let (mut lone, id) = replicated(1, &[]);
        for broker in [2, 3] {
            lone = run(&lone, fence(broker, true)).expect("fence");
        }
        let before = reg(&lone, &id, 0);
        let after = reg(&run(&lone, register(1)).expect("re-register"), &id, 0);
        assert_eq!((after.leader, after.isr.clone()), (1, vec![1]));
        assert!(after.leader_epoch > before.leader_epoch);
    }

    #[test]
    fn the_last_isr_member_keeps_its_place_and_comes_back_as_leader() {
        let (mut image, id) = replicated(1, &[]);
        for broker in [2, 3, 1] {
            image = run(&image, fence(broker, true)).expect("fence");
        }
        let offline = reg(&image, &id, 0);
        assert_eq!((offline.leader, offline.isr.clone()), (NO_LEADER, vec![1]));
        assert_eq!(image.partition_leader(&id, 0), None);
        // A replica that is not in the ISR coming back does not lead.
        let two = run(&image, fence(2, false)).expect("unfence 2");
        assert_eq!(reg(&two, &id, 0).leader, NO_LEADER);
        let one = run(&two, fence(1, false)).expect("unfence 1");
        let led = reg(&one, &id, 0);
        assert_eq!((led.leader, led.isr.clone()), (1, vec![1]));
        assert!(led.leader_epoch > offline.leader_epoch);
        // Re-registering a fenced broker counts as unfencing it.
        let again = run(&two, register(1)).expect("re-register");
        assert_eq!(reg(&again, &id, 0).leader, 1);
    }

    #[test]
    fn unclean_election_takes_any_live_replica() {
        let (mut image, id) = replicated(1, &[("unclean.leader.election.enable", "true")]);
        for broker in [2, 3, 1] {
            image = run(&image, fence(broker, true)).expect("fence");
        }
        let offline = reg(&image, &id, 0);
        assert_eq!((offline.leader, offline.isr.clone()), (NO_LEADER, vec![1]));
        let two = run(&image, fence(2, false)).expect("unfence 2");
        let led = reg(&two, &id, 0);
        assert_eq!((led.leader, led.isr), (2, vec![2]));
        // With the leader fenced and no other ISR member live, a live replica takes over.
        let (mut image, id) = replicated(1, &[("unclean.leader.election.enable", "TRUE")]);
        let leader = reg(&image, &id, 0).leader;
        let others: Vec<i32> = [1, 2, 3].into_iter().filter(|b| *b != leader).collect();
        let isr_only_leader = MetadataCommand::AlterPartition {
            topic_id: id,
            partition: 0,
            leader_id: leader,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![leader],
        };
        image = run(&image, isr_only_leader).expect("shrink");
        image = run(&image, fence(leader, true)).expect("fence leader");
        let now = reg(&image, &id, 0);
        assert_eq!((now.leader, now.isr), (others[0], vec![others[0]]));
    }

    #[test]
    fn alter_partition_is_a_compare_and_set() {
        let (image, id) = replicated(1, &[]);
        let r = reg(&image, &id, 0);
        let alter = |leader_id, leader_epoch, partition_epoch, new_isr: Vec<i32>| {
            MetadataCommand::AlterPartition {
                topic_id: id,
                partition: 0,
                leader_id,
                leader_epoch,
                partition_epoch,
                new_isr,
            }
        };
        let follower = r.replicas[1].broker;
        let shrunk: Vec<i32> = r.isr.iter().copied().filter(|b| *b != follower).collect();
        let records = image
            .propose_records(alter(r.leader, 0, 0, shrunk.clone()), ids())
            .expect("valid");
        let (after, outcomes) = image.apply_batch(&records).expect("apply");
        let ApplyOutcome::PartitionChanged { registration, .. } = &outcomes[0] else {
            panic!("{outcomes:?}")
        };
        assert_eq!(registration, &reg(&after, &id, 0));
        assert_eq!(
            (
                registration.isr.clone(),
                registration.partition_epoch,
                registration.leader_epoch
            ),
            (shrunk.clone(), 1, 0)
        );
        let code = |img: &MetadataImage, cmd| run(img, cmd).unwrap_err().kafka_error_code();
        // Stale partition epoch, stale or future leader epoch, not the leader.
        assert_eq!(code(&after, alter(r.leader, 0, 0, r.isr.clone())), 95);
        assert_eq!(code(&after, alter(r.leader, 1, 1, r.isr.clone())), 74);
        assert_eq!(code(&after, alter(follower, 0, 1, r.isr.clone())), 6);
        // The ISR must hold the leader and only replicas, once each.
        assert_eq!(code(&after, alter(r.leader, 0, 1, vec![follower])), 42);
        assert_eq!(code(&after, alter(r.leader, 0, 1, vec![r.leader, 9])), 42);
        assert_eq!(
            code(&after, alter(r.leader, 0, 1, vec![r.leader, r.leader])),
            42
        );
        // A fenced broker cannot join.
        let fenced = run(&after, fence(follower, true)).expect("fence");
        let epoch = reg(&fenced, &id, 0).partition_epoch;
        assert_eq!(code(&fenced, alter(r.leader, 0, epoch, r.isr.clone())), 107);
        // Unknown partition.
        let unknown = MetadataCommand::AlterPartition {
            topic_id: id,
            partition: 5,
            leader_id: r.leader,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![r.leader],
        };
        assert_eq!(code(&after, unknown), 3);
        // Growing back once the follower is live again succeeds.
        let back = run(&fenced, fence(follower, false)).expect("unfence");
        let epoch = reg(&back, &id, 0).partition_epoch;
        let grown = run(&back, alter(r.leader, 0, epoch, r.isr.clone())).expect("grow");
        assert_eq!(reg(&grown, &id, 0).isr, r.isr);
        // A change record that no longer follows the epochs is refused at apply.
        assert!(back.apply_batch(&records).is_err());
    }

    #[test]
    fn preferred_leader_elections() {
        let (image, id) = replicated(3, &[]);
        let preferred = reg(&image, &id, 0).leader;
        let all_needed = image.preferred_elections(None);
        assert!(all_needed.is_empty(), "{all_needed:?}");
        let elect = |ps: Option<Vec<(String, i32)>>| MetadataCommand::ElectLeaders {
            election: ElectionType::Preferred,
            partitions: ps,
        };
        let one = Some(vec![("t".to_owned(), 0)]);
        assert_eq!(
            run(&image, elect(one.clone()))
                .unwrap_err()
                .kafka_error_code(),
            84
        );
        // Fence the preferred leader: another leads; the preferred one is unavailable.
        let fenced = run(&image, fence(preferred, true)).expect("fence");
        assert_ne!(reg(&fenced, &id, 0).leader, preferred);
        assert_eq!(
            run(&fenced, elect(one.clone()))
                .unwrap_err()
                .kafka_error_code(),
            80
        );
        // Back, but out of the ISR until its leader adds it: still unavailable.
        let back = run(&fenced, fence(preferred, false)).expect("unfence");
        assert_eq!(
            run(&back, elect(one.clone()))
                .unwrap_err()
                .kafka_error_code(),
            80
        );
        let r = reg(&back, &id, 0);
        let mut isr = r.isr.clone();
        isr.push(preferred);
        let rejoin = MetadataCommand::AlterPartition {
            topic_id: id,
            partition: 0,
            leader_id: r.leader,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            new_isr: isr,
        };
        let synced = run(&back, rejoin).expect("rejoin");
        let results = synced.preferred_elections(Some(&[
            ("t".to_owned(), 0),
            ("t".to_owned(), 9),
            ("nope".to_owned(), 0),
        ]));
        let codes: Vec<i16> = results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, [0, 3, 3]);
        let elected = run(&synced, elect(None)).expect("elect all");
        let now = reg(&elected, &id, 0);
        assert_eq!(now.leader, preferred);
        assert_eq!(now.leader_epoch, r.leader_epoch + 1);
        assert!(elected.preferred_elections(None).is_empty());
    }

    #[test]
    fn unclean_elections_through_elect_leaders() {
        let (image, id) = replicated(1, &[]);
        let r = reg(&image, &id, 0);
        let (leader, followers) = (r.leader, r.isr[1..].to_vec());
        let elect = |ps: Option<Vec<(String, i32)>>| MetadataCommand::ElectLeaders {
            election: ElectionType::Unclean,
            partitions: ps,
        };
        let one = Some(vec![("t".to_owned(), 0)]);
        // A live leader: not needed.
        assert_eq!(
            run(&image, elect(one.clone()))
                .unwrap_err()
                .kafka_error_code(),
            84
        );
        // The followers fenced, then the leader, the last ISR member: offline.
        let mut down = image.clone();
        for b in followers.iter().chain([&leader]) {
            down = run(&down, fence(*b, true)).expect("fence");
        }
        let offline = reg(&down, &id, 0);
        assert_eq!(
            (offline.leader, offline.isr.clone()),
            (NO_LEADER, vec![leader])
        );
        // Every replica down: nobody to elect.
        assert_eq!(
            run(&down, elect(one.clone()))
                .unwrap_err()
                .kafka_error_code(),
            83
        );
        let results = down.elections(ElectionType::Unclean, None);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].error_code, 83);
        // A follower back: it stays offline (not in the ISR) until an unclean election.
        let back = run(&down, fence(followers[1], false)).expect("unfence");
        assert_eq!(reg(&back, &id, 0).leader, NO_LEADER);
        let elected = run(&back, elect(one.clone())).expect("unclean");
        let now = reg(&elected, &id, 0);
        assert_eq!(
            (now.leader, now.isr.clone(), now.leader_epoch),
            (followers[1], vec![followers[1]], offline.leader_epoch + 1)
        );
        assert_eq!(now.partition_epoch, offline.partition_epoch + 1);
        // Done: not needed any more; a preferred election is a separate matter.
        assert_eq!(
            run(&elected, elect(None)).unwrap_err().kafka_error_code(),
            84
        );
        assert!(elected.elections(ElectionType::Unclean, None).is_empty());
    }

    #[test]
    fn shutdown_fences_and_elects_in_one_batch() {
        let (image, id) = replicated(3, &[]);
        let records = image
            .propose_records(MetadataCommand::ShutdownBroker { node_id: 2 }, ids())
            .expect("shutdown");
        assert!(matches!(
            records[0],
            MetadataRecord::BrokerFenced {
                node_id: 2,
                fenced: true
            }
        ));
        let (after, _) = image.apply_batch(&records).expect("apply");
        assert!((0..3).all(|p| after.partition_leader(&id, p).is_some_and(|l| l != 2)));
        let again = MetadataCommand::ShutdownBroker { node_id: 2 };
        assert_eq!(run(&after, again).unwrap_err().kafka_error_code(), 42);
    }

    #[test]
    fn an_offline_replica_leaves_the_isr_and_its_leadership_moves() {
        let (image, id) = replicated(1, &[]);
        let before = reg(&image, &id, 0);
        let offline = |node_id| MetadataCommand::ReplicaOffline {
            node_id,
            topic_id: id,
            partition: 0,
        };
        let moved = run(&image, offline(before.leader)).expect("leader offline");
        let now = reg(&moved, &id, 0);
        assert_ne!(now.leader, before.leader);
        assert!(now.leader != NO_LEADER && !now.isr.contains(&before.leader));
        assert_eq!(now.leader_epoch, before.leader_epoch + 1);
        // Out of the ISR and not leading: nothing more to do.
        let again = run(&moved, offline(before.leader)).unwrap_err();
        assert_eq!(again.kafka_error_code(), 42);
        // The broker itself stays live: only this replica is offline.
        assert!(moved.is_live(before.leader));
        // The last ISR member keeps its place; the partition waits for it, leaderless.
        let follower = now
            .isr
            .iter()
            .copied()
            .find(|b| *b != now.leader)
            .expect("2 in ISR");
        let one = run(&moved, offline(follower)).expect("follower offline");
        let last = reg(&one, &id, 0).leader;
        let alone = run(&one, offline(last)).expect("last offline");
        let end = reg(&alone, &id, 0);
        assert_eq!((end.leader, end.isr), (NO_LEADER, vec![last]));
    }

    #[test]
    fn old_single_replica_records_become_registrations() {
        let image = cluster();
        let topic = TopicMeta {
            id: [5; 16],
            name: "old".into(),
            partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::new(),
        };
        let placed = MetadataRecord::PartitionsPlaced {
            id: [5; 16],
            first: 0,
            placements: vec![
                Placement {
                    broker: 2,
                    shard: 1,
                },
                Placement {
                    broker: 3,
                    shard: 0,
                },
            ],
        };
        let (image, _) = image
            .apply_batch(&[MetadataRecord::TopicCreated(topic), placed])
            .expect("old records apply");
        let r = reg(&image, &[5; 16], 0);
        assert_eq!(
            r,
            PartitionRegistration::single(Placement {
                broker: 2,
                shard: 1
            })
        );
        assert_eq!(image.partition_leader(&[5; 16], 1), Some(3));
        assert_eq!(
            image.replica_on(&[5; 16], 1, 3),
            Some(Placement {
                broker: 3,
                shard: 0
            })
        );
        assert_eq!(image.replica_on(&[5; 16], 1, 2), None);
        // Fencing broker 3 takes partition 1 offline (its only replica) but keeps its ISR.
        let fenced = run(&image, fence(3, true)).expect("fence");
        let r = reg(&fenced, &[5; 16], 1);
        assert_eq!((r.leader, r.isr, r.leader_epoch), (NO_LEADER, vec![3], 1));
        let snapshot = crate::codec::SnapshotPayload::of(&fenced);
        assert_eq!(
            MetadataImage::from_snapshot(1, snapshot).expect("restore"),
            fenced
        );
    }
}
