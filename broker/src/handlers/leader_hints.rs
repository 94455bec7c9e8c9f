//! KIP-951 leader discovery hints: a Produce (v10+) or Fetch (v16+) partition answered
//! NOT_LEADER_OR_FOLLOWER (Fetch: or FENCED_LEADER_EPOCH) carries the partition's current
//! leader and leader epoch (its tagged `CurrentLeader`), and the answer carries the endpoint
//! of every leader so named (its tagged `NodeEndpoints`), so a client can retry on the new
//! leader at once instead of refreshing its metadata first.
//!
//! Kafka reads the hint from the broker's partition state, else its metadata cache; here it
//! comes from this broker's current controller image (the registration's leader and leader
//! epoch, -1/-1 for a partition it does not know), read when the answer is built, not when
//! the request arrived. The endpoint is given only while the leader is live (registered and
//! unfenced), as Kafka's `getAliveBrokerNode`; clients ignore a hint without one.
//!
//! Hints are built only for errored partitions: a handler starts a [`Hints`] at its first
//! such partition, so answers without one cost nothing.

use crate::handlers::code;
use crate::handlers::metadata::{broker_view, BrokerView};
use crate::listeners::ListenerInfo;
use crate::shard::{PartitionKey, Shard};
use controller::MetadataImage;
use kafka_protocol::messages::{fetch_response, produce_response, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Produce answers carry hints from this version (KIP-951).
pub const PRODUCE_VERSION_MIN: i16 = 10;
/// Fetch answers carry hints from this version (KIP-951; `CurrentLeader` exists from v12, but
/// Kafka fills it only from v16, where `NodeEndpoints` arrives).
pub const FETCH_VERSION_MIN: i16 = 16;

/// A partition's leader as a client is pointed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    pub leader_id: i32,
    pub leader_epoch: i32,
}

impl LeaderHint {
    /// What a partition the image does not know is answered with (the wire default).
    pub const UNKNOWN: LeaderHint = LeaderHint {
        leader_id: -1,
        leader_epoch: -1,
    };
}

/// Whether a Produce partition answered `error_code` at `version` gets a hint (Kafka's
/// `handleProduceRequest`).
pub fn produce_wants_hint(version: i16, error_code: i16) -> bool {
    version >= PRODUCE_VERSION_MIN && error_code == code::NOT_LEADER_OR_FOLLOWER
}

/// Whether a Fetch partition answered `error_code` at `version` gets a hint (Kafka's
/// `handleFetchRequest`, for consumers and followers alike).
pub fn fetch_wants_hint(version: i16, error_code: i16) -> bool {
    version >= FETCH_VERSION_MIN
        && matches!(
            error_code,
            code::NOT_LEADER_OR_FOLLOWER | code::FENCED_LEADER_EPOCH
        )
}

/// The hints of one answer: each hinted partition's leader, read from one image, and the
/// endpoints of the live leaders named, each once.
pub struct Hints {
    image: Arc<MetadataImage>,
    this_node: BrokerView,
    /// The listener the client came in on: endpoints are its addresses.
    listener: String,
    endpoints: BTreeMap<i32, BrokerView>,
}

impl Hints {
    /// Hints from `image` for clients on listener `listener`; `this_node` is this broker as
    /// they see it (a single node's image has no broker registrations).
    pub fn new(image: Arc<MetadataImage>, this_node: BrokerView, listener: &str) -> Hints {
        Hints {
            image,
            this_node,
            listener: listener.to_owned(),
            endpoints: BTreeMap::new(),
        }
    }

    /// Hints from `shard`'s current image for clients on `listener`.
    pub fn of(shard: &Shard, listener: &ListenerInfo) -> Hints {
        let this_node = crate::handlers::metadata::this_node(shard);
        let this_node = crate::handlers::metadata::on_listener(shard, listener, this_node);
        Hints::new(shard.image(), this_node, &listener.name)
    }

    /// The leader of partition `key`, its endpoint noted when it is live.
    pub fn hint(&mut self, key: PartitionKey) -> LeaderHint {
        let Some(registration) = self.image.partition(&key.0, key.1) else {
            return LeaderHint::UNKNOWN;
        };
        let hint = LeaderHint {
            leader_id: registration.leader,
            leader_epoch: registration.leader_epoch,
        };
        if hint.leader_id >= 0 && !self.endpoints.contains_key(&hint.leader_id) {
            let leader = hint.leader_id;
            if let Some(view) = broker_view(&self.image, &self.this_node, leader, &self.listener) {
                self.endpoints.insert(hint.leader_id, view);
            }
        }
        hint
    }

    /// The leader of partition `index` of a topic as a request names it (by id from the
    /// versions that carry ids, else by name); unknown when the image lacks the topic.
    pub fn hint_named(
        &mut self,
        name: &TopicName,
        id: uuid::Uuid,
        by_id: bool,
        index: i32,
    ) -> LeaderHint {
        match crate::handlers::resolve_topic(&self.image, name, id, by_id) {
            Ok(topic) => {
                let key = (topic.id, index);
                self.hint(key)
            }
            Err(_) => LeaderHint::UNKNOWN,
        }
    }

