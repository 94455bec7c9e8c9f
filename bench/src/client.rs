//! The project's Kafka client on glommio: one pipelined connection per broker, typed calls for
//! Metadata, CreateTopics, DeleteTopics, Produce, Fetch and ListOffsets. Runs inside a glommio executor
//! (thread-per-core: one client per executor, no sharing across threads).
//!
//! Its executors need no periodic wake-up: the 1 ms tick once kept here for "a lost socket
//! wake-up" was the vendored glommio's executor parking with runnable tasks after an early
//! preemption (vendor/glommio/SPATE-PATCH.md, fix 1); 120 bench runs without the tick, on a
//! loaded machine, never hung.

use crate::security::Stream;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::lock::Mutex;
use glommio::net::TcpStream;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// Versions spoken: the newest that still name topics (later Produce and Fetch use topic ids),
/// served by Spate and by Kafka 4.x alike.
const METADATA_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 7;
const DELETE_TOPICS_VERSION: i16 = 6;
const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;

/// Responses larger than this close the connection (a broken peer, not a big fetch).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const READ_BUFFER_BYTES: usize = 256 << 10;
/// A request without a reply after this fails (the run reports it instead of hanging).
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub type Result<T> = std::result::Result<T, String>;

/// Prefix of errors a retry may cure (Kafka's retriable error codes, e.g. a leader that is
/// still being elected right after CreateTopics).
pub const RETRIABLE: &str = "retriable: ";

type Pending = oneshot::Sender<Result<Bytes>>;

struct Inner {
    writer: Mutex<WriteHalf<Stream>>,
    /// TLS buffers what it encrypts: each request is flushed (a plain socket needs no flush).
    flush: bool,
    /// Replies come back in request order; each waiter is queued with its correlation id.
    pending: RefCell<VecDeque<(i32, Pending)>>,
    next_correlation_id: Cell<i32>,
    closed: RefCell<Option<String>>,
    address: String,
    client_id: &'static str,
    /// The credentials the connection authenticated with, for re-authentication.
    sasl: Option<crate::sasl::SaslConfig>,
    /// When the session should be re-authenticated (KIP-368); `None`: never.
    reauthenticate_at: Cell<Option<std::time::Instant>>,
}

/// One pipelined connection: any number of tasks of this executor may call concurrently; writes
/// are serialised, replies matched in order.
#[derive(Clone)]
pub struct Connection {
    inner: Rc<Inner>,
}

impl Connection {
    pub async fn connect(address: &str) -> Result<Connection> {
        Self::connect_as(address, "spate-bench").await
    }

    /// Connects, naming the client `client_id` in every request header.
    pub async fn connect_as(address: &str, client_id: &'static str) -> Result<Connection> {
        Self::connect_with(address, client_id, crate::security::process_tls()).await
    }

    /// Connects over TLS with `tls` (or plain TCP without), whatever the process's TLS.
    pub async fn connect_with(
        address: &str,
        client_id: &'static str,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Connection> {
        let sasl = crate::security::process_sasl();
        Self::connect_secured(address, client_id, tls, sasl).await
    }

