//! Unit tests of the group coordinator state machine: each transition and error code,
//! stepped with an injected clock.

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn coordinator(initial_delay_ms: i64) -> Coordinator {
    Coordinator::new(Limits {
        initial_rebalance_delay_ms: initial_delay_ms,
        offsets_retention_ms: 60_000,
        ..Limits::default()
    })
}

fn protocols(names: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: Bytes::from(format!("meta-{n}")),
        })
        .collect()
}

fn join_request(member_id: &str, client: &str) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols(&["range"]),
        require_known_member_id: true,
        fresh_id: format!("uuid-{client}"),
    }
}

fn join_reply(fx: &Effects, token: Token) -> Option<JoinOutcome> {
    fx.replies.iter().find_map(|(t, r)| match r {
        Reply::Join(o) if *t == token => Some(o.clone()),
        _ => None,
    })
}

fn sync_reply(fx: &Effects, token: Token) -> Option<SyncOutcome> {
    fx.replies.iter().find_map(|(t, r)| match r {
        Reply::Sync(o) if *t == token => Some(o.clone()),
        _ => None,
    })
}

fn sync_request(member_id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        generation,
        member_id: member_id.into(),
        instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

/// Reports every write `fx` began as durable; returns `fx` with the replies they held back.
fn durable(c: &mut Coordinator, now: TimeMs, mut fx: Effects) -> Effects {
    let groups: BTreeSet<String> = fx
        .records
        .iter()
        .map(|r| r.key.group().to_string())
        .collect();
    for group in groups {
        let id = c
            .writing(&group)
            .expect("records come with a pending write");
        let replies = c.write_done(now, &group, id);
        fx.replies.extend(replies);
    }
    fx
}

/// A new dynamic member through MEMBER_ID_REQUIRED; returns its member id.
fn known_id(c: &mut Coordinator, now: TimeMs, token: Token, client: &str) -> String {
    let fx = c.join(now, token, join_request("", client));
    let reply = join_reply(&fx, token).expect("answered at once");
    assert_eq!(reply.error, code::MEMBER_ID_REQUIRED);
    assert_eq!(reply.member_id, format!("{client}-uuid-{client}"));
    reply.member_id
}

/// One member joined and synced: generation 1, Stable.
fn stable_single(c: &mut Coordinator) -> String {
    let id = known_id(c, 0, 1, "a");
    let fx = c.join(0, 2, join_request(&id, "a"));
    let joined = join_reply(&fx, 2).expect("sole member completes the join");
    assert_eq!((joined.error, joined.generation), (code::NONE, 1));
    assert_eq!(joined.leader, id);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(c.group("g").unwrap().state, GroupState::CompletingRebalance);
    let fx = c.sync(0, 3, sync_request(&id, 1, &[(&id, "p0")]));
    assert!(sync_reply(&fx, 3).is_none(), "answered once durable");
    let fx = durable(c, 0, fx);
    let synced = sync_reply(&fx, 3).unwrap();
    assert_eq!(
        (synced.error, &synced.assignment[..]),
        (code::NONE, &b"p0"[..])
    );
    assert_eq!(fx.records.len(), 1, "the new generation is persisted");
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
    id
}

#[test]
fn member_id_required_then_join_and_sync() {
    let mut c = coordinator(0);
    stable_single(&mut c);
}

#[test]
fn join_v3_gets_a_member_id_without_the_extra_round_trip() {
    let mut c = coordinator(0);
    let mut request = join_request("", "a");
    request.require_known_member_id = false;
    let fx = c.join(0, 1, request);
    let joined = join_reply(&fx, 1).unwrap();
    assert_eq!((joined.error, joined.generation), (code::NONE, 1));
    assert_eq!(joined.member_id, "a-uuid-a");
}

#[test]
fn join_rejects_bad_input() {
    let mut c = coordinator(0);
    let mut request = join_request("", "a");
    request.group_id.clear();
    assert_eq!(
        join_reply(&c.join(0, 1, request), 1).unwrap().error,
        code::INVALID_GROUP_ID
    );
    let mut request = join_request("", "a");
    request.session_timeout_ms = 10;
    assert_eq!(
        join_reply(&c.join(0, 2, request), 2).unwrap().error,
        code::INVALID_SESSION_TIMEOUT
    );
    let request = join_request("who", "a");
    assert_eq!(
        join_reply(&c.join(0, 3, request), 3).unwrap().error,
        code::UNKNOWN_MEMBER_ID,
        "a member id for a group that does not exist"
    );
    let mut request = join_request("", "a");
    request.protocols.clear();
    assert_eq!(
        join_reply(&c.join(0, 4, request), 4).unwrap().error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn second_member_triggers_a_rebalance_that_waits_for_the_first() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = known_id(&mut c, 100, 10, "b");
    let fx = c.join(100, 11, join_request(&b, "b"));
    assert!(join_reply(&fx, 11).is_none(), "waits for a to rejoin");
    assert_eq!(c.group("g").unwrap().state, GroupState::PreparingRebalance);
    assert_eq!(
        c.heartbeat(200, "g", 1, &a, None),
        code::REBALANCE_IN_PROGRESS
    );
    // A commit in the old generation is still accepted while preparing (eager revoke).
    assert_eq!(c.check_commit(200, "g", 1, &a, None, 8), Ok(()));
    let fx = c.join(300, 12, join_request(&a, "a"));
    let ja = join_reply(&fx, 12).unwrap();
    let jb = join_reply(&fx, 11).unwrap();
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays");
    assert_eq!((ja.members.len(), jb.members.len()), (2, 0));
    assert_eq!(
        c.check_commit(300, "g", 2, &a, None, 8),
        Err(code::REBALANCE_IN_PROGRESS),
        "no commits between join and sync"
    );
    // The follower syncs first and waits for the leader's assignment.
    let fx = c.sync(400, 13, sync_request(&b, 2, &[]));
    assert!(sync_reply(&fx, 13).is_none());
    let fx = c.sync(400, 14, sync_request(&a, 2, &[(&a, "A"), (&b, "B")]));
    let fx = durable(&mut c, 400, fx);
    assert_eq!(&sync_reply(&fx, 13).unwrap().assignment[..], b"B");
    assert_eq!(&sync_reply(&fx, 14).unwrap().assignment[..], b"A");
    assert_eq!(c.heartbeat(500, "g", 2, &b, None), code::NONE);
    assert_eq!(c.check_commit(500, "g", 2, &b, None, 8), Ok(()));
}

#[test]
fn heartbeat_and_sync_errors() {
    let mut c = coordinator(0);
    assert_eq!(c.heartbeat(0, "g", 1, "x", None), code::UNKNOWN_MEMBER_ID);
    let a = stable_single(&mut c);
    assert_eq!(c.heartbeat(0, "g", 1, "x", None), code::UNKNOWN_MEMBER_ID);
    assert_eq!(c.heartbeat(0, "g", 0, &a, None), code::ILLEGAL_GENERATION);
    assert_eq!(c.heartbeat(0, "g", 1, &a, None), code::NONE);
    let fx = c.sync(0, 7, sync_request(&a, 9, &[]));
    assert_eq!(sync_reply(&fx, 7).unwrap().error, code::ILLEGAL_GENERATION);
    let fx = c.sync(0, 8, sync_request("x", 1, &[]));
    assert_eq!(sync_reply(&fx, 8).unwrap().error, code::UNKNOWN_MEMBER_ID);
    let mut wrong = sync_request(&a, 1, &[]);
    wrong.protocol_name = Some("roundrobin".into());
    let fx = c.sync(0, 9, wrong);
    assert_eq!(
        sync_reply(&fx, 9).unwrap().error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    // Stable: a sync answers the current assignment at once.
    let fx = c.sync(0, 10, sync_request(&a, 1, &[]));
    assert_eq!(&sync_reply(&fx, 10).unwrap().assignment[..], b"p0");
    // During a rebalance a sync gets REBALANCE_IN_PROGRESS.
    let b = known_id(&mut c, 0, 11, "b");
    c.join(0, 12, join_request(&b, "b"));
    let fx = c.sync(0, 13, sync_request(&a, 1, &[]));
    assert_eq!(
        sync_reply(&fx, 13).unwrap().error,
        code::REBALANCE_IN_PROGRESS
    );
}

#[test]
fn session_timeout_removes_a_silent_member() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let fx = c.tick(SESSION_MS as i64 - 1);
    assert!(fx.replies.is_empty());
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
    let fx = c.tick(SESSION_MS as i64);
    let group = c.group("g").unwrap();
    assert!(group.members.is_empty());
    assert_eq!((group.state, group.generation), (GroupState::Empty, 2));
    assert_eq!(fx.records.len(), 1, "the empty generation is persisted");
    assert_eq!(
        c.heartbeat(SESSION_MS as i64, "g", 2, &a, None),
        code::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn rebalance_timeout_drops_members_that_did_not_rejoin() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = known_id(&mut c, 0, 10, "b");
    c.join(0, 11, join_request(&b, "b"));
    // a keeps heartbeating but never rejoins.
    for t in (1_000..REBALANCE_MS as i64).step_by(1_000) {
        assert_eq!(
            c.heartbeat(t, "g", 1, &a, None),
            code::REBALANCE_IN_PROGRESS
        );
        assert!(c.tick(t).replies.is_empty());
    }
    let fx = c.tick(REBALANCE_MS as i64);
    let jb = join_reply(&fx, 11).unwrap();
    assert_eq!((jb.generation, jb.leader.as_str()), (2, b.as_str()));
    assert_eq!(jb.members.len(), 1, "a is gone and b leads");
    assert!(!c.group("g").unwrap().members.contains_key(&a));
}

#[test]
fn pending_sync_timeout_drops_members_that_never_sync() {
    let mut c = coordinator(0);
    let a = known_id(&mut c, 0, 1, "a");
    c.join(0, 2, join_request(&a, "a"));
    assert_eq!(c.group("g").unwrap().state, GroupState::CompletingRebalance);
    let fx = c.tick(REBALANCE_MS as i64);
    assert!(fx.replies.is_empty());
    let group = c.group("g").unwrap();
    assert_eq!(group.state, GroupState::Empty);
}

#[test]
fn initial_rebalance_delay_gathers_members() {
    let mut c = coordinator(3_000);
    let a = known_id(&mut c, 0, 1, "a");
    let fx = c.join(0, 2, join_request(&a, "a"));
    assert!(
        join_reply(&fx, 2).is_none(),
        "the first join phase is delayed"
    );
    let b = known_id(&mut c, 1_000, 3, "b");
    assert!(join_reply(&c.join(1_000, 4, join_request(&b, "b")), 4).is_none());
    assert!(c.tick(2_999).replies.is_empty());
    // b arrived during the delay: Kafka extends it once more.
    assert!(c.tick(3_000).replies.is_empty());
    let fx = c.tick(6_000);
    let (ja, jb) = (join_reply(&fx, 2).unwrap(), join_reply(&fx, 4).unwrap());
    assert_eq!((ja.generation, jb.generation), (1, 1));
    assert_eq!(ja.leader, jb.leader);
}

#[test]
fn protocol_is_the_common_one_most_members_prefer() {
    let mut c = coordinator(0);
    let mut request = join_request("", "a");
    request.require_known_member_id = false;
    request.protocols = protocols(&["range", "roundrobin"]);
    c.join(0, 1, request);
    let a = c.group("g").unwrap().leader.clone().unwrap();
    // b supports only roundrobin; a joins again with roundrobin first.
    let mut request = join_request("", "b");
    request.require_known_member_id = false;
    request.protocols = protocols(&["roundrobin"]);
    c.join(0, 2, request);
    let mut request = join_request(&a, "a");
    request.protocols = protocols(&["roundrobin", "range"]);
    let fx = c.join(0, 3, request);
    let ja = join_reply(&fx, 3).unwrap();
    assert_eq!(ja.protocol_name.as_deref(), Some("roundrobin"));
    assert!(ja
        .members
        .iter()
        .all(|m| &m.metadata[..] == b"meta-roundrobin"));
    // A member with no protocol in common is refused.
    let mut request = join_request("", "c");
    request.protocols = protocols(&["sticky"]);
    assert_eq!(
        join_reply(&c.join(0, 4, request), 4).unwrap().error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut request = join_request("", "c");
    request.protocol_type = "connect".into();
    request.protocols = protocols(&["roundrobin"]);
    assert_eq!(
        join_reply(&c.join(0, 5, request), 5).unwrap().error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
}

fn static_request(member_id: &str, client: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        instance_id: Some(instance.into()),
        ..join_request(member_id, client)
    }
}

#[test]
fn static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let mut c = coordinator(0);
    let fx = c.join(0, 1, static_request("", "a", "i-1"));
    let first = join_reply(&fx, 1).unwrap();
    assert_eq!(
        first.error,
        code::NONE,
        "static members skip MEMBER_ID_REQUIRED"
    );
    let old = first.member_id.clone();
    let fx = c.sync(0, 2, sync_request(&old, 1, &[(&old, "P")]));
    durable(&mut c, 0, fx);
    // Restarted with the same instance id: new member id, same generation and assignment.
    let mut request = static_request("", "a", "i-1");
    request.fresh_id = "second".into();
    let fx = c.join(100, 3, request);
    let fx = durable(&mut c, 100, fx);
    let again = join_reply(&fx, 3).unwrap();
    assert_eq!((again.error, again.generation), (code::NONE, 1));
    assert_eq!(again.member_id, "a-second");
    assert!(again.skip_assignment, "the leader keeps its assignment");
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
    assert_eq!(
        c.heartbeat(100, "g", 1, &old, Some("i-1")),
        code::FENCED_INSTANCE_ID
    );
    assert_eq!(
        c.heartbeat(100, "g", 1, "a-second", Some("i-1")),
        code::NONE
    );
    let mut sync = sync_request("a-second", 1, &[]);
    sync.instance_id = Some("i-1".into());
    let fx = c.sync(100, 4, sync);
    assert_eq!(&sync_reply(&fx, 4).unwrap().assignment[..], b"P");
    // Leaving by instance id.
    let (top, errors, _) = c.leave(200, "g", &[(String::new(), Some("i-1".into()))]);
    assert_eq!((top, errors), (code::NONE, vec![code::NONE]));
    assert_eq!(c.group("g").unwrap().state, GroupState::Empty);
}

#[test]
fn leave_rebalances_and_reports_unknown_members() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let (top, errors, _) = c.leave(0, "nope", &[("x".into(), None)]);
    assert_eq!(
        (top, errors),
        (code::UNKNOWN_MEMBER_ID, vec![code::UNKNOWN_MEMBER_ID])
    );
    let (top, errors, fx) = c.leave(0, "g", &[("x".into(), None), (a.clone(), None)]);
    assert_eq!(top, code::NONE);
    assert_eq!(errors, vec![code::UNKNOWN_MEMBER_ID, code::NONE]);
    let group = c.group("g").unwrap();
    assert_eq!((group.state, group.generation), (GroupState::Empty, 2));
    assert_eq!(fx.records.len(), 1);
}

#[test]
fn a_leaving_member_completes_a_waiting_rebalance() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = known_id(&mut c, 0, 10, "b");
    c.join(0, 11, join_request(&b, "b"));
    let (_, _, fx) = c.leave(0, "g", &[(a, None)]);
    let jb = join_reply(&fx, 11).unwrap();
    assert_eq!((jb.error, jb.generation, jb.leader), (code::NONE, 2, b));
}

#[test]
fn offset_commit_checks() {
    let mut c = coordinator(0);
    // Simple consumers and admin tools commit without a generation to any group.
    assert_eq!(c.check_commit(0, "simple", -1, "", None, 8), Ok(()));
    assert_eq!(c.group("simple").unwrap().state, GroupState::Empty);
    assert_eq!(
        c.check_commit(0, "nope", 3, "m", None, 8),
        Err(code::ILLEGAL_GENERATION)
    );
    assert_eq!(
        c.check_commit(0, "nope", 3, "m", None, 9),
        Err(code::GROUP_ID_NOT_FOUND)
    );
    assert_eq!(
        c.check_commit(0, "", -1, "", None, 8),
        Err(code::INVALID_GROUP_ID)
    );
    let a = stable_single(&mut c);
    assert_eq!(c.check_commit(0, "g", 1, &a, None, 8), Ok(()));
    assert_eq!(
        c.check_commit(0, "g", 0, &a, None, 8),
        Err(code::ILLEGAL_GENERATION)
    );
    assert_eq!(
        c.check_commit(0, "g", 1, "x", None, 8),
        Err(code::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        c.check_commit(0, "g", -1, "", None, 8),
        Err(code::UNKNOWN_MEMBER_ID)
    );
}

fn committed(offset: i64, at: TimeMs) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: 0,
        metadata: format!("m{offset}"),
        commit_timestamp_ms: at,
    }
}

