//! A connection to a cluster for one command: the bootstrap connection, one connection per
//! broker opened on demand (the project's `spate_bench::client::Connection`), metadata
//! look-ups, Kafka error names, and the glommio executor a command runs on.

use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use spate_bench::client::Connection;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub type Result<T> = std::result::Result<T, String>;

const METADATA_VERSION: i16 = 12;
/// The client id in request headers (and the prefix of group member ids).
const CLIENT_ID: &str = "spate-cli";
/// A broker that does not accept the connection within this is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a topic whose partitions have no leader yet (just created) is waited for.
const LEADER_WAIT_TRIES: u32 = 40;

/// Runs a command's future on a single glommio executor (unpinned) and returns its result.
pub fn run<G, F, T>(make: G) -> Result<T>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = Result<T>> + 'static,
    T: Send + 'static,
{
    spate_bench::raise_memlock();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("spate-cli")
        .io_memory(256 << 10)
        .spawn(move || async move { make().await })
        .map_err(|e| format!("cannot start the client executor: {e}"))?
        .join()
        .map_err(|e| format!("client executor: {e}"))?
}

/// Kafka's name of an error code, e.g. 3 → `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    let error = match kafka_protocol::ResponseError::try_from_code(code) {
        None | Some(kafka_protocol::ResponseError::Unknown(_)) => return format!("ERROR_{code}"),
        Some(error) => error,
    };
    let camel = format!("{error:?}");
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// `Err("CONTEXT: NAME")` for a non-zero error code.
pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
    match code {
        0 => Ok(()),
        code => Err(format!("{}: {}", context(), error_name(code))),
    }
}

pub fn is_retriable(code: i16) -> bool {
    kafka_protocol::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A partition as Metadata describes it.
#[derive(Clone, Debug)]
pub struct PartitionInfo {
    pub index: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A topic as Metadata describes it; partitions sorted by index.
#[derive(Clone, Debug)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

pub struct Session {
    bootstrap: Connection,
    connections: RefCell<BTreeMap<String, Connection>>,
    /// Broker id → address, from the last Metadata reply.
    addresses: RefCell<BTreeMap<i32, String>>,
}

async fn connect(address: &str) -> Result<Connection> {
    glommio::timer::timeout(CONNECT_TIMEOUT, async {
        Ok(Connection::connect_as(address, CLIENT_ID).await)
    })
    .await
    .map_err(|_| format!("connect to {address}: no answer within {CONNECT_TIMEOUT:?}"))?
}

impl Session {
    /// Connects to the first reachable broker of a comma-separated list.
    pub async fn connect(brokers: &str) -> Result<Session> {
        let mut last = format!("no broker address in '{brokers}'");
        for address in brokers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match connect(address).await {
                Ok(bootstrap) => {
                    return Ok(Session {
                        bootstrap,
                        connections: RefCell::new(BTreeMap::new()),
                        addresses: RefCell::new(BTreeMap::new()),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(format!("cannot reach a broker: {last}"))
    }

    /// Calls the bootstrap broker.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp> {
        self.bootstrap.call(api_key, version, body).await
    }

    /// The connection to a broker by address, opened on first use.
    pub async fn connection(&self, address: &str) -> Result<Connection> {
        if address == self.bootstrap.address() {
            return Ok(self.bootstrap.clone());
        }
        if let Some(c) = self.connections.borrow().get(address) {
            return Ok(c.clone());
        }
        let connection = connect(address).await?;
        self.connections
            .borrow_mut()
            .insert(address.to_string(), connection.clone());
        Ok(connection)
    }

    /// The connection to a broker by id (known from an earlier Metadata reply).
    pub async fn broker(&self, id: i32) -> Result<Connection> {
        let address = self
            .addresses
            .borrow()
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("broker {id}: not in the metadata"))?;
        self.connection(&address).await
    }

    /// Metadata of some topics (`None`: all of them).
    pub async fn metadata(
        &self,
        topics: Option<&[&str]>,
        auto_create: bool,
    ) -> Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let reply: MetadataResponse = self
            .call(ApiKey::Metadata, METADATA_VERSION, &request)
            .await?;
        let mut addresses = self.addresses.borrow_mut();
        for b in &reply.brokers {
            addresses.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(reply)
    }

    /// One topic, waiting a little while its partitions have no leader yet (just created).
    pub async fn topic(&self, name: &str, auto_create: bool) -> Result<TopicInfo> {
        let mut tries = 0;
        loop {
            let reply = self.metadata(Some(&[name]), auto_create).await?;
            let found = reply
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name))
                .ok_or_else(|| format!("topic '{name}': not in the metadata reply"))?;
            let leaderless = found.partitions.iter().any(|p| p.leader_id.0 < 0);
            let waiting =
                (found.error_code != 0 && is_retriable(found.error_code) && found.error_code != 3)
                    || (found.error_code == 0 && (leaderless || found.partitions.is_empty()));
            if waiting && tries < LEADER_WAIT_TRIES {
                tries += 1;
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
            check(found.error_code, || format!("topic '{name}'"))?;
            return Ok(topic_info(found));
        }
    }
}

pub fn topic_info(
    t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = t
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            index: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
        })
        .collect();
    partitions.sort_by_key(|p| p.index);
    TopicInfo {
        name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
        id: t.topic_id.to_string(),
        internal: t.is_internal,
        partitions,
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(super::error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(super::error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(super::error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(super::error_name(9999), "ERROR_9999");
    }
}
