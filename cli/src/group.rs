//! `spate group list|describe|reset-offsets|delete`.

use crate::args::{self, validate_topic, Args};
use crate::member::{self, find_coordinator, group_id};
use crate::output::{print_json, table};
use crate::range::{self, Assignment};
use crate::session::{check, run, Result, Session};
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, ListGroupsRequest, ListGroupsResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use serde_json::json;
use spate_bench::client::Connection;
use std::collections::BTreeMap;

pub fn main(args: &[String]) -> std::result::Result<(), String> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("list") => list(args::parse(rest, &[], &[])?),
        Some("describe") => describe(args::parse(rest, &[], &[])?),
        Some("delete") => delete(args::parse(rest, &[], &[])?),
        Some("reset-offsets") => reset_offsets(args::parse(
            rest,
            &["--topic", "--to-offset", "--to-datetime"],
            &["--to-earliest", "--to-latest", "--execute"],
        )?),
        Some(other) => Err(format!(
            "unknown group command '{other}' (list, describe, reset-offsets, delete)"
        )),
        None => Err("usage: spate group list|describe|reset-offsets|delete ...".into()),
    }
}

fn named_group(args: &Args) -> std::result::Result<String, String> {
    let group = args.positional(0, "group id")?;
    args.no_more_than(1)?;
    if group.is_empty() {
        return Err("the group id is empty".into());
    }
    Ok(group.to_string())
}

fn list(args: Args) -> std::result::Result<(), String> {
    args.no_more_than(0)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let metadata = session.metadata(Some(&[]), false).await?;
        let mut groups = BTreeMap::new();
        for broker in &metadata.brokers {
            let connection = session.broker(broker.node_id.0).await?;
            let reply: ListGroupsResponse = connection
                .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
                .await?;
            check(reply.error_code, || "list groups".to_string())?;
            for g in reply.groups {
                groups.insert(
                    g.group_id.0.to_string(),
                    (g.group_state.to_string(), g.protocol_type.to_string()),
                );
            }
        }
        if json {
            print_json(&json!(groups
                .iter()
                .map(
                    |(g, (state, kind))| json!({"group": g, "state": state, "protocol_type": kind})
                )
                .collect::<Vec<_>>()));
        } else {
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|(g, (state, kind))| vec![g.clone(), state.clone(), kind.clone()])
                .collect();
            out!("{}", table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows));
        }
        Ok(())
    })
}

struct GroupMember {
    member_id: String,
    client_id: String,
    host: String,
    assignment: Assignment,
}

struct Described {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<GroupMember>,
}

async fn describe_group(coordinator: &Connection, group: &str) -> Result<Described> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let reply: DescribeGroupsResponse = coordinator
        .call(ApiKey::DescribeGroups, 5, &request)
        .await?;
    let g = reply.groups.first().ok_or("empty DescribeGroups reply")?;
    check(g.error_code, || format!("group '{group}'"))?;
    let consumer = g.protocol_type.as_str() == "consumer";
    let members = g
        .members
        .iter()
        .map(|m| GroupMember {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: if consumer {
                range::decode_assignment(&m.member_assignment).unwrap_or_default()
            } else {
                Assignment::new()
            },
        })
        .collect();
    Ok(Described {
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
    })
}