fn commit(c: &mut Coordinator, group: &str, topic: &str, partition: i32, o: CommittedOffset) {
    let records = Coordinator::commit_records(group, &[((topic.to_string(), partition), o)]);
    for r in &records {
        c.apply(0, r, false);
    }
}

#[test]
fn delete_group_needs_an_empty_group() {
    let mut c = coordinator(0);
    assert_eq!(
        c.delete_group("nope").unwrap_err(),
        code::GROUP_ID_NOT_FOUND
    );
    let a = stable_single(&mut c);
    commit(&mut c, "g", "t", 0, committed(5, 0));
    assert_eq!(c.delete_group("g").unwrap_err(), code::NON_EMPTY_GROUP);
    let (_, _, fx) = c.leave(0, "g", &[(a, None)]);
    durable(&mut c, 0, fx);
    let records = c.delete_group("g").unwrap();
    assert_eq!(
        records.len(),
        2,
        "an offset tombstone and a group tombstone"
    );
    assert!(records.iter().all(|r| r.value.is_none()));
    assert!(c.group("g").is_some(), "until the tombstones are durable");
    durable(
        &mut c,
        0,
        Effects {
            replies: Vec::new(),
            records,
        },
    );
    assert!(c.group("g").is_none());
}

#[test]
fn offset_delete_refuses_subscribed_topics_of_active_groups() {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Encodable;
    let mut c = coordinator(0);
    let subscription = ConsumerProtocolSubscription::default().with_topics(vec![
        kafka_protocol::protocol::StrBytes::from_static_str("t"),
    ]);
    let mut metadata = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut metadata, 1);
    subscription.encode(&mut metadata, 1).unwrap();
    let mut request = join_request("", "a");
    request.require_known_member_id = false;
    request.protocols = vec![Protocol {
        name: "range".into(),
        metadata: metadata.freeze(),
    }];
    let fx = c.join(0, 1, request);
    let a = join_reply(&fx, 1).unwrap().member_id;
    let fx = c.sync(0, 2, sync_request(&a, 1, &[]));
    durable(&mut c, 0, fx);
    commit(&mut c, "g", "t", 0, committed(5, 0));
    commit(&mut c, "g", "other", 0, committed(7, 0));
    let (errors, records) = c
        .delete_offsets("g", &[("t".into(), 0), ("other".into(), 0)])
        .unwrap();
    assert_eq!(errors, vec![code::GROUP_SUBSCRIBED_TO_TOPIC, code::NONE]);
    assert_eq!(records.len(), 1);
    assert_eq!(
        c.delete_offsets("nope", &[]).unwrap_err(),
        code::GROUP_ID_NOT_FOUND
    );
}