    /// Connects over TLS with `tls` (or plain TCP) and authenticates with `sasl` (or not),
    /// whatever the process's security: a broker's follower fetches.
    pub async fn connect_secured(
        address: &str,
        client_id: &'static str,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        sasl: Option<&crate::sasl::SaslConfig>,
    ) -> Result<Connection> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect to {address}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set_nodelay on {address}: {e}"))?;
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let mut stream = Stream::over_with(stream, host, tls).await?;
        let mut reauthenticate_at = None;
        if let Some(sasl) = sasl {
            let session = crate::sasl::authenticate(&mut stream, sasl, address, client_id).await?;
            reauthenticate_at = session.reauthenticate_at(crate::sasl::random_fraction());
        }
        let flush = stream.is_tls();
        let (reader, writer) = stream.split();
        let inner = Rc::new(Inner {
            writer: Mutex::new(writer),
            flush,
            pending: RefCell::new(VecDeque::new()),
            next_correlation_id: Cell::new(1),
            closed: RefCell::new(None),
            address: address.to_string(),
            client_id,
            sasl: sasl.cloned(),
            reauthenticate_at: Cell::new(reauthenticate_at),
        });
        glommio::spawn_local(read_replies(reader, inner.clone())).detach();
        Ok(Connection { inner })
    }

    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Whether the connection was lost (its reader stopped): every later call fails.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.borrow().is_some()
    }

    /// Whether the SASL session should be re-authenticated before a request that may take
    /// `within` (a fetch's wait): its re-authentication point (85-95 % of the session's
    /// lifetime) falls before the request would end.
    pub fn reauthentication_due(&self, within: std::time::Duration) -> bool {
        let at = self.inner.reauthenticate_at.get();
        at.is_some_and(|at| std::time::Instant::now() + within >= at)
    }

    /// Re-authenticates the SASL session on this connection (KIP-368): SaslHandshake and
    /// SaslAuthenticate with the same credentials, as Kafka's clients do. The caller must
    /// have no request in flight on the connection (the broker takes the exchange between
    /// two requests).
    pub async fn reauthenticate(&self) -> Result<()> {
        let sasl = self.inner.sasl.clone().ok_or("not a SASL connection")?;
        if !self.inner.pending.borrow().is_empty() {
            return Err("re-authentication with a request in flight".into());
        }
        let address = self.inner.address.clone();
        let mut caller = self.clone();
        let session = crate::sasl::exchange(&mut caller, &sasl, &address).await?;
        self.inner
            .reauthenticate_at
            .set(session.reauthenticate_at(crate::sasl::random_fraction()));
        Ok(())
    }

    /// Sends a request and waits for its reply.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp> {
        let reply = self
            .send(api_key, version, body, true)
            .await?
            .ok_or("no reply")?;
        let mut frame = glommio::timer::timeout(REPLY_TIMEOUT, async {
            Ok(reply
                .await
                .map_err(|_| format!("{}: connection closed", self.inner.address)))
        })
        .await
        .map_err(|_| {
            format!(
                "{api_key:?}: no reply from {} within {REPLY_TIMEOUT:?}",
                self.inner.address
            )
        })???;
        ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
            .map_err(|e| format!("{api_key:?} v{version} response header: {e}"))?;
        Resp::decode(&mut frame, version).map_err(|e| format!("{api_key:?} v{version} reply: {e}"))
    }

    /// Sends a request that gets no reply (Produce with acks=0).
    pub async fn send_only<Req: Encodable>(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<()> {
        self.send(api_key, version, body, false).await.map(|_| ())
    }

    async fn send<Req: Encodable>(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
        expect_reply: bool,
    ) -> Result<Option<oneshot::Receiver<Result<Bytes>>>> {
        let correlation_id = self.inner.next_correlation_id.get();
        self.inner
            .next_correlation_id
            .set(correlation_id.wrapping_add(1));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(self.inner.client_id)))
            .encode(&mut buf, api_key.request_header_version(version))
            .map_err(|e| format!("{api_key:?} header: {e}"))?;
        body.encode(&mut buf, version)
            .map_err(|e| format!("{api_key:?} v{version}: {e}"))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());

        let mut writer = self.inner.writer.lock().await;
        if let Some(reason) = self.inner.closed.borrow().as_ref() {
            return Err(reason.clone());
        }
        // Queued under the writer lock, so waiters are in the order their requests hit the wire.
        let reply = expect_reply.then(|| {
            let (tx, rx) = oneshot::channel();
            self.inner
                .pending
                .borrow_mut()
                .push_back((correlation_id, tx));
            rx
        });
        writer
            .write_all(&buf)
            .await
            .map_err(|e| format!("write to {}: {e}", self.inner.address))?;
        if self.inner.flush {
            writer
                .flush()
                .await
                .map_err(|e| format!("write to {}: {e}", self.inner.address))?;
        }
        Ok(reply)
    }
}