    /// The endpoints of the live leaders named so far, by node id.
    pub fn endpoints(&self) -> impl Iterator<Item = &BrokerView> {
        self.endpoints.values()
    }
}

/// Builds a wire `LeaderIdAndEpoch` or `NodeEndpoint` (Produce and Fetch each have their
/// own generated types of the same shape).
macro_rules! wire {
    (leader $ty:ty, $hint:expr) => {
        <$ty>::default()
            .with_leader_id(BrokerId($hint.leader_id))
            .with_leader_epoch($hint.leader_epoch)
    };
    (endpoint $ty:ty, $broker:expr) => {
        <$ty>::default()
            .with_node_id(BrokerId($broker.node_id))
            .with_host(StrBytes::from_string($broker.host.clone()))
            .with_port($broker.port)
            .with_rack($broker.rack.clone().map(StrBytes::from_string))
    };
}

impl LeaderHint {
    /// A Produce partition's `CurrentLeader`.
    pub fn for_produce(self) -> produce_response::LeaderIdAndEpoch {
        wire!(leader produce_response::LeaderIdAndEpoch, self)
    }

    /// A Fetch partition's `CurrentLeader`.
    pub fn for_fetch(self) -> fetch_response::LeaderIdAndEpoch {
        wire!(leader fetch_response::LeaderIdAndEpoch, self)
    }
}

impl Hints {
    /// A Produce answer's `NodeEndpoints`.
    pub fn produce_endpoints(&self) -> Vec<produce_response::NodeEndpoint> {
        self.endpoints()
            .map(|b| wire!(endpoint produce_response::NodeEndpoint, b))
            .collect()
    }