#[test]
fn offsets_of_groups_that_stay_empty_expire() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    commit(&mut c, "g", "t", 0, committed(5, 0));
    commit(&mut c, "simple", "t", 1, committed(9, 1_000));
    // A simple group's offsets expire by commit time; an active group's never do.
    let records = c.expire_offsets(100_000);
    assert_eq!(records.len(), 1);
    assert_eq!(c.group("simple").unwrap().offsets.len(), 1, "until durable");
    durable(
        &mut c,
        100_000,
        Effects {
            replies: Vec::new(),
            records,
        },
    );
    assert!(c.group("simple").unwrap().offsets.is_empty());
    assert_eq!(c.group("g").unwrap().offsets.len(), 1);
    // The simple group, empty and without offsets, goes at the next round.
    assert!(c.expire_offsets(100_001).is_empty());
    assert!(c.group("simple").is_none());
    // A consumer group's expire once it has been empty for the retention.
    let (_, _, fx) = c.leave(100_000, "g", &[(a, None)]);
    durable(&mut c, 100_000, fx);
    assert!(c.expire_offsets(159_999).is_empty());
    let records = c.expire_offsets(160_000);
    assert_eq!(records.len(), 2, "g's offset and g's group tombstone");
    durable(
        &mut c,
        160_000,
        Effects {
            replies: Vec::new(),
            records,
        },
    );
    assert!(c.group("g").is_none());
}