impl crate::sasl::SaslCall for Connection {
    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp> {
        Connection::call(self, api_key, version, body).await
    }
}

async fn read_replies(mut reader: ReadHalf<Stream>, inner: Rc<Inner>) {
    let mut buffered = futures::io::BufReader::with_capacity(READ_BUFFER_BYTES, &mut reader);
    let reason = loop {
        let mut size = [0u8; 4];
        if let Err(e) = buffered.read_exact(&mut size).await {
            break format!("{}: connection closed ({e})", inner.address);
        }
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > RESPONSE_BYTES_MAX {
            break format!("{}: bad response size {size}", inner.address);
        }
        let mut frame = BytesMut::zeroed(size as usize);
        if let Err(e) = buffered.read_exact(&mut frame).await {
            break format!("{}: connection closed mid-frame ({e})", inner.address);
        }
        let frame = frame.freeze();
        let correlation_id = (&frame[..4]).get_i32();
        let Some((expected, waiter)) = inner.pending.borrow_mut().pop_front() else {
            break format!("{}: unsolicited reply {correlation_id}", inner.address);
        };
        if expected != correlation_id {
            break format!(
                "{}: reply {correlation_id} where {expected} was due",
                inner.address
            );
        }
        let _ = waiter.send(Ok(frame));
    };
    *inner.closed.borrow_mut() = Some(reason.clone());
    for (_, waiter) in inner.pending.borrow_mut().drain(..) {
        let _ = waiter.send(Err(reason.clone()));
    }
}

/// Where a topic's partitions live.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    pub name: String,
    /// Leader broker address of each partition, by partition index.
    pub leaders: Vec<String>,
}

/// One partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: i32,
    /// -1: no leader (being elected, or offline).
    pub leader_id: i32,
    /// The leader's address, when the reply lists that broker.
    pub leader: Option<String>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A Metadata reply for one topic: the brokers it lists (id, address) and the partitions.
#[derive(Clone, Debug)]
pub struct TopicState {
    pub brokers: Vec<(i32, String)>,
    pub partitions: Vec<PartitionState>,
}

/// A client bound to a cluster: the bootstrap connection and one connection per broker.
pub struct Client {
    bootstrap: Connection,
    brokers: RefCell<BTreeMap<String, Connection>>,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn is_retriable(code: i16) -> bool {
    kafka_protocol::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error {code}"),
    }
}

