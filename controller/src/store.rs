//! The single-node controller: the metadata state machine made durable with std::fs.
//!
//! Directory layout under `<data_dir>/__cluster_metadata/`:
//! - `log`: frames of one [`codec::LogEntry`] or of one command's [`codec::LogBatch`] (see
//!   [`crate::codec`]), each fsynced before it is applied;
//! - `snapshot-<version, 20 digits>.snap`: the image at `version`, written atomically
//!   (tmp file, fsync, rename, fsync dir). After a snapshot the log is emptied.
//!
//! Recovery loads the newest valid snapshot, replays the log records that follow it and
//! truncates a torn tail. A gap between snapshot and log is refused rather than skipped.
//!
//! A single node is a cluster of one: it registers itself as a broker
//! ([`Controller::open_single_node`]), and every command is resolved by
//! [`MetadataImage::propose_records`], as on the quorum, so its topics have partition
//! registrations like a cluster's. Data dirs from before registrations get theirs when they
//! are opened (one replica on this node, on the shard the old hash gave).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cluster::Placement;
use crate::codec::{self, SnapshotPayload};
use crate::error::ApplyError;
use crate::image::{
    ApplyOutcome, MetadataCommand, MetadataImage, MetadataRecord, PartitionsAssigned, TopicId,
};
use crate::partition::PartitionRegistration;

/// Name of the metadata directory inside the data dir.
pub const METADATA_DIR_NAME: &str = "__cluster_metadata";
const LOG_FILE_NAME: &str = "log";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
/// Records between automatic snapshots, by default.
pub const SNAPSHOT_INTERVAL_RECORDS_DEFAULT: u64 = 1024;

/// Tunables of [`Controller`].
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Take a snapshot (and empty the log) after this many records; at least 1.
    pub snapshot_interval_records: u64,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            snapshot_interval_records: SNAPSHOT_INTERVAL_RECORDS_DEFAULT,
        }
    }
}

/// This node as the broker of a single-node cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalBroker {
    pub host: String,
    pub port: u16,
    pub shards: u32,
    pub rack: Option<String>,
}

/// The shard a partition had on a single node before registrations (a hash of the topic id
/// and the index): where the migration puts it, so nothing moves.
pub fn legacy_shard(topic_id: &TopicId, partition: i32, shards: u32) -> u32 {
    assert!(shards > 0);
    let seed = u64::from_le_bytes(topic_id[..8].try_into().expect("16-byte topic id"));
    (seed.wrapping_add(partition as u64) % u64::from(shards)) as u32
}

/// Owns the metadata log and the current image.
#[derive(Debug)]
pub struct Controller {
    dir: PathBuf,
    log: File,
    /// Bytes of valid frames in the log; the next frame is written here.
    log_bytes: u64,
    image: Arc<MetadataImage>,
    records_since_snapshot: u64,
    options: ControllerOptions,
    /// Set when a write failed in a way that leaves the log's state unknown (fsync error):
    /// every later command is refused until the process reopens the controller.
    poisoned: Option<String>,
}

/// A new random cluster id in Kafka's form: a UUID v4 as 22 chars of unpadded base64url.
pub fn new_cluster_id() -> String {
    base64url(uuid::Uuid::new_v4().as_bytes())
}

pub(crate) fn random_topic_id() -> TopicId {
    *uuid::Uuid::new_v4().as_bytes()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn snapshot_name(version: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{version:020}{SNAPSHOT_SUFFIX}")
}

fn parse_snapshot_name(name: &str) -> Option<u64> {
    name.strip_prefix(SNAPSHOT_PREFIX)?
        .strip_suffix(SNAPSHOT_SUFFIX)?
        .parse()
        .ok()
}

fn sync_dir(dir: &Path) -> Result<(), ApplyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ApplyError::storage(format!("fsync directory {}", dir.display()), e))
}

/// Snapshot versions present in `dir`, newest first.
fn list_snapshots(dir: &Path) -> Result<Vec<u64>, ApplyError> {
    let read = |e| ApplyError::storage(format!("list {}", dir.display()), e);
    let mut versions = Vec::new();
    for entry in fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        if let Some(v) = entry.file_name().to_str().and_then(parse_snapshot_name) {
            versions.push(v);
        }
    }
    versions.sort_unstable_by(|a, b| b.cmp(a));
    Ok(versions)
}