/// A consumer-protocol subscription to `topics`, as clients encode it (version 1).
fn subscription(topics: &[&'static str]) -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let topics = topics
        .iter()
        .map(|t| StrBytes::from_static_str(t))
        .collect();
    let mut metadata = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut metadata, 1);
    ConsumerProtocolSubscription::default()
        .with_topics(topics)
        .encode(&mut metadata, 1)
        .unwrap();
    metadata.freeze()
}

#[test]
fn stable_groups_expire_offsets_of_topics_they_left() {
    let mut c = coordinator(0);
    let mut request = join_request("", "a");
    request.require_known_member_id = false;
    request.protocols = vec![Protocol {
        name: "range".into(),
        metadata: subscription(&["t"]),
    }];
    let a = join_reply(&c.join(0, 1, request), 1).unwrap().member_id;
    let fx = c.sync(0, 2, sync_request(&a, 1, &[]));
    durable(&mut c, 0, fx);
    commit(&mut c, "g", "t", 0, committed(5, 0));
    commit(&mut c, "g", "old", 0, committed(7, 0));
    assert_eq!(c.heartbeat(60_000, "g", 1, &a, None), code::NONE);
    let records = c.expire_offsets(60_000);
    assert_eq!(records.len(), 1, "only the unsubscribed topic");
    durable(
        &mut c,
        60_000,
        Effects {
            replies: Vec::new(),
            records,
        },
    );
    assert_eq!(c.group("g").unwrap().offsets.len(), 1);
}