impl Client {
    /// Connects to the first reachable address of a comma-separated bootstrap list.
    pub async fn connect(bootstrap: &str) -> Result<Client> {
        let mut last = String::from("no bootstrap address");
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Connection::connect(address).await {
                Ok(bootstrap) => {
                    return Ok(Client {
                        bootstrap,
                        brokers: RefCell::new(BTreeMap::new()),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The connection to a broker, opened on first use.
    pub async fn broker(&self, address: &str) -> Result<Connection> {
        if let Some(c) = self.brokers.borrow().get(address) {
            return Ok(c.clone());
        }
        let connection = if address == self.bootstrap.address() {
            self.bootstrap.clone()
        } else {
            Connection::connect(address).await?
        };
        self.brokers
            .borrow_mut()
            .insert(address.to_string(), connection.clone());
        Ok(connection)
    }

    /// Leaders, replicas and ISR of every partition of a topic, and the brokers the reply lists
    /// (Metadata, no auto-creation); partitions in index order.
    pub async fn topic_state(&self, topic: &str) -> Result<TopicState> {
        topic_state(&self.bootstrap, topic).await
    }

    /// Partition leaders of a topic (Metadata, no auto-creation).
    pub async fn topic_layout(&self, topic: &str) -> Result<TopicLayout> {
        let reply = metadata(&self.bootstrap, topic).await?;
        let addresses: BTreeMap<BrokerId, String> = reply
            .brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let found = reply
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
            .ok_or_else(|| format!("topic {topic}: not in the metadata reply"))?;
        if found.error_code != 0 {
            return Err(format!("topic {topic}: {}", error_name(found.error_code)));
        }
        let mut partitions: Vec<_> = found.partitions.iter().collect();
        partitions.sort_by_key(|p| p.partition_index);
        let leaders = partitions
            .iter()
            .enumerate()
            .map(|(index, p)| {
                if p.partition_index != index as i32 {
                    return Err(format!("topic {topic}: partition {index} missing"));
                }
                addresses
                    .get(&p.leader_id)
                    .cloned()
                    .ok_or_else(|| format!("{topic}-{index}: leader {:?} unknown", p.leader_id))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TopicLayout {
            name: topic.to_string(),
            leaders,
        })
    }

    /// Creates a topic; one that exists already is fine when it has `partitions` partitions.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        configs: &[(String, String)],
    ) -> Result<()> {
        self.create_topic_replicated(topic, partitions, 1, configs)
            .await
    }

    /// `create_topic` with `replication_factor` replicas per partition.
    pub async fn create_topic_replicated(
        &self,
        topic: &str,
        partitions: u32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<()> {
        use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions as i32)
                .with_replication_factor(replication_factor)
                .with_configs(configs)])
            .with_timeout_ms(30_000);
        let reply: CreateTopicsResponse = self
            .bootstrap
            .call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &request)
            .await?;
        let result = reply.topics.first().ok_or("empty CreateTopics reply")?;
        const TOPIC_ALREADY_EXISTS: i16 = 36;
        match result.error_code {
            0 => Ok(()),
            TOPIC_ALREADY_EXISTS => {
                let layout = self.topic_layout(topic).await?;
                if layout.leaders.len() == partitions as usize {
                    Ok(())
                } else {
                    Err(format!(
                        "topic {topic} exists with {} partitions, not {partitions}",
                        layout.leaders.len()
                    ))
                }
            }
            code => Err(format!(
                "{}create topic {topic}: {}",
                if is_retriable(code) { RETRIABLE } else { "" },
                error_name(code)
            )),
        }
    }
}

async fn metadata(connection: &Connection, topic: &str) -> Result<MetadataResponse> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    connection
        .call(ApiKey::Metadata, METADATA_VERSION, &request)
        .await
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Deletes a topic (DeleteTopics); one the broker does not know is already gone.
pub async fn delete_topic(connection: &Connection, topic: &str) -> Result<()> {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    let request = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(topic)))
        ])
        .with_timeout_ms(30_000);
    let reply: DeleteTopicsResponse = connection
        .call(ApiKey::DeleteTopics, DELETE_TOPICS_VERSION, &request)
        .await?;
    let result = reply.responses.first().ok_or("empty DeleteTopics reply")?;
    match result.error_code {
        0 | UNKNOWN_TOPIC_OR_PARTITION => Ok(()),
        code => Err(format!(
            "{}delete topic {topic}: {}",
            if is_retriable(code) { RETRIABLE } else { "" },
            error_name(code)
        )),
    }
}

/// Whether the broker's Metadata no longer knows the topic (UNKNOWN_TOPIC_OR_PARTITION).
pub async fn topic_gone(connection: &Connection, topic: &str) -> Result<bool> {
    let reply = metadata(connection, topic).await?;
    Ok(reply
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .is_none_or(|t| t.error_code == UNKNOWN_TOPIC_OR_PARTITION))
}

/// The brokers a Metadata reply lists (id, address), asked for no topic.
pub async fn brokers(connection: &Connection) -> Result<Vec<(i32, String)>> {
    let request = MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .with_allow_auto_topic_creation(false);
    let reply: MetadataResponse = connection
        .call(ApiKey::Metadata, METADATA_VERSION, &request)
        .await?;
    Ok(reply
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect())
}

