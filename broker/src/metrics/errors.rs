//! The error codes of an answer: its top-level code and those of each topic, partition, group
//! or resource in it, as Kafka counts errors per partition.

use kafka_protocol::messages::ResponseKind;

/// Calls `each` with every error code in `body` (zeros included; the caller skips them).
pub fn for_each_error_code(body: &ResponseKind, mut each: impl FnMut(i16)) {
    match body {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| each(p.error_code)),
        ResponseKind::Fetch(r) => {
            each(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| each(t.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            each(r.error_code);
            r.groups.iter().for_each(|g| each(g.error_code));
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::FindCoordinator(r) => {
            each(r.error_code);
            r.coordinators.iter().for_each(|c| each(c.error_code));
        }
        ResponseKind::JoinGroup(r) => each(r.error_code),
        ResponseKind::SyncGroup(r) => each(r.error_code),
        ResponseKind::Heartbeat(r) => each(r.error_code),
        ResponseKind::LeaveGroup(r) => each(r.error_code),
        ResponseKind::ListGroups(r) => each(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| each(g.error_code)),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| each(g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            each(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| each(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| each(t.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|c| each(c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|c| each(c.error_code))
        }
        ResponseKind::InitProducerId(r) => each(r.error_code),
        ResponseKind::ApiVersions(r) => each(r.error_code),
        ResponseKind::DescribeCluster(r) => each(r.error_code),
        ResponseKind::DescribeTopicPartitions(r) => {
            r.topics.iter().for_each(|t| each(t.error_code))
        }
        ResponseKind::CreateAcls(r) => r.results.iter().for_each(|c| each(c.error_code)),
        ResponseKind::DescribeAcls(r) => each(r.error_code),
        ResponseKind::DeleteAcls(r) => r.filter_results.iter().for_each(|f| each(f.error_code)),
        _ => {}
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), or `UNKNOWN_CODE_<n>`.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        None => "NONE".into(),
        Some(kafka_protocol::ResponseError::Unknown(code)) => format!("UNKNOWN_CODE_{code}"),
        Some(error) => screaming_snake(&error.to_string()),
    }
}

/// Kafka's name of an API (`Produce`, `ListOffsets`), or `Unknown<n>`.
pub fn api_name(api_key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api_key) {
        Ok(api) => format!("{api:?}"),
        Err(_) => format!("Unknown{api_key}"),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(1000), "UNKNOWN_CODE_1000");
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(2), "ListOffsets");
    }
}
