//! Helpers shared by Spate's fuzz targets: checksum fix-ups (so the fuzzer gets past CRCs to
//! the parsers behind them) and the seed corpora, written from real encoders.
//!
//! Seeds: every target checks `SPATE_FUZZ_SEEDS=<dir>` at start-up, writes its seed inputs
//! there and exits (`fuzz/run.sh --seeds` does this for all targets).

pub mod seeds;

use std::path::PathBuf;

/// Writes `target`'s seeds and exits the process when `SPATE_FUZZ_SEEDS` names a directory.
pub fn write_seeds_if_asked(target: &str) {
    let Some(dir) = std::env::var_os("SPATE_FUZZ_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("creating the seed directory");
    let inputs = seeds::for_target(target);
    for (name, bytes) in &inputs {
        std::fs::write(dir.join(name), bytes).expect("writing a seed");
    }
    eprintln!(
        "{target}: wrote {} seeds to {}",
        inputs.len(),
        dir.display()
    );
    std::process::exit(0);
}

/// Sets the Kafka v2 batch CRC (big-endian at 17..21, over 21..) of `batch` if long enough.
pub fn fix_batch_crc(batch: &mut [u8]) {
    if batch.len() >= storage::batch::BATCH_HEADER_BYTES {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Sets the length field of a Kafka v2 batch (big-endian i32 at 8..12) to what follows it.
pub fn fix_batch_length(batch: &mut [u8]) {
    if batch.len() >= 12 {
        let len = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&len.to_be_bytes());
    }
}

/// Sets the lastOffsetDelta of a Kafka v2 batch (at 23..27) to its record count (at 57..61)
/// minus one, as validation wants.
pub fn fix_last_offset_delta(batch: &mut [u8]) {
    if batch.len() >= storage::batch::BATCH_HEADER_BYTES {
        let count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
        batch[23..27].copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
    }
}

/// Sets a `len: u32 LE | crc32c: u32 LE | payload` frame's CRC, keeping the flag bits of
/// `len` above `len_mask`, when the length field fits the buffer.
pub fn fix_le_frame_crc(frame: &mut [u8], len_mask: u32) {
    if frame.len() < 8 {
        return;
    }
    let len = (u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes")) & len_mask) as usize;
    if let Some(payload) = frame.get(8..8 + len) {
        let crc = crc32c::crc32c(payload);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
    }
}

pub mod recovery_input;

/// A per-process scratch directory on a real filesystem (the log uses O_DIRECT, which tmpfs
/// refuses): `$SPATE_FUZZ_SCRATCH`, else `fuzz/target/scratch`.
pub fn scratch_dir(what: &str) -> PathBuf {
    let root = std::env::var_os("SPATE_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/scratch"));
    let dir = root.join(format!("{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the fuzz scratch directory");
    dir
}

thread_local! {
    static EXECUTOR: glommio::LocalExecutor = glommio::LocalExecutorBuilder::default()
        .make()
        .expect("a glommio executor (is RLIMIT_MEMLOCK high enough?)");
}

/// Runs `future` to completion on this thread's glommio executor (made once).
pub fn run_local<T>(future: impl std::future::Future<Output = T>) -> T {
    EXECUTOR.with(|executor| executor.run(future))
}