/// The node id of the active controller, from DescribeQuorum (55) v0 of the metadata log
/// (`__cluster_metadata` partition 0), which Kafka's brokers forward to their controller.
pub async fn active_controller(connection: &Connection) -> Result<i32> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name("__cluster_metadata"))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let reply: DescribeQuorumResponse =
        connection.call(ApiKey::DescribeQuorum, 0, &request).await?;
    if reply.error_code != 0 {
        return Err(format!("DescribeQuorum: {}", error_name(reply.error_code)));
    }
    let partition = reply
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("DescribeQuorum: no partition in the reply")?;
    if partition.error_code != 0 {
        return Err(format!(
            "DescribeQuorum: {}",
            error_name(partition.error_code)
        ));
    }
    Ok(partition.leader_id.0)
}

/// `Client::topic_state` over one connection.
pub async fn topic_state(connection: &Connection, topic: &str) -> Result<TopicState> {
    let reply = metadata(connection, topic).await?;
    let brokers: Vec<(i32, String)> = reply
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let found = reply
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .ok_or_else(|| format!("topic {topic}: not in the metadata reply"))?;
    if found.error_code != 0 {
        return Err(format!(
            "{}topic {topic}: {}",
            if is_retriable(found.error_code) {
                RETRIABLE
            } else {
                ""
            },
            error_name(found.error_code)
        ));
    }
    let mut partitions: Vec<PartitionState> = found
        .partitions
        .iter()
        .map(|p| PartitionState {
            partition: p.partition_index,
            leader_id: p.leader_id.0,
            leader: brokers
                .iter()
                .find(|(id, _)| *id == p.leader_id.0)
                .map(|(_, a)| a.clone()),
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    Ok(TopicState {
        brokers,
        partitions,
    })
}

/// Where a producer sends each partition of one topic: the leaders of the last Metadata, asked
/// of any bootstrap address that answers, and one connection per leader. A produce that fails
/// with a retriable error (NOT_LEADER_OR_FOLLOWER, ...) or loses its connection asks for fresh
/// Metadata and goes to the new leader (`produce_routed`), as Kafka's clients do on failover.
pub struct Routes {
    topic: String,
    bootstrap: Vec<String>,
    leaders: RefCell<Vec<Option<String>>>,
    connections: RefCell<BTreeMap<String, Connection>>,
    refreshed_at: Cell<Option<std::time::Instant>>,
}

impl Routes {
    /// Routes of `topic` from the first bootstrap address that answers Metadata.
    pub async fn connect(bootstrap: &str, topic: &str) -> Result<Rc<Routes>> {
        let routes = Rc::new(Routes {
            topic: topic.to_string(),
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
            leaders: RefCell::new(Vec::new()),
            connections: RefCell::new(BTreeMap::new()),
            refreshed_at: Cell::new(None),
        });
        routes.refresh().await?;
        Ok(routes)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition_count(&self) -> usize {
        self.leaders.borrow().len()
    }

    /// The leader address of a partition in the last Metadata (None: no leader then).
    pub fn leader(&self, partition: usize) -> Option<String> {
        self.leaders.borrow().get(partition).cloned().flatten()
    }

    /// The open connection to `address`, opened (again) when missing or lost.
    pub async fn connection(&self, address: &str) -> Result<Connection> {
        if let Some(c) = self.connections.borrow().get(address) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let connection = Connection::connect(address).await?;
        self.connections
            .borrow_mut()
            .insert(address.to_string(), connection.clone());
        Ok(connection)
    }

    fn forget(&self, address: &str) {
        self.connections.borrow_mut().remove(address);
    }

    /// Asks for the topic's leaders again: the bootstrap addresses, then the known brokers, in
    /// turn, until one answers. A refresh within the last 20 ms is reused.
    pub async fn refresh(&self) -> Result<()> {
        if self
            .refreshed_at
            .get()
            .is_some_and(|at| at.elapsed() < std::time::Duration::from_millis(20))
        {
            return Ok(());
        }
        let mut candidates = self.bootstrap.clone();
        for known in self.connections.borrow().keys() {
            if !candidates.contains(known) {
                candidates.push(known.clone());
            }
        }
        let mut last = String::from("no bootstrap address");
        for address in candidates {
            let connection = match self.connection(&address).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match topic_state(&connection, &self.topic).await {
                Ok(state) => {
                    *self.leaders.borrow_mut() =
                        state.partitions.into_iter().map(|p| p.leader).collect();
                    self.refreshed_at.set(Some(std::time::Instant::now()));
                    return Ok(());
                }
                Err(e) => {
                    if connection.is_closed() {
                        self.forget(&address);
                    }
                    last = e;
                }
            }
        }
        Err(format!("{RETRIABLE}metadata of {}: {last}", self.topic))
    }
}

/// Produces batches (one per partition) to their leaders with Kafka's client retries: the
/// partitions answered with a retriable error, or whose connection was lost (a broker killed),
/// are sent again after `backoff` to the leaders a fresh Metadata names, up to `retries` times.
/// Returns the address of the broker that acknowledged each partition's batch.
pub async fn produce_routed(
    routes: &Routes,
    acks: i16,
    batches: Vec<(i32, Bytes)>,
    retries: usize,
    backoff: std::time::Duration,
) -> Result<Vec<(i32, String)>> {
    let mut pending = batches;
    let mut acknowledged = Vec::with_capacity(pending.len());
    let mut attempt = 0;
    loop {
        // One request per leader of the last Metadata; partitions without one wait.
        let mut by_leader: Vec<(String, Vec<(i32, Bytes)>)> = Vec::new();
        let mut failed: Vec<(i32, Bytes)> = Vec::new();
        let mut last_error = String::new();
        for (partition, batch) in pending {
            match routes.leader(partition as usize) {
                Some(leader) => match by_leader.iter_mut().find(|(l, _)| *l == leader) {
                    Some((_, batches)) => batches.push((partition, batch)),
                    None => by_leader.push((leader, vec![(partition, batch)])),
                },
                None => {
                    last_error = format!("{}-{partition}: no leader", routes.topic());
                    failed.push((partition, batch));
                }
            }
        }
        let sends = by_leader.into_iter().map(|(leader, batches)| async move {
            let outcome = match routes.connection(&leader).await {
                Ok(connection) => {
                    produce_each(&connection, routes.topic(), acks, batches.clone()).await
                }
                Err(e) => Err(e),
            };
            (leader, batches, outcome)
        });
        for (leader, batches, outcome) in futures::future::join_all(sends).await {
            match outcome {
                Ok(codes) => {
                    let mut batches: Vec<Option<(i32, Bytes)>> =
                        batches.into_iter().map(Some).collect();
                    for (partition, code) in codes {
                        let Some(slot) = batches
                            .iter_mut()
                            .find(|b| b.as_ref().is_some_and(|(p, _)| *p == partition))
                        else {
                            continue;
                        };
                        if code == 0 {
                            slot.take();
                            acknowledged.push((partition, leader.clone()));
                        } else if is_retriable(code) {
                            last_error = format!(
                                "produce {}-{partition}: {}",
                                routes.topic(),
                                error_name(code)
                            );
                            failed.extend(slot.take());
                        } else {
                            return Err(format!(
                                "produce {}-{partition}: {}",
                                routes.topic(),
                                error_name(code)
                            ));
                        }
                    }
                    // A partition the reply left out is sent again.
                    failed.extend(batches.into_iter().flatten());
                }
                // The connection failed (refused, closed, no reply): the broker may be gone.
                Err(e) => {
                    routes.forget(&leader);
                    last_error = e;
                    failed.extend(batches);
                }
            }
        }
        if failed.is_empty() {
            return Ok(acknowledged);
        }
        attempt += 1;
        if attempt > retries {
            return Err(format!("{RETRIABLE}{last_error} (after {retries} retries)"));
        }
        glommio::timer::sleep(backoff).await;
        // Keep the old routes when no broker answers; the next attempt asks again.
        let _ = routes.refresh().await;
        pending = failed;
    }
}

/// Produces one request's worth of batches (one per partition) to a broker; returns when it
/// is acknowledged (immediately for acks=0).
pub async fn produce(
    connection: &Connection,
    topic: &str,
    acks: i16,
    batches: Vec<(i32, Bytes)>,
) -> Result<()> {
    for (partition, code) in produce_each(connection, topic, acks, batches).await? {
        if code != 0 {
            let retriable = is_retriable(code);
            return Err(format!(
                "{}produce {topic}-{partition}: {}",
                if retriable { RETRIABLE } else { "" },
                error_name(code)
            ));
        }
    }
    Ok(())
}

/// `produce`, answering each partition's error code (0: acknowledged; acks=0: all 0 once sent);
/// an error is the request's own (connection lost, no reply).
pub async fn produce_each(
    connection: &Connection,
    topic: &str,
    acks: i16,
    batches: Vec<(i32, Bytes)>,
) -> Result<Vec<(i32, i16)>> {
    let sent: Vec<i32> = batches.iter().map(|(p, _)| *p).collect();
    let partition_data = batches
        .into_iter()
        .map(|(index, records)| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(records))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(partition_data)]);
    if acks == 0 {
        connection
            .send_only(ApiKey::Produce, PRODUCE_VERSION, &request)
            .await?;
        return Ok(sent.into_iter().map(|p| (p, 0)).collect());
    }
    let reply: ProduceResponse = connection
        .call(ApiKey::Produce, PRODUCE_VERSION, &request)
        .await?;
    Ok(reply
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| (p.index, p.error_code))
        .collect())
}

