//! Followers pull from leaders: one fetch stream per pair of this shard and a leader broker,
//! carrying every partition of this shard that follows that broker in each round trip
//! (Kafka's Fetch with `replica_id`, long-polled), batches appended as they arrive, without
//! re-encoding. A stream makes what it appended durable (fdatasync, unless fsync is off)
//! before it fetches again, so a follower's fetch offset tells the leader what it holds
//! durably: acks=all waits for exactly that.
//!
//! Also here: the ISR proposals leaders send to the controller (AlterPartition), and the
//! shard's replication tick.

use super::{now_ms, Partition};
use crate::handlers::code;
use crate::inter_broker::InterBrokerClient;
use crate::shard::{PartitionKey, Shard};
use bytes::{Buf, Bytes};
use controller::{ApplyError, ApplyOutcome, MetadataCommand};
use event_listener::Event;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use replication::{Effect, FetchAnswer, IsrError, PartitionState, ReplicaError};
use spate_bench::client::Connection;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Fetch version followers send: the first with `last_fetched_epoch` and diverging-epoch
/// answers (KIP-595's fields, as Kafka's own followers use them), before ReplicaState.
const FETCH_VERSION: i16 = 12;
/// Bytes of one partition in one fetch answer (Kafka's `replica.fetch.max.bytes`).
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;
/// Bytes of one fetch answer (Kafka's `replica.fetch.response.max.bytes`).
const FETCH_RESPONSE_BYTES_MAX: i32 = 10 << 20;
/// Pause after a failed connection or fetch before trying again.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// A connection to a leader (TCP, TLS handshake, SASL exchange) not made in this time fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a persisting TLS or SASL failure to reach a leader is logged again as a warning.
const SECURITY_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// How often a shard ticks its replicas (ISR shrink, acks=all timeouts).
pub const TICK: Duration = Duration::from_millis(100);

/// The shard's fetch streams, one per leader broker its partitions follow.
#[derive(Default)]
pub struct Fetchers {
    streams: RefCell<BTreeMap<i32, Rc<Stream>>>,
    /// The leaders' listener the streams connect to, and its TLS (set at start).
    client: RefCell<InterBrokerClient>,
}

/// One stream: the partitions of this shard that follow `leader`.
struct Stream {
    leader: i32,
    partitions: RefCell<BTreeMap<PartitionKey, Partition>>,
    /// A partition joined (or the stream should look at its set again).
    changed: Event,
    stopped: Cell<bool>,
}

impl Fetchers {
    /// Streams connect to leaders as `client` says (before the first image is installed).
    pub fn connect_with(&self, client: InterBrokerClient) {
        *self.client.borrow_mut() = client;
    }

    /// `partition` fetches from `leader` from now on (and from no other leader).
    pub fn follow(&self, shard: &Rc<Shard>, leader: i32, partition: &Partition) {
        self.stop(&partition.key());
        let stream = self
            .streams
            .borrow_mut()
            .entry(leader)
            .or_insert_with(|| {
                let stream = Rc::new(Stream {
                    leader,
                    partitions: RefCell::new(BTreeMap::new()),
                    changed: Event::new(),
                    stopped: Cell::new(false),
                });
                glommio::spawn_local(run(shard.clone(), stream.clone())).detach();
                stream
            })
            .clone();
        stream
            .partitions
            .borrow_mut()
            .insert(partition.key(), partition.clone());
        stream.changed.notify(usize::MAX);
    }

    /// `key` fetches from no leader.
    pub fn stop(&self, key: &PartitionKey) {
        for stream in self.streams.borrow().values() {
            stream.partitions.borrow_mut().remove(key);
        }
    }

    /// Stops every stream (the shard is closing).
    pub fn close(&self) {
        for stream in self.streams.borrow().values() {
            stream.stopped.set(true);
            stream.changed.notify(usize::MAX);
        }
    }
}

