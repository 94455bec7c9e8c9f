//! Spate controller: topic and partition metadata as a replicated-ready state machine.
//!
//! Commands are validated against an immutable [`MetadataImage`] and resolved into
//! [`MetadataRecord`]s ([`image`], pure); records are framed with crc32c and rkyv
//! ([`codec`], pure); [`Controller`] ([`store`]) makes them durable with std::fs as a log
//! plus snapshots. A later Raft layer feeds the same records into [`MetadataImage::apply`].
//!
//! Architecture invariant: no glommio, no async, no network here.

pub mod acl;
pub mod balance;
pub mod cluster;
pub mod codec;
pub mod error;
pub mod image;
pub mod partition;
pub mod quorum;
pub mod scram;
pub mod store;
pub mod topic_config;

pub use cluster::{BrokerEndpoint, BrokerRegistration, Liveness, Placement};
pub use error::ApplyError;
pub use image::{
    is_valid_topic_id, validate_topic_name, ApplyOutcome, ElectionResult, MetadataCommand,
    MetadataImage, MetadataRecord, PartitionChange, PartitionsAssigned, TopicId, TopicMeta,
};
pub use partition::{ElectionType, PartitionRegistration, NO_LEADER};
pub use store::{new_cluster_id, Controller, ControllerOptions, LocalBroker};
pub use topic_config::ConfigOp;
