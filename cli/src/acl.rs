//! `spate acl add|list|remove`: CreateAcls, DescribeAcls and DeleteAcls, with Kafka's names
//! for resources, operations and permissions (as `kafka-acls` takes them).

use crate::args::{self, Args};
use crate::output::{print_json, table};
use crate::session::{check, error_name, run, str_bytes, Session};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

/// Kafka's `ResourceType`, `PatternType`, `AclOperation` and `AclPermissionType` codes.
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const RESOURCES: &[(&str, i8)] = &[
    ("Topic", 2),
    ("Group", 3),
    ("Cluster", 4),
    ("TransactionalId", 5),
    ("DelegationToken", 6),
    ("User", 7),
];
const OPERATIONS: &[(&str, i8)] = &[
    ("All", 2),
    ("Read", 3),
    ("Write", 4),
    ("Create", 5),
    ("Delete", 6),
    ("Alter", 7),
    ("Describe", 8),
    ("ClusterAction", 9),
    ("DescribeConfigs", 10),
    ("AlterConfigs", 11),
    ("IdempotentWrite", 12),
    ("CreateTokens", 13),
    ("DescribeTokens", 14),
    ("TwoPhaseCommit", 15),
];

const VALUED: &[&str] = &[
    "--principal",
    "--host",
    "--operation",
    "--topic",
    "--group",
    "--transactional-id",
];
const SWITCHES: &[&str] = &["--cluster", "--prefixed", "--deny"];

pub fn main(args: &[String]) -> Result<(), String> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("add") => add(args::parse(rest, VALUED, SWITCHES)?),
        Some("list") => list(args::parse(rest, VALUED, SWITCHES)?),
        Some("remove") => remove(args::parse(rest, VALUED, SWITCHES)?),
        Some(other) => Err(format!("unknown acl command '{other}' (add, list, remove)")),
        None => Err("usage: spate acl add|list|remove ...".into()),
    }
}

fn name_of(table: &[(&str, i8)], code: i8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map_or(format!("{code}"), |(n, _)| n.to_string())
}

fn code_of(table: &[(&str, i8)], name: &str, what: &str) -> Result<i8, String> {
    let wanted = name.replace(['-', '_'], "").to_lowercase();
    table
        .iter()
        .find(|(n, _)| n.to_lowercase() == wanted)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            format!("unknown {what} '{name}' ({})", names.join(", "))
        })
}

/// The resource the options name: (type, name); `None` when none is named.
fn resource(args: &Args) -> Result<Option<(i8, String)>, String> {
    let mut named = Vec::new();
    for (flag, code) in [("--topic", 2), ("--group", 3), ("--transactional-id", 5)] {
        if let Some(name) = args.value(flag) {
            named.push((code, name.to_string()));
        }
    }
    if args.has("--cluster") {
        named.push((4, "kafka-cluster".to_string()));
    }
    match named.len() {
        0 => Ok(None),
        1 => Ok(named.pop()),
        _ => Err("name one resource: --topic, --group, --transactional-id or --cluster".into()),
    }
}

fn operations(args: &Args) -> Result<Vec<i8>, String> {
    args.values("--operation")
        .into_iter()
        .map(|o| code_of(OPERATIONS, o, "operation"))
        .collect()
}

fn pattern(args: &Args) -> i8 {
    if args.has("--prefixed") {
        PREFIXED
    } else {
        LITERAL
    }
}

fn permission(args: &Args) -> i8 {
    if args.has("--deny") {
        DENY
    } else {
        ALLOW
    }
}

fn add(args: Args) -> Result<(), String> {
    args.no_more_than(0)?;
    let (resource_type, name) = resource(&args)?.ok_or("name a resource to add ACLs on")?;
    let principal = args.value("--principal").ok_or("--principal is required")?;
    let ops = operations(&args)?;
    if ops.is_empty() {
        return Err("--operation is required".into());
    }
    let host = args.value("--host").unwrap_or("*");
    let creations: Vec<AclCreation> = ops
        .iter()
        .map(|op| {
            AclCreation::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(&name))
                .with_resource_pattern_type(pattern(&args))
                .with_principal(str_bytes(principal))
                .with_host(str_bytes(host))
                .with_operation(*op)
                .with_permission_type(permission(&args))
        })
        .collect();
    let count = creations.len();
    let request = CreateAclsRequest::default().with_creations(creations);
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let reply: CreateAclsResponse = session.call(ApiKey::CreateAcls, 3, &request).await?;
        for result in &reply.results {
            if result.error_code != 0 {
                let message = result.error_message.as_deref().unwrap_or("");
                return Err(format!("{} {message}", error_name(result.error_code)));
            }
        }
        if json {
            print_json(&json!({"created": count}));
        } else {
            outln!("created {count} ACL(s)");
        }
        Ok(())
    })
}

/// The filter the options describe; what they leave out matches anything.
struct Filter {
    resource_type: i8,
    resource_name: Option<String>,
    pattern_type: i8,
    principal: Option<String>,
    host: Option<String>,
    operation: i8,
    permission: i8,
}

fn filter(args: &Args) -> Result<Filter, String> {
    let ops = operations(args)?;
    if ops.len() > 1 {
        return Err("at most one --operation in a filter".into());
    }
    let (resource_type, resource_name) = match resource(args)? {
        Some((t, n)) => (t, Some(n)),
        None => (ANY, None),
    };
    Ok(Filter {
        resource_type,
        resource_name,
        pattern_type: match (args.has("--prefixed"), resource_type) {
            (true, _) => PREFIXED,
            (false, ANY) => ANY,
            // Every ACL that applies to the resource: literal, `*` and prefixes.
            (false, _) => MATCH,
        },
        principal: args.value("--principal").map(str::to_string),
        host: args.value("--host").map(str::to_string),
        operation: ops.first().copied().unwrap_or(ANY),
        permission: if args.has("--deny") { DENY } else { ANY },
    })
}

