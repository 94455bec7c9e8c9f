//! The group coordinator on a glommio shard: where a group lives, the machine's effects
//! carried out (records appended to the group's `__consumer_offsets` partition and
//! acknowledged by its in-sync replicas, then the group's pending write ended: committed with
//! its held-back replies delivered, or rolled back with error answers), requests for a group
//! with a pending write held until it ends, the groups of a partition
//! loaded when this shard becomes its leader and dropped when it stops leading it, and the
//! timer that ticks the machine.

pub use super::machine::CommitRequest;
use super::machine::{
    CommittedOffset, Coordinator, Effects, JoinOutcome, JoinRequest, Limits, Reply, SyncOutcome,
    SyncRequest, TimeMs, Token, WriteId,
};
use super::records::{decode_batch, encode_batch, DecodeError, StoredRecord};
use super::{code, group_write_error, partition_for, OFFSETS_TOPIC};
use crate::config::BrokerConfig;
use crate::partition::Partition;
use crate::shard::{PartitionKey, Shard};
use controller::{MetadataCommand, TopicMeta};
use futures::channel::oneshot;
use replication::Acks;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use storage::PartitionLog;
use tracing::{info, warn};

/// How often each shard ticks its coordinator (session and rebalance timeouts resolve to
/// this granularity).
const TICK_INTERVAL_MS: u64 = 100;
/// Bytes read per step while replaying a `__consumer_offsets` partition.
const REPLAY_READ_BYTES_MAX: usize = 1 << 20;
/// Segment size of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes`).
const OFFSETS_SEGMENT_BYTES: &str = "104857600";

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> TimeMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as TimeMs)
        .unwrap_or(0)
}

/// The coordinator state of one shard.
pub struct ShardGroups {
    machine: RefCell<Coordinator>,
    waiters: RefCell<HashMap<Token, oneshot::Sender<Reply>>>,
    next_token: Cell<Token>,
    /// The `__consumer_offsets` partitions (indexes) whose groups this shard has loaded: it
    /// leads them and replayed their logs.
    loaded: RefCell<BTreeSet<i32>>,
    /// Requests waiting for a group's pending write to end (at most one per request in
    /// flight, so bounded by the connections' request bounds).
    idle_waiters: RefCell<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// How long a group write waits for the in-sync replicas (Kafka's
    /// `offsets.commit.timeout.ms`).
    write_timeout_ms: u64,
}

impl ShardGroups {
    pub fn new(config: &BrokerConfig) -> ShardGroups {
        let limits = Limits {
            session_timeout_ms_min: config.group_min_session_timeout_ms,
            session_timeout_ms_max: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            offsets_retention_ms: config.offsets_retention_minutes * 60_000,
            ..Limits::default()
        };
        ShardGroups {
            machine: RefCell::new(Coordinator::new(limits)),
            waiters: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            loaded: RefCell::new(BTreeSet::new()),
            idle_waiters: RefCell::new(HashMap::new()),
            write_timeout_ms: config.offsets_commit_timeout_ms,
        }
    }

    /// Read access to the machine (no `.await` while it is held).
    pub fn with<R>(&self, f: impl FnOnce(&Coordinator) -> R) -> R {
        f(&self.machine.borrow())
    }

    fn waiter(&self) -> (Token, oneshot::Receiver<Reply>) {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(token, tx);
        (token, rx)
    }

    /// Whether the groups of `__consumer_offsets` partition `partition` are loaded here.
    pub fn is_loaded(&self, partition: i32) -> bool {
        self.loaded.borrow().contains(&partition)
    }
}

