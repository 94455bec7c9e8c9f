//! A shard: one pinned glommio executor, the partitions it owns, its copy of the metadata
//! image, and the channels to every other shard.
//!
//! Architecture invariant: only the owning shard touches a partition's log. Work for a
//! partition owned elsewhere travels as a [`Job`] over the shard mesh and its answer comes back
//! over a oneshot channel; there is no lock on the produce or fetch path.

use crate::cluster::link::QuorumLink;
use crate::config::BrokerConfig;
use crate::group::OFFSETS_TOPIC;
use crate::partition::Partition;
use controller::{
    ApplyError, ApplyOutcome, Controller, MetadataCommand, MetadataImage, TopicId, TopicMeta,
};
use futures::future::LocalBoxFuture;
use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use storage::{LogConfig, PartitionLog, StorageError};
use tracing::{info, warn};

/// Work sent to another shard: runs there with that shard's state.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalBoxFuture<'static, ()> + Send>;

/// A partition by topic id and index.
pub type PartitionKey = (TopicId, i32);

/// An item of a request bound for the shard that owns `key`; `slot` is its place in the
/// request.
pub struct Routed<I> {
    pub slot: usize,
    pub key: PartitionKey,
    pub item: I,
}

/// Where clients reach this broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertised {
    pub host: String,
    pub port: i32,
}

/// One shard's state. Lives on one executor thread (`Rc`, not `Arc`).
pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<BrokerConfig>,
    pub advertised: Advertised,
    data_dir: PathBuf,
    image: RefCell<Arc<MetadataImage>>,
    partitions: RefCell<HashMap<PartitionKey, Partition, ahash::RandomState>>,
    peers: Senders<Job>,
    /// Where metadata changes go; only on shard 0, the node's single metadata writer.
    metadata: Option<MetadataSource>,
    /// Orders metadata installs on this shard.
    install_lock: glommio::sync::Semaphore,
    /// Orders controller commands and their broadcast (shard 0 only).
    controller_lock: glommio::sync::Semaphore,
    closed: Cell<bool>,
    /// Wall clock of the last re-share caused by a partition waking up, and whether one is
    /// on its way (see `share_cache_after_wake_up`).
    last_wake_up_share_ms: Cell<i64>,
    wake_up_share_due: Cell<bool>,
    /// The group coordinator for the `__consumer_offsets` partitions this shard owns.
    pub groups: crate::group::runtime::ShardGroups,
    /// The partitions of `partitions` with more than one replica (the ones the replication
    /// tick visits); recomputed at every image install.
    replicated: RefCell<Vec<Partition>>,
    /// This shard's follower fetch streams, one per leader broker.
    pub fetchers: crate::partition::fetcher::Fetchers,
    /// Request counts, latencies and errors of the requests this shard served.
    pub metrics: crate::metrics::ShardMetrics,
    /// Whether an image was installed yet (the first install visits every topic).
    installed: Cell<bool>,
    /// Topics a log of which failed to open: visited again at the next install.
    open_failed: RefCell<std::collections::HashSet<TopicId>>,
    /// The node's connection quotas (`max.connections`, `max.connections.per.ip`).
    pub connection_quotas: Arc<net::quotas::ConnectionQuotas>,
    /// This shard's part of `queued.max.request.bytes`, shared by its connections.
    pub request_memory: net::RequestMemory,
    /// The producer ids this shard hands out to InitProducerId.
    pub producer_ids: crate::producer_ids::ProducerIdBlock,
    /// The TLS of each TLS listener this shard serves (`tls_reload` replaces it).
    pub tls_slots: RefCell<Vec<Rc<crate::tls_reload::TlsSlot>>>,
}

/// Where a node's metadata comes from and its commands go.
pub enum MetadataSource {
    /// The single-node default: the metadata state machine in this process. Its commands
    /// run on a blocking thread (they write and fdatasync the metadata log), one at a time
    /// (`controller_lock`), so the mutex is never contended.
    Local(Arc<std::sync::Mutex<Controller>>),
    /// A broker of a multi-node cluster: the controller quorum, through its link.
    Quorum(Arc<QuorumLink>),
}

/// How often shard 0 looks for a newer image from the quorum.
const FOLLOW_EVERY: Duration = Duration::from_millis(10);
/// How long a broker waits for the image that holds its own applied command.
const APPLIED_IMAGE_WAIT: Duration = Duration::from_secs(10);