/// A stream's loop: fetch, apply the answer, make it durable, again; until the shard closes.
async fn run(shard: Rc<Shard>, stream: Rc<Stream>) {
    let mut connection: Option<Connection> = None;
    let mut warned = ConnectFailures::default();
    while !stream.stopped.get() && !shard.is_closed() {
        let partitions: Vec<Partition> = stream.partitions.borrow().values().cloned().collect();
        if partitions.is_empty() {
            let changed = stream.changed.listen();
            if stream.partitions.borrow().is_empty() {
                let _ = glommio::timer::timeout(Duration::from_secs(1), async {
                    changed.await;
                    Ok(())
                })
                .await;
            }
            continue;
        }
        let client = shard.fetchers.client.borrow().clone();
        let Some(address) = leader_address(&shard, stream.leader, &client.listener) else {
            glommio::timer::sleep(RETRY_BACKOFF).await;
            continue;
        };
        if connection.as_ref().is_none_or(|c| c.address() != address) {
            connection = match connect(&client, &address).await {
                Ok(c) => Some(c),
                Err(e) => {
                    warned.report(&shard, stream.leader, e);
                    glommio::timer::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            };
        }
        let conn = connection.as_ref().expect("connected");
        let fetch_wait = Duration::from_millis(shard.config.replica_fetch_wait_max_ms);
        if conn.reauthentication_due(fetch_wait) {
            if let Err(e) = reauthenticate(conn).await {
                warned.report(&shard, stream.leader, e);
                connection = None;
                glommio::timer::sleep(RETRY_BACKOFF).await;
                continue;
            }
        }
        if let Err(e) = fetch_round(&shard, conn, &partitions).await {
            debug!(
                shard = shard.id,
                leader = stream.leader,
                "replica fetch: {e}"
            );
            connection = None;
            glommio::timer::sleep(RETRY_BACKOFF).await;
        }
    }
}

/// A connection to a leader as `client` says (TLS, SASL), given `CONNECT_TIMEOUT`.
async fn connect(client: &InterBrokerClient, address: &str) -> Result<Connection, String> {
    let (tls, sasl) = (client.tls.clone(), client.sasl.as_ref());
    let connecting = Connection::connect_secured(address, "spate-replica", tls, sasl);
    glommio::timer::timeout(CONNECT_TIMEOUT, async { Ok(connecting.await) })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{address}: not connected within {CONNECT_TIMEOUT:?}"
            ))
        })
}

/// Re-authenticates the stream's connection before its SASL session expires (KIP-368), as
/// Kafka's followers do: between two fetches, so nothing is in flight; early enough that the
/// next fetch (which may wait `replica.fetch.wait.max.ms`) ends inside the session.
async fn reauthenticate(conn: &Connection) -> Result<(), String> {
    let reauthenticating = conn.reauthenticate();
    glommio::timer::timeout(CONNECT_TIMEOUT, async { Ok(reauthenticating.await) })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{}: SASL re-authentication not done within {CONNECT_TIMEOUT:?}",
                conn.address()
            ))
        })
}

/// How a stream reports failed connections: a TLS or SASL failure (wrong credentials, an
/// untrusted certificate) does not cure itself, so it is a warning, once per distinct reason
/// and again every `SECURITY_WARNING_INTERVAL`; others (a leader restarting) stay debug.
#[derive(Default)]
struct ConnectFailures {
    last: Option<(String, Instant)>,
}

impl ConnectFailures {
    fn report(&mut self, shard: &Shard, leader: i32, reason: String) {
        let security = reason.contains("SASL") || reason.contains("TLS");
        let repeated = self
            .last
            .as_ref()
            .is_some_and(|(last, at)| *last == reason && at.elapsed() < SECURITY_WARNING_INTERVAL);
        if !security || repeated {
            debug!(shard = shard.id, leader, "replica fetch: {reason}");
            return;
        }
        warn!(
            shard = shard.id,
            leader, "replica fetch: cannot connect to the leader: {reason}"
        );
        self.last = Some((reason, Instant::now()));
    }
}

/// The leader's endpoint of the inter-broker listener, while it is registered and live.
fn leader_address(shard: &Shard, leader: i32, listener: &str) -> Option<String> {
    let image = shard.image();
    let broker = image.brokers.get(&leader).filter(|b| !b.fenced)?;
    let (host, port) = broker.endpoint(listener)?;
    Some(match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    })
}

/// One round trip: a fetch of every partition that has one to send, its answers applied,
/// then what was appended made durable.
async fn fetch_round(
    shard: &Rc<Shard>,
    conn: &Connection,
    partitions: &[Partition],
) -> Result<(), String> {
    let image = shard.image();
    let mut asked = Vec::new();
    let mut topics: BTreeMap<controller::TopicId, FetchTopic> = BTreeMap::new();
    for partition in partitions {
        let Some(request) = partition.next_fetch() else {
            continue;
        };
        let (id, index) = partition.key();
        let Some(topic) = image.topic_by_id(&id) else {
            continue;
        };
        let position = request.position;
        topics
            .entry(id)
            .or_insert_with(|| {
                FetchTopic::default().with_topic(StrBytes::from_string(topic.name.clone()).into())
            })
            .partitions
            .push(
                FetchPartition::default()
                    .with_partition(index)
                    .with_current_leader_epoch(request.leader_epoch)
                    .with_fetch_offset(position.fetch_offset)
                    .with_last_fetched_epoch(position.last_fetched_epoch.unwrap_or(-1))
                    .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX),
            );
        asked.push((partition.clone(), request));
    }
    if asked.is_empty() {
        glommio::timer::sleep(RETRY_BACKOFF).await;
        return Ok(());
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(image.node_id))
        .with_max_wait_ms(shard.config.replica_fetch_wait_max_ms as i32)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_RESPONSE_BYTES_MAX)
        .with_session_epoch(-1)
        .with_topics(topics.into_values().collect());
    let response: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &request).await?;
    let mut answers = index_answers(&image, response);
    let mut appended = Vec::new();
    for (partition, request) in asked {
        let Some(data) = answers.remove(&partition.key()) else {
            continue;
        };
        if partition.on_fetch_answer(shard, &request, data).await {
            appended.push(partition);
        }
    }
    make_durable(shard, &appended).await;
    Ok(())
}

