//! FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13), SyncGroup (14),
//! DescribeGroups (15), ListGroups (16) and DeleteGroups (42): decode, route to the group's
//! coordinator shard (`group::runtime::on_coordinator`), encode. The logic is in
//! `group::machine`.

use crate::authorizer::Authz;
use crate::group::machine::{JoinOutcome, JoinRequest, Protocol, SyncOutcome, SyncRequest};
use crate::group::{code, runtime};
use crate::handlers::metadata::{live_broker, on_listener, BrokerView};
use crate::listeners::ListenerInfo;
use crate::shard::Shard;
use controller::acl::{Operation, ResourceType};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::rc::Rc;

/// Kafka's answers for a group (or transactional id) the principal may not use.
const GROUP_AUTHORIZATION_FAILED: i16 = crate::handlers::code::GROUP_AUTHORIZATION_FAILED;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
    crate::handlers::code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn opt_text(s: Option<String>) -> Option<StrBytes> {
    s.map(StrBytes::from_string)
}

/// Who sent a request, for member ids and DescribeGroups.
#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub client_host: String,
}

pub async fn find_coordinator(
    shard: &Rc<Shard>,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &ListenerInfo,
    authz: &Authz,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        // Kafka: Describe on the group or transactional id.
        let found = match request.key_type {
            KEY_TYPE_GROUP if !authz.group(Operation::Describe, key.as_str()) => {
                Err(GROUP_AUTHORIZATION_FAILED)
            }
            KEY_TYPE_TRANSACTION
                if !authz.allows(
                    Operation::Describe,
                    ResourceType::TransactionalId,
                    key.as_str(),
                ) =>
            {
                Err(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            }
            KEY_TYPE_GROUP => group_coordinator(shard, key.as_str(), &listener.name)
                .await
                .map(|b| on_listener(shard, listener, b)),
            KEY_TYPE_TRANSACTION => Err(code::COORDINATOR_NOT_AVAILABLE),
            _ => Err(code::INVALID_REQUEST),
        };
        let coordinator = match found {
            Ok(broker) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(broker.node_id))
                .with_host(text(broker.host))
                .with_port(broker.port),
            Err(error) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_host(text(""))
                .with_port(-1)
                .with_error_code(error)
                .with_error_message(Some(text(error_message(error)))),
        };
        coordinators.push(coordinator);
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().expect("one key before v4");
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response = response.with_error_message(c.error_message);
    }
    response
}

/// The broker leading the group's `__consumer_offsets` partition (created on first use):
/// COORDINATOR_NOT_AVAILABLE while that partition is offline.
async fn group_coordinator(
    shard: &Rc<Shard>,
    group_id: &str,
    listener: &str,
) -> Result<BrokerView, i16> {
    let topic = runtime::offsets_topic(shard).await?;
    let image = shard.image();
    let partition = crate::group::partition_for(group_id, topic.partitions);
    image
        .partition_leader(&topic.id, partition)
        .and_then(|leader| live_broker(shard, &image, leader, listener))
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)
}

fn error_message(error: i16) -> &'static str {
    match error {
        code::COORDINATOR_NOT_AVAILABLE => "The coordinator is not available.",
        code::INVALID_REQUEST => "Unknown coordinator key type.",
        GROUP_AUTHORIZATION_FAILED | TRANSACTIONAL_ID_AUTHORIZATION_FAILED => {
            "Authorization failed."
        }
        _ => "Coordinator lookup failed.",
    }
}

pub async fn join(
    shard: &Rc<Shard>,
    request: JoinGroupRequest,
    version: i16,
    client: Client,
    authz: &Authz,
) -> JoinGroupResponse {
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let join = JoinRequest {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client.client_id,
        client_host: client.client_host,
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 || request.rebalance_timeout_ms < 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        require_known_member_id: version >= 4,
        fresh_id: uuid::Uuid::new_v4().to_string(),
    };
    let outcome = if group_id.is_empty() {
        JoinOutcome::error(code::INVALID_GROUP_ID, &member_id)
    } else if !authz.group(Operation::Read, &group_id) {
        JoinOutcome::error(GROUP_AUTHORIZATION_FAILED, &member_id)
    } else {
        runtime::on_coordinator(shard, &group_id, move |owner| runtime::join(owner, join))
            .await
            .unwrap_or_else(|error| JoinOutcome::error(error, &member_id))
    };
    join_response(outcome, version)
}