impl Shard {
    pub fn new(
        peers: Senders<Job>,
        config: Arc<BrokerConfig>,
        advertised: Advertised,
        data_dir: PathBuf,
        image: Arc<MetadataImage>,
        metadata: Option<MetadataSource>,
        connection_quotas: Arc<net::quotas::ConnectionQuotas>,
    ) -> Rc<Shard> {
        let groups = crate::group::runtime::ShardGroups::new(&config);
        let count = peers.nr_consumers().max(1);
        let request_memory = net::RequestMemory::new(config.queued_max_request_bytes / count);
        Rc::new(Shard {
            id: peers.peer_id(),
            count,
            config,
            advertised,
            data_dir,
            image: RefCell::new(image),
            partitions: RefCell::new(HashMap::default()),
            peers,
            metadata,
            install_lock: glommio::sync::Semaphore::new(1),
            controller_lock: glommio::sync::Semaphore::new(1),
            closed: Cell::new(false),
            last_wake_up_share_ms: Cell::new(i64::MIN),
            wake_up_share_due: Cell::new(false),
            groups,
            replicated: RefCell::new(Vec::new()),
            fetchers: Default::default(),
            metrics: crate::metrics::ShardMetrics::default(),
            installed: Cell::new(false),
            open_failed: RefCell::default(),
            connection_quotas,
            request_memory,
            producer_ids: Default::default(),
            tls_slots: RefCell::default(),
        })
    }

    /// This shard's TLS of listener `name` (any case), when it is a TLS listener.
    pub fn tls_slot(&self, name: &str) -> Option<Rc<crate::tls_reload::TlsSlot>> {
        let slots = self.tls_slots.borrow();
        let slot = slots.iter().find(|s| s.listener.eq_ignore_ascii_case(name));
        slot.cloned()
    }

    /// The metadata image this shard serves from.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Every log this shard owns (a snapshot of the set).
    pub fn partition_logs(&self) -> Vec<PartitionLog> {
        let partitions = self.partitions.borrow();
        partitions.values().map(|p| p.log().clone()).collect()
    }

    /// Every partition this shard owns (a snapshot of the set).
    pub fn partitions(&self) -> Vec<Partition> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// The replica machines' periodic work (`Partition::tick`): only partitions of more than
    /// one replica have any (a sole replica answers its acks=all waiters at once), so only
    /// they are visited; thousands of idle single-replica partitions cost nothing here.
    pub fn tick_partitions(self: &Rc<Self>, now_ms: u64) {
        for partition in self.replicated.borrow().iter() {
            partition.tick(self, now_ms);
        }
    }

    /// The shard is shutting down.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// A partition this shard owns.
    pub fn partition(&self, key: &PartitionKey) -> Option<Partition> {
        self.partitions.borrow().get(key).cloned()
    }

    /// Shares the shard's tail-cache bound (`log.cache.bytes.per.shard`) by activity: the
    /// partitions appended to in the last [`CACHE_ACTIVE_MS`] split what the idle ones'
    /// small floor leaves (see [`cache_shares`]). The maintenance task calls it every tick.
    pub fn share_cache(&self, now_ms: i64) {
        let logs = self.partition_logs();
        let is_active = |log: &PartitionLog| !Shard::is_idle(log, now_ms);
        let active = logs.iter().filter(|log| is_active(log)).count();
        let (active_share, idle_share) = cache_shares(
            self.config.log_cache_bytes_per_partition,
            self.config.log_cache_bytes_per_shard,
            logs.len(),
            active,
        );
        for log in &logs {
            let share = if is_active(log) {
                active_share
            } else {
                idle_share
            };
            if log.cache_bytes_max() != share {
                log.set_cache_bytes_max(share);
            }
        }
    }

    /// Whether `log` counts as idle for the cache share: not appended to for
    /// [`CACHE_ACTIVE_MS`].
    pub fn is_idle(log: &PartitionLog, now_ms: i64) -> bool {
        log.last_append_ms() <= now_ms - CACHE_ACTIVE_MS
    }