/// The offsets topic, created on first use (as Kafka does), compacted.
pub async fn offsets_topic(shard: &Rc<Shard>) -> Result<TopicMeta, i16> {
    if let Some(topic) = shard.image().topic(OFFSETS_TOPIC) {
        return Ok(topic.clone());
    }
    let command = MetadataCommand::CreateTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: shard.config.offsets_topic_num_partitions,
        // `offsets.topic.replication.factor`, capped at the live brokers.
        replication_factor: -1,
        default_replication_factor: shard.config.offsets_topic_replication_factor,
        configs: BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                OFFSETS_SEGMENT_BYTES.to_string(),
            ),
        ]),
    };
    match shard.propose(command).await {
        Ok(_) => info!(
            partitions = shard.config.offsets_topic_num_partitions,
            "{OFFSETS_TOPIC} created"
        ),
        Err(e) if e.is_topic_already_exists() => {}
        Err(e) => {
            warn!("cannot create {OFFSETS_TOPIC}: {e}");
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
    }
    shard
        .image()
        .topic(OFFSETS_TOPIC)
        .cloned()
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)
}

/// Runs `work` on the shard that coordinates `group_id`, with the group's
/// `__consumer_offsets` partition. Errors are the Kafka codes for an unreachable
/// coordinator.
pub async fn on_coordinator<R, F, Fut>(shard: &Rc<Shard>, group_id: &str, work: F) -> Result<R, i16>
where
    R: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    let topic = offsets_topic(shard).await?;
    let key: PartitionKey = (topic.id, partition_for(group_id, topic.partitions));
    let target = shard.owner_of(&key);
    shard
        .run_on(target, move |owner| async move {
            if !owner.partition(&key).is_some_and(|p| p.is_leader()) {
                return Err(code::NOT_COORDINATOR);
            }
            if !owner.groups.is_loaded(key.1) {
                return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
            }
            Ok(work(owner).await)
        })
        .await
}

/// A group's `__consumer_offsets` partition on this (its owner) shard.
fn group_partition(shard: &Shard, group_id: &str) -> Option<Partition> {
    let image = shard.image();
    let topic = image.topic(OFFSETS_TOPIC)?;
    let key = (topic.id, partition_for(group_id, topic.partitions));
    debug_assert_eq!(shard.owner_of(&key), shard.id, "groups live on their owner");
    shard.partition(&key)
}

/// Appends one group's records as one batch and waits until every in-sync replica has them
/// durably (acks=all): a group's state survives a failover. Errors are the append's codes.
async fn persist(shard: &Shard, group_id: &str, records: &[StoredRecord]) -> Result<(), i16> {
    debug_assert!(records.iter().all(|r| r.key.group() == group_id));
    let Some(partition) = group_partition(shard, group_id) else {
        return Err(code::NOT_LEADER_OR_FOLLOWER);
    };
    let last_offset = append_records(&partition, records).await?;
    partition
        .wait_acknowledged(last_offset, Acks::All, shard.groups.write_timeout_ms)
        .await
}

/// Whether this shard still coordinates the group (leads and has loaded its partition).
fn coordinates(shard: &Shard, group_id: &str) -> bool {
    group_partition(shard, group_id)
        .is_some_and(|p| p.is_leader() && shard.groups.is_loaded(p.key().1))
}

/// Waits until the group has no pending write. NOT_COORDINATOR when the group's partition
/// moved away meanwhile.
async fn idle(shard: &Shard, group_id: &str) -> Result<(), i16> {
    while shard.groups.machine.borrow().is_writing(group_id) {
        let (tx, rx) = oneshot::channel();
        shard
            .groups
            .idle_waiters
            .borrow_mut()
            .entry(group_id.to_string())
            .or_default()
            .push(tx);
        let _ = rx.await;
        if !coordinates(shard, group_id) {
            return Err(code::NOT_COORDINATOR);
        }
    }
    Ok(())
}

/// Lets the requests waiting for a group's write go on (`None`: every group's).
fn wake(shard: &Shard, group_id: Option<&str>) {
    let woken: Vec<oneshot::Sender<()>> = {
        let mut waiters = shard.groups.idle_waiters.borrow_mut();
        match group_id {
            Some(id) => waiters.remove(id).unwrap_or_default(),
            None => waiters.drain().flat_map(|(_, list)| list).collect(),
        }
    };
    for tx in woken {
        let _ = tx.send(());
    }
}

fn deliver(shard: &Shard, replies: Vec<(Token, Reply)>) {
    let mut waiters = shard.groups.waiters.borrow_mut();
    for (token, reply) in replies {
        if let Some(tx) = waiters.remove(&token) {
            let _ = tx.send(reply);
        }
    }
}