#[test]
fn replay_restores_groups_and_offsets() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    commit(&mut c, "g", "t", 3, committed(42, 5));
    let mut log = vec![c.group("g").unwrap().metadata_record()];
    log.extend(Coordinator::commit_records(
        "g",
        &[(("t".to_string(), 3), committed(42, 5))],
    ));
    let mut restarted = coordinator(0);
    for r in &log {
        restarted.apply(1_000, r, true);
    }
    let group = restarted.group("g").unwrap();
    assert_eq!((group.state, group.generation), (GroupState::Stable, 1));
    assert_eq!(group.offsets[&("t".to_string(), 3)], committed(42, 5));
    assert_eq!(&group.members[&a].assignment[..], b"p0");
    // Members come back with fresh sessions and expire if they never return.
    restarted.tick(1_000 + SESSION_MS as i64);
    assert_eq!(restarted.group("g").unwrap().state, GroupState::Empty);
    // A group tombstone after the offsets' tombstones removes it.
    let mut records = Coordinator::commit_records("g", &[]);
    records.push(offset_tombstone("g", "t", 3));
    records.push(StoredRecord {
        key: RecordKey::Group { group: "g".into() },
        value: None,
    });
    for r in &records {
        restarted.apply(2_000, r, true);
    }
    assert!(restarted.group("g").is_none());
}