fn join_response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let members = outcome
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                .with_group_instance_id(opt_text(m.instance_id))
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is not nullable.
    let protocol_name = match (outcome.protocol_name, version >= 7) {
        (None, false) => Some(text("")),
        (name, _) => opt_text(name),
    };
    let mut response = JoinGroupResponse::default()
        .with_error_code(outcome.error)
        .with_generation_id(outcome.generation)
        .with_protocol_name(protocol_name)
        .with_leader(text(outcome.leader))
        .with_member_id(text(outcome.member_id))
        .with_members(members);
    if version >= 7 {
        response = response.with_protocol_type(opt_text(outcome.protocol_type));
    }
    if version >= 9 {
        response = response.with_skip_assignment(outcome.skip_assignment);
    }
    response
}

pub async fn sync(
    shard: &Rc<Shard>,
    request: SyncGroupRequest,
    version: i16,
    authz: &Authz,
) -> SyncGroupResponse {
    let group_id = request.group_id.to_string();
    let sync = SyncRequest {
        group_id: group_id.clone(),
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let outcome = if group_id.is_empty() {
        SyncOutcome::error(code::INVALID_GROUP_ID)
    } else if !authz.group(Operation::Read, &group_id) {
        SyncOutcome::error(GROUP_AUTHORIZATION_FAILED)
    } else {
        runtime::on_coordinator(shard, &group_id, move |owner| runtime::sync(owner, sync))
            .await
            .unwrap_or_else(SyncOutcome::error)
    };
    let mut response = SyncGroupResponse::default()
        .with_error_code(outcome.error)
        .with_assignment(outcome.assignment);
    if version >= 5 {
        response = response
            .with_protocol_type(opt_text(outcome.protocol_type))
            .with_protocol_name(opt_text(outcome.protocol_name));
    }
    response
}

pub async fn heartbeat(
    shard: &Rc<Shard>,
    request: HeartbeatRequest,
    authz: &Authz,
) -> HeartbeatResponse {
    let group_id = request.group_id.to_string();
    let error = if group_id.is_empty() {
        code::INVALID_GROUP_ID
    } else if !authz.group(Operation::Read, &group_id) {
        GROUP_AUTHORIZATION_FAILED
    } else {
        let member_id = request.member_id.to_string();
        let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
        let generation = request.generation_id;
        let group = group_id.clone();
        runtime::on_coordinator(shard, &group_id, move |owner| {
            runtime::heartbeat(owner, group, generation, member_id, instance_id)
        })
        .await
        .unwrap_or_else(|error| error)
    };
    HeartbeatResponse::default().with_error_code(error)
}

pub async fn leave(
    shard: &Rc<Shard>,
    request: LeaveGroupRequest,
    version: i16,
    authz: &Authz,
) -> LeaveGroupResponse {
    let group_id = request.group_id.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let (top, errors) = if group_id.is_empty() {
        (code::INVALID_GROUP_ID, Vec::new())
    } else if !authz.group(Operation::Read, &group_id) {
        (GROUP_AUTHORIZATION_FAILED, Vec::new())
    } else {
        let members = leaving.clone();
        let group = group_id.clone();
        runtime::on_coordinator(shard, &group_id, move |owner| {
            runtime::leave(owner, group, members)
        })
        .await
        .unwrap_or_else(|error| (error, Vec::new()))
    };
    if version < 3 {
        let error = if top != code::NONE {
            top
        } else {
            errors.first().copied().unwrap_or(code::NONE)
        };
        return LeaveGroupResponse::default().with_error_code(error);
    }
    let members = if top != code::NONE && errors.is_empty() {
        Vec::new()
    } else {
        leaving
            .into_iter()
            .zip(errors)
            .map(|((member_id, instance_id), error)| {
                MemberResponse::default()
                    .with_member_id(text(member_id))
                    .with_group_instance_id(opt_text(instance_id))
                    .with_error_code(error)
            })
            .collect()
    };
    LeaveGroupResponse::default()
        .with_error_code(top)
        .with_members(members)
}

pub async fn list(
    shard: &Rc<Shard>,
    request: ListGroupsRequest,
    version: i16,
    authz: &Authz,
) -> ListGroupsResponse {
    // Kafka: Describe on the cluster lists every group, else those the principal may
    // describe.
    let every_group = authz.cluster(Operation::Describe);
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    if !types.is_empty() && !types.iter().any(|t| t == "classic") {
        return ListGroupsResponse::default();
    }
    let per_shard = shard
        .run_on_all(move |s| {
            let states = states.clone();
            async move {
                if !crate::group::runtime::all_loaded(&s) {
                    return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
                }
                Ok(s.groups.with(|machine| {
                    machine
                        .durable_groups()
                        .filter(|g| {
                            states.is_empty() || states.contains(&g.state.name().to_lowercase())
                        })
                        .map(|g| {
                            (
                                g.id.clone(),
                                g.protocol_type.clone().unwrap_or_default(),
                                g.state.name(),
                            )
                        })
                        .collect::<Vec<_>>()
                }))
            }
        })
        .await;
    let mut error = code::NONE;
    let mut groups = Vec::new();
    for result in per_shard {
        match result {
            Ok(found) => groups.extend(found),
            Err(e) => error = e,
        }
    }
    let groups = groups
        .into_iter()
        .filter(|(id, _, _)| every_group || authz.group(Operation::Describe, id))
        .map(|(id, protocol_type, state)| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(text(id)))
                .with_protocol_type(text(protocol_type));
            if version >= 4 {
                listed = listed.with_group_state(text(state));
            }
            if version >= 5 {
                listed = listed.with_group_type(text("classic"));
            }
            listed
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(error)
        .with_groups(groups)
}

pub async fn describe(
    shard: &Rc<Shard>,
    request: DescribeGroupsRequest,
    version: i16,
    authz: &Authz,
) -> DescribeGroupsResponse {
    let operations = request.include_authorized_operations;
    let mut described = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let id = group_id.to_string();
        let lookup = id.clone();
        let found = if id.is_empty() {
            Err(code::INVALID_GROUP_ID)
        } else if !authz.group(Operation::Describe, &id) {
            Err(GROUP_AUTHORIZATION_FAILED)
        } else {
            runtime::on_coordinator(shard, &id, move |owner| async move {
                owner.groups.with(|m| m.describe(&lookup))
            })
            .await
        };
        let entry = DescribedGroup::default().with_group_id(group_id);
        let entry = match found {
            Err(error) => entry.with_error_code(error).with_group_state(text("")),
            Ok(None) if version >= 6 => entry
                .with_error_code(code::GROUP_ID_NOT_FOUND)
                .with_error_message(Some(text(format!("Group {id} not found."))))
                .with_group_state(text("Dead")),
            Ok(None) => entry.with_group_state(text("Dead")),
            Ok(Some(d)) => {
                let members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(text(m.member_id))
                            .with_group_instance_id(opt_text(m.instance_id))
                            .with_client_id(text(m.client_id))
                            .with_client_host(text(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment)
                    })
                    .collect();
                entry
                    .with_group_state(text(d.state))
                    .with_protocol_type(text(d.protocol_type))
                    .with_protocol_data(text(d.protocol_data))
                    .with_members(members)
            }
        };
        let entry = match (operations, entry.error_code) {
            (true, code::NONE) => {
                let ops = authz.operations(ResourceType::Group, &id, &Operation::GROUP);
                entry.with_authorized_operations(ops)
            }
            _ => entry,
        };
        described.push(entry);
    }
    DescribeGroupsResponse::default().with_groups(described)
}