/// The image of the newest valid snapshot, or the empty image when there is none; and
/// whether unusable snapshots were skipped.
fn load_newest_snapshot(dir: &Path, node_id: i32) -> Result<(MetadataImage, bool), ApplyError> {
    let mut skipped = false;
    for version in list_snapshots(dir)? {
        let path = dir.join(snapshot_name(version));
        let bytes = fs::read(&path)
            .map_err(|e| ApplyError::storage(format!("read {}", path.display()), e))?;
        let loaded = codec::decode_snapshot(&bytes).and_then(|p| {
            if p.version != version {
                return Err(format!("holds version {}", p.version));
            }
            MetadataImage::from_snapshot(node_id, p).map_err(|e| e.to_string())
        });
        match loaded {
            Ok(image) => return Ok((image, skipped)),
            Err(reason) => {
                skipped = true;
                tracing::warn!(path = %path.display(), %reason, "skipping unusable metadata snapshot")
            }
        }
    }
    Ok((MetadataImage::empty(node_id), skipped))
}

/// Replays the log onto `image`; returns the image, the valid byte length and the number of
/// records applied.
fn replay_log(
    bytes: &[u8],
    mut image: MetadataImage,
) -> Result<(MetadataImage, u64, u64), ApplyError> {
    let mut pos = 0usize;
    let mut applied = 0u64;
    while pos < bytes.len() {
        let Some((entries, frame_bytes)) = codec::decode_frame(&bytes[pos..]) else {
            break;
        };
        // A snapshot is only taken between commands: a frame is covered whole or not at all.
        let first = entries[0].offset;
        if first > image.version {
            if first != image.version + 1 {
                return Err(ApplyError::corrupt(format!(
                    "metadata log jumps from version {} to offset {first}: records are missing",
                    image.version
                )));
            }
            let records: Vec<MetadataRecord> = entries.into_iter().map(|e| e.record).collect();
            image = image.apply_batch(&records)?.0;
            applied += records.len() as u64;
        }
        pos += frame_bytes;
    }
    Ok((image, pos as u64, applied))
}

impl Controller {
    /// Opens (or creates) the metadata under `data_dir` with default options.
    pub fn open(data_dir: &Path, node_id: i32) -> Result<Controller, ApplyError> {
        Self::open_with_options(data_dir, node_id, ControllerOptions::default())
    }

    /// Opens (or creates) the metadata of a single node under `data_dir` and makes the node
    /// a cluster of one: registers it as a broker (again when its listener, shards or rack
    /// changed) and registers
    /// the partitions of topics written before registrations existed.
    pub fn open_single_node(
        data_dir: &Path,
        node_id: i32,
        broker: LocalBroker,
        options: ControllerOptions,
    ) -> Result<Controller, ApplyError> {
        let mut controller = Self::open_with_options(data_dir, node_id, options)?;
        if let Some(other) = controller.image.brokers.keys().find(|b| **b != node_id) {
            // Its partitions' replicas are on that node: this one would serve none of them.
            return Err(ApplyError::InvalidRequest(format!(
                "the metadata in {} belongs to node {other}, not {node_id} (was node.id \
                 changed?)",
                controller.dir.display()
            )));
        }
        let known = controller.image.brokers.get(&node_id).is_some_and(|b| {
            !b.fenced
                && (&b.host, b.port, b.shards, &b.rack)
                    == (&broker.host, broker.port, broker.shards, &broker.rack)
        });
        if !known {
            controller.apply(MetadataCommand::RegisterBroker {
                node_id,
                host: broker.host,
                port: broker.port,
                shards: broker.shards,
                rack: broker.rack,
                endpoints: Vec::new(),
            })?;
        }
        controller.register_unregistered_partitions()?;
        debug_assert!(controller.image.unregistered_partitions().is_empty());
        Ok(controller)
    }