#[test]
fn describe_shows_members_and_assignments_when_stable() {
    let mut c = coordinator(0);
    assert!(c.describe("g").is_none());
    let a = stable_single(&mut c);
    let d = c.describe("g").unwrap();
    assert_eq!(
        (d.state, d.protocol_type.as_str(), d.protocol_data.as_str()),
        ("Stable", "consumer", "range")
    );
    assert_eq!(d.members[0].member_id, a);
    assert_eq!(&d.members[0].assignment[..], b"p0");
    assert_eq!(d.members[0].client_host, "/127.0.0.1");
}

#[test]
fn a_repeated_join_answers_the_earlier_one() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = known_id(&mut c, 0, 10, "b");
    c.join(0, 11, join_request(&b, "b"));
    // b's client retried its JoinGroup: the first request must not hang.
    let fx = c.join(0, 12, join_request(&b, "b"));
    assert_eq!(
        join_reply(&fx, 11).unwrap().error,
        code::REBALANCE_IN_PROGRESS
    );
    let fx = c.join(0, 13, join_request(&a, "a"));
    assert!(join_reply(&fx, 12).is_some() && join_reply(&fx, 13).is_some());
}

#[test]
fn deleting_a_topic_forgets_its_offsets() {
    let mut c = coordinator(0);
    commit(&mut c, "g", "t", 0, committed(5, 0));
    commit(&mut c, "g", "t", 1, committed(6, 0));
    commit(&mut c, "g", "u", 0, committed(7, 0));
    assert_eq!(c.groups_with_topic("t"), vec!["g".to_string()]);
    let records = c.delete_topic_offsets("g", "t");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.value.is_none()));
    durable(
        &mut c,
        0,
        Effects {
            replies: Vec::new(),
            records,
        },
    );
    let offsets = &c.group("g").unwrap().offsets;
    assert_eq!(
        offsets.keys().collect::<Vec<_>>(),
        vec![&("u".to_string(), 0)]
    );
}

#[test]
fn unloading_forgets_the_groups_and_answers_their_waiting_members() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = known_id(&mut c, 100, 10, "b");
    let fx = c.join(100, 11, join_request(&b, "b"));
    assert!(join_reply(&fx, 11).is_none(), "waits for a to rejoin");
    let fx = c.unload(|g| g == "other");
    assert!(
        fx.replies.is_empty() && c.group("g").is_some(),
        "only the named groups"
    );
    let fx = c.unload(|g| g == "g");
    assert!(c.group("g").is_none());
    let answer = join_reply(&fx, 11).expect("the waiting member is answered");
    assert_eq!(answer.error, code::NOT_COORDINATOR);
    assert_eq!(c.heartbeat(200, "g", 1, &a, None), code::UNKNOWN_MEMBER_ID);
}

