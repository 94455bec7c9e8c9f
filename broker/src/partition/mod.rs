//! A partition this node holds: the home of replication.
//!
//! Handlers talk to a [`Partition`], never to its `PartitionLog`: the partition decides who
//! may append (its leader), what consumers may see (offsets below the high watermark), which
//! leader epoch a request must name, and when a produce is acknowledged. The decisions are
//! the sans-IO replica state machine's (`replication::Replica`); this module carries out
//! its effects on the log, the shard's follower fetch streams (`fetcher`) and the
//! controller (ISR changes).
//!
//! Architecture invariant: only the owning shard touches a `Partition` (it is `Rc`, not
//! `Send`); other shards reach it through `Shard::run_on`/`Shard::scatter`.

pub mod fetcher;
mod view;

use crate::handlers::code;
use crate::metrics::PartitionCounters;
use crate::shard::{PartitionKey, Shard};
use bytes::Bytes;
use event_listener::Event;
use futures::channel::oneshot;
use replication::{
    Acks, Effect, FetchAnswer, FetchPosition, PartitionState, Replica, ReplicaConfig, ReplicaError,
    Role, WaiterId,
};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use storage::batch::BatchHeader;
use storage::log::ReadBatches;
use storage::{AppendOutcome, PartitionLog};
use view::LogState;

/// One partition this shard holds; cheap to clone.
#[derive(Clone)]
pub struct Partition {
    inner: Rc<Inner>,
}

struct Inner {
    key: PartitionKey,
    log: PartitionLog,
    counters: PartitionCounters,
    replica: RefCell<Replica>,
    /// Whether "durable" means fdatasync'ed (false with `--unsafe-no-fsync`: written).
    fsync: bool,
    /// The leader epoch the log stamps on appends: a new leader appends only once its epoch
    /// is in the log's epoch cache (`Effect::StartEpoch` done).
    stamped_epoch: Cell<i32>,
    /// acks=all produces waiting for the ISR, answered by `Effect::AckAll`.
    acks_waiting: RefCell<BTreeMap<WaiterId, oneshot::Sender<Result<(), ReplicaError>>>>,
    /// The high watermark moved (consumers long-polling wake up).
    high_watermark_moved: Event,
    /// A ReplicaOffline proposal for this offline log is in flight.
    reporting_offline: Cell<bool>,
}

/// Why a request for a partition is refused: a Kafka error code.
pub type ErrorCode = i16;

/// What a read returned: the batches, and the offsets it was answered against.
pub struct Read {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Result<ReadBatches, ErrorCode>,
    /// A follower's log diverges from the leader's: (epoch, end offset) on the leader.
    pub diverging: Option<(i32, i64)>,
    /// Read with no bytes granted (`max_bytes` 0, nothing read): records wait at the fetch
    /// offset, so a later grant would return some.
    pub unread: bool,
}

impl Read {
    fn error(error_code: ErrorCode) -> Read {
        Read {
            high_watermark: -1,
            log_start_offset: -1,
            batches: Err(error_code),
            diverging: None,
            unread: false,
        }
    }
}

/// A follower's fetch of one partition, as the leader receives it.
#[derive(Clone, Copy, Debug)]
pub struct FollowerFetch {
    pub follower: i32,
    pub fetch_offset: i64,
    /// -1: the follower's log is empty.
    pub last_fetched_epoch: i32,
    pub current_leader_epoch: i32,
}

impl Partition {
    /// A partition with its log, offline until the controller's state arrives
    /// ([`Partition::apply_state`]).
    pub fn new(
        key: PartitionKey,
        log: PartitionLog,
        node_id: i32,
        config: ReplicaConfig,
        fsync: bool,
    ) -> Partition {
        Partition {
            inner: Rc::new(Inner {
                key,
                log,
                counters: PartitionCounters::default(),
                replica: RefCell::new(Replica::new(node_id, config)),
                fsync,
                stamped_epoch: Cell::new(-1),
                acks_waiting: RefCell::new(BTreeMap::new()),
                high_watermark_moved: Event::new(),
                reporting_offline: Cell::new(false),
            }),
        }
    }