/// Every committed offset of a group: topic → partition → offset.
async fn all_committed(
    coordinator: &Connection,
    group: &str,
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(None);
    let reply: OffsetFetchResponse = coordinator.call(ApiKey::OffsetFetch, 7, &request).await?;
    check(reply.error_code, || {
        format!("group '{group}': fetch offsets")
    })?;
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for t in reply.topics {
        for p in t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.entry(t.name.0.to_string())
                    .or_default()
                    .insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}

fn describe(args: Args) -> std::result::Result<(), String> {
    let group = named_group(&args)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let coordinator = find_coordinator(&session, &group).await?;
        let described = describe_group(&coordinator, &group).await?;
        let committed = all_committed(&coordinator, &group).await?;
        let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
        for m in &described.members {
            for (topic, partitions) in &m.assignment {
                for &p in partitions {
                    owners.insert((topic.clone(), p), m.member_id.clone());
                }
            }
        }
        let mut topics: Vec<String> = committed.keys().cloned().collect();
        topics.extend(owners.keys().map(|(t, _)| t.clone()));
        topics.sort();
        topics.dedup();
        let mut rows = Vec::new();
        for name in &topics {
            let topic = session.topic(name, false).await?;
            let ends = crate::topic::log_offsets(&session, &topic).await?;
            for p in &topic.partitions {
                let owner = owners.get(&(name.clone(), p.index)).cloned();
                let current = committed.get(name).and_then(|c| c.get(&p.index)).copied();
                if owner.is_none() && current.is_none() {
                    continue;
                }
                let end = ends.get(&p.index).map_or(-1, |(_, end)| *end);
                let lag = current.map(|c| (end - c).max(0));
                rows.push((name.clone(), p.index, current, end, lag, owner));
            }
        }
        if json {
            print_json(&json!({
                "group": group,
                "state": described.state,
                "protocol_type": described.protocol_type,
                "protocol": described.protocol,
                "members": described.members.iter().map(|m| json!({
                    "member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                    "assignment": m.assignment})).collect::<Vec<_>>(),
                "offsets": rows.iter().map(|(t, p, current, end, lag, owner)| json!({
                    "topic": t, "partition": p, "committed_offset": current,
                    "log_end_offset": end, "lag": lag, "member_id": owner})).collect::<Vec<_>>(),
            }));
            return Ok(());
        }
        outln!(
            "Group: {group}  State: {}  Protocol: {} {}  Members: {}",
            described.state,
            described.protocol_type,
            described.protocol,
            described.members.len()
        );
        let text = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(t, p, current, end, lag, owner)| {
                vec![
                    t.clone(),
                    p.to_string(),
                    text(*current),
                    end.to_string(),
                    text(*lag),
                    owner.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out!(
            "{}",
            table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "COMMITTED",
                    "LOG-END",
                    "LAG",
                    "MEMBER"
                ],
                &table_rows
            )
        );
        for m in &described.members {
            outln!(
                "member {} client {} host {}",
                m.member_id,
                m.client_id,
                m.host
            );
        }
        Ok(())
    })
}

/// Where `reset-offsets` moves the group's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
}

fn target(args: &Args) -> std::result::Result<Target, String> {
    let mut targets = Vec::new();
    if args.has("--to-earliest") {
        targets.push(Target::Earliest);
    }
    if args.has("--to-latest") {
        targets.push(Target::Latest);
    }
    if let Some(o) = args.parsed::<i64>("--to-offset")? {
        targets.push(Target::Offset(o));
    }
    if let Some(t) = args.value("--to-datetime") {
        targets.push(Target::Time(
            crate::time::parse_ms(t).map_err(|e| format!("--to-datetime: {e}"))?,
        ));
    }
    match targets[..] {
        [one] => Ok(one),
        _ => Err(
            "give exactly one of --to-earliest, --to-latest, --to-offset N, --to-datetime T".into(),
        ),
    }
}

/// The new offset of a partition whose log spans `start..end` (Kafka's tool clamps into it).
fn new_offset(target: Target, start: i64, end: i64, at_time: Option<i64>) -> i64 {
    match target {
        Target::Earliest => start,
        Target::Latest => end,
        Target::Offset(o) => o.clamp(start, end),
        Target::Time(_) => at_time.filter(|o| *o >= 0).unwrap_or(end),
    }
}

fn reset_offsets(args: Args) -> std::result::Result<(), String> {
    let group = named_group(&args)?;
    let topic_name = args
        .value("--topic")
        .ok_or("reset-offsets needs --topic T")?
        .to_string();
    validate_topic(&topic_name)?;
    let target = target(&args)?;
    let execute = args.has("--execute");
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let coordinator = find_coordinator(&session, &group).await?;
        let state = match describe_group(&coordinator, &group).await {
            Ok(d) => d.state,
            Err(e) => return Err(e),
        };
        if execute && !matches!(state.as_str(), "Empty" | "Dead") {
            return Err(format!(
                "group '{group}' is {state}: stop its members before resetting offsets"
            ));
        }
        let topic = session.topic(&topic_name, false).await?;
        let partitions: Vec<i32> = topic.partitions.iter().map(|p| p.index).collect();
        let bounds = crate::topic::log_offsets(&session, &topic).await?;
        let at_time: BTreeMap<i32, i64> = match target {
            Target::Time(ms) => {
                let mut out = BTreeMap::new();
                for p in &topic.partitions {
                    let connection = session.broker(p.leader).await?;
                    out.extend(
                        spate_bench::client::list_offsets(&connection, &topic.name, &[p.index], ms)
                            .await?,
                    );
                }
                out
            }
            _ => BTreeMap::new(),
        };
        let current = member::committed(&coordinator, &group, &topic.name, &partitions).await?;
        let plan: BTreeMap<i32, i64> = partitions
            .iter()
            .map(|p| {
                let (start, end) = bounds.get(p).copied().unwrap_or((0, 0));
                (*p, new_offset(target, start, end, at_time.get(p).copied()))
            })
            .collect();
        if execute {
            member::commit(&coordinator, &group, -1, "", &topic.name, &plan).await?;
        }
        if json {
            print_json(&json!({
                "group": group, "topic": topic.name, "executed": execute,
                "partitions": plan.iter().map(|(p, new)| json!({
                    "partition": p, "current_offset": current.get(p), "new_offset": new}))
                    .collect::<Vec<_>>()}));
            return Ok(());
        }
        let rows: Vec<Vec<String>> = plan
            .iter()
            .map(|(p, new)| {
                vec![
                    topic.name.clone(),
                    p.to_string(),
                    current.get(p).map_or("-".into(), |c| c.to_string()),
                    new.to_string(),
                ]
            })
            .collect();
        out!(
            "{}",
            table(
                &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
                &rows
            )
        );
        if !execute {
            eprintln!("spate: dry run, nothing changed (add --execute to commit these offsets)");
        }
        Ok(())
    })
}