    /// A Fetch answer's `NodeEndpoints`.
    pub fn fetch_endpoints(&self) -> Vec<fetch_response::NodeEndpoint> {
        self.endpoints()
            .map(|b| wire!(endpoint fetch_response::NodeEndpoint, b))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use controller::{
        BrokerRegistration, MetadataRecord, PartitionRegistration, PartitionsAssigned, Placement,
        TopicMeta,
    };

    pub const TOPIC_ID: [u8; 16] = [9; 16];

    fn broker(node_id: i32, rack: Option<&str>) -> MetadataRecord {
        MetadataRecord::BrokerRegistered(Box::new(BrokerRegistration {
            node_id,
            epoch: 1,
            host: format!("host{node_id}"),
            port: 9090 + node_id as u16,
            shards: 1,
            rack: rack.map(str::to_owned),
            fenced: false,
            endpoints: Vec::new(),
        }))
    }

    fn placement(broker: i32) -> Placement {
        Placement { broker, shard: 0 }
    }

    /// Brokers 1-3 (3 fenced), topic "t" with 3 partitions: 0 led by 2 in epoch 7, 1 led by
    /// the fenced 3 in epoch 4, 2 without a leader in epoch 5.
    pub fn image() -> Arc<MetadataImage> {
        let registration = |leader: i32, leader_epoch: i32| {
            let mut r = PartitionRegistration::new(vec![placement(1), placement(2), placement(3)]);
            r.leader = leader;
            r.leader_epoch = leader_epoch;
            r.isr = if leader >= 0 { vec![leader] } else { vec![3] };
            r
        };
        let records = [
            MetadataRecord::ClusterInit {
                cluster_id: "c".into(),
            },
            broker(1, None),
            broker(2, Some("rack-b")),
            broker(3, None),
            MetadataRecord::TopicCreated(TopicMeta {
                name: "t".into(),
                id: TOPIC_ID,
                partitions: 3,
                replication_factor: 3,
                configs: BTreeMap::new(),
            }),
            MetadataRecord::PartitionsAssigned(Box::new(PartitionsAssigned {
                id: TOPIC_ID,
                first: 0,
                partitions: vec![registration(2, 7), registration(3, 4), registration(-1, 5)],
            })),
            MetadataRecord::BrokerFenced {
                node_id: 3,
                fenced: true,
            },
        ];
        let (image, _) = MetadataImage::empty(1)
            .apply_batch(&records)
            .expect("records apply");
        Arc::new(image)
    }

    pub fn this_node() -> BrokerView {
        BrokerView {
            node_id: 1,
            host: "host1".into(),
            port: 9091,
            rack: None,
        }
    }

    #[test]
    fn a_hint_names_the_registered_leader_and_epoch_and_notes_live_endpoints_once() {
        let mut hints = Hints::new(image(), this_node(), "PLAINTEXT");
        let hint = |leader_id, leader_epoch| LeaderHint {
            leader_id,
            leader_epoch,
        };
        assert_eq!(hints.hint((TOPIC_ID, 0)), hint(2, 7));
        assert_eq!(hints.hint((TOPIC_ID, 0)), hint(2, 7));
        // A fenced leader is named (as Kafka's metadata cache does), without an endpoint.
        assert_eq!(hints.hint((TOPIC_ID, 1)), hint(3, 4));
        assert_eq!(hints.hint((TOPIC_ID, 2)), hint(-1, 5));
        assert_eq!(hints.hint((TOPIC_ID, 3)), LeaderHint::UNKNOWN);
        assert_eq!(hints.hint(([1; 16], 0)), LeaderHint::UNKNOWN);
        let endpoints: Vec<&BrokerView> = hints.endpoints().collect();
        assert_eq!(
            endpoints,
            vec![&BrokerView {
                node_id: 2,
                host: "host2".into(),
                port: 9092,
                rack: Some("rack-b".into()),
            }]
        );
    }

    #[test]
    fn topics_are_found_by_name_or_by_id_as_the_request_names_them() {
        let mut hints = Hints::new(image(), this_node(), "PLAINTEXT");
        let name = TopicName::from(kafka_protocol::protocol::StrBytes::from_static_str("t"));
        let none = TopicName::default();
        let id = uuid::Uuid::from_bytes(TOPIC_ID);
        assert_eq!(
            hints
                .hint_named(&name, uuid::Uuid::nil(), false, 0)
                .leader_id,
            2
        );
        assert_eq!(hints.hint_named(&none, id, true, 0).leader_id, 2);
        assert_eq!(
            hints.hint_named(&name, uuid::Uuid::nil(), true, 0),
            LeaderHint::UNKNOWN
        );
        assert_eq!(hints.hint_named(&none, id, false, 0), LeaderHint::UNKNOWN);
    }

    #[test]
    fn which_answers_get_hints() {
        use code::{FENCED_LEADER_EPOCH as FENCED, NONE, NOT_LEADER_OR_FOLLOWER as NOT_LEADER};
        assert!(produce_wants_hint(10, NOT_LEADER) && produce_wants_hint(13, NOT_LEADER));
        assert!(!produce_wants_hint(9, NOT_LEADER) && !produce_wants_hint(13, NONE));
        assert!(!produce_wants_hint(13, FENCED));
        assert!(fetch_wants_hint(16, NOT_LEADER) && fetch_wants_hint(18, FENCED));
        assert!(!fetch_wants_hint(15, NOT_LEADER) && !fetch_wants_hint(18, NONE));
        assert!(!fetch_wants_hint(18, code::UNKNOWN_LEADER_EPOCH));
    }

    /// Encodes `body` as the broker does and decodes it as a client would.
    fn round_trip(body: ProduceResponse, version: i16) -> ProduceResponse {
        use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
        use kafka_protocol::protocol::Decodable;
        let frame = crate::protocol::encode_response(
            ApiKey::Produce,
            version,
            5,
            &ResponseKind::Produce(body),
            0,
        )
        .expect("encodes");
        let mut buf = frame.slice(4..);
        let header_version = ApiKey::Produce.response_header_version(version);
        ResponseHeader::decode(&mut buf, header_version).expect("header");
        let decoded = ProduceResponse::decode(&mut buf, version).expect("decodes");
        assert!(buf.is_empty(), "v{version}: {} bytes left", buf.len());
        decoded
    }

    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;

    #[test]
    fn produce_answers_carry_the_hint_and_endpoint_from_v10() {
        let mut hints = Hints::new(image(), this_node(), "PLAINTEXT");
        let partition = |index: i32, error_code: i16, hint: Option<LeaderHint>| {
            let p = PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(error_code);
            match hint {
                Some(h) => p.with_current_leader(h.for_produce()),
                None => p.with_base_offset(41),
            }
        };
        let partitions = vec![
            partition(
                0,
                code::NOT_LEADER_OR_FOLLOWER,
                Some(hints.hint((TOPIC_ID, 0))),
            ),
            partition(1, code::NONE, None),
            partition(
                2,
                code::NOT_LEADER_OR_FOLLOWER,
                Some(hints.hint((TOPIC_ID, 2))),
            ),
        ];
        let body = ProduceResponse::default()
            .with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_responses(partitions)])
            .with_node_endpoints(hints.produce_endpoints());
        for version in 10..=13 {
            let got = round_trip(body.clone(), version);
            let ps = &got.responses[0].partition_responses;
            let leaders: Vec<(i32, i32)> = ps
                .iter()
                .map(|p| (p.current_leader.leader_id.0, p.current_leader.leader_epoch))
                .collect();
            assert_eq!(leaders, vec![(2, 7), (-1, -1), (-1, 5)], "v{version}");
            let endpoints: Vec<_> = got
                .node_endpoints
                .iter()
                .map(|e| (e.node_id.0, e.host.to_string(), e.port, e.rack.clone()))
                .collect();
            let rack = Some(StrBytes::from_static_str("rack-b"));
            assert_eq!(
                endpoints,
                vec![(2, "host2".into(), 9092, rack)],
                "v{version}"
            );
        }
        // Before v10 the tagged fields do not exist: not sent (the handler sets none there).
        let got = round_trip(body, 9);
        assert_eq!(
            got.responses[0].partition_responses[0]
                .current_leader
                .leader_id
                .0,
            -1
        );
        assert!(got.node_endpoints.is_empty());
    }
}