    pub fn key(&self) -> PartitionKey {
        self.inner.key
    }

    /// The log under the partition: for the shard's own upkeep (maintenance, cache shares,
    /// metrics, the group coordinator's internal topic), not for client requests.
    pub fn log(&self) -> &PartitionLog {
        &self.inner.log
    }

    /// Bytes in and out, for metrics.
    pub fn counters(&self) -> &PartitionCounters {
        &self.inner.counters
    }

    fn view(&self) -> LogState<'_> {
        LogState::new(&self.inner.log, self.inner.fsync)
    }

    /// The leader epoch this replica knows (-1 before the controller's first state).
    pub fn leader_epoch(&self) -> i32 {
        self.inner.replica.borrow().leader_epoch()
    }

    /// Whether this replica leads the partition (and may take appends in its epoch).
    pub fn is_leader(&self) -> bool {
        let replica = self.inner.replica.borrow();
        replica.role() == Role::Leader && self.inner.stamped_epoch.get() == replica.leader_epoch()
    }

    /// The partition's replicas, as the controller last said (0 before its first state).
    pub fn replica_count(&self) -> usize {
        let replica = self.inner.replica.borrow();
        replica.state().map_or(0, |s| s.replicas.len())
    }

    /// Led here, with fewer in-sync replicas than replicas (Kafka's UnderReplicatedPartitions).
    pub fn is_under_replicated(&self) -> bool {
        let replica = self.inner.replica.borrow();
        replica.role() == Role::Leader
            && replica
                .state()
                .is_some_and(|s| s.isr.len() < s.replicas.len())
    }

    /// Leader: each follower's lag in records (this log's end minus its fetch offset, at
    /// least 0), for the followers that fetched in this epoch; empty elsewhere. For metrics.
    pub fn follower_lags(&self) -> Vec<(i32, i64)> {
        let leo = self.inner.log.log_end_offset();
        let replica = self.inner.replica.borrow();
        replica
            .follower_fetch_offsets()
            .map(|(id, offset)| (id, (leo - offset).max(0)))
            .collect()
    }

    /// Follower: the fetcher lag as of the last fetch answer; None unless following.
    pub fn fetcher_lag(&self) -> Option<i64> {
        let following = matches!(self.inner.replica.borrow().role(), Role::Follower { .. });
        following.then(|| self.inner.counters.fetcher_lag.get())
    }

    /// The committed ISR, if the controller's last state has `partition_epoch` (what a
    /// proposal based on that epoch changes).
    pub fn isr_at(&self, partition_epoch: i32) -> Option<Vec<i32>> {
        let replica = self.inner.replica.borrow();
        let state = replica.state()?;
        (state.partition_epoch == partition_epoch).then(|| state.isr.clone())
    }

    /// A changed topic config (`min.insync.replicas`) or broker setting.
    pub fn set_config(&self, config: ReplicaConfig) {
        if *self.inner.replica.borrow().config() != config {
            self.inner.replica.borrow_mut().set_config(config);
        }
    }

    /// Whether `state` is news to this replica (a cheap check before building it again).
    pub fn knows(&self, leader_epoch: i32, partition_epoch: i32) -> bool {
        let replica = self.inner.replica.borrow();
        replica
            .state()
            .is_some_and(|s| (s.leader_epoch, s.partition_epoch) == (leader_epoch, partition_epoch))
    }

    /// The controller's state of the partition: become leader, follower or offline.
    pub async fn apply_state(&self, shard: &Rc<Shard>, state: PartitionState) {
        let effects = {
            let mut replica = self.inner.replica.borrow_mut();
            replica.apply_state(state, &self.view(), now_ms())
        };
        self.execute(shard, effects).await;
    }

    /// Kafka's check of a request's `current_leader_epoch` (KIP-320): -1 skips it, an older
    /// epoch is fenced, a newer one is not known here yet.
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ErrorCode> {
        leader_epoch_check(current_leader_epoch, self.leader_epoch())
    }

    /// KAFKA_STORAGE_ERROR while the log is offline: a segment read, a write's fdatasync or
    /// a truncation failed with an IO error, and only a restart (recovery) brings it back,
    /// as Kafka's offline log dir. A full disk is not offline (reads go on).
    pub fn check_online(&self) -> Result<(), ErrorCode> {
        if self.inner.log.is_offline() {
            return Err(code::KAFKA_STORAGE_ERROR);
        }
        Ok(())
    }

    /// OffsetForLeaderEpoch: for the largest leader epoch at or below `epoch` in the log,
    /// that epoch and its end offset (the next epoch's start, or the log end for the latest);
    /// (-1, -1) when no epoch fits (Kafka's `endOffsetFor`).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.inner.log.end_offset_for_epoch(epoch)
    }

    /// First offset served (the low watermark).
    pub fn log_start_offset(&self) -> i64 {
        self.inner.log.log_start_offset()
    }

    /// Consumers see offsets below this: the lowest log end over the in-sync replicas.
    pub fn high_watermark(&self) -> i64 {
        self.inner.replica.borrow().high_watermark()
    }

    /// Appends a client's validated batch as leader (offsets are assigned here, in arrival
    /// order), after waiting for room in the write backlog (`PartitionLog::append_with_room`);
    /// refused when this replica does not lead, or (acks=all) with fewer in-sync replicas
    /// than `min.insync.replicas`, or when leadership moved while it waited.
    pub async fn append(
        &self,
        records: &Bytes,
        header: &BatchHeader,
        acks: Acks,
    ) -> Result<AppendOutcome, ErrorCode> {
        let epoch = self.check_produce(acks)?;
        let still_leads = || self.is_leader() && self.leader_epoch() == epoch;
        let outcome = self
            .inner
            .log
            .append_with_room_if(records, header, &still_leads)
            .await
            .map_err(|e| e.kafka_error_code())?
            .ok_or(code::NOT_LEADER_OR_FOLLOWER)?;
        let bytes_in = &self.inner.counters.bytes_in;
        bytes_in.set(bytes_in.get() + records.len() as u64);
        let effects = self
            .inner
            .replica
            .borrow_mut()
            .on_local_append(&self.view());
        self.execute_now(effects);
        Ok(outcome)
    }

    fn check_produce(&self, acks: Acks) -> Result<i32, ErrorCode> {
        self.check_online()?;
        if !self.is_leader() {
            return Err(code::NOT_LEADER_OR_FOLLOWER);
        }
        let replica = self.inner.replica.borrow();
        replica.check_produce(acks).map_err(ReplicaError::code)?;
        Ok(replica.leader_epoch())
    }

    /// Resolves when the batch ending at `last_offset` is acknowledged: written here
    /// (acks=1), or durable on every in-sync replica (acks=all: fdatasync'ed, unless fsync
    /// is off), answering NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below
    /// `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER when leadership moved,
    /// REQUEST_TIMED_OUT after `timeout_ms`.
    pub async fn wait_acknowledged(
        &self,
        last_offset: i64,
        acks: Acks,
        timeout_ms: u64,
    ) -> Result<(), ErrorCode> {
        let all = acks == Acks::All;
        self.inner
            .log
            .wait_durable(last_offset, all && self.inner.fsync)
            .await
            .map_err(|e| {
                tracing::error!(partition = ?self.inner.key, "append failed: {e}");
                code::KAFKA_STORAGE_ERROR
            })?;
        if !all {
            return Ok(());
        }
        let (waiter, effects) = {
            let mut replica = self.inner.replica.borrow_mut();
            let view = self.view();
            let mut effects = replica.on_local_durable(&view);
            let (waiter, more) = replica
                .await_acks_all(last_offset + 1, timeout_ms, &view, now_ms())
                .map_err(ReplicaError::code)?;
            effects.extend(more);
            (waiter, effects)
        };
        let own = effects.iter().find_map(|e| match e {
            Effect::AckAll { waiter: w, result } if *w == waiter => Some(*result),
            _ => None,
        });
        self.execute_now(effects);
        if let Some(result) = own {
            return result.map_err(ReplicaError::code);
        }
        let (tx, rx) = oneshot::channel();
        self.inner.acks_waiting.borrow_mut().insert(waiter, tx);
        match rx.await {
            Ok(result) => result.map_err(ReplicaError::code),
            Err(_) => Err(code::NOT_LEADER_OR_FOLLOWER),
        }
    }

    /// A consumer's read of up to `max_bytes` from `offset`, on the leader only, bounded by
    /// the high watermark; OFFSET_OUT_OF_RANGE outside `[log start, high watermark]`.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Read {
        // Offline first: once its leadership moved away, this replica still answers
        // KAFKA_STORAGE_ERROR (Kafka's offline partition), and clients look for the leader.
        if let Err(error_code) = self.check_online() {
            return Read::error(error_code);
        }
        if !self.is_leader() {
            return Read::error(code::NOT_LEADER_OR_FOLLOWER);
        }
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        if offset < log_start_offset || offset > high_watermark {
            // As Kafka's failed read: high watermark and log start -1 (a follower's fetch
            // gets the log's bounds instead, `follower_read`).
            return Read::error(code::OFFSET_OUT_OF_RANGE);
        }
        let mut read = Read {
            high_watermark,
            log_start_offset,
            batches: Err(code::OFFSET_OUT_OF_RANGE),
            diverging: None,
            unread: false,
        };
        read.unread = max_bytes == 0 && offset < high_watermark;
        read.batches = self
            .read_log(
                offset,
                max_bytes,
                high_watermark,
                &self.inner.counters.bytes_out,
            )
            .await;
        read
    }

    /// Up to `max_bytes` of whole batches from `offset` (at least one unless `max_bytes` is
    /// 0: then nothing is read), none starting at or after `end`; their bytes are added to
    /// `bytes_out` (consumers' or followers' counter).
    async fn read_log(
        &self,
        offset: i64,
        max_bytes: usize,
        end: i64,
        bytes_out: &Cell<u64>,
    ) -> Result<ReadBatches, i16> {
        if max_bytes == 0 {
            // Still a reader at `offset`, for what the tail cache keeps.
            self.inner.log.note_reader_at(offset);
            return Ok(ReadBatches::default());
        }
        let started = std::time::Instant::now();
        let read = self.inner.log.read_batches(offset, max_bytes).await;
        latency::record_since(latency::Stage::FetchRead, started);
        match read {
            Ok(mut batches) => {
                trim_at(&mut batches, end);
                bytes_out.set(bytes_out.get() + batches.total_bytes() as u64);
                Ok(batches)
            }
            Err(e) => {
                tracing::error!(partition = ?self.inner.key, "fetch read failed: {e}");
                Err(code::KAFKA_STORAGE_ERROR)
            }
        }
    }

    /// A follower's fetch, on the leader: the replica machine checks it (leader epoch,
    /// diverging epoch, range) and takes the follower's position (its fetch offset, which
    /// followers make durable before they fetch again); the records come from the log up to
    /// its end, not the high watermark.
    pub async fn follower_read(
        &self,
        shard: &Rc<Shard>,
        fetch: FollowerFetch,
        max_bytes: usize,
    ) -> Read {
        if let Err(error_code) = self.check_online() {
            return Read::error(error_code);
        }
        let position = FetchPosition {
            fetch_offset: fetch.fetch_offset,
            last_fetched_epoch: (fetch.last_fetched_epoch >= 0).then_some(fetch.last_fetched_epoch),
            durable_offset: fetch.fetch_offset,
        };
        let (answer, effects) = self.inner.replica.borrow_mut().on_follower_fetch(
            fetch.follower,
            position,
            fetch.current_leader_epoch,
            &self.view(),
            now_ms(),
        );
        self.spawn_effects(shard, effects);
        match answer {
            FetchAnswer::Read {
                from,
                records_end,
                high_watermark,
                log_start,
            } => {
                let bytes_out = &self.inner.counters.replication_bytes_out;
                Read {
                    high_watermark,
                    log_start_offset: log_start,
                    batches: self.read_log(from, max_bytes, records_end, bytes_out).await,
                    diverging: None,
                    unread: max_bytes == 0 && from < records_end,
                }
            }
            FetchAnswer::Diverging {
                epoch,
                end_offset,
                high_watermark,
                log_start,
            } => Read {
                high_watermark,
                log_start_offset: log_start,
                batches: Ok(ReadBatches::default()),
                diverging: Some((epoch, end_offset)),
                unread: false,
            },
            // The follower needs the leader's log end too: sent as the high watermark.
            FetchAnswer::OffsetOutOfRange { log_start, log_end } => Read {
                high_watermark: log_end,
                log_start_offset: log_start,
                batches: Err(code::OFFSET_OUT_OF_RANGE),
                diverging: None,
                unread: false,
            },
            FetchAnswer::Error(e) => Read::error(e.code()),
        }
    }

    /// Resolves once the partition has records a consumer may read at `offset` or later
    /// (below the high watermark), or, for a follower's fetch, records at all.
    pub async fn wait_for_data_after(&self, offset: i64, follower: bool) {
        if follower {
            return self.inner.log.wait_for_data_after(offset).await;
        }
        loop {
            let moved = self.inner.high_watermark_moved.listen();
            if self.high_watermark() > offset || !self.is_leader() {
                return;
            }
            moved.await;
        }
    }

    /// The replica machine's periodic work (ISR shrink, waiter timeouts, ISR proposal
    /// retries).
    pub fn tick(&self, shard: &Rc<Shard>, now_ms: u64) {
        if self.inner.log.is_offline() {
            self.report_offline(shard);
            return;
        }
        let effects = {
            let mut replica = self.inner.replica.borrow_mut();
            replica.tick(&self.view(), now_ms)
        };
        self.spawn_effects(shard, effects);
    }

    /// An offline log's replica tells the controller (ReplicaOffline, as Kafka's broker
    /// reports a failed log dir) while it leads or can leave the ISR: leadership moves to
    /// another in-sync replica. One proposal at a time; a refused one is tried next tick.
    fn report_offline(&self, shard: &Rc<Shard>) {
        let node_id = shard.image().node_id;
        let must_report =
            self.inner.replica.borrow().state().is_some_and(|s| {
                s.leader == node_id || (s.isr.contains(&node_id) && s.isr.len() > 1)
            });
        if !must_report || self.inner.reporting_offline.replace(true) {
            return;
        }
        let (partition, shard) = (self.clone(), shard.clone());
        glommio::spawn_local(async move {
            let (topic_id, index) = partition.key();
            let command = controller::MetadataCommand::ReplicaOffline {
                node_id,
                topic_id,
                partition: index,
            };
            match shard.propose(command).await {
                Ok(_) => tracing::warn!(
                    partition = index,
                    "offline replica reported: leadership and ISR move to the other replicas"
                ),
                Err(e) => tracing::debug!(partition = index, "offline replica report refused: {e}"),
            }
            partition.inner.reporting_offline.set(false);
        })
        .detach();
    }

    /// Carries out effects that need no IO (high watermark, acks=all answers); any other
    /// effect here would be a bug in the caller's assumptions, so it is logged and dropped.
    fn execute_now(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::HighWatermark(_) => {
                    self.inner.high_watermark_moved.notify(usize::MAX);
                }
                Effect::AckAll { waiter, result } => self.answer_waiter(waiter, result),
                other => tracing::error!(partition = ?self.inner.key, ?other, "unexpected effect"),
            }
        }
    }

    fn answer_waiter(&self, waiter: WaiterId, result: Result<(), ReplicaError>) {
        if let Some(tx) = self.inner.acks_waiting.borrow_mut().remove(&waiter) {
            let _ = tx.send(result);
        }
    }

    fn spawn_effects(&self, shard: &Rc<Shard>, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let (partition, shard) = (self.clone(), shard.clone());
        glommio::spawn_local(async move { partition.execute(&shard, effects).await }).detach();
    }

    /// Carries out the machine's effects in order.
    async fn execute(&self, shard: &Rc<Shard>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::StartEpoch { epoch, .. } => self.start_epoch(epoch).await,
                Effect::ProposeIsr {
                    leader_epoch,
                    partition_epoch,
                    isr,
                } => {
                    let partition = self.clone();
                    let shard = shard.clone();
                    let proposal =
                        fetcher::propose_isr(shard, partition, leader_epoch, partition_epoch, isr);
                    glommio::spawn_local(proposal).detach();
                }
                Effect::Truncate { to } => {
                    if let Err(e) = self.inner.log.truncate_to(to).await {
                        tracing::error!(partition = ?self.inner.key, "truncation failed: {e}");
                    }
                }
                Effect::TruncateFullyAndStartAt { offset } => {
                    if let Err(e) = self.inner.log.truncate_fully_and_start_at(offset).await {
                        tracing::error!(partition = ?self.inner.key, "truncation failed: {e}");
                    }
                }
                Effect::FollowLeader { leader, .. } => shard.fetchers.follow(shard, leader, self),
                Effect::StopFetching => shard.fetchers.stop(&self.inner.key),
                Effect::AppendFetched { .. } => {
                    tracing::error!(partition = ?self.inner.key, "fetched records outside a fetch")
                }
                now => self.execute_now(vec![now]),
            }
        }
    }

    /// This replica leads from now: its epoch goes into the log's epoch cache before any
    /// append of it (appends wait for `stamped_epoch`).
    async fn start_epoch(&self, epoch: i32) {
        match self.inner.log.set_leader_epoch(epoch).await {
            Ok(_) => self.inner.stamped_epoch.set(epoch),
            Err(e) => {
                tracing::error!(partition = ?self.inner.key, epoch, "cannot start epoch: {e}")
            }
        }
        // Consumers parked on the old role look again.
        self.inner.high_watermark_moved.notify(usize::MAX);
    }
}