/// What one partition of a fetch returned.
pub struct FetchedPartition {
    pub partition: i32,
    pub high_watermark: i64,
    pub records: Bytes,
}

/// A Fetch of several partitions of a topic at the given offsets (no fetch session, a 64 MiB
/// response bound), for the version `FETCH_VERSION` (topics by name).
pub fn fetch_request(
    topic: &str,
    offsets: &[(i32, i64)],
    max_wait_ms: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    let partitions = offsets
        .iter()
        .map(|&(partition, fetch_offset)| {
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(fetch_offset)
                .with_partition_max_bytes(partition_max_bytes)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions)])
}

/// Fetches from several partitions of a topic at the given offsets (no fetch session).
pub async fn fetch(
    connection: &Connection,
    topic: &str,
    offsets: &[(i32, i64)],
    max_wait_ms: i32,
    partition_max_bytes: i32,
) -> Result<Vec<FetchedPartition>> {
    let request = fetch_request(topic, offsets, max_wait_ms, partition_max_bytes);
    let reply: FetchResponse = connection
        .call(ApiKey::Fetch, FETCH_VERSION, &request)
        .await?;
    if reply.error_code != 0 {
        return Err(format!("fetch {topic}: {}", error_name(reply.error_code)));
    }
    let mut out = Vec::new();
    for topic_reply in reply.responses {
        for p in topic_reply.partitions {
            if p.error_code != 0 {
                return Err(format!(
                    "{}fetch {topic}-{}: {}",
                    if is_retriable(p.error_code) {
                        RETRIABLE
                    } else {
                        ""
                    },
                    p.partition_index,
                    error_name(p.error_code)
                ));
            }
            out.push(FetchedPartition {
                partition: p.partition_index,
                high_watermark: p.high_watermark,
                records: p.records.unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// The log end offset (timestamp -1) or log start offset (-2) of partitions.
pub async fn list_offsets(
    connection: &Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<(i32, i64)>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let reply: ListOffsetsResponse = connection
        .call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &request)
        .await?;
    let mut out = Vec::new();
    for t in reply.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                return Err(format!(
                    "{}list offsets {topic}-{}: {}",
                    if is_retriable(p.error_code) {
                        RETRIABLE
                    } else {
                        ""
                    },
                    p.partition_index,
                    error_name(p.error_code)
                ));
            }
            out.push((p.partition_index, p.offset));
        }
    }
    Ok(out)
}
