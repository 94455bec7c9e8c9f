//! DescribeCluster (60).

use crate::shard::Shard;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

pub fn describe(
    shard: &Shard,
    _request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let node = BrokerId(shard.config.node_id);
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(shard.image().cluster_id.clone()))
        .with_controller_id(node)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(StrBytes::from_string(shard.advertised.host.clone()))
            .with_port(shard.advertised.port)])
}