/// Drops the batches of `batches` that start at or after `end`.
fn trim_at(batches: &mut ReadBatches, end: i64) {
    let keep = batches
        .iter()
        .take_while(|b| b.len() >= 8 && i64::from_be_bytes(b[..8].try_into().expect("8")) < end)
        .count();
    if keep < batches.len() {
        batches.truncate(keep);
    }
}

/// Kafka's leader epoch check: `requested` -1 means "not known to the client".
fn leader_epoch_check(requested: i32, current: i32) -> Result<(), ErrorCode> {
    match requested {
        -1 => Ok(()),
        r if r < current => Err(code::FENCED_LEADER_EPOCH),
        r if r > current => Err(code::UNKNOWN_LEADER_EPOCH),
        _ => Ok(()),
    }
}

/// The wall clock in milliseconds, as the replica machine takes it.
pub fn now_ms() -> u64 {
    storage::now_ms().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_check_follows_kip_320() {
        assert_eq!(leader_epoch_check(-1, 4), Ok(()));
        assert_eq!(leader_epoch_check(4, 4), Ok(()));
        assert_eq!(leader_epoch_check(3, 4), Err(code::FENCED_LEADER_EPOCH));
        assert_eq!(leader_epoch_check(5, 4), Err(code::UNKNOWN_LEADER_EPOCH));
    }

    #[test]
    fn reads_are_trimmed_at_the_high_watermark() {
        let batch = |base: i64| {
            let mut b = base.to_be_bytes().to_vec();
            b.extend_from_slice(&[0; 8]);
            b
        };
        let mut batches = ReadBatches::from_batches([batch(0), batch(5), batch(9)]);
        trim_at(&mut batches, 9);
        assert_eq!(batches.len(), 2);
        trim_at(&mut batches, 100);
        assert_eq!(batches.len(), 2);
        trim_at(&mut batches, 0);
        assert!(batches.is_empty());
    }
}