// ---------------------------------------------------------------- pending writes

const FAILED: i16 = code::COORDINATOR_NOT_AVAILABLE;

/// a leads generation 2 with b; both are in CompletingRebalance and b waits on token 13.
fn completing_pair(c: &mut Coordinator) -> (String, String) {
    let a = stable_single(c);
    let b = known_id(c, 100, 10, "b");
    c.join(100, 11, join_request(&b, "b"));
    let fx = c.join(100, 12, join_request(&a, "a"));
    assert_eq!(join_reply(&fx, 12).unwrap().generation, 2);
    assert!(sync_reply(&c.sync(100, 13, sync_request(&b, 2, &[])), 13).is_none());
    (a, b)
}

#[test]
fn a_leaders_sync_is_answered_and_shown_only_once_durable() {
    let mut c = coordinator(0);
    let (a, b) = completing_pair(&mut c);
    let fx = c.sync(200, 14, sync_request(&a, 2, &[(&a, "A"), (&b, "B")]));
    assert_eq!(fx.records.len(), 1);
    assert!(fx.replies.is_empty(), "every answer waits for the write");
    let id = c.writing("g").expect("a pending write");
    assert_eq!(c.describe("g").unwrap().state, "CompletingRebalance");
    assert_eq!(
        c.durable_groups().next().unwrap().state,
        GroupState::CompletingRebalance
    );
    assert_eq!(
        c.write_done(200, "g", id + 1),
        vec![],
        "another write's report"
    );
    assert!(c.is_writing("g"));
    let replies = c.write_done(200, "g", id);
    let fx = Effects {
        replies,
        records: Vec::new(),
    };
    assert_eq!(&sync_reply(&fx, 13).unwrap().assignment[..], b"B");
    assert_eq!(&sync_reply(&fx, 14).unwrap().assignment[..], b"A");
    assert!(!c.is_writing("g"));
    assert_eq!(c.describe("g").unwrap().state, "Stable");
}

#[test]
fn a_failed_sync_write_answers_the_error_and_the_group_rebalances_again() {
    let mut c = coordinator(0);
    let (a, b) = completing_pair(&mut c);
    let fx = c.sync(200, 14, sync_request(&a, 2, &[(&a, "A"), (&b, "B")]));
    let id = c.writing("g").unwrap();
    let replies = c.write_failed(300, "g", id, FAILED);
    let fx = Effects {
        replies,
        records: fx.records,
    };
    assert_eq!(sync_reply(&fx, 13).unwrap().error, FAILED);
    assert_eq!(sync_reply(&fx, 14).unwrap().error, FAILED);
    assert_eq!(fx.replies.len(), 2, "each waiting sync answered once");
    // Kafka: the assignment is not kept and the group goes back to rebalancing.
    let group = c.group("g").unwrap();
    assert_eq!(
        (group.state, group.generation),
        (GroupState::PreparingRebalance, 2)
    );
    assert!(group.members.values().all(|m| m.assignment.is_empty()));
    assert!(group.members.values().all(|m| m.awaiting_sync.is_none()));
    assert!(!c.is_writing("g"));
    // Both rejoin and the next generation forms and is written.
    c.join(400, 15, join_request(&b, "b"));
    let fx = c.join(400, 16, join_request(&a, "a"));
    assert_eq!(join_reply(&fx, 16).unwrap().generation, 3);
    c.sync(400, 17, sync_request(&b, 3, &[]));
    let fx = c.sync(400, 18, sync_request(&a, 3, &[(&a, "A3"), (&b, "B3")]));
    let fx = durable(&mut c, 400, fx);
    assert_eq!(&sync_reply(&fx, 17).unwrap().assignment[..], b"B3");
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
}

#[test]
fn a_failed_leave_write_keeps_the_member() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    commit(&mut c, "g", "t", 0, committed(5, 0));
    let (top, errors, fx) = c.leave(100, "g", &[(a.clone(), None)]);
    assert_eq!((top, errors), (code::NONE, vec![code::NONE]));
    assert_eq!(fx.records.len(), 1, "the empty generation");
    assert_eq!(c.describe("g").unwrap().state, "Stable", "not visible yet");
    let id = c.writing("g").unwrap();
    assert!(c.write_failed(200, "g", id, FAILED).is_empty());
    let group = c.group("g").unwrap();
    assert_eq!((group.state, group.generation), (GroupState::Stable, 1));
    assert_eq!(&group.members[&a].assignment[..], b"p0");
    assert_eq!(group.offsets.len(), 1, "offsets stay");
    assert_eq!(c.heartbeat(300, "g", 1, &a, None), code::NONE);
}

