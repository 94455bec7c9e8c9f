//! The durable Raft log of a controller voter: raft-rs's [`Storage`] over two files in
//! `<data-dir>/__cluster_metadata/raft/`.
//!
//! - `log`: frames `len: u32 LE | crc32c: u32 LE | rkyv LogRecord`, appended: entries and
//!   hard states. Replay applies them in order (an entry at an index already present cuts
//!   the log there, as Raft's truncation of a conflicting suffix does; the last hard state
//!   wins) and truncates a torn tail. One fdatasync per [`RaftStore::sync`].
//! - `snapshot`: one frame holding an rkyv [`StoredSnapshot`] (index, term, voters and the
//!   metadata image as a snapshot file of [`crate::codec`]), written to a temporary file,
//!   fsynced and renamed. The log is then rewritten without the entries it covers.
//!
//! Everything held in memory mirrors the files; entries at or below the snapshot index are
//! gone from both.

// raft's protobuf types are built field by field, as raft-rs itself does.
#![allow(clippy::field_reassign_with_default)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::error::ApplyError;

const LOG_FILE: &str = "log";
const SNAPSHOT_FILE: &str = "snapshot";
const FRAME_HEADER_BYTES: usize = 8;
/// Largest frame accepted (a snapshot holds the whole image).
const FRAME_BYTES_MAX: usize = 1 << 30;

#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredEntry {
    index: u64,
    term: u64,
    /// 0: normal, 1: conf change, 2: conf change v2.
    kind: u8,
    data: Vec<u8>,
    context: Vec<u8>,
}

#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum LogRecord {
    Entry(StoredEntry),
    HardState { term: u64, vote: u64, commit: u64 },
}

/// A Raft snapshot as stored: its position, the voters and the encoded metadata image.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredSnapshot {
    index: u64,
    term: u64,
    voters: Vec<u64>,
    image: Vec<u8>,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of the complete, valid frame at the start of `bytes` and the frame length.
fn unframe(bytes: &[u8]) -> Option<(AlignedVec<16>, usize)> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > FRAME_BYTES_MAX {
        return None;
    }
    let payload = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let mut aligned = AlignedVec::<16>::with_capacity(len);
    aligned.extend_from_slice(payload);
    Some((aligned, FRAME_HEADER_BYTES + len))
}

fn entry_record(e: &Entry) -> LogRecord {
    let kind = match e.get_entry_type() {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    };
    LogRecord::Entry(StoredEntry {
        index: e.index,
        term: e.term,
        kind,
        data: e.data.to_vec(),
        context: e.context.to_vec(),
    })
}

fn entry_of(s: StoredEntry) -> Entry {
    let mut e = Entry::default();
    e.index = s.index;
    e.term = s.term;
    e.set_entry_type(match s.kind {
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        _ => EntryType::EntryNormal,
    });
    e.data = s.data.into();
    e.context = s.context.into();
    e
}

fn encode_record(record: &LogRecord) -> Vec<u8> {
    let payload = rkyv::to_bytes::<rancor::Error>(record).expect("rkyv serialisation");
    frame(&payload)
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ApplyError {
    let context = format!("{what} {}", path.display());
    move |e| ApplyError::storage(context, e)
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the dir.
/// (The fsyncs are skipped when `fsync` is off, in tests.)
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8], fsync: bool) -> Result<(), ApplyError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    if fsync {
        file.sync_all().map_err(io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename", &tmp))?;
    if fsync {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))?;
    }
    Ok(())
}

/// Raft's durable state: hard state, entries after the snapshot, the snapshot.
pub struct RaftStore {
    dir: PathBuf,
    log: File,
    /// fdatasync in [`RaftStore::sync`]; off only in tests.
    fsync: bool,
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot (index 0: none yet); its data is the encoded metadata image.
    snapshot: Snapshot,
    /// Entries `snapshot.index + 1 ..= last_index`.
    entries: Vec<Entry>,
}

