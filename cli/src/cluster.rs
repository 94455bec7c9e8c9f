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
            }));
            return Ok(());
        }
        outln!("Cluster id: {}", cluster.cluster_id.as_str());
        outln!("Controller: {}", cluster.controller_id.0);
        outln!("Topics: {topics} (+{internal} internal)");
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
