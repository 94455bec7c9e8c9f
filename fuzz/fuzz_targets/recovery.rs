//! Storage recovery at startup: `PartitionLog::open` on a partition directory whose files
//! (segments, index checkpoints, producer snapshot, leader-epoch and log-start checkpoints)
//! come from the input, torn or damaged (see `spate_fuzz::recovery_input` for the layout).
//! Runs the real recovery on a glommio executor with O_DIRECT files in a scratch directory.
//!
//! Asserts: no panic; a recovered log has `log_start <= log_end`, closes cleanly, and a
//! second recovery of what the first left finds the same offsets (recovery is idempotent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use storage::{LogConfig, PartitionLog};

thread_local! {
    static DIR: PathBuf = spate_fuzz::scratch_dir("recovery").join("partition");
}

fuzz_target!(
    init: spate_fuzz::write_seeds_if_asked("recovery"),
    |data: &[u8]| {
        DIR.with(|dir| {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).expect("creating the partition dir");
            for (name, bytes) in spate_fuzz::recovery_input::files(data) {
                std::fs::write(dir.join(name), bytes).expect("writing a partition file");
            }
            spate_fuzz::run_local(check_recovery(dir));
        });
    }
);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 256,
        ..Default::default()
    }
}

async fn check_recovery(dir: &Path) {
    let Ok(log) = PartitionLog::open(dir, config()).await else {
        return;
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} after log end {end}");
    log.close().await.expect("a recovered log closes");
    drop(log);
    let again = PartitionLog::open(dir, config())
        .await
        .expect("what recovery left recovers again");
    assert_eq!(
        (again.log_start_offset(), again.log_end_offset()),
        (start, end),
        "a second recovery moves the offsets"
    );
    again.close().await.expect("a re-recovered log closes");
}