/// The pending writes a machine call just began: each group's id and records. Read at once
/// after the call, before any `.await`.
fn pending_writes(
    shard: &Shard,
    records: Vec<StoredRecord>,
) -> Vec<(String, WriteId, Vec<StoredRecord>)> {
    let mut by_group: BTreeMap<String, Vec<StoredRecord>> = BTreeMap::new();
    for record in records {
        by_group
            .entry(record.key.group().to_string())
            .or_default()
            .push(record);
    }
    let machine = shard.groups.machine.borrow();
    by_group
        .into_iter()
        .map(|(group, records)| {
            let id = machine
                .writing(&group)
                .expect("records come with a pending write");
            (group, id, records)
        })
        .collect()
}

/// Persists a group's pending write, then ends it: committed (held-back replies delivered)
/// or rolled back (the group as it was, error answers). Returns the group error code of a
/// failed write.
async fn write(
    shard: &Shard,
    group_id: &str,
    id: WriteId,
    records: &[StoredRecord],
) -> Result<(), i16> {
    let result = persist(shard, group_id, records).await.map_err(|error| {
        warn!(
            shard = shard.id,
            group = group_id,
            error,
            "group write failed; group state restored"
        );
        group_write_error(error)
    });
    let now = now_ms();
    let replies = {
        let mut machine = shard.groups.machine.borrow_mut();
        match result {
            Ok(()) => machine.write_done(now, group_id, id),
            Err(error) => machine.write_failed(now, group_id, id, error),
        }
    };
    deliver(shard, replies);
    wake(shard, Some(group_id));
    result
}

/// Delivers a call's immediate replies and carries out the writes it began; the first
/// failed write's group error, if any.
async fn carry_out(shard: &Shard, effects: Effects) -> Result<(), i16> {
    deliver(shard, effects.replies);
    let mut result = Ok(());
    for (group, id, records) in pending_writes(shard, effects.records) {
        if let Err(error) = write(shard, &group, id, &records).await {
            result = result.and(Err(error));
        }
    }
    result
}

/// Like [`carry_out`], each group's write in its own task (the timer does not wait on disks).
fn carry_out_detached(shard: &Rc<Shard>, effects: Effects) {
    deliver(shard, effects.replies);
    for (group, id, records) in pending_writes(shard, effects.records) {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let _ = write(&shard, &group, id, &records).await;
        })
        .detach();
    }
}

/// Appends records to the group's partition as one batch; returns the offset of the last.
async fn append_records(partition: &Partition, records: &[StoredRecord]) -> Result<i64, i16> {
    let (batch, header) = group_batch(records).map_err(|e| {
        warn!("{e}");
        code::UNKNOWN_SERVER_ERROR
    })?;
    let outcome = partition.append(&batch, &header, Acks::All).await?;
    Ok(outcome.last_offset)
}

/// Records as one validated batch.
fn group_batch(
    records: &[StoredRecord],
) -> Result<(bytes::Bytes, storage::batch::BatchHeader), String> {
    let batch =
        encode_batch(records, now_ms()).map_err(|e| format!("cannot encode group records: {e}"))?;
    let header = storage::batch::validate_produce_records(&batch)
        .map_err(|e| format!("encoded group batch is invalid: {e}"))?;
    Ok((batch, header))
}

pub async fn join(shard: Rc<Shard>, request: JoinRequest) -> JoinOutcome {
    let member_id = request.member_id.clone();
    if let Err(error) = idle(&shard, &request.group_id).await {
        return JoinOutcome::error(error, &member_id);
    }
    let (token, rx) = shard.groups.waiter();
    let effects = shard
        .groups
        .machine
        .borrow_mut()
        .join(now_ms(), token, request);
    // A failed write answers through the token too.
    let _ = carry_out(&shard, effects).await;
    match rx.await {
        Ok(Reply::Join(outcome)) => outcome,
        _ => JoinOutcome::error(code::REBALANCE_IN_PROGRESS, &member_id),
    }
}

