//! `spate topic create|list|describe|delete|alter-config`.

use crate::args::{self, key_value, validate_topic, Args};
use crate::output::{ids, print_json, table};
use crate::session::{check, error_name, run, str_bytes, topic_info, topic_name, Session};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use serde_json::json;
use std::collections::BTreeMap;

const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs' source of a config set on the topic itself.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub fn main(args: &[String]) -> Result<(), String> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("create") => create(args::parse(
            rest,
            &["--partitions", "--replication-factor", "--config"],
            &[],
        )?),
        Some("list") => list(args::parse(rest, &[], &[])?),
        Some("describe") => describe(args::parse(rest, &[], &[])?),
        Some("delete") => delete(args::parse(rest, &[], &[])?),
        Some("alter-config") => alter_config(args::parse(rest, &["--set", "--delete"], &[])?),
        Some(other) => Err(format!(
            "unknown topic command '{other}' (create, list, describe, delete, alter-config)"
        )),
        None => Err("usage: spate topic create|list|describe|delete|alter-config ...".into()),
    }
}

/// The topic named by the first positional, validated.
fn named_topic(args: &Args) -> Result<String, String> {
    let name = args.positional(0, "topic name")?;
    args.no_more_than(1)?;
    validate_topic(name)?;
    Ok(name.to_string())
}

fn create(args: Args) -> Result<(), String> {
    let name = named_topic(&args)?;
    let partitions = args.parsed::<i32>("--partitions")?.unwrap_or(-1);
    let replication = args.parsed::<i16>("--replication-factor")?.unwrap_or(-1);
    let configs = args
        .values("--config")
        .into_iter()
        .map(|c| key_value(c, "--config"))
        .collect::<Result<Vec<_>, _>>()?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&name))
                .with_num_partitions(partitions)
                .with_replication_factor(replication)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                )])
            .with_timeout_ms(30_000);
        let reply: CreateTopicsResponse = session.call(ApiKey::CreateTopics, 7, &request).await?;
        let result = reply.topics.first().ok_or("empty CreateTopics reply")?;
        if result.error_code != 0 {
            return Err(with_message(
                format!("topic '{name}': {}", error_name(result.error_code)),
                result.error_message.as_deref(),
            ));
        }
        let topic = session.topic(&name, false).await?;
        if json {
            print_json(&json!({"topic": name, "partitions": topic.partitions.len()}));
        } else {
            outln!(
                "created topic {name} ({} partitions)",
                topic.partitions.len()
            );
        }
        Ok(())
    })
}

fn with_message(reason: String, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{reason} ({m})"),
        None => reason,
    }
}

fn list(args: Args) -> Result<(), String> {
    args.no_more_than(0)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let reply = session.metadata(None, false).await?;
        let mut topics: Vec<_> = reply.topics.iter().map(topic_info).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        if json {
            print_json(&json!(topics
                .iter()
                .map(|t| json!({"name": t.name, "id": t.id, "partitions": t.partitions.len(), "internal": t.internal}))
                .collect::<Vec<_>>()));
        } else {
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.partitions.len().to_string(),
                        if t.internal { "yes" } else { "" }.to_string(),
                    ]
                })
                .collect();
            out!("{}", table(&["TOPIC", "PARTITIONS", "INTERNAL"], &rows));
        }
        Ok(())
    })
}

/// Log start and end offsets of every partition that has a leader, asked of that leader
/// (an offline partition, whose only replica is on a fenced broker, is left out).
pub async fn log_offsets(
    session: &Session,
    topic: &crate::session::TopicInfo,
) -> Result<BTreeMap<i32, (i64, i64)>, String> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in topic.partitions.iter().filter(|p| p.leader >= 0) {
        by_leader.entry(p.leader).or_default().push(p.index);
    }
    let mut offsets = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let connection = session.broker(leader).await?;
        let starts =
            spate_bench::client::list_offsets(&connection, &topic.name, &partitions, -2).await?;
        let ends =
            spate_bench::client::list_offsets(&connection, &topic.name, &partitions, -1).await?;
        for ((p, start), (_, end)) in starts.into_iter().zip(ends) {
            offsets.insert(p, (start, end));
        }
    }
    Ok(offsets)
}