fn delete(args: Args) -> std::result::Result<(), String> {
    let group = named_group(&args)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let coordinator = find_coordinator(&session, &group).await?;
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(&group)]);
        let reply: DeleteGroupsResponse =
            coordinator.call(ApiKey::DeleteGroups, 2, &request).await?;
        let result = reply.results.first().ok_or("empty DeleteGroups reply")?;
        check(result.error_code, || format!("group '{group}'"))?;
        if json {
            print_json(&json!({"deleted": group}));
        } else {
            outln!("deleted group {group}");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets_clamp_into_the_log() {
        assert_eq!(new_offset(Target::Earliest, 5, 10, None), 5);
        assert_eq!(new_offset(Target::Latest, 5, 10, None), 10);
        assert_eq!(new_offset(Target::Offset(2), 5, 10, None), 5);
        assert_eq!(new_offset(Target::Offset(7), 5, 10, None), 7);
        assert_eq!(new_offset(Target::Offset(70), 5, 10, None), 10);
        assert_eq!(new_offset(Target::Time(1), 5, 10, Some(8)), 8);
        assert_eq!(new_offset(Target::Time(1), 5, 10, Some(-1)), 10);
    }

    #[test]
    fn exactly_one_target() {
        let parse = |a: &[&str]| {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            args::parse(
                &a,
                &["--topic", "--to-offset", "--to-datetime"],
                &["--to-earliest", "--to-latest", "--execute"],
            )
            .unwrap()
        };
        assert_eq!(
            target(&parse(&["--to-earliest"])).unwrap(),
            Target::Earliest
        );
        assert_eq!(
            target(&parse(&["--to-offset", "3"])).unwrap(),
            Target::Offset(3)
        );
        assert!(target(&parse(&[])).is_err());
        assert!(target(&parse(&["--to-earliest", "--to-latest"])).is_err());
    }
}
