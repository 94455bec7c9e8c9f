//! `spate cluster info`: DescribeCluster and Metadata.

use crate::args::{self};
use crate::output::{print_json, table};
use crate::session::{check, run, Session};
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use serde_json::json;

pub fn main(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("info") => {}
        Some(other) => return Err(format!("unknown cluster command '{other}' (info)")),
        None => return Err("usage: spate cluster info".into()),
    }
    let args = args::parse(&args[1..], &[], &[])?;
    args.no_more_than(0)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let cluster: DescribeClusterResponse = session
            .call(
                ApiKey::DescribeCluster,
                1,
                &DescribeClusterRequest::default(),
            )
            .await?;
        check(cluster.error_code, || "describe cluster".to_string())?;
        let metadata = session.metadata(None, false).await?;
        let topics = metadata.topics.iter().filter(|t| !t.is_internal).count();
        let internal = metadata.topics.len() - topics;
        let health = replica_health(&metadata);
        let brokers: Vec<_> = cluster
            .brokers
            .iter()
            .map(|b| {
                (
                    b.broker_id.0,
                    b.host.to_string(),
                    b.port,
                    b.rack.as_deref().map(str::to_string),
                )
            })
            .collect();
        if json {
            print_json(&json!({
                "cluster_id": cluster.cluster_id.to_string(),
                "controller": cluster.controller_id.0,
                "brokers": brokers.iter().map(|(id, host, port, rack)| json!({"id": id, "host": host, "port": port, "rack": rack})).collect::<Vec<_>>(),
                "topics": topics,
                "internal_topics": internal,
                "partitions": health.partitions,
                "under_replicated_partitions": health.under_replicated,
                "offline_partitions": health.offline,
            }));
            return Ok(());
        }
        outln!("Cluster id: {}", cluster.cluster_id.as_str());
        outln!("Controller: {}", cluster.controller_id.0);
        outln!("Topics: {topics} (+{internal} internal)");
        outln!(
            "Partitions: {} ({} under-replicated, {} offline)",
            health.partitions,
            health.under_replicated,
            health.offline
        );
        let rows: Vec<Vec<String>> = brokers
            .iter()
            .map(|(id, host, port, rack)| {
                vec![
                    id.to_string(),
                    format!("{host}:{port}"),
                    rack.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out!("{}", table(&["BROKER", "ADDRESS", "RACK"], &rows));
        Ok(())
    })
}

/// Partition counts of a Metadata answer, as Kafka's tools name them.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReplicaHealth {
    partitions: usize,
    /// Fewer in-sync replicas than replicas.
    under_replicated: usize,
    /// No leader.
    offline: usize,
}

fn replica_health(metadata: &kafka_protocol::messages::MetadataResponse) -> ReplicaHealth {
    let mut health = ReplicaHealth::default();
    for p in metadata.topics.iter().flat_map(|t| &t.partitions) {
        health.partitions += 1;
        health.under_replicated += usize::from(p.isr_nodes.len() < p.replica_nodes.len());
        health.offline += usize::from(p.leader_id.0 < 0);
    }
    health
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, MetadataResponse};

    fn partition(leader: i32, replicas: &[i32], isr: &[i32]) -> MetadataResponsePartition {
        MetadataResponsePartition::default()
            .with_leader_id(BrokerId(leader))
            .with_replica_nodes(replicas.iter().map(|&b| BrokerId(b)).collect())
            .with_isr_nodes(isr.iter().map(|&b| BrokerId(b)).collect())
    }

    #[test]
    fn counts_under_replicated_and_offline_partitions() {
        let topic = MetadataResponseTopic::default().with_partitions(vec![
            partition(1, &[1, 2, 3], &[1, 2, 3]),
            partition(2, &[2, 3, 1], &[2, 3]),
            partition(-1, &[3, 1, 2], &[3]),
        ]);
        let metadata = MetadataResponse::default().with_topics(vec![topic]);
        assert_eq!(
            replica_health(&metadata),
            ReplicaHealth {
                partitions: 3,
                under_replicated: 2,
                offline: 1
            }
        );
    }
}