/// The configs set on a topic (not defaults).
async fn topic_configs(session: &Session, name: &str) -> Result<BTreeMap<String, String>, String> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(None)]);
    let reply: DescribeConfigsResponse = session.call(ApiKey::DescribeConfigs, 4, &request).await?;
    let result = reply.results.first().ok_or("empty DescribeConfigs reply")?;
    check(result.error_code, || format!("topic '{name}'"))?;
    Ok(result
        .configs
        .iter()
        .filter(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

fn describe(args: Args) -> Result<(), String> {
    let name = named_topic(&args)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let topic = session.topic(&name, false).await?;
        let offsets = log_offsets(&session, &topic).await?;
        let configs = topic_configs(&session, &name).await?;
        let replication = topic.partitions.first().map_or(0, |p| p.replicas.len());
        if json {
            let partitions: Vec<_> = topic
                .partitions
                .iter()
                .map(|p| {
                    let (start, end) = offsets.get(&p.index).copied().unwrap_or((-1, -1));
                    json!({"partition": p.index, "leader": p.leader, "replicas": p.replicas,
                           "isr": p.isr, "log_start_offset": start, "log_end_offset": end})
                })
                .collect();
            print_json(
                &json!({"name": topic.name, "id": topic.id, "internal": topic.internal,
                "replication_factor": replication, "partitions": partitions, "configs": configs}),
            );
            return Ok(());
        }
        outln!(
            "Topic: {}  Id: {}  Partitions: {}  ReplicationFactor: {replication}",
            topic.name,
            topic.id,
            topic.partitions.len()
        );
        let configs: Vec<String> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        outln!("Configs: {}", configs.join(","));
        let rows: Vec<Vec<String>> = topic
            .partitions
            .iter()
            .map(|p| {
                let (start, end) = offsets.get(&p.index).copied().unwrap_or((-1, -1));
                vec![
                    p.index.to_string(),
                    p.leader.to_string(),
                    ids(&p.replicas),
                    ids(&p.isr),
                    start.to_string(),
                    end.to_string(),
                ]
            })
            .collect();
        out!(
            "{}",
            table(
                &[
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "LOG-START",
                    "LOG-END"
                ],
                &rows
            )
        );
        Ok(())
    })
}

fn delete(args: Args) -> Result<(), String> {
    let name = named_topic(&args)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let request = DeleteTopicsRequest::default()
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(&name)))
            ])
            .with_timeout_ms(30_000);
        let reply: DeleteTopicsResponse = session.call(ApiKey::DeleteTopics, 6, &request).await?;
        let result = reply.responses.first().ok_or("empty DeleteTopics reply")?;
        check(result.error_code, || format!("topic '{name}'"))?;
        if json {
            print_json(&json!({"deleted": name}));
        } else {
            outln!("deleted topic {name}");
        }
        Ok(())
    })
}

fn alter_config(args: Args) -> Result<(), String> {
    let name = named_topic(&args)?;
    let mut changes = Vec::new();
    for set in args.values("--set") {
        let (k, v) = key_value(set, "--set")?;
        changes.push((k, OP_SET, Some(v)));
    }
    for key in args.values("--delete") {
        changes.push((key.to_string(), OP_DELETE, None));
    }
    if changes.is_empty() {
        return Err("topic alter-config: nothing to change (--set k=v, --delete k)".into());
    }
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let configs = changes
            .iter()
            .map(|(k, op, v)| {
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(*op)
                    .with_value(v.as_deref().map(str_bytes))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(str_bytes(&name))
                .with_configs(configs),
        ]);
        let reply: IncrementalAlterConfigsResponse = session
            .call(ApiKey::IncrementalAlterConfigs, 1, &request)
            .await?;
        let result = reply
            .responses
            .first()
            .ok_or("empty IncrementalAlterConfigs reply")?;
        if result.error_code != 0 {
            return Err(with_message(
                format!("topic '{name}': {}", error_name(result.error_code)),
                result.error_message.as_deref(),
            ));
        }
        let now = topic_configs(&session, &name).await?;
        if json {
            print_json(&json!({"topic": name, "configs": now}));
        } else {
            outln!("altered topic {name}");
        }
        Ok(())
    })
}
