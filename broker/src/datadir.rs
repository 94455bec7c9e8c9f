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