pub async fn delete(
    shard: &Rc<Shard>,
    request: DeleteGroupsRequest,
    authz: &Authz,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let id = group_id.to_string();
        let error = if id.is_empty() {
            code::INVALID_GROUP_ID
        } else if !authz.group(Operation::Delete, &id) {
            GROUP_AUTHORIZATION_FAILED
        } else {
            let group = id.clone();
            runtime::on_coordinator(shard, &id, move |owner| runtime::delete_group(owner, group))
                .await
                .unwrap_or_else(|error| error)
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::machine::JoinedMember;
    use crate::protocol::{advertised_versions, encode_response};
    use kafka_protocol::messages::{ApiKey, ResponseKind};

    #[test]
    fn join_answers_encode_at_every_advertised_version() {
        let (min, max) = advertised_versions(ApiKey::JoinGroup).unwrap();
        let outcome = JoinOutcome {
            error: 0,
            generation: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "a".into(),
            member_id: "a".into(),
            members: vec![JoinedMember {
                member_id: "a".into(),
                instance_id: Some("i".into()),
                metadata: bytes::Bytes::from_static(b"m"),
            }],
            skip_assignment: true,
        };
        for version in min..=max {
            for outcome in [
                outcome.clone(),
                JoinOutcome::error(code::MEMBER_ID_REQUIRED, "x"),
            ] {
                let body = ResponseKind::JoinGroup(join_response(outcome, version));
                encode_response(ApiKey::JoinGroup, version, 1, &body, 64)
                    .unwrap_or_else(|e| panic!("v{version}: {e}"));
            }
        }
    }

    #[test]
    fn group_apis_decode_and_encode_their_whole_advertised_ranges() {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Encodable;
        let apis: Vec<(ApiKey, RequestKind, ResponseKind)> = vec![
            (
                ApiKey::FindCoordinator,
                RequestKind::FindCoordinator(Default::default()),
                ResponseKind::FindCoordinator(Default::default()),
            ),
            (
                ApiKey::JoinGroup,
                RequestKind::JoinGroup(Default::default()),
                ResponseKind::JoinGroup(Default::default()),
            ),
            (
                ApiKey::SyncGroup,
                RequestKind::SyncGroup(Default::default()),
                ResponseKind::SyncGroup(Default::default()),
            ),
            (
                ApiKey::Heartbeat,
                RequestKind::Heartbeat(Default::default()),
                ResponseKind::Heartbeat(Default::default()),
            ),
            (
                ApiKey::LeaveGroup,
                RequestKind::LeaveGroup(Default::default()),
                ResponseKind::LeaveGroup(Default::default()),
            ),
            (
                ApiKey::OffsetCommit,
                RequestKind::OffsetCommit(Default::default()),
                ResponseKind::OffsetCommit(Default::default()),
            ),
            (
                ApiKey::OffsetFetch,
                RequestKind::OffsetFetch(Default::default()),
                ResponseKind::OffsetFetch(Default::default()),
            ),
            (
                ApiKey::ListGroups,
                RequestKind::ListGroups(Default::default()),
                ResponseKind::ListGroups(Default::default()),
            ),
            (
                ApiKey::DescribeGroups,
                RequestKind::DescribeGroups(Default::default()),
                ResponseKind::DescribeGroups(Default::default()),
            ),
            (
                ApiKey::DeleteGroups,
                RequestKind::DeleteGroups(Default::default()),
                ResponseKind::DeleteGroups(Default::default()),
            ),
            (
                ApiKey::OffsetDelete,
                RequestKind::OffsetDelete(Default::default()),
                ResponseKind::OffsetDelete(Default::default()),
            ),
        ];
        for (key, request, response) in apis {
            let (min, max) = advertised_versions(key).unwrap_or_else(|| panic!("{key:?}"));
            for version in min..=max {
                let mut frame = bytes::BytesMut::new();
                RequestHeader::default()
                    .with_request_api_key(key as i16)
                    .with_request_api_version(version)
                    .encode(&mut frame, key.request_header_version(version))
                    .unwrap();
                request.encode(&mut frame, version).unwrap();
                assert!(
                    crate::protocol::decode_request(key, version, frame.freeze()).is_some(),
                    "{key:?} v{version} request"
                );
                encode_response(key, version, 1, &response, 64)
                    .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            }
        }
    }
}
