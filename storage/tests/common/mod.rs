//! What every storage contract test needs: a glommio executor and a temp dir on a real
//! filesystem (O_DIRECT does not work on tmpfs).

use std::future::Future;
use std::sync::Mutex;

use glommio::{LocalExecutorBuilder, Placement};

/// One executor at a time: each locks memory for its io_uring buffers.
static EXECUTORS: Mutex<()> = Mutex::new(());

/// Runs `f` to completion in a fresh glommio executor.
pub fn run<Fut: Future<Output = ()> + 'static>(f: impl FnOnce() -> Fut) {
    let _guard = EXECUTORS.lock().unwrap_or_else(|p| p.into_inner());
    raise_memlock();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(2 << 20)
        .make()
        .expect("executor");
    ex.run(f());
}

/// glommio locks memory; lift the limit where allowed (the test binary may run as root).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        eprintln!("could not raise RLIMIT_MEMLOCK; glommio may fail to start");
    }
}

/// A temp dir under the repository's target dir.
pub fn temp_dir() -> tempfile::TempDir {
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
    std::fs::create_dir_all(base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// A batch of one record whose value is `value_bytes` of `fill`.
#[allow(dead_code)] // not every test binary uses it
pub fn sized_batch(value_bytes: usize, fill: u8) -> (Vec<u8>, storage::batch::BatchHeader) {
    use storage::batch::test_support::{encode_batch, TestRecord, NO_PRODUCER};
    let record = TestRecord {
        timestamp_delta: 0,
        key: None,
        value: Some(vec![fill; value_bytes]),
        headers: vec![],
    };
    let b = encode_batch(0, 1_000, NO_PRODUCER, &[record]);
    let h = storage::batch::validate_produce_records(&b).unwrap();
    (b, h)
}
