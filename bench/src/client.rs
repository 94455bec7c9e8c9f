//! The project's Kafka client on glommio: one pipelined connection per broker, typed calls for
//! Metadata, CreateTopics, Produce, Fetch and ListOffsets. Runs inside a glommio executor
//! (thread-per-core: one client per executor, no sharing across threads).

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
const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;

/// Responses larger than this close the connection (a broken peer, not a big fetch).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const READ_BUFFER_BYTES: usize = 256 << 10;
/// A request without a reply after this fails (the run reports it instead of hanging).
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Period of the executor's wake-up tick (see `keep_executor_awake`).
const TICK: std::time::Duration = std::time::Duration::from_millis(1);

pub type Result<T> = std::result::Result<T, String>;

/// Prefix of errors a retry may cure (Kafka's retriable error codes, e.g. a leader that is
/// still being elected right after CreateTopics).
pub const RETRIABLE: &str = "retriable: ";

type Pending = oneshot::Sender<Result<Bytes>>;

struct Inner {
    writer: Mutex<WriteHalf<TcpStream>>,
    /// Replies come back in request order; each waiter is queued with its correlation id.
    pending: RefCell<VecDeque<(i32, Pending)>>,
    next_correlation_id: Cell<i32>,
    closed: RefCell<Option<String>>,
    address: String,
    client_id: &'static str,
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
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect to {address}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set_nodelay on {address}: {e}"))?;
        let (reader, writer) = stream.split();
        let inner = Rc::new(Inner {
            writer: Mutex::new(writer),
            pending: RefCell::new(VecDeque::new()),
            next_correlation_id: Cell::new(1),
            closed: RefCell::new(None),
            address: address.to_string(),
            client_id,
        });
        glommio::spawn_local(read_replies(reader, inner.clone())).detach();
        Ok(Connection { inner })
    }

    pub fn address(&self) -> &str {
        &self.inner.address
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
        Ok(reply)
    }
}

async fn read_replies(mut reader: ReadHalf<TcpStream>, inner: Rc<Inner>) {
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

/// Wakes the executor every millisecond while `alive` holds. Works around a lost wake-up seen
/// with glommio 0.9 sockets: an executor parked with only socket reads pending sometimes never
/// saw a reply that had reached its socket (Recv-Q non-empty, reader task pending), which hung a
/// run; a periodic timer makes the executor loop run, which submits and reaps its rings.
pub async fn keep_executor_awake(alive: impl Fn() -> bool) {
    while alive() {
        glommio::timer::sleep(TICK).await;
    }
}

/// Where a topic's partitions live.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    pub name: String,
    /// Leader broker address of each partition, by partition index.
    pub leaders: Vec<String>,
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

    /// Partition leaders of a topic (Metadata, no auto-creation).
    pub async fn topic_layout(&self, topic: &str) -> Result<TopicLayout> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let reply: MetadataResponse = self
            .bootstrap
            .call(ApiKey::Metadata, METADATA_VERSION, &request)
            .await?;
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
                .with_replication_factor(1)
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
            code => Err(format!("create topic {topic}: {}", error_name(code))),
        }
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
        return connection
            .send_only(ApiKey::Produce, PRODUCE_VERSION, &request)
            .await;
    }
    let reply: ProduceResponse = connection
        .call(ApiKey::Produce, PRODUCE_VERSION, &request)
        .await?;
    for topic_reply in &reply.responses {
        for p in &topic_reply.partition_responses {
            if p.error_code != 0 {
                let retriable = is_retriable(p.error_code);
                return Err(format!(
                    "{}produce {topic}-{}: {}",
                    if retriable { RETRIABLE } else { "" },
                    p.index,
                    error_name(p.error_code)
                ));
            }
        }
    }
    Ok(())
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