/// The answer of each partition, by key.
fn index_answers(
    image: &controller::MetadataImage,
    response: FetchResponse,
) -> BTreeMap<PartitionKey, PartitionData> {
    let mut out = BTreeMap::new();
    for topic in response.responses {
        let Some(meta) = image.topic(topic.topic.as_str()) else {
            continue;
        };
        for data in topic.partitions {
            out.insert((meta.id, data.partition_index), data);
        }
    }
    out
}

/// fdatasyncs what the round appended (group committed per log), so the next fetch offset
/// is durable; only written with `replica.fsync.before.ack=false` (or fsync off).
async fn make_durable(shard: &Shard, appended: &[Partition]) {
    let sync = shard.config.fsync && shard.config.replica_fsync_before_ack;
    let waits = appended.iter().map(|p| async move {
        (
            p,
            p.log()
                .wait_durable(p.log().log_end_offset() - 1, sync)
                .await,
        )
    });
    for (partition, result) in futures::future::join_all(waits).await {
        if let Err(e) = result {
            warn!(partition = ?partition.key(), "follower write failed: {e}");
        }
    }
}

/// The leader's answer to one partition's fetch, as the replica machine takes it.
pub fn fetch_answer(request_offset: i64, data: &PartitionData) -> FetchAnswer {
    match data.error_code {
        code::NONE if data.diverging_epoch.epoch >= 0 => FetchAnswer::Diverging {
            epoch: data.diverging_epoch.epoch,
            end_offset: data.diverging_epoch.end_offset,
            high_watermark: data.high_watermark,
            log_start: data.log_start_offset,
        },
        code::NONE => FetchAnswer::Read {
            from: request_offset,
            records_end: records_end(request_offset, data.records.as_ref()),
            high_watermark: data.high_watermark,
            log_start: data.log_start_offset,
        },
        code::OFFSET_OUT_OF_RANGE => FetchAnswer::OffsetOutOfRange {
            log_start: data.log_start_offset,
            log_end: data.high_watermark,
        },
        code::FENCED_LEADER_EPOCH => FetchAnswer::Error(ReplicaError::FencedLeaderEpoch),
        code::UNKNOWN_LEADER_EPOCH => FetchAnswer::Error(ReplicaError::UnknownLeaderEpoch),
        _ => FetchAnswer::Error(ReplicaError::NotLeaderOrFollower),
    }
}

/// One past the last offset of the whole batches in `records` (`from` when none).
fn records_end(from: i64, records: Option<&Bytes>) -> i64 {
    let mut end = from;
    for batch in whole_batches(records.map_or(&[][..], |r| &r[..])) {
        if let Ok(header) = storage::batch::BatchHeader::parse(batch) {
            end = end.max(header.last_offset() + 1);
        }
    }
    end
}

/// The whole batches at the front of `records` (a fetch answer may end in a partial one).
pub fn whole_batches(mut records: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if records.len() < 12 {
            return None;
        }
        let len = (&records[8..12]).get_i32();
        let total = 12usize.checked_add(usize::try_from(len).ok()?)?;
        if total > records.len() {
            return None;
        }
        let (batch, rest) = records.split_at(total);
        records = rest;
        Some(batch)
    })
}

/// Sends a leader's ISR proposal to the controller (AlterPartition) and gives the answer to
/// the replica machine.
pub async fn propose_isr(
    shard: Rc<Shard>,
    partition: Partition,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<i32>,
) {
    let (topic_id, index) = partition.key();
    let command = MetadataCommand::AlterPartition {
        topic_id,
        partition: index,
        leader_id: shard.image().node_id,
        leader_epoch,
        partition_epoch,
        new_isr: isr.clone(),
    };
    let topic = shard.image().topic_by_id(&topic_id).map(|t| t.name.clone());
    let before = partition.isr_at(partition_epoch);
    let result = match shard.propose(command).await {
        Ok(ApplyOutcome::PartitionChanged { registration, .. }) => {
            if let Some(before) = &before {
                shard.metrics.record_isr_change(before, &registration.isr);
            }
            info!(
                topic = topic.as_deref().unwrap_or("?"),
                partition = index,
                ?isr,
                "ISR changed"
            );
            Ok(state_of(&registration))
        }
        Ok(other) => {
            warn!(?other, "AlterPartition answered with another outcome");
            Err(IsrError::Other)
        }
        Err(e) => {
            debug!(partition = index, "ISR proposal refused: {e}");
            Err(isr_error(&e))
        }
    };
    partition
        .on_isr_result(&shard, partition_epoch, result)
        .await;
}