#[test]
fn a_failed_static_rejoin_keeps_the_old_member_id() {
    let mut c = coordinator(0);
    let fx = c.join(0, 1, static_request("", "a", "i-1"));
    let old = join_reply(&fx, 1).unwrap().member_id;
    let fx = c.sync(0, 2, sync_request(&old, 1, &[(&old, "P")]));
    durable(&mut c, 0, fx);
    let mut request = static_request("", "a", "i-1");
    request.fresh_id = "second".into();
    let fx = c.join(100, 3, request);
    assert!(join_reply(&fx, 3).is_none());
    let id = c.writing("g").unwrap();
    let fx = Effects {
        replies: c.write_failed(100, "g", id, FAILED),
        records: Vec::new(),
    };
    assert_eq!(join_reply(&fx, 3).unwrap().error, FAILED);
    assert_eq!(c.heartbeat(100, "g", 1, &old, Some("i-1")), code::NONE);
    assert_eq!(
        c.heartbeat(100, "g", 1, "a-second", Some("i-1")),
        code::FENCED_INSTANCE_ID
    );
    assert_eq!(c.group("g").unwrap().state, GroupState::Stable);
}

#[test]
fn a_failed_write_after_a_session_timeout_is_tried_again_by_the_next_tick() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let fx = c.tick(SESSION_MS as i64);
    assert_eq!(fx.records.len(), 1);
    assert!(
        c.tick(SESSION_MS as i64 + 100).records.is_empty(),
        "waits for the write"
    );
    let id = c.writing("g").unwrap();
    c.write_failed(SESSION_MS as i64 + 200, "g", id, FAILED);
    assert!(c.group("g").unwrap().members.contains_key(&a));
    let fx = c.tick(SESSION_MS as i64 + 300);
    assert_eq!(fx.records.len(), 1, "the expiry is written again");
    durable(&mut c, SESSION_MS as i64 + 300, fx);
    assert_eq!(c.group("g").unwrap().state, GroupState::Empty);
}

fn commit_request(group: &str, generation: i32, member: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation,
        member_id: member.into(),
        instance_id: None,
        version: 8,
        offsets: vec![(("t".to_string(), 0), committed(offset, 0))],
    }
}

#[test]
fn commits_apply_once_durable_and_not_at_all_when_the_write_fails() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let records = c.commit(0, &commit_request("g", 1, &a, 5)).unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        c.group("g").unwrap().offsets.is_empty(),
        "not before durable"
    );
    let id = c.writing("g").unwrap();
    c.write_done(0, "g", id);
    assert_eq!(
        c.group("g").unwrap().offsets[&("t".to_string(), 0)].offset,
        5
    );
    c.commit(0, &commit_request("g", 1, &a, 9)).unwrap();
    let id = c.writing("g").unwrap();
    c.write_failed(0, "g", id, FAILED);
    assert_eq!(
        c.group("g").unwrap().offsets[&("t".to_string(), 0)].offset,
        5
    );
    // A group created by a commit without generation goes away with its failed write.
    c.commit(0, &commit_request("simple", -1, "", 1)).unwrap();
    let id = c.writing("simple").unwrap();
    c.write_failed(0, "simple", id, FAILED);
    assert!(c.group("simple").is_none());
}

#[test]
fn a_failed_group_deletion_keeps_the_group_and_its_offsets() {
    let mut c = coordinator(0);
    commit(&mut c, "g", "t", 0, committed(5, 0));
    c.delete_group("g").unwrap();
    let id = c.writing("g").unwrap();
    c.write_failed(0, "g", id, FAILED);
    assert_eq!(c.group("g").unwrap().offsets.len(), 1);
    assert!(c.expire_offsets(1).is_empty());
}

#[test]
fn unloading_answers_the_replies_a_pending_write_held() {
    let mut c = coordinator(0);
    let (a, b) = completing_pair(&mut c);
    c.sync(200, 14, sync_request(&a, 2, &[(&a, "A"), (&b, "B")]));
    let fx = c.unload(|g| g == "g");
    assert_eq!(sync_reply(&fx, 13).unwrap().error, code::NOT_COORDINATOR);
    assert_eq!(sync_reply(&fx, 14).unwrap().error, code::NOT_COORDINATOR);
    assert!(!c.is_writing("g") && c.group("g").is_none());
}
