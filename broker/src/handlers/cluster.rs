//! DescribeCluster (60): the live brokers (every registered, unfenced broker of a multi-node
//! cluster; this node alone otherwise).

use crate::authorizer::{Authz, OPERATIONS_NOT_ASKED};
use crate::handlers::code;
use crate::handlers::metadata::{controller_id, live_brokers, on_listener};
use crate::listeners::ListenerInfo;
use crate::shard::Shard;
use controller::acl::{Operation, ResourceType, CLUSTER_NAME};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

pub fn describe(
    shard: &Shard,
    request: DescribeClusterRequest,
    _version: i16,
    listener: &ListenerInfo,
    authz: &Authz,
) -> DescribeClusterResponse {
    // Kafka: Describe on the cluster.
    if !authz.cluster(Operation::Describe) {
        return DescribeClusterResponse::default()
            .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
    }
    let operations = match request.include_cluster_authorized_operations {
        true => authz.operations(ResourceType::Cluster, CLUSTER_NAME, &Operation::CLUSTER),
        false => OPERATIONS_NOT_ASKED,
    };
    let image = shard.image();
    let brokers = live_brokers(shard, &image, &listener.name)
        .into_iter()
        .map(|b| on_listener(shard, listener, b))
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
        .with_controller_id(BrokerId(controller_id(shard)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(operations)
}