    /// Gives every partition without a registration (old single-node data) one replica on
    /// this node, on the shard the old hash chose. One batch per topic.
    fn register_unregistered_partitions(&mut self) -> Result<(), ApplyError> {
        let node_id = self.image.node_id;
        let shards = self
            .image
            .brokers
            .get(&node_id)
            .map(|b| b.shards)
            .ok_or_else(|| ApplyError::InvalidRequest("this node is not registered".into()))?;
        for (id, first, end) in self.image.unregistered_partitions() {
            let partitions = (first..end)
                .map(|p| {
                    PartitionRegistration::single(Placement {
                        broker: node_id,
                        shard: legacy_shard(&id, p, shards),
                    })
                })
                .collect();
            let record = MetadataRecord::PartitionsAssigned(Box::new(PartitionsAssigned {
                id,
                first,
                partitions,
            }));
            self.append_batch(vec![record])?;
            tracing::info!(
                topic = %self.image.topic_by_id(&id).map_or("?", |t| t.name.as_str()),
                partitions = end - first,
                "registered the partitions of a topic written before registrations"
            );
        }
        Ok(())
    }

    /// Opens (or creates) the metadata under `data_dir`: loads the newest valid snapshot,
    /// replays the log after it and truncates a torn tail. A new directory gets a new random
    /// cluster id, persisted as the first record.
    pub fn open_with_options(
        data_dir: &Path,
        node_id: i32,
        options: ControllerOptions,
    ) -> Result<Controller, ApplyError> {
        assert!(options.snapshot_interval_records >= 1);
        let dir = data_dir.join(METADATA_DIR_NAME);
        fs::create_dir_all(&dir)
            .map_err(|e| ApplyError::storage(format!("create {}", dir.display()), e))?;
        let (image, skipped_snapshots) = load_newest_snapshot(&dir, node_id)?;
        let log_path = dir.join(LOG_FILE_NAME);
        let log_err =
            |what: &str, e| ApplyError::storage(format!("{what} {}", log_path.display()), e);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| log_err("open", e))?;
        let bytes = fs::read(&log_path).map_err(|e| log_err("read", e))?;
        let (image, log_bytes, replayed) = replay_log(&bytes, image)?;
        if log_bytes < bytes.len() as u64 {
            tracing::warn!(
                path = %log_path.display(),
                valid_bytes = log_bytes,
                torn_bytes = bytes.len() as u64 - log_bytes,
                "truncating torn tail of the metadata log"
            );
            log.set_len(log_bytes).map_err(|e| log_err("truncate", e))?;
            log.sync_all().map_err(|e| log_err("fsync", e))?;
        }
        if skipped_snapshots && image.cluster_id.is_empty() {
            // Never start a new cluster over metadata that exists but cannot be read.
            return Err(ApplyError::corrupt(format!(
                "{}: no usable snapshot and the log does not start at offset 1",
                dir.display()
            )));
        }
        sync_dir(&dir)?;
        let mut controller = Controller {
            dir,
            log,
            log_bytes,
            image: Arc::new(image),
            records_since_snapshot: replayed,
            options,
            poisoned: None,
        };
        if controller.image.cluster_id.is_empty() {
            let cluster_id = new_cluster_id();
            tracing::info!(%cluster_id, "initialising new cluster metadata");
            controller.append_batch(vec![MetadataRecord::ClusterInit { cluster_id }])?;
        }
        tracing::info!(
            cluster_id = %controller.image.cluster_id,
            version = controller.image.version,
            topics = controller.image.topics.len(),
            "metadata loaded"
        );
        Ok(controller)
    }

    /// The current metadata image; a new `Arc` after every change.
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image)
    }

    /// Validates `cmd`, persists its records (one frame, fsync) and applies them; returns
    /// the outcome of the first record (the topic of a CreateTopic). Nothing is applied
    /// when validation or the write fails.
    pub fn apply(&mut self, cmd: MetadataCommand) -> Result<ApplyOutcome, ApplyError> {
        self.check_poisoned()?;
        let records = self.image.propose_records(cmd, random_topic_id)?;
        let outcomes = self.append_batch(records)?;
        Ok(outcomes
            .into_iter()
            .next()
            .expect("every command resolves to at least one record"))
    }

    /// Persists and applies already validated records as one atomic frame
    /// ([`codec::encode_records`]); takes a snapshot every
    /// `snapshot_interval_records`.
    fn append_batch(
        &mut self,
        records: Vec<MetadataRecord>,
    ) -> Result<Vec<ApplyOutcome>, ApplyError> {
        self.check_poisoned()?;
        assert!(!records.is_empty(), "an empty metadata batch");
        let first_offset = self.image.version + 1;
        // Apply first (on a copy) so records that do not fit are never written.
        let (next, outcomes) = self.image.apply_batch(&records)?;
        let count = records.len() as u64;
        let frame = codec::encode_records(first_offset, records);
        self.write_frame(&frame)?;
        self.image = Arc::new(next);
        self.records_since_snapshot += count;
        if self.records_since_snapshot >= self.options.snapshot_interval_records {
            // The record is durable; a failed snapshot only means a longer log to replay.
            if let Err(e) = self.snapshot() {
                tracing::warn!(error = %e, "automatic metadata snapshot failed");
            }
        }
        Ok(outcomes)
    }

    fn write_frame(&mut self, frame: &[u8]) -> Result<(), ApplyError> {
        let path = self.dir.join(LOG_FILE_NAME);
        let result = self
            .log
            .write_all_at(frame, self.log_bytes)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = result {
            // The frame may or may not reach the disk; cut it off and refuse further writes,
            // since after a failed fsync the page cache can no longer be trusted.
            let _ = self.log.set_len(self.log_bytes);
            self.poisoned = Some(format!("write to {} failed: {e}", path.display()));
            return Err(ApplyError::storage(
                format!("append to {}", path.display()),
                e,
            ));
        }
        self.log_bytes += frame.len() as u64;
        Ok(())
    }

    fn check_poisoned(&self) -> Result<(), ApplyError> {
        match &self.poisoned {
            Some(reason) => Err(ApplyError::storage(
                "metadata log is offline after an earlier failure",
                std::io::Error::other(reason.clone()),
            )),
            None => Ok(()),
        }
    }

    /// Writes a snapshot of the current image, then empties the log and removes older
    /// snapshots.
    pub fn snapshot(&mut self) -> Result<(), ApplyError> {
        self.check_poisoned()?;
        let version = self.image.version;
        let bytes = codec::encode_snapshot(&SnapshotPayload::of(&self.image));
        let path = self.dir.join(snapshot_name(version));
        let tmp = self.dir.join(format!("{}.tmp", snapshot_name(version)));
        let io =
            |what: &str, p: &Path, e| ApplyError::storage(format!("{what} {}", p.display()), e);
        let file = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        file.write_all_at(&bytes, 0)
            .map_err(|e| io("write", &tmp, e))?;
        file.sync_all().map_err(|e| io("fsync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io("rename", &tmp, e))?;
        sync_dir(&self.dir)?;
        // The snapshot covers every record in the log; crash before this point replays them
        // and skips those at or below the snapshot version.
        let log_path = self.dir.join(LOG_FILE_NAME);
        let truncated = self.log.set_len(0).and_then(|()| self.log.sync_all());
        if let Err(e) = truncated {
            self.poisoned = Some(format!("truncating {} failed: {e}", log_path.display()));
            return Err(io("truncate", &log_path, e));
        }
        self.log_bytes = 0;
        self.records_since_snapshot = 0;
        for old in list_snapshots(&self.dir)?
            .into_iter()
            .filter(|v| *v < version)
        {
            let old_path = self.dir.join(snapshot_name(old));
            if let Err(e) = fs::remove_file(&old_path) {
                tracing::warn!(path = %old_path.display(), error = %e, "cannot remove old snapshot");
            }
        }
        tracing::info!(version, bytes = bytes.len(), "metadata snapshot written");
        Ok(())
    }

    /// The metadata directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::LogEntry;
    use crate::image::TopicMeta;
    use std::collections::BTreeMap;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).expect("tempdir")
    }

    fn create(name: &str, partitions: i32) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            default_replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        }
    }

    fn options(snapshot_interval_records: u64) -> ControllerOptions {
        ControllerOptions {
            snapshot_interval_records,
        }
    }

    fn local(shards: u32) -> LocalBroker {
        LocalBroker {
            host: "127.0.0.1".into(),
            port: 9092,
            shards,
            rack: None,
        }
    }

    /// Opens `dir` as single node 1 with `shards` shards.
    fn node(dir: &Path, interval: u64) -> Result<Controller, ApplyError> {
        Controller::open_single_node(dir, 1, local(4), options(interval))
    }

    /// Comparable content of an image (node id and private index aside).
    fn content(c: &Controller) -> (String, u64, Vec<TopicMeta>, i64) {
        let image = c.image();
        let topics = image.topics.values().cloned().collect();
        (
            image.cluster_id.clone(),
            image.version,
            topics,
            image.next_producer_id,
        )
    }

    /// Creates 30 topics, deletes every third, allocates producer ids.
    fn workload(c: &mut Controller) {
        for i in 0..30 {
            c.apply(create(&format!("topic-{i}"), i + 1))
                .expect("create");
            if i % 3 == 0 {
                let name = format!("topic-{i}");
                c.apply(MetadataCommand::DeleteTopic { name })
                    .expect("delete");
            }
        }
        c.apply(MetadataCommand::AllocateProducerIds { count: 1000 })
            .expect("alloc");
        c.apply(MetadataCommand::AlterTopicConfigs {
            name: "topic-1".into(),
            ops: vec![crate::ConfigOp::Set {
                name: "retention.bytes".into(),
                value: "4096".into(),
            }],
        })
        .expect("alter configs");
        assert_eq!(c.image().topics["topic-1"].configs.len(), 2);
    }

    #[test]
    fn cluster_id_format() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // RFC 4648 test vectors, unpadded.
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(b"fooba"), "Zm9vYmE");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn fresh_dir_gets_a_persistent_cluster_id() {
        let dir = tempdir();
        let c = Controller::open(dir.path(), 1).expect("open");
        let id = c.image().cluster_id.clone();
        assert_eq!((id.len(), c.image().version, c.image().node_id), (22, 1, 1));
        drop(c);
        let c = Controller::open(dir.path(), 1).expect("reopen");
        assert_eq!(c.image().cluster_id, id);
        assert_eq!(c.image().version, 1);
    }

    #[test]
    fn reopen_after_many_commands_keeps_ids() {
        for interval in [1_000_000, 7, 1] {
            let dir = tempdir();
            let mut c = node(dir.path(), interval).expect("open");
            workload(&mut c);
            let before = content(&c);
            assert_eq!(before.2.len(), 20);
            drop(c);
            let c = node(dir.path(), interval).expect("reopen");
            assert_eq!(content(&c), before, "interval {interval}");
            let t = c.image().topic("topic-1").cloned().expect("topic-1");
            assert_eq!(c.image().topic_by_id(&t.id), Some(&t));
        }
    }

    #[test]
    fn snapshot_then_more_commands() {
        let dir = tempdir();
        let mut c = node(dir.path(), 1024).expect("open");
        workload(&mut c);
        c.snapshot().expect("snapshot");
        assert_eq!(
            fs::metadata(dir.path().join(METADATA_DIR_NAME).join("log"))
                .expect("log")
                .len(),
            0
        );
        c.apply(create("after", 2)).expect("create");
        c.snapshot().expect("second snapshot");
        c.apply(MetadataCommand::AllocateProducerIds { count: 5 })
            .expect("alloc");
        let before = content(&c);
        drop(c);
        let snaps = list_snapshots(&dir.path().join(METADATA_DIR_NAME)).expect("list");
        assert_eq!(snaps.len(), 1, "old snapshots removed");
        let mut c = node(dir.path(), 1024).expect("reopen");
        assert_eq!(content(&c), before);
        let out = c
            .apply(MetadataCommand::AllocateProducerIds { count: 1 })
            .expect("alloc");
        assert_eq!(
            out,
            ApplyOutcome::ProducerIds {
                first: 1005,
                count: 1
            }
        );
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempdir();
        let mut c = node(dir.path(), 1024).expect("open");
        workload(&mut c);
        let before = content(&c);
        drop(c);
        let log = dir.path().join(METADATA_DIR_NAME).join("log");
        let len = fs::metadata(&log).expect("log").len();
        // Half a frame of a record that never completed.
        let torn = codec::encode_entry(&LogEntry {
            offset: before.1 + 1,
            record: MetadataRecord::ProducerIdsAllocated {
                first: 1000,
                count: 1,
            },
        });
        let mut bytes = fs::read(&log).expect("read");
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(&log, &bytes).expect("write");
        let mut c = node(dir.path(), 1024).expect("reopen torn");
        assert_eq!(content(&c), before);
        assert_eq!(fs::metadata(&log).expect("log").len(), len);
        c.apply(create("next", 1)).expect("append after truncation");
        let after = content(&c);
        drop(c);
        assert_eq!(content(&node(dir.path(), 1024).expect("reopen")), after);
    }

    #[test]
    fn corrupt_last_record_is_dropped() {
        let dir = tempdir();
        let mut c = node(dir.path(), 1024).expect("open");
        c.apply(create("keep", 1)).expect("create");
        let kept = content(&c);
        c.apply(create("lost", 1)).expect("create");
        drop(c);
        let log = dir.path().join(METADATA_DIR_NAME).join("log");
        let mut bytes = fs::read(&log).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&log, &bytes).expect("write");
        let c = node(dir.path(), 1024).expect("reopen");
        assert_eq!(content(&c), kept);
    }

    #[test]
    fn corrupt_newest_snapshot_with_empty_log_is_an_error() {
        let dir = tempdir();
        let mut c = node(dir.path(), 1024).expect("open");
        workload(&mut c);
        c.snapshot().expect("snapshot");
        let version = c.image().version;
        drop(c);
        let meta = dir.path().join(METADATA_DIR_NAME);
        // The only snapshot is damaged and the log was emptied by it: refuse to start a
        // new cluster over it.
        let snap = meta.join(snapshot_name(version));
        let bytes = fs::read(&snap).expect("read");
        fs::write(&snap, &bytes[..bytes.len() / 2]).expect("write");
        let err = node(dir.path(), 1024).expect_err("unreadable metadata");
        assert_eq!(err.kafka_error_code(), 56);
        // With a log holding later records, the gap is detected too.
        let entry = LogEntry {
            offset: version + 1,
            record: MetadataRecord::ProducerIdsAllocated {
                first: 1000,
                count: 1,
            },
        };
        fs::write(meta.join("log"), codec::encode_entry(&entry)).expect("write log");
        let err = node(dir.path(), 1024).expect_err("gap must be refused");
        assert_eq!(err.kafka_error_code(), 56);
    }

    #[test]
    fn failed_validation_changes_nothing() {
        let dir = tempdir();
        let mut c = node(dir.path(), 1024).expect("open");
        c.apply(create("t", 1)).expect("create");
        let before = c.image();
        let log_len = fs::metadata(dir.path().join(METADATA_DIR_NAME).join("log"))
            .expect("log")
            .len();
        for cmd in [create("t", 1), create("u", 0), create("bad/name", 1)] {
            assert!(c.apply(cmd).is_err());
        }
        assert!(Arc::ptr_eq(&before, &c.image()));
        let len = fs::metadata(dir.path().join(METADATA_DIR_NAME).join("log"))
            .expect("log")
            .len();
        assert_eq!(len, log_len);
    }

    #[test]
    fn a_single_node_registers_itself_and_leads_its_partitions() {
        let dir = tempdir();
        let mut c = node(dir.path(), 1024).expect("open");
        let image = c.image();
        let me = image.brokers.get(&1).expect("registered");
        assert_eq!((me.shards, me.port, me.fenced), (4, 9092, false));
        // The default replication factor is capped at the one broker.
        let out = c
            .apply(MetadataCommand::CreateTopic {
                name: "t".into(),
                partitions: 8,
                replication_factor: -1,
                default_replication_factor: 3,
                configs: BTreeMap::new(),
            })
            .expect("create");
        let ApplyOutcome::TopicCreated(meta) = out else {
            panic!("{out:?}")
        };
        assert_eq!(meta.replication_factor, 1);
        let image = c.image();
        let shards: Vec<u32> = (0..8)
            .map(|p| {
                assert_eq!(image.partition_leader(&meta.id, p), Some(1));
                image.replica_on(&meta.id, p, 1).expect("here").shard
            })
            .collect();
        assert_eq!(shards, [0, 1, 2, 3, 0, 1, 2, 3]);
        let version = image.version;
        drop(c);
        // Reopened with the same listener: nothing written.
        let c = node(dir.path(), 1024).expect("reopen");
        assert_eq!(c.image().version, version);
        drop(c);
        // A new port or shard count registers again.
        let moved = LocalBroker {
            port: 9093,
            ..local(2)
        };
        let c = Controller::open_single_node(dir.path(), 1, moved, options(1024)).expect("moved");
        assert!(c.image().version > version);
        assert_eq!(c.image().brokers[&1].shards, 2);
        // A new incarnation of a live broker: its partitions lead on in a new epoch.
        for p in 0..8 {
            let now = c
                .image()
                .partition(&meta.id, p)
                .expect("registered")
                .clone();
            assert_eq!((now.leader, now.isr.clone()), (1, vec![1]));
            assert!(now.leader_epoch > image.partition(&meta.id, p).expect("was").leader_epoch);
        }
        drop(c);
        // Another node id would own none of the partitions: refused.
        let err = Controller::open_single_node(dir.path(), 2, local(2), options(1024))
            .expect_err("another node id");
        assert!(err.to_string().contains("belongs to node 1"), "{err}");
    }

    #[test]
    fn topics_of_an_old_single_node_log_are_registered_on_open() {
        let dir = tempdir();
        let meta_dir = dir.path().join(METADATA_DIR_NAME);
        fs::create_dir_all(&meta_dir).expect("mkdir");
        let topic = TopicMeta {
            id: [9; 16],
            name: "old".into(),
            partitions: 3,
            replication_factor: 1,
            configs: BTreeMap::new(),
        };
        // What a single node wrote before registrations: no brokers, no placements.
        let records = [
            MetadataRecord::ClusterInit {
                cluster_id: "old-cluster".into(),
            },
            MetadataRecord::TopicCreated(topic.clone()),
            MetadataRecord::PartitionsAdded {
                id: [9; 16],
                partitions: 5,
            },
        ];
        let mut log = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            log.extend(codec::encode_entry(&LogEntry {
                offset: i as u64 + 1,
                record,
            }));
        }
        fs::write(meta_dir.join(LOG_FILE_NAME), &log).expect("write old log");
        let c = node(dir.path(), 1024).expect("open old data");
        let image = c.image();
        assert_eq!(image.cluster_id, "old-cluster");
        assert!(image.unregistered_partitions().is_empty());
        for p in 0..5 {
            let r = image.partition(&topic.id, p).expect("registered");
            assert_eq!((r.leader, r.isr.clone(), r.leader_epoch), (1, vec![1], 0));
            assert_eq!(r.replicas[0].shard, legacy_shard(&topic.id, p, 4));
        }
        let before = (*image).clone();
        drop(c);
        let c = node(dir.path(), 1024).expect("reopen");
        assert_eq!(*c.image(), before);
    }

    #[test]
    fn a_torn_batch_is_dropped_whole() {
        let dir = tempdir();
        let mut c = node(dir.path(), 1024).expect("open");
        c.apply(create("keep", 2)).expect("create");
        let kept = c.image();
        let log = dir.path().join(METADATA_DIR_NAME).join(LOG_FILE_NAME);
        let len_before = fs::metadata(&log).expect("log").len();
        c.apply(create("torn", 3)).expect("create");
        drop(c);
        let bytes = fs::read(&log).expect("read");
        let frame = &bytes[len_before as usize..];
        let (entries, frame_len) = codec::decode_frame(frame).expect("one frame");
        // TopicCreated and PartitionsAssigned, in one frame.
        assert_eq!((entries.len(), frame_len), (2, frame.len()));
        for cut in [frame.len() - 1, frame.len() / 2, 9] {
            fs::write(&log, &bytes[..len_before as usize + cut]).expect("tear");
            let c = node(dir.path(), 1024).expect("reopen torn");
            assert_eq!(*c.image(), *kept, "cut at {cut}");
            assert!(c.image().topic("torn").is_none());
            assert_eq!(fs::metadata(&log).expect("log").len(), len_before);
        }
    }
}