    /// After an append to a partition that was idle: it has only the idle floor of cache
    /// (and so of write backlog, see `PartitionLog::append_with_room`), so the shard re-shares
    /// right after this task yields instead of at the next tick. Wake-ups coming meanwhile
    /// share that re-share, and the next one waits until [`WAKE_UP_SHARE_INTERVAL_MS`] after
    /// it (a burst waking many partitions costs a re-share per interval, not per partition).
    pub fn share_cache_after_wake_up(self: &Rc<Self>) {
        if self.wake_up_share_due.replace(true) {
            return;
        }
        let shard = self.clone();
        glommio::spawn_local(async move {
            let next = shard
                .last_wake_up_share_ms
                .get()
                .saturating_add(WAKE_UP_SHARE_INTERVAL_MS);
            let wait = next.saturating_sub(storage::now_ms());
            if wait > 0 {
                glommio::timer::sleep(std::time::Duration::from_millis(wait as u64)).await;
            } else {
                glommio::executor().yield_task_queue_now().await;
            }
            let now = storage::now_ms();
            shard.wake_up_share_due.set(false);
            shard.last_wake_up_share_ms.set(now);
            shard.share_cache(now);
        })
        .detach();
    }

    /// The shard of this node that owns `key` (as the current image places it).
    pub fn owner_of(&self, key: &PartitionKey) -> usize {
        self.owner_in(&self.image.borrow(), key)
    }

    /// The shard that owns `key` in `image`: the shard of this node's replica (a single node
    /// is a cluster of one: its topics have registrations too). A partition without a
    /// replica here goes to a shard by index, which finds no log for it.
    fn owner_in(&self, image: &MetadataImage, key: &PartitionKey) -> usize {
        match image.replica_on(&key.0, key.1, image.node_id) {
            Some(replica) => replica.shard as usize % self.count,
            None => key.1.unsigned_abs() as usize % self.count,
        }
    }

    /// Whether this shard holds `key`'s log in `image`: this node has a replica of it (the
    /// leader or, once followers replicate, a follower) and this shard owns it.
    fn holds(&self, image: &MetadataImage, key: &PartitionKey) -> bool {
        image.replica_on(&key.0, key.1, image.node_id).is_some()
            && self.owner_in(image, key) == self.id
    }