impl RaftStore {
    /// Opens (or creates) the store in `dir`. A new store starts with `voters` as its
    /// configuration; an existing one must have been created with the same voters.
    pub fn open(dir: &Path, voters: &[u64], fsync: bool) -> Result<RaftStore, ApplyError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let snapshot = Self::load_snapshot(dir)?;
        let log_path = dir.join(LOG_FILE);
        let bytes = match fs::read(&log_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("read", &log_path)(e)),
        };
        let mut store = RaftStore {
            dir: dir.to_owned(),
            log: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(io("open", &log_path))?,
            fsync,
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: Snapshot::default(),
            entries: Vec::new(),
        };
        let fresh = snapshot.is_none() && bytes.is_empty();
        if let Some(snapshot) = snapshot {
            store.install_snapshot_state(snapshot);
        }
        let valid = store.replay(&bytes)?;
        if valid < bytes.len() {
            tracing::warn!(path = %log_path.display(), valid, torn = bytes.len() - valid,
                "truncating torn tail of the raft log");
            store
                .log
                .set_len(valid as u64)
                .map_err(io("truncate", &log_path))?;
            store.log.sync_all().map_err(io("fsync", &log_path))?;
        }
        if fresh {
            store.conf_state = ConfState::from((voters.to_vec(), vec![]));
            // The configuration is written as snapshot 0 so a restart knows it.
            store.write_snapshot_file(0, 0, Vec::new())?;
        } else if store.voters() != sorted(voters) {
            return Err(ApplyError::InvalidRequest(format!(
                "--controller-quorum names voters {:?} but {} was created by voters {:?}",
                sorted(voters),
                dir.display(),
                store.voters()
            )));
        }
        Ok(store)
    }

    fn load_snapshot(dir: &Path) -> Result<Option<Snapshot>, ApplyError> {
        let path = dir.join(SNAPSHOT_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let corrupt =
            || ApplyError::corrupt(format!("{}: unreadable raft snapshot", path.display()));
        let (payload, len) = unframe(&bytes).ok_or_else(corrupt)?;
        if len != bytes.len() {
            return Err(corrupt());
        }
        let stored =
            rkyv::from_bytes::<StoredSnapshot, rancor::Error>(&payload).map_err(|_| corrupt())?;
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = stored.index;
        meta.term = stored.term;
        meta.set_conf_state(ConfState::from((stored.voters, vec![])));
        snapshot.data = stored.image.into();
        Ok(Some(snapshot))
    }

    /// Replays log frames; returns the length of the valid prefix.
    fn replay(&mut self, bytes: &[u8]) -> Result<usize, ApplyError> {
        let mut pos = 0;
        while let Some((payload, len)) = unframe(&bytes[pos..]) {
            let Ok(record) = rkyv::from_bytes::<LogRecord, rancor::Error>(&payload) else {
                break;
            };
            match record {
                LogRecord::HardState { term, vote, commit } => {
                    self.hard_state.term = term;
                    self.hard_state.vote = vote;
                    self.hard_state.commit = commit.max(self.snapshot_index());
                }
                LogRecord::Entry(e) => {
                    if e.index > self.last_index_() + 1 {
                        return Err(ApplyError::corrupt(format!(
                            "raft log in {} jumps from index {} to {}",
                            self.dir.display(),
                            self.last_index_(),
                            e.index
                        )));
                    }
                    if e.index > self.snapshot_index() {
                        self.truncate_from(e.index);
                        self.entries.push(entry_of(e));
                    }
                }
            }
            pos += len;
        }
        Ok(pos)
    }

    fn install_snapshot_state(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        let index = meta.index;
        self.entries.retain(|e| e.index > index);
        if self.entries.first().is_some_and(|e| e.index != index + 1) {
            self.entries.clear();
        }
        self.snapshot = snapshot;
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last_index_(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// Drops entries at and after `index`.
    fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.snapshot_index() + 1) as usize;
        self.entries.truncate(keep);
    }

    /// The voters of the stored configuration, sorted.
    pub fn voters(&self) -> Vec<u64> {
        sorted(&self.conf_state.voters)
    }

    /// The latest snapshot (index 0 when none was taken yet).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Appends entries (cutting a conflicting suffix); durable after [`RaftStore::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), ApplyError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.snapshot_index() && first.index <= self.last_index_() + 1,
            "raft appends entries {} at last index {}",
            first.index,
            self.last_index_()
        );
        self.truncate_from(first.index);
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend_from_slice(&encode_record(&entry_record(e)));
        }
        self.write(&bytes)?;
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Records a new hard state; durable after [`RaftStore::sync`].
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), ApplyError> {
        self.hard_state = hs.clone();
        self.write_hard_state()
    }

    /// Records a new commit index; durable after [`RaftStore::sync`].
    pub fn set_commit(&mut self, commit: u64) -> Result<(), ApplyError> {
        self.hard_state.commit = commit;
        self.write_hard_state()
    }

    fn write_hard_state(&mut self) -> Result<(), ApplyError> {
        let hs = &self.hard_state;
        let record = LogRecord::HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        };
        self.write(&encode_record(&record))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ApplyError> {
        let path = self.dir.join(LOG_FILE);
        self.log.write_all(bytes).map_err(io("append to", &path))
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<(), ApplyError> {
        if self.fsync {
            let path = self.dir.join(LOG_FILE);
            self.log.sync_data().map_err(io("fsync", &path))?;
        }
        Ok(())
    }

    /// Installs a snapshot received from the leader (durably, before returning).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), ApplyError> {
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        self.write_snapshot_file(index, term, snapshot.data.to_vec())?;
        self.install_snapshot_state(snapshot);
        self.rewrite_log()
    }

    /// Takes a snapshot at `index` (applied, in the log) holding `image`, then drops the
    /// entries it covers.
    pub fn compact_to(&mut self, index: u64, image: Vec<u8>) -> Result<(), ApplyError> {
        let term = self.term(index).map_err(|e| {
            ApplyError::corrupt(format!("snapshot at index {index} not in the log: {e}"))
        })?;
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot
            .mut_metadata()
            .set_conf_state(self.conf_state.clone());
        snapshot.data = image.clone().into();
        self.write_snapshot_file(index, term, image)?;
        self.install_snapshot_state(snapshot);
        self.rewrite_log()
    }

    fn write_snapshot_file(&self, index: u64, term: u64, image: Vec<u8>) -> Result<(), ApplyError> {
        let stored = StoredSnapshot {
            index,
            term,
            voters: self.voters(),
            image,
        };
        let payload = rkyv::to_bytes::<rancor::Error>(&stored).expect("rkyv serialisation");
        write_atomically(
            &self.dir,
            &self.dir.join(SNAPSHOT_FILE),
            &frame(&payload),
            self.fsync,
        )
    }

    /// Rewrites the log with the entries after the snapshot and the hard state.
    fn rewrite_log(&mut self) -> Result<(), ApplyError> {
        let mut bytes = Vec::new();
        for e in &self.entries {
            bytes.extend_from_slice(&encode_record(&entry_record(e)));
        }
        let hs = &self.hard_state;
        bytes.extend_from_slice(&encode_record(&LogRecord::HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        }));
        let path = self.dir.join(LOG_FILE);
        write_atomically(&self.dir, &path, &bytes, self.fsync)?;
        self.log = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        Ok(())
    }
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