pub async fn sync(shard: Rc<Shard>, request: SyncRequest) -> SyncOutcome {
    if let Err(error) = idle(&shard, &request.group_id).await {
        return SyncOutcome::error(error);
    }
    let (token, rx) = shard.groups.waiter();
    let effects = shard
        .groups
        .machine
        .borrow_mut()
        .sync(now_ms(), token, request);
    let _ = carry_out(&shard, effects).await;
    match rx.await {
        Ok(Reply::Sync(outcome)) => outcome,
        _ => SyncOutcome::error(code::REBALANCE_IN_PROGRESS),
    }
}

pub async fn heartbeat(
    shard: Rc<Shard>,
    group_id: String,
    generation: i32,
    member_id: String,
    instance_id: Option<String>,
) -> i16 {
    if let Err(error) = idle(&shard, &group_id).await {
        return error;
    }
    shard.groups.machine.borrow_mut().heartbeat(
        now_ms(),
        &group_id,
        generation,
        &member_id,
        instance_id.as_deref(),
    )
}

pub async fn leave(
    shard: Rc<Shard>,
    group_id: String,
    members: Vec<(String, Option<String>)>,
) -> (i16, Vec<i16>) {
    if let Err(error) = idle(&shard, &group_id).await {
        return (error, vec![error; members.len()]);
    }
    let (top, errors, effects) =
        shard
            .groups
            .machine
            .borrow_mut()
            .leave(now_ms(), &group_id, &members);
    match carry_out(&shard, effects).await {
        Ok(()) => (top, errors),
        // The members are still in the group: say so for each.
        Err(error) => {
            let errors = errors
                .into_iter()
                .map(|e| if e == code::NONE { error } else { e })
                .collect();
            (error, errors)
        }
    }
}

/// Validates a commit, writes its records (acknowledged by the in-sync replicas) and only
/// then applies it.
pub async fn commit(shard: Rc<Shard>, request: CommitRequest) -> Result<(), i16> {
    idle(&shard, &request.group_id).await?;
    let records = shard
        .groups
        .machine
        .borrow_mut()
        .commit(now_ms(), &request)?;
    write_pending(&shard, &request.group_id, &records).await
}

/// Writes the records a machine call just began a pending write with (none: nothing to do).
async fn write_pending(shard: &Shard, group_id: &str, records: &[StoredRecord]) -> Result<(), i16> {
    let Some(id) = shard.groups.machine.borrow().writing(group_id) else {
        debug_assert!(records.is_empty(), "records come with a pending write");
        return Ok(());
    };
    write(shard, group_id, id, records).await
}

/// Committed offsets of a group: the partitions asked for, or all of them (`None`).
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

pub fn fetch(
    shard: &Shard,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> FetchedOffsets {
    shard.groups.with(|machine| {
        let group = machine.group(group_id);
        let lookup = |topic: &str, partition: i32| {
            group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)).cloned())
        };
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|p| (p, lookup(&topic, p)))
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut out: FetchedOffsets = Vec::new();
                for ((topic, partition), committed) in group.iter().flat_map(|g| g.offsets.iter()) {
                    match out.last_mut() {
                        Some((last, list)) if last == topic => {
                            list.push((*partition, Some(committed.clone())))
                        }
                        _ => out.push((topic.clone(), vec![(*partition, Some(committed.clone()))])),
                    }
                }
                out
            }
        }
    })
}

pub async fn delete_group(shard: Rc<Shard>, group_id: String) -> i16 {
    if let Err(error) = idle(&shard, &group_id).await {
        return error;
    }
    let records = match shard.groups.machine.borrow_mut().delete_group(&group_id) {
        Ok(records) => records,
        Err(error) => return error,
    };
    match write_pending(&shard, &group_id, &records).await {
        Ok(()) => code::NONE,
        Err(error) => error,
    }
}