    /// Runs `work` on shard `target` and returns its result. Runs inline when `target` is
    /// this shard.
    pub async fn run_on<R, F, Fut>(self: &Rc<Self>, target: usize, work: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        if target == self.id {
            return work(self.clone()).await;
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                let _ = tx.send(work(shard).await);
            })
        });
        // A peer only goes away while the node shuts down; the request then never completes
        // and its connection is closed when this shard stops too.
        if self.peers.send_to(target, job).await.is_err() {
            return futures::future::pending().await;
        }
        match rx.await {
            Ok(answer) => answer,
            Err(_) => futures::future::pending().await,
        }
    }

    /// Runs `work` on every shard, this one included, and waits for all of them.
    pub async fn run_on_all<R, F, Fut>(self: &Rc<Self>, work: F) -> Vec<R>
    where
        R: Send + 'static,
        F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let calls = (0..self.count).map(|target| self.run_on(target, work.clone()));
        futures::future::join_all(calls).await
    }

    /// Scatter-gather over partition owners: each shard gets the items for the partitions it
    /// owns, in one job, and `work` turns them into `(slot, output)` pairs there. Callers put
    /// each output back in its slot, so they answer in request order.
    pub async fn scatter<I, O, F, Fut>(
        self: &Rc<Self>,
        items: Vec<Routed<I>>,
        work: F,
    ) -> Vec<(usize, O)>
    where
        I: Send + 'static,
        O: Send + 'static,
        F: Fn(Rc<Shard>, Vec<Routed<I>>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = Vec<(usize, O)>> + 'static,
    {
        let total = items.len();
        let mut per_shard: Vec<Vec<Routed<I>>> = (0..self.count).map(|_| Vec::new()).collect();
        for item in items {
            per_shard[self.owner_of(&item.key)].push(item);
        }
        let calls = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, items)| !items.is_empty())
            .map(|(target, items)| {
                let work = work.clone();
                self.run_on(target, move |shard| work(shard, items))
            });
        let outputs: Vec<(usize, O)> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        debug_assert_eq!(outputs.len(), total, "every routed item gets one output");
        outputs
    }

    /// Applies a metadata command through shard 0 (the local controller, or the quorum of a
    /// multi-node cluster), then installs the new image on every shard before answering, so
    /// a created topic is writable everywhere once the caller hears of it.
    pub async fn propose(
        self: &Rc<Self>,
        command: MetadataCommand,
    ) -> Result<ApplyOutcome, ApplyError> {
        self.run_on(0, move |shard| async move {
            let (outcome, image) = match shard.metadata.as_ref().expect("shard 0 holds it") {
                MetadataSource::Local(controller) => {
                    let _order = shard.controller_lock.acquire_permit(1).await;
                    let controller = controller.clone();
                    let (outcome, image) = glommio::executor()
                        .spawn_blocking(move || {
                            let mut controller = controller.lock().expect("no panic holds it");
                            let outcome = controller.apply(command)?;
                            Ok::<_, ApplyError>((outcome, controller.image()))
                        })
                        .await?;
                    shard.install_everywhere(image).await;
                    log_outcome(&outcome);
                    return Ok(outcome);
                }
                // Not under the lock: the quorum may take seconds to answer (a controller
                // failover), and newer images must keep being installed meanwhile (they
                // carry the leader elections that failover is about).
                MetadataSource::Quorum(link) => propose_to_quorum(link, command).await?,
            };
            let _order = shard.controller_lock.acquire_permit(1).await;
            shard.install_everywhere(image).await;
            log_outcome(&outcome);
            Ok(outcome)
        })
        .await
    }

    async fn install_everywhere(self: &Rc<Self>, image: Arc<MetadataImage>) {
        self.run_on_all(move |s| {
            let image = image.clone();
            async move { s.install_image(image).await }
        })
        .await;
    }

    /// Shard 0 of a broker in a multi-node cluster: installs every newer image the quorum
    /// link publishes, on every shard, until the shard closes.
    pub async fn follow_quorum(self: Rc<Self>) {
        let Some(MetadataSource::Quorum(link)) = self.metadata.as_ref() else {
            return;
        };
        let link = link.clone();
        while !self.closed.get() {
            glommio::timer::sleep(FOLLOW_EVERY).await;
            if link.version() > self.image.borrow().version {
                let _order = self.controller_lock.acquire_permit(1).await;
                self.install_everywhere(link.latest()).await;
            }
        }
    }

    /// The quorum's state and its voters' addresses, for DescribeQuorum on a broker of a
    /// multi-node cluster (`None` on a single node).
    pub async fn describe_quorum(
        self: &Rc<Self>,
    ) -> Option<Result<(controller::quorum::QuorumStatus, Vec<(u64, String)>), String>> {
        self.run_on(0, |shard| async move {
            let Some(MetadataSource::Quorum(link)) = shard.metadata.as_ref() else {
                return None;
            };
            let answer = link.describe_quorum();
            let status = poll_answer(&answer, APPLIED_IMAGE_WAIT)
                .await
                .unwrap_or_else(|| Err("the quorum link stopped".into()));
            Some(status.map(|status| (status, link.voters().to_vec())))
        })
        .await
    }

    /// Makes `image` current on this shard: opens the logs of new partitions it owns and
    /// deletes those of deleted topics. Only the topics that changed since the image this
    /// shard last installed are visited (their meta or partition registrations differ, or a
    /// log of theirs failed to open): a metadata change costs the shard what it changed, not
    /// a walk over every partition of the cluster.
    pub async fn install_image(self: &Rc<Self>, image: Arc<MetadataImage>) {
        let _order = self.install_lock.acquire_permit(1).await;
        let current = self.image();
        if image.version < current.version || self.closed.get() {
            return;
        }
        let since = self.installed.get().then_some(current);
        self.drop_deleted_partitions(&image).await;
        let changed: Vec<&TopicMeta> = image
            .topics
            .values()
            .filter(|topic| match &since {
                Some(before) => !self.unchanged(before, &image, topic),
                None => true,
            })
            .collect();
        let mut owned_partitions = None;
        for topic in changed {
            self.open_failed.borrow_mut().remove(&topic.id);
            for partition in 0..topic.partitions {
                let key = (topic.id, partition);
                if !self.holds(&image, &key) {
                    continue;
                }
                let owned = *owned_partitions.get_or_insert_with(|| self.count_owned(&image));
                let partition = match self.partition(&key) {
                    Some(partition) => {
                        // Keeps its cache bound: `share_cache` (below and every tick) moves it.
                        let config = self.log_config(topic, owned);
                        partition.log().update_config(config);
                        partition.set_config(self.replica_config(topic));
                        partition
                    }
                    None => match self.open_partition(topic, partition, owned).await {
                        Ok(log) => {
                            let config = self.replica_config(topic);
                            let partition =
                                Partition::new(key, log, image.node_id, config, self.config.fsync);
                            self.partitions.borrow_mut().insert(key, partition.clone());
                            partition
                        }
                        Err(e) => {
                            warn!(shard = self.id, "cannot open partition: {e}");
                            self.open_failed.borrow_mut().insert(topic.id);
                            continue;
                        }
                    },
                };
                self.apply_registration(&image, &partition).await;
            }
        }
        *self.image.borrow_mut() = image;
        self.installed.set(true);
        let replicated = self
            .partitions
            .borrow()
            .values()
            .filter(|p| p.replica_count() > 1)
            .cloned()
            .collect();
        *self.replicated.borrow_mut() = replicated;
        // New partitions change every share; recomputed now, not lowered to an equal split
        // (which would evict the tail of the partitions being written).
        self.share_cache(storage::now_ms());
    }

    /// Whether `topic` of `image` is as it was in `before` for this shard: same meta, same
    /// partition registrations, and every log of it opened then.
    fn unchanged(&self, before: &MetadataImage, image: &MetadataImage, topic: &TopicMeta) -> bool {
        before.topic(&topic.name) == Some(topic)
            && before.partitions.get(&topic.id) == image.partitions.get(&topic.id)
            && !self.open_failed.borrow().contains(&topic.id)
    }

    /// The partitions of `image` this shard holds.
    fn count_owned(&self, image: &MetadataImage) -> usize {
        image
            .topics
            .values()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.id, p)))
            .filter(|key| self.holds(image, key))
            .count()
    }

    /// Gives the partition's replica the controller's state of it, when it changed.
    async fn apply_registration(self: &Rc<Self>, image: &MetadataImage, partition: &Partition) {
        let (id, index) = partition.key();
        let Some(registration) = image.partition(&id, index) else {
            return;
        };
        if partition.knows(registration.leader_epoch, registration.partition_epoch) {
            return;
        }
        let state = crate::partition::fetcher::state_of(registration);
        partition.apply_state(self, state).await;
        let is_offsets = image
            .topic_by_id(&id)
            .is_some_and(|t| t.name == OFFSETS_TOPIC);
        if is_offsets {
            crate::group::runtime::follow_leadership(self, partition);
        }
    }

    /// The replica settings of `topic`'s partitions.
    fn replica_config(&self, topic: &TopicMeta) -> replication::ReplicaConfig {
        let min_isr = crate::maintenance::topic_long(
            topic,
            "min.insync.replicas",
            self.config.min_insync_replicas as i64,
        );
        replication::ReplicaConfig {
            min_insync_replicas: min_isr.max(1) as usize,
            replica_lag_time_max_ms: self.config.replica_lag_time_max_ms,
            ..replication::ReplicaConfig::default()
        }
    }

    async fn drop_deleted_partitions(&self, image: &MetadataImage) {
        let gone: Vec<PartitionKey> = self
            .partitions
            .borrow()
            .keys()
            .filter(|(id, _)| image.topic_by_id(id).is_none())
            .copied()
            .collect();
        for key in gone {
            let Some(partition) = self.partitions.borrow_mut().remove(&key) else {
                continue;
            };
            self.fetchers.stop(&key);
            let log = partition.log();
            let old_name = self
                .image
                .borrow()
                .topic_by_id(&key.0)
                .map(|t| t.name.clone());
            if let Err(e) = log.close().await {
                warn!(shard = self.id, "closing deleted partition: {e}");
            }
            if let Some(name) = old_name {
                remove_partition_dir(&self.partition_dir(&name, key.1));
            }
        }
    }

    async fn open_partition(
        &self,
        topic: &TopicMeta,
        partition: i32,
        owned_partitions: usize,
    ) -> Result<PartitionLog, StorageError> {
        let dir = self.partition_dir(&topic.name, partition);
        let log = PartitionLog::open(&dir, self.log_config(topic, owned_partitions)).await?;
        info!(
            shard = self.id,
            topic = %topic.name,
            partition,
            log_end_offset = log.log_end_offset(),
            "partition opened"
        );
        Ok(log)
    }

    /// The topic's log settings, with this partition's share of the shard's cache bound.
    fn log_config(&self, topic: &TopicMeta, owned_partitions: usize) -> LogConfig {
        let mut config = crate::maintenance::log_config(&self.config, topic);
        config.cache_bytes_max = cache_share(
            self.config.log_cache_bytes_per_partition,
            self.config.log_cache_bytes_per_shard,
            owned_partitions,
        );
        config
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Flushes, fsyncs and closes every log this shard owns.
    pub async fn close(&self) {
        self.closed.set(true);
        self.fetchers.close();
        let logs: Vec<PartitionLog> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, partition)| partition.log().clone())
            .collect();
        let closes = logs.iter().map(|log| log.close());
        for result in futures::future::join_all(closes).await {
            if let Err(e) = result {
                warn!(shard = self.id, "closing partition at shutdown: {e}");
            }
        }
    }
}