impl Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index_() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.snapshot_index() + 1;
        let mut out = self.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snapshot = self.snapshot.get_metadata();
        if idx == snapshot.index {
            return Ok(snapshot.term);
        }
        if idx < snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((idx - snapshot.index - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() == 0 || self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).expect("tempdir")
    }

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = data.to_vec().into();
        e
    }

    fn contents(s: &RaftStore) -> Vec<(u64, u64, Vec<u8>)> {
        s.entries
            .iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect()
    }

    #[test]
    fn entries_and_hard_state_survive_reopen_with_truncation_and_torn_tail() {
        let dir = tempdir();
        let mut s = RaftStore::open(dir.path(), &[1, 2, 3], true).expect("open");
        s.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
            .expect("append");
        // A new leader overwrites the conflicting suffix from index 2.
        s.append(&[entry(2, 2, b"x")]).expect("append");
        let mut hs = HardState::default();
        (hs.term, hs.vote, hs.commit) = (2, 3, 2);
        s.set_hard_state(&hs).expect("hs");
        s.sync().expect("sync");
        let expect = contents(&s);
        drop(s);
        let log = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&log).expect("read");
        let torn = encode_record(&entry_record(&entry(3, 2, b"torn")));
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        fs::write(&log, &bytes).expect("write");
        let s = RaftStore::open(dir.path(), &[3, 2, 1], true).expect("reopen");
        assert_eq!(contents(&s), expect);
        assert_eq!(expect, vec![(1, 1, b"a".to_vec()), (2, 2, b"x".to_vec())]);
        assert_eq!(
            (s.hard_state.term, s.hard_state.vote, s.hard_state.commit),
            (2, 3, 2)
        );
        assert_eq!(s.voters(), vec![1, 2, 3]);
        drop(s);
        let err = RaftStore::open(dir.path(), &[1, 2, 3, 4, 5], true)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("created by voters [1, 2, 3]"),
            "{err}"
        );
    }

    #[test]
    fn compaction_keeps_later_entries_and_the_snapshot() {
        let dir = tempdir();
        let mut s = RaftStore::open(dir.path(), &[1], true).expect("open");
        let entries: Vec<_> = (1..=10).map(|i| entry(i, 1, &[i as u8])).collect();
        s.append(&entries).expect("append");
        s.set_commit(10).expect("commit");
        s.compact_to(6, b"image@6".to_vec()).expect("compact");
        assert_eq!(s.first_index().expect("first"), 7);
        assert_eq!(s.term(6).expect("term"), 1);
        assert!(s.term(5).is_err());
        assert!(s
            .entries(6, 8, None, GetEntriesContext::empty(false))
            .is_err());
        s.append(&[entry(11, 2, b"k")]).expect("append");
        s.sync().expect("sync");
        let before = contents(&s);
        drop(s);
        let s = RaftStore::open(dir.path(), &[1], true).expect("reopen");
        assert_eq!(contents(&s), before);
        assert_eq!(s.latest_snapshot().get_metadata().index, 6);
        assert_eq!(&s.snapshot(0, 2).expect("snapshot").data[..], b"image@6");
        assert_eq!(s.hard_state.commit, 10);
    }

    #[test]
    fn a_received_snapshot_replaces_the_log() {
        let dir = tempdir();
        let mut s = RaftStore::open(dir.path(), &[1, 2, 3], true).expect("open");
        s.append(&[entry(1, 1, b"a"), entry(2, 1, b"b")])
            .expect("append");
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 40;
        snap.mut_metadata().term = 3;
        snap.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        snap.data = b"image@40".to_vec().into();
        s.apply_snapshot(snap).expect("apply");
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (41, 40)
        );
        drop(s);
        let s = RaftStore::open(dir.path(), &[1, 2, 3], true).expect("reopen");
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (41, 40)
        );
        assert_eq!((s.hard_state.term, s.hard_state.commit), (3, 40));
        assert_eq!(s.term(40).expect("term"), 3);
    }
}
