//! One module per Kafka API. Each handler takes the decoded request and its version and
//! returns the response body (or `None` when the request needs no response).

pub mod acls;
pub mod alter_configs;
pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod delete_records;
pub mod describe_topic_partitions;
pub mod elect_leaders;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod leader_epochs;
pub mod leader_hints;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod partitions;
pub mod produce;
pub mod quorum;
pub mod sasl;
pub mod scram_credentials;
pub mod topics;

use crate::authorizer::Authz;
use crate::protocol::Request;
use crate::session::Session;
use crate::shard::Shard;
use controller::acl::Operation;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use std::rc::Rc;

/// Kafka error codes used by the handlers.
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const INVALID_CONFIG: i16 = 40;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_REQUEST: i16 = 42;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const SECURITY_DISABLED: i16 = 54;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const INVALID_RECORD: i16 = 87;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const DUPLICATE_RESOURCE: i16 = 92;
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// Dispatches a decoded request to its handler; `session` is the connection it came on (its
/// client address; the principal handlers authorize, through one [`Authz`] per request).
pub async fn handle(
    shard: &Rc<Shard>,
    request: Request,
    session: &Session,
) -> Option<ResponseKind> {
    let version = request.version;
    let authz = &Authz::new(shard, session);
    Some(match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle(version)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(
            metadata::handle(shard, r, version, &session.listener, authz).await,
        ),
        RequestKind::Produce(r) => {
            let listener = &session.listener;
            ResponseKind::Produce(produce::handle(shard, r, version, listener, authz).await?)
        }
        RequestKind::Fetch(r) => {
            let listener = &session.listener;
            ResponseKind::Fetch(fetch::handle(shard, r, version, listener, authz).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(shard, r, version, authz).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topics::create(shard, r, version, authz).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete(shard, r, version, authz).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(shard, r, authz).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(shard, r, version, authz))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(alter_configs::incremental(shard, r, authz).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(partitions::create(shard, r, authz).await)
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(quorum::describe(shard, r, version, authz).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(leader_epochs::handle(shard, r, authz).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(shard, r, authz).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(shard, r, authz).await)
        }
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(cluster::describe(
            shard,
            r,
            version,
            &session.listener,
            authz,
        )),
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            describe_topic_partitions::handle(shard, r, authz),
        ),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(shard, r, authz).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(r, authz)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(shard, r, authz).await),
        RequestKind::FindCoordinator(r) => {
            let listener = &session.listener;
            ResponseKind::FindCoordinator(
                groups::find_coordinator(shard, r, version, listener, authz).await,
            )
        }
        RequestKind::JoinGroup(r) => {
            let client = groups::Client {
                client_id: request
                    .header
                    .client_id
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                client_host: session.client_host.to_string(),
            };
            ResponseKind::JoinGroup(groups::join(shard, r, version, client, authz).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync(shard, r, version, authz).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(groups::heartbeat(shard, r, authz).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave(shard, r, version, authz).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list(shard, r, version, authz).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe(shard, r, version, authz).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete(shard, r, authz).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offsets::commit(shard, r, version, authz).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offsets::fetch(shard, r, version, authz).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offsets::delete(shard, r, authz).await)
        }
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(sasl::handshake(session)),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(sasl::authenticate()),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(shard, r, authz))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(shard, r, authz).await)
        }
        // Only the APIs in protocol::SUPPORTED_APIS get this far.
        _ => return None,
    })
}

/// [`resolve_topic`] for an action that needs `operation` on the topic: a topic named in the
/// request is refused (TOPIC_AUTHORIZATION_FAILED) before it is looked up, so a principal
/// learns nothing of topics it may not use; one named by id is looked up first (its name is
/// what ACLs name).
pub fn resolve_authorized<'a>(
    image: &'a controller::MetadataImage,
    name: &kafka_protocol::messages::TopicName,
    id: uuid::Uuid,
    by_id: bool,
    authz: &Authz,
    operation: Operation,
) -> Result<&'a controller::TopicMeta, i16> {
    if !by_id && !authz.topic(operation, name.as_str()) {
        return Err(code::TOPIC_AUTHORIZATION_FAILED);
    }
    let meta = resolve_topic(image, name, id, by_id)?;
    if by_id && !authz.topic(operation, &meta.name) {
        return Err(code::TOPIC_AUTHORIZATION_FAILED);
    }
    Ok(meta)
}

/// Finds a topic named in a request: by id from the versions that carry ids, else by name.
/// The error is the code Kafka gives for an unknown topic in that case.
pub fn resolve_topic<'a>(
    image: &'a controller::MetadataImage,
    name: &kafka_protocol::messages::TopicName,
    id: uuid::Uuid,
    by_id: bool,
) -> Result<&'a controller::TopicMeta, i16> {
    if by_id {
        image
            .topic_by_id(id.as_bytes())
            .ok_or(code::UNKNOWN_TOPIC_ID)
    } else {
        image
            .topic(name.as_str())
            .ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)
    }
}

/// The key of partition `index` of a resolved topic, or the error code Kafka gives for it.
pub fn partition_key(
    topic: Result<&controller::TopicMeta, i16>,
    index: i32,
) -> Result<crate::shard::PartitionKey, i16> {
    let topic = topic?;
    if (0..topic.partitions).contains(&index) {
        Ok((topic.id, index))
    } else {
        Err(code::UNKNOWN_TOPIC_OR_PARTITION)
    }
}