/// Sends `command` to the quorum and waits for the image that holds it.
async fn propose_to_quorum(
    link: &QuorumLink,
    command: MetadataCommand,
) -> Result<(ApplyOutcome, Arc<MetadataImage>), ApplyError> {
    let answer = link.propose(command);
    let (version, outcomes) = poll_answer(&answer, APPLIED_IMAGE_WAIT + APPLIED_IMAGE_WAIT)
        .await
        .unwrap_or_else(|| Err(ApplyError::Unavailable("the quorum link stopped".into())))?;
    let deadline = std::time::Instant::now() + APPLIED_IMAGE_WAIT;
    while link.version() < version {
        if std::time::Instant::now() >= deadline {
            return Err(ApplyError::Unavailable(format!(
                "applied at version {version}, but this broker's image is still at {}",
                link.version()
            )));
        }
        glommio::timer::sleep(FOLLOW_EVERY).await;
    }
    let outcome = outcomes
        .into_iter()
        .next()
        .ok_or_else(|| ApplyError::InvalidRequest("the command changed nothing".into()))?;
    Ok((outcome, link.latest()))
}

/// Polls a thread's answer with a glommio timer (its threads cannot wake a glommio task);
/// `None` when the sender is gone or `wait` passed.
async fn poll_answer<T>(answer: &std::sync::mpsc::Receiver<T>, wait: Duration) -> Option<T> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match answer.try_recv() {
            Ok(value) => return Some(value),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// One info line per topic created or deleted.
fn log_outcome(outcome: &ApplyOutcome) {
    match outcome {
        ApplyOutcome::TopicCreated(t) => {
            info!(topic = %t.name, partitions = t.partitions, "topic created")
        }
        ApplyOutcome::TopicDeleted(t) => info!(topic = %t.name, "topic deleted"),
        _ => {}
    }
}

/// Each partition's tail-cache bound: an equal share of the shard's bound, at most the
/// per-partition bound, so the caches of one shard never hold more than the shard's bound.
pub fn cache_share(per_partition: usize, per_shard: usize, owned_partitions: usize) -> usize {
    per_partition.min(per_shard / owned_partitions.max(1))
}

/// A partition not appended to for this long is idle: its tail cache shrinks to
/// [`IDLE_CACHE_BYTES_MAX`] and the partitions being written share the rest of the shard's.
pub const CACHE_ACTIVE_MS: i64 = 60_000;
/// The most tail cache an idle partition keeps (less when the shard's bound divided by its
/// partitions is less).
pub const IDLE_CACHE_BYTES_MAX: usize = 64 << 10;

/// The shortest time between two re-shares caused by partitions waking up.
pub const WAKE_UP_SHARE_INTERVAL_MS: i64 = 10;

/// The tail-cache bounds of the shard's `active` partitions (appended to lately) and of its
/// idle ones, out of `owned` partitions: idle ones keep a small floor, active ones share what
/// is left of `per_shard` (each at most `per_partition`, never below the floor). The bounds
/// add up to at most `per_shard`.
pub fn cache_shares(
    per_partition: usize,
    per_shard: usize,
    owned: usize,
    active: usize,
) -> (usize, usize) {
    let idle_share = cache_share(per_partition, per_shard, owned).min(IDLE_CACHE_BYTES_MAX);
    let idle = owned.saturating_sub(active);
    let left = per_shard.saturating_sub(idle * idle_share);
    let active_share = (left / active.max(1)).clamp(idle_share, per_partition.max(idle_share));
    (active_share, idle_share)
}

/// Deletes a deleted topic's partition directory. Renamed first (at once) so that a topic
/// re-created under the same name never sees the old files; the removal itself runs on a
/// blocking thread, never on the shard's executor (a large log takes a while to unlink). One
/// the process did not finish is removed at the next start (`remove_doomed_dirs`).
fn remove_partition_dir(dir: &Path) {
    let mut doomed = dir.as_os_str().to_owned();
    doomed.push(format!(".{}{DOOMED_SUFFIX}", std::process::id()));
    let doomed = PathBuf::from(doomed);
    let target = match std::fs::rename(dir, &doomed) {
        Ok(()) => doomed,
        Err(_) => dir.to_path_buf(),
    };
    let removal = glommio::executor().spawn_blocking(move || {
        if let Err(e) = std::fs::remove_dir_all(&target) {
            warn!("cannot remove {}: {e}", target.display());
        }
    });
    glommio::spawn_local(removal).detach();
}

/// Ends the name of a deleted partition's directory waiting for removal: `<dir>.<pid>-delete`
/// (a partition directory's own name ends in its index, a digit).
const DOOMED_SUFFIX: &str = "-delete";

/// Removes the directories of deleted partitions that an earlier process renamed and did not
/// finish removing. Runs at start, before the shards.
pub fn remove_doomed_dirs(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_doomed = name.strip_suffix(DOOMED_SUFFIX).is_some_and(|rest| {
            rest.rsplit_once('.')
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if is_doomed && entry.path().is_dir() {
            info!(dir = %entry.path().display(), "removing a deleted partition's directory left by an earlier run");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_renamed_partition_dirs_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "t-0.123-delete",
            "t-0",
            "x-delete-0",
            "t-1.-delete",
            "t-2.12a-delete",
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        remove_doomed_dirs(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["t-0", "t-1.-delete", "t-2.12a-delete", "x-delete-0"]);
    }

    #[test]
    fn cache_share_bounds_the_shard_total() {
        let mib = 1 << 20;
        assert_eq!(cache_share(8 * mib, 128 * mib, 4), 8 * mib);
        assert_eq!(cache_share(8 * mib, 128 * mib, 64), 2 * mib);
        assert_eq!(cache_share(8 * mib, 128 * mib, 0), 8 * mib);
        for partitions in [1, 7, 50, 1000, 10_000] {
            assert!(cache_share(8 * mib, 128 * mib, partitions) * partitions <= 128 * mib);
        }
    }

    #[test]
    fn cache_shares_go_to_the_partitions_being_written() {
        let (kib, mib) = (1 << 10, 1 << 20);
        // 1,000 partitions, 5 written: each of those gets the per-partition bound, not 128 KiB.
        assert_eq!(
            cache_shares(8 * mib, 128 * mib, 1000, 5),
            (8 * mib, 64 * kib)
        );
        // All written: the equal share, as before.
        assert_eq!(
            cache_shares(8 * mib, 128 * mib, 1000, 1000),
            (cache_share(8 * mib, 128 * mib, 1000), 64 * kib)
        );
        // More partitions than the floor allows: the floor shrinks to the equal share.
        let (active, idle) = cache_shares(8 * mib, 128 * mib, 10_000, 1);
        assert_eq!(idle, cache_share(8 * mib, 128 * mib, 10_000));
        assert!(active >= idle);
        // None written, or none owned.
        assert_eq!(cache_shares(8 * mib, 128 * mib, 10, 0).1, 64 * kib);
        assert_eq!(cache_shares(8 * mib, 128 * mib, 0, 0), (8 * mib, 64 * kib));
        for owned in [1, 7, 50, 1000, 10_000] {
            for active in [0, 1, owned / 2, owned] {
                let (a, i) = cache_shares(8 * mib, 128 * mib, owned, active);
                assert!(
                    a * active + i * (owned - active) <= 128 * mib,
                    "{owned} {active}"
                );
                assert!(a <= 8 * mib && a >= i);
            }
        }
    }
}