fn list(args: Args) -> Result<(), String> {
    args.no_more_than(0)?;
    let f = filter(&args)?;
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(f.resource_type)
        .with_resource_name_filter(f.resource_name.as_deref().map(str_bytes))
        .with_pattern_type_filter(f.pattern_type)
        .with_principal_filter(f.principal.as_deref().map(str_bytes))
        .with_host_filter(f.host.as_deref().map(str_bytes))
        .with_operation(f.operation)
        .with_permission_type(f.permission);
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let reply: DescribeAclsResponse = session.call(ApiKey::DescribeAcls, 3, &request).await?;
        check(reply.error_code, || "describe ACLs".to_string())?;
        let mut rows = Vec::new();
        for r in &reply.resources {
            for a in &r.acls {
                rows.push(row(
                    (r.resource_type, &r.resource_name, r.pattern_type),
                    (&a.principal, &a.host, a.operation, a.permission_type),
                ));
            }
        }
        print_rows(&rows, json);
        Ok(())
    })
}

/// One printed ACL: (resource type, name, pattern type), (principal, host, operation,
/// permission), by Kafka's names.
fn row(resource: (i8, &StrBytes, i8), entry: (&StrBytes, &StrBytes, i8, i8)) -> Vec<String> {
    let ((resource_type, name, pattern), (principal, host, operation, permission)) =
        (resource, entry);
    vec![
        name_of(RESOURCES, resource_type),
        name.to_string(),
        pattern_name(pattern),
        principal.to_string(),
        host.to_string(),
        name_of(OPERATIONS, operation),
        permission_name(permission),
    ]
}
fn remove(args: Args) -> Result<(), String> {
    args.no_more_than(0)?;
    let f = filter(&args)?;
    if f.resource_name.is_none() && f.principal.is_none() {
        return Err("name a resource or a --principal: remove does not delete every ACL".into());
    }
    let request = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
        .with_resource_type_filter(f.resource_type)
        .with_resource_name_filter(f.resource_name.as_deref().map(str_bytes))
        // Remove what is named exactly, not every ACL that applies to it.
        .with_pattern_type_filter(if f.pattern_type == MATCH {
            LITERAL
        } else {
            f.pattern_type
        })
        .with_principal_filter(f.principal.as_deref().map(str_bytes))
        .with_host_filter(f.host.as_deref().map(str_bytes))
        .with_operation(f.operation)
        .with_permission_type(f.permission)]);
    let (brokers, json) = (args.brokers(), args.json());
    run(move || async move {
        let session = Session::connect(&brokers).await?;
        let reply: DeleteAclsResponse = session.call(ApiKey::DeleteAcls, 3, &request).await?;
        let result = reply
            .filter_results
            .first()
            .ok_or("empty DeleteAcls reply")?;
        check(result.error_code, || "delete ACLs".to_string())?;
        let rows: Vec<Vec<String>> = result
            .matching_acls
            .iter()
            .map(|a| {
                row(
                    (a.resource_type, &a.resource_name, a.pattern_type),
                    (&a.principal, &a.host, a.operation, a.permission_type),
                )
            })
            .collect();
        if !json {
            outln!("removed {} ACL(s)", rows.len());
        }
        print_rows(&rows, json);
        Ok(())
    })
}

fn pattern_name(code: i8) -> String {
    match code {
        LITERAL => "Literal".into(),
        PREFIXED => "Prefixed".into(),
        other => format!("{other}"),
    }
}

fn permission_name(code: i8) -> String {
    match code {
        ALLOW => "Allow".into(),
        DENY => "Deny".into(),
        other => format!("{other}"),
    }
}

const HEADERS: [&str; 7] = [
    "RESOURCE",
    "NAME",
    "PATTERN",
    "PRINCIPAL",
    "HOST",
    "OPERATION",
    "PERMISSION",
];

fn print_rows(rows: &[Vec<String>], json: bool) {
    if json {
        let acls: Vec<_> = rows
            .iter()
            .map(|r| {
                let fields = HEADERS
                    .iter()
                    .zip(r)
                    .map(|(h, v)| (h.to_lowercase(), json!(v)));
                serde_json::Value::Object(fields.collect())
            })
            .collect();
        print_json(&json!(acls));
    } else if !rows.is_empty() {
        out!("{}", table(&HEADERS, rows));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kafka_codes() {
        assert_eq!(code_of(OPERATIONS, "read", "operation"), Ok(3));
        assert_eq!(code_of(OPERATIONS, "IDEMPOTENT_WRITE", "operation"), Ok(12));
        assert_eq!(code_of(OPERATIONS, "describe-configs", "operation"), Ok(10));
        assert!(code_of(OPERATIONS, "fly", "operation").is_err());
        assert_eq!(name_of(RESOURCES, 3), "Group");
        let parsed = args::parse(
            &["--topic".into(), "t".into(), "--cluster".into()],
            VALUED,
            SWITCHES,
        )
        .expect("parses");
        assert!(resource(&parsed).is_err());
        let parsed = args::parse(&["--group".into(), "g".into()], VALUED, SWITCHES).expect("ok");
        let f = filter(&parsed).expect("filter");
        assert_eq!((f.resource_type, f.pattern_type), (3, MATCH));
    }
}