pub async fn delete_offsets(
    shard: Rc<Shard>,
    group_id: String,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<i16>, i16> {
    idle(&shard, &group_id).await?;
    let (errors, records) = shard
        .groups
        .machine
        .borrow_mut()
        .delete_offsets(&group_id, &partitions)?;
    write_pending(&shard, &group_id, &records).await?;
    Ok(errors)
}

/// Forgets, on every shard, the committed offsets of a deleted topic.
pub async fn forget_topic(shard: &Rc<Shard>, topic: String) {
    if topic == OFFSETS_TOPIC {
        return;
    }
    shard
        .run_on_all(move |s| {
            let topic = topic.clone();
            async move {
                let groups = s.groups.with(|m| m.groups_with_topic(&topic));
                for group in groups {
                    if idle(&s, &group).await.is_err() {
                        continue;
                    }
                    let records = s
                        .groups
                        .machine
                        .borrow_mut()
                        .delete_topic_offsets(&group, &topic);
                    if let Err(error) = write_pending(&s, &group, &records).await {
                        warn!(
                            shard = s.id,
                            group, error, "tombstones of a deleted topic not persisted"
                        );
                    }
                }
            }
        })
        .await;
}

/// At startup: starts ticking the shard's coordinator. The groups of each
/// `__consumer_offsets` partition load when this shard becomes its leader
/// ([`follow_leadership`]); requests for them get COORDINATOR_LOAD_IN_PROGRESS until then.
pub fn start(shard: &Rc<Shard>) {
    glommio::spawn_local(tick_loop(shard.clone())).detach();
}

/// After a `__consumer_offsets` partition's state changed: loads its groups when this shard
/// now leads it (replaying its log), or drops them when it no longer does (waiting members
/// get NOT_COORDINATOR and find the new coordinator).
pub fn follow_leadership(shard: &Rc<Shard>, partition: &Partition) {
    let index = partition.key().1;
    let leads = partition.is_leader();
    if leads == shard.groups.is_loaded(index) {
        return;
    }
    if !leads {
        resign(shard, index);
        return;
    }
    let (shard, partition) = (shard.clone(), partition.clone());
    glommio::spawn_local(async move { load_partition(&shard, &partition).await }).detach();
}

async fn load_partition(shard: &Rc<Shard>, partition: &Partition) {
    let index = partition.key().1;
    if let Err(e) = replay(shard, partition.log()).await {
        warn!(
            shard = shard.id,
            partition = index,
            "replaying {OFFSETS_TOPIC}: {e}"
        );
    }
    // Leadership may have moved while the log was read.
    if !partition.is_leader() {
        resign(shard, index);
        return;
    }
    shard.groups.loaded.borrow_mut().insert(index);
    let groups = shard.groups.with(|m| m.groups().count());
    info!(
        shard = shard.id,
        partition = index,
        groups,
        "group coordinator loaded a partition"
    );
}

/// Whether every `__consumer_offsets` partition this shard leads has its groups loaded.
pub fn all_loaded(shard: &Shard) -> bool {
    let Some(topic) = shard.image().topic(OFFSETS_TOPIC).map(|t| t.id) else {
        return true;
    };
    shard
        .partitions()
        .iter()
        .filter(|p| p.key().0 == topic && p.is_leader())
        .all(|p| shard.groups.is_loaded(p.key().1))
}

fn resign(shard: &Shard, index: i32) {
    shard.groups.loaded.borrow_mut().remove(&index);
    let Some(partitions) = shard.image().topic(OFFSETS_TOPIC).map(|t| t.partitions) else {
        return;
    };
    let effects = shard
        .groups
        .machine
        .borrow_mut()
        .unload(|group| partition_for(group, partitions) == index);
    deliver(shard, effects.replies);
    // Requests waiting for an unloaded group's write find it gone and answer NOT_COORDINATOR.
    wake(shard, None);
    info!(
        shard = shard.id,
        partition = index,
        "group coordinator resigned a partition"
    );
}

async fn replay(shard: &Shard, log: &PartitionLog) -> Result<(), String> {
    let now = now_ms();
    read_records(log, |record| match record {
        Ok(record) => shard.groups.machine.borrow_mut().apply(now, &record, true),
        Err(e) => warn!(shard = shard.id, "skipping __consumer_offsets record: {e}"),
    })
    .await
}

/// Calls `apply` with every record of a `__consumer_offsets` log, in offset order.
async fn read_records(
    log: &PartitionLog,
    mut apply: impl FnMut(Result<StoredRecord, DecodeError>),
) -> Result<(), String> {
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let batches = log
            .read(next, REPLAY_READ_BYTES_MAX)
            .await
            .map_err(|e| e.to_string())?;
        if batches.is_empty() {
            break;
        }
        for batch in batches {
            let header = storage::batch::BatchHeader::parse(&batch).map_err(|e| e.to_string())?;
            next = header.base_offset + header.last_offset_delta as i64 + 1;
            match decode_batch(&batch) {
                Ok(records) => records.into_iter().for_each(&mut apply),
                Err(e) => apply(Err(e)),
            }
        }
    }
    Ok(())
}