fn isr_error(e: &ApplyError) -> IsrError {
    match e {
        ApplyError::FencedLeaderEpoch(_) => IsrError::FencedLeaderEpoch,
        ApplyError::InvalidUpdateVersion(_) => IsrError::InvalidUpdateVersion,
        ApplyError::IneligibleReplica(_) => IsrError::IneligibleReplica,
        _ => IsrError::Other,
    }
}

/// The replica machine's view of a controller registration.
pub fn state_of(registration: &controller::PartitionRegistration) -> PartitionState {
    PartitionState {
        leader: registration.leader,
        leader_epoch: registration.leader_epoch,
        partition_epoch: registration.partition_epoch,
        replicas: registration.replica_brokers().collect(),
        isr: registration.isr.clone(),
    }
}

/// Ticks every replica of the shard until it closes.
pub async fn tick_replicas(shard: Rc<Shard>) {
    while !shard.is_closed() {
        glommio::timer::sleep(TICK).await;
        shard.tick_partitions(now_ms());
    }
}

impl Partition {
    /// Follower: the fetch to send now, if following.
    fn next_fetch(&self) -> Option<replication::FetchRequest> {
        if self.log().is_offline() {
            return None; // nothing can be appended until a restart recovers the log
        }
        let mut replica = self.inner.replica.borrow_mut();
        replica.next_fetch(&self.view())
    }

    /// Follower: the leader's answer; appends its records (keeping the leader's offsets and
    /// epochs) or truncates where the machine says. Returns whether it appended.
    async fn on_fetch_answer(
        &self,
        shard: &Rc<Shard>,
        request: &replication::FetchRequest,
        data: PartitionData,
    ) -> bool {
        let answer = fetch_answer(request.position.fetch_offset, &data);
        let effects = {
            let mut replica = self.inner.replica.borrow_mut();
            replica.on_fetch_answer(request, answer, &self.view())
        };
        let mut appended = false;
        for effect in effects {
            match effect {
                Effect::AppendFetched { from, to } => {
                    let records = data.records.clone().unwrap_or_default();
                    appended |= self
                        .append_fetched(request.leader_epoch, &records, from, to)
                        .await;
                }
                other => self.execute(shard, vec![other]).await,
            }
        }
        if data.error_code == code::NONE && data.diverging_epoch.epoch < 0 {
            let lag = data.high_watermark - self.log().log_end_offset();
            self.inner.counters.fetcher_lag.set(lag.max(0));
        }
        appended
    }

    /// Appends the fetched batches in `[from, to)` as a follower of `leader_epoch`; stops at
    /// the first that does not fit (the next fetch starts where it stopped).
    async fn append_fetched(&self, leader_epoch: i32, records: &Bytes, from: i64, to: i64) -> bool {
        let mut appended = false;
        for batch in whole_batches(records) {
            let header = match storage::batch::validate_replicated(batch) {
                Ok(header) => header,
                Err(e) => {
                    warn!(partition = ?self.key(), "fetched batch refused: {e}");
                    break;
                }
            };
            if header.last_offset() < from || header.base_offset >= to {
                continue;
            }
            let following = || self.leader_epoch() == leader_epoch;
            let log = self.log();
            match log
                .append_replicated_with_room(batch, &header, &following)
                .await
            {
                Ok(Some(_)) => {
                    let bytes_in = &self.inner.counters.replication_bytes_in;
                    bytes_in.set(bytes_in.get() + batch.len() as u64);
                    appended = true
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(partition = ?self.key(), "follower append refused: {e}");
                    break;
                }
            }
        }
        appended
    }

    /// The controller's answer to this leader's ISR proposal.
    async fn on_isr_result(
        &self,
        shard: &Rc<Shard>,
        partition_epoch: i32,
        result: Result<PartitionState, IsrError>,
    ) {
        let effects = {
            let mut replica = self.inner.replica.borrow_mut();
            replica.on_isr_result(partition_epoch, result, &self.view(), now_ms())
        };
        self.execute(shard, effects).await;
    }
}
