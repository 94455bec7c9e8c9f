//! The data directory: exclusive ownership by one process, and the checks that keep direct IO
//! working; plus the choice of cores.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Holds the data dir's lock for as long as it lives.
pub struct DataDirLock {
    _file: File,
}

/// Takes the data dir's lock, or explains who holds it.
pub fn lock(data_dir: &Path) -> Result<DataDirLock, String> {
    let path = data_dir.join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(format!(
            "data dir {} is in use by another spate process (pid {}); stop it or pass another --data-dir",
            data_dir.display(),
            holder.trim()
        ));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(DataDirLock { _file: file })
}

/// A single node's metadata log (its own controller's).
const SINGLE_NODE_METADATA: &str = "__cluster_metadata/log";
/// A controller voter's Raft log and snapshot (multi-node).
const VOTER_METADATA: &str = "__cluster_metadata/raft";
/// The cluster id a broker of a multi-node cluster was first started in (as Kafka's
/// meta.properties keeps it).
const CLUSTER_ID_FILE: &str = "cluster-id";

/// Refuses a data dir written by the other kind of node: a single node's topics must not be
/// mistaken for a cluster's (partition directories are named by topic), nor a cluster node's
/// files for a single node's.
pub fn check_kind(data_dir: &Path, multi_node: bool) -> Result<(), String> {
    let has = |name: &str| data_dir.join(name).exists();
    if multi_node && has(SINGLE_NODE_METADATA) {
        return Err(format!(
            "data dir {} holds a single-node broker's metadata ({SINGLE_NODE_METADATA}); a node \
             of a multi-node cluster needs a data dir of its own",
            data_dir.display()
        ));
    }
    if !multi_node && (has(VOTER_METADATA) || has(CLUSTER_ID_FILE)) {
        return Err(format!(
            "data dir {} belongs to a node of a multi-node cluster; start it with its cluster \
             flags (--node-id, --controller-quorum), or pass another --data-dir",
            data_dir.display()
        ));
    }
    Ok(())
}

/// Binds a cluster broker's data dir to `cluster_id` on its first start; refuses to serve
/// another cluster's metadata over the partitions of this one later.
pub fn bind_cluster_id(data_dir: &Path, cluster_id: &str) -> Result<(), String> {
    let path = data_dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(known) if known.trim() == cluster_id => return Ok(()),
        Ok(known) => {
            return Err(format!(
                "data dir {} belongs to cluster {}, but the controller quorum is cluster \
                 {cluster_id}; pass the quorum of its own cluster, or another --data-dir",
                data_dir.display(),
                known.trim()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let write = || -> std::io::Result<()> {
        let tmp = data_dir.join(format!("{CLUSTER_ID_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        writeln!(file, "{cluster_id}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Direct IO (O_DIRECT) does not work on tmpfs: refuse it with a clear reason.
pub fn refuse_tmpfs(data_dir: &Path) -> Result<(), String> {
    let c_path = std::ffi::CString::new(data_dir.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("invalid data dir path {}", data_dir.display()))?;
    // SAFETY: statfs fills the zeroed struct we pass, from a NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Ok(());
    }
    if stat.f_type as i64 == TMPFS_MAGIC {
        return Err(format!(
            "data dir {} is on tmpfs, which does not support direct IO; use a directory on a real filesystem",
            data_dir.display()
        ));
    }
    Ok(())
}

/// The CPUs the shards are pinned to: the first `wanted` of those this process may run on.
pub fn pick_cores(wanted: Option<usize>) -> Result<Vec<usize>, String> {
    let mut available: Vec<usize> = core_affinity::get_core_ids()
        .ok_or("cannot list the CPUs this process may run on")?
        .into_iter()
        .map(|c| c.id)
        .collect();
    available.sort_unstable();
    match wanted {
        None => Ok(available),
        Some(0) => Err("--cores must be at least 1".into()),
        Some(n) if n > available.len() => Err(format!(
            "--cores {n} asks for more cores than the {} this process may run on",
            available.len()
        )),
        Some(n) => Ok(available[..n].to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_serves_one_kind_of_node_and_one_cluster() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        check_kind(path, true).expect("an empty dir suits a cluster node");
        check_kind(path, false).expect("and a single node");
        bind_cluster_id(path, "abc").expect("first start binds");
        bind_cluster_id(path, "abc").expect("same cluster again");
        let other = bind_cluster_id(path, "xyz").expect_err("another cluster");
        assert!(other.contains("belongs to cluster abc"), "{other}");
        let single = check_kind(path, false).expect_err("a cluster node's dir");
        assert!(single.contains("multi-node cluster"), "{single}");
        let single_dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(single_dir.path().join("__cluster_metadata")).expect("mkdir");
        std::fs::write(single_dir.path().join(SINGLE_NODE_METADATA), b"").expect("write");
        let cluster = check_kind(single_dir.path(), true).expect_err("a single node's dir");
        assert!(cluster.contains("single-node"), "{cluster}");
    }
}