async fn tick_loop(shard: Rc<Shard>) {
    let check_interval_ms = shard.config.offsets_retention_check_interval_ms.max(1000);
    let mut next_expiry = now_ms() + check_interval_ms;
    loop {
        glommio::timer::sleep(Duration::from_millis(TICK_INTERVAL_MS)).await;
        let now = now_ms();
        let effects = shard.groups.machine.borrow_mut().tick(now);
        carry_out_detached(&shard, effects);
        if now >= next_expiry {
            next_expiry = now + check_interval_ms;
            let records = shard.groups.machine.borrow_mut().expire_offsets(now);
            if !records.is_empty() {
                info!(
                    shard = shard.id,
                    records = records.len(),
                    "expiring group offsets"
                );
                let effects = Effects {
                    replies: Vec::new(),
                    records,
                };
                carry_out_detached(&shard, effects);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::machine::{Coordinator, GroupState, JoinRequest, Limits, Protocol};
    use storage::LogConfig;

    fn run<Fut: Future<Output = ()> + 'static>(f: impl FnOnce() -> Fut) {
        let limit = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(2 << 20)
            .make()
            .expect("executor")
            .run(f());
    }

    /// Commits and group metadata written through a real partition log come back after the
    /// log is closed and reopened, as at a broker restart.
    #[test]
    fn records_survive_a_reopened_log() {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let path = dir.path().join("__consumer_offsets-0");
        run(|| async move {
            let limits = Limits {
                initial_rebalance_delay_ms: 0,
                ..Limits::default()
            };
            let mut machine = Coordinator::new(limits.clone());
            let join = JoinRequest {
                group_id: "g".into(),
                member_id: String::new(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![Protocol {
                    name: "range".into(),
                    metadata: bytes::Bytes::from_static(b"sub"),
                }],
                require_known_member_id: false,
                fresh_id: "1".into(),
            };
            machine.join(0, 1, join);
            let sync = crate::group::machine::SyncRequest {
                group_id: "g".into(),
                generation: 1,
                member_id: "c-1".into(),
                instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments: vec![("c-1".into(), bytes::Bytes::from_static(b"asg"))],
            };
            let mut records = machine.sync(0, 2, sync).records;
            let offset = CommittedOffset {
                offset: 42,
                leader_epoch: 0,
                metadata: "meta".into(),
                commit_timestamp_ms: 5,
            };
            records.extend(Coordinator::commit_records(
                "g",
                &[(("t".to_string(), 1), offset.clone())],
            ));
            let log = PartitionLog::open(&path, LogConfig::default())
                .await
                .unwrap();
            for record in &records {
                let (batch, header) = group_batch(std::slice::from_ref(record)).unwrap();
                let last = log.append(&batch, &header).unwrap().last_offset;
                log.wait_durable(last, true).await.unwrap();
            }
            log.close().await.unwrap();

            let log = PartitionLog::open(&path, LogConfig::default())
                .await
                .unwrap();
            let mut restarted = Coordinator::new(limits);
            read_records(&log, |r| restarted.apply(1_000, &r.unwrap(), true))
                .await
                .unwrap();
            let group = restarted.group("g").expect("group replayed");
            assert_eq!((group.state, group.generation), (GroupState::Stable, 1));
            assert_eq!(&group.members["c-1"].assignment[..], b"asg");
            assert_eq!(group.offsets[&("t".to_string(), 1)], offset);
            log.close().await.unwrap();
        });
    }
}
