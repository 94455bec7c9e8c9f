//! Experiment: one O_DIRECT write of 1 MiB then an fdatasync, 32 times into a fresh file,
//! from a buffer filled long before (as the criterion raw baseline does), filled with
//! ordinary stores just before each write (as the log's copy into a chunk did), or filled
//! with streaming (non-temporal) stores just before each write. Only the write and the
//! fdatasync are timed. Copy to `bench/examples/dma_fresh_buffers.rs`, then
//! `cargo build --release -p spate-bench --example dma_fresh_buffers` and run
//! `target/release/examples/dma_fresh_buffers` (data in target/bench-data).
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::OpenOptions;
use glommio::{LocalExecutorBuilder, Placement};

const MIB: usize = 1 << 20;
const WRITES: usize = 32;

#[derive(Clone, Copy, Debug)]
enum Fill {
    LongBefore,
    Ordinary,
    Streaming,
}

fn fill(buf: *mut u8, value: u8, how: Fill) {
    use std::arch::x86_64::*;
    match how {
        Fill::LongBefore => {}
        // SAFETY: `buf` holds MIB bytes.
        Fill::Ordinary => unsafe { std::ptr::write_bytes(buf, value, MIB) },
        // SAFETY: `buf` holds MIB bytes and is 4096-aligned.
        Fill::Streaming => unsafe {
            let v = _mm_set1_epi8(value as i8);
            for at in (0..MIB).step_by(16) {
                _mm_stream_si128(buf.add(at).cast(), v);
            }
            _mm_sfence();
        },
    }
}

async fn run(dir: &std::path::Path, how: Fill) -> (Duration, Duration) {
    let path = dir.join("fresh-buffers.dat");
    let _ = std::fs::remove_file(&path);
    let file = OpenOptions::new().write(true).create(true).dma_open(&path).await.unwrap();
    let mut buf = file.alloc_dma_buffer(MIB);
    buf.as_bytes_mut().fill(0x5a);
    let buf = Rc::new(buf);
    let (mut write, mut sync) = (Duration::ZERO, Duration::ZERO);
    for i in 0..WRITES {
        fill(buf.as_ptr() as *mut u8, i as u8, how);
        let t = Instant::now();
        file.write_rc_at(buf.clone(), (i * MIB) as u64).await.unwrap();
        let t2 = Instant::now();
        file.fdatasync().await.unwrap();
        write += t2 - t;
        sync += t2.elapsed();
    }
    file.close().await.unwrap();
    let _ = std::fs::remove_file(&path);
    (write / WRITES as u32, sync / WRITES as u32)
}

fn main() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit only reads the struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(8 << 20)
        .preempt_timer(storage::executor_preempt_timer())
        .make()
        .unwrap();
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-data"));
    std::fs::create_dir_all(&dir).unwrap();
    ex.run(async move {
        for round in 0..3 {
            for how in [Fill::LongBefore, Fill::Ordinary, Fill::Streaming] {
                let (write, sync) = run(&dir, how).await;
                println!("round {round} {how:?}: write {write:?} fdatasync {sync:?} per MiB");
            }
        }
    });
}
