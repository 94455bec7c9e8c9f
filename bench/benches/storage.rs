//! Storage append throughput against the raw disk, measured in the same run on the same
//! filesystem: `PartitionLog::append` of 16 KiB batches versus glommio `DmaFile` sequential
//! 1 MiB O_DIRECT writes from buffers filled beforehand (what the log's writer does
//! underneath, without the log's work; the reference), and the same writes with each buffer
//! filled by the log's copy just before its write (`raw_odirect_copied`: the disk plus the one
//! copy of payload any log makes). Two fsync disciplines: one fdatasync at the end of
//! each 32 MiB iteration, with `RAW_WRITES_IN_FLIGHT` raw writes in flight (the disk's
//! sequential bandwidth), and one every 1 MiB, one write at a time (acks=all under load: the
//! group commit of about 1 MiB). `bench/scripts/storage_report.py` runs this and
//! writes the ratios to perf-reports/.
//!
//! The data dir is `SPATE_BENCH_DIR` or `target/bench-data` (a real filesystem: O_DIRECT).

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::io::OpenOptions;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use spate_bench::record_batch;
use storage::batch::validate_produce_records;
use storage::{LogConfig, PartitionLog};

/// Bytes written per iteration.
const ITERATION_BYTES: usize = 32 << 20;
const CHUNK_BYTES: usize = 1 << 20;

fn bench_dir() -> PathBuf {
    let dir = std::env::var_os("SPATE_BENCH_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-data")),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn executor() -> LocalExecutor {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    // The broker's settings (`spate start`): allocator thresholds and the shards' preempt timer.
    storage::fix_malloc_thresholds();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(8 << 20)
        .preempt_timer(storage::executor_preempt_timer())
        .make()
        .expect("executor")
}

/// Raw writes in flight at once when only the end is synced: more than the one at a time
/// an earlier version measured, which undercounted the disk (the log's writer itself keeps
/// several chunk writes in flight).
const RAW_WRITES_IN_FLIGHT: usize = 4;

/// How the raw writes get their bytes.
#[derive(Clone, Copy)]
enum RawSource {
    /// Buffers filled before the clock starts (the disk alone).
    Prefilled,
    /// Each buffer filled just before its write by the log's own copy
    /// (`storage::dma_copy::copy_for_dma`) from a source filled beforehand: the disk plus the
    /// one copy any log makes, and the cost of writing bytes the CPU has just written.
    CopiedEachWrite,
}

/// Sequential 1 MiB O_DIRECT writes of `ITERATION_BYTES` into a fresh file; up to
/// `RAW_WRITES_IN_FLIGHT` at once, or one at a time each followed by an fdatasync.
async fn raw_write(dir: PathBuf, sync_every_chunk: bool, source: RawSource) -> Duration {
    use futures::stream::{FuturesUnordered, StreamExt};
    let path = dir.join("raw.dat");
    let _ = std::fs::remove_file(&path);
    let file = Rc::new(
        OpenOptions::new()
            .write(true)
            .create(true)
            .dma_open(&path)
            .await
            .expect("open"),
    );
    let depth = if sync_every_chunk {
        1
    } else {
        RAW_WRITES_IN_FLIGHT
    };
    // Buffers not in flight; a write hands its buffer back when it is done.
    let mut free: Vec<_> = (0..depth)
        .map(|_| {
            let mut buf = file.alloc_dma_buffer(CHUNK_BYTES);
            buf.as_bytes_mut().fill(0x5a);
            Rc::new(buf)
        })
        .collect();
    let payload = vec![0xa5u8; CHUNK_BYTES];
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for pos in (0..ITERATION_BYTES).step_by(CHUNK_BYTES) {
        let mut buf = match free.pop() {
            Some(buf) => buf,
            None => in_flight.next().await.expect("a write in flight"),
        };
        if let RawSource::CopiedEachWrite = source {
            let bytes = Rc::get_mut(&mut buf).expect("a done write holds no reference");
            storage::dma_copy::copy_for_dma(bytes.as_bytes_mut(), &payload);
        }
        let file = file.clone();
        in_flight.push(async move {
            let n = file
                .write_rc_at(buf.clone(), pos as u64)
                .await
                .expect("write");
            assert_eq!(n, CHUNK_BYTES);
            if sync_every_chunk {
                file.fdatasync().await.expect("fdatasync");
            }
            buf
        });
    }
    while in_flight.next().await.is_some() {}
    file.fdatasync().await.expect("fdatasync");
    let elapsed = start.elapsed();
    drop((in_flight, free));
    file.close_rc().await.expect("close");
    let _ = std::fs::remove_file(&path);
    elapsed
}

/// `ITERATION_BYTES` of 16 x 1 KiB-record batches through `PartitionLog::append`, durable at
/// the end (or every ~1 MiB).
async fn log_append(dir: PathBuf, batch: Rc<Vec<u8>>, sync_every_chunk: bool) -> Duration {
    let path = dir.join("log-0");
    let _ = std::fs::remove_dir_all(&path);
    let log = PartitionLog::open(&path, LogConfig::default())
        .await
        .expect("open");
    let header = validate_produce_records(&batch).expect("valid batch");
    let per_chunk = CHUNK_BYTES.div_ceil(batch.len());
    let batches = ITERATION_BYTES / batch.len();
    let start = Instant::now();
    let mut last = 0;
    for i in 0..batches {
        last = log.append(&batch, &header).expect("append").last_offset;
        if (i + 1) % per_chunk == 0 {
            if sync_every_chunk {
                log.wait_durable(last, true).await.expect("durable");
            } else {
                // In the broker, appends arrive between network awaits, so the writer task
                // runs while more is appended: let it run once per MiB here too.
                YieldNow(false).await;
            }
        }
    }
    log.wait_durable(last, true).await.expect("durable");
    let elapsed = start.elapsed();
    log.close().await.expect("close");
    let _ = std::fs::remove_dir_all(&path);
    elapsed
}

/// Returns Pending once, so other tasks of the executor run.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

fn append_vs_raw(c: &mut Criterion) {
    let ex = executor();
    let dir = bench_dir();
    let batch = Rc::new(record_batch(16, 16, 1024));
    let mut group = c.benchmark_group("storage_append_vs_raw_disk");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(ITERATION_BYTES as u64));
    for (name, sync) in [("sync_at_end", false), ("sync_every_mib", true)] {
        for (raw, source) in [
            ("raw_odirect", RawSource::Prefilled),
            ("raw_odirect_copied", RawSource::CopiedEachWrite),
        ] {
            group.bench_function(format!("{raw}/{name}"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| ex.run(raw_write(dir.clone(), sync, source)))
                        .sum()
                })
            });
        }
        group.bench_function(format!("log_append/{name}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| ex.run(log_append(dir.clone(), batch.clone(), sync)))
                    .sum()
            })
        });
    }
    group.finish();
}

/// Reads of 1 MiB from the tail cache vs catch-up reads of 1 MiB from the segment files
/// (checksums verified; O_DIRECT with read-ahead, see `storage::segment::SegmentFile`):
/// `catch_up_disk` cycles through the first half of the log, `catch_up_cold` reads it in
/// order with the page cache of the log's files dropped before each pass (clock stopped),
/// `catch_up_cold_two_readers` the same with two readers taking turns in one segment file
/// (one from its start, one from its middle),
/// and `raw_odirect_read` reads the same files with 1 MiB O_DIRECT reads, two in flight,
/// without the log (the disk's sequential read bandwidth here).
fn tail_vs_catch_up_reads(c: &mut Criterion) {
    const LOG_BYTES: usize = 64 << 20;
    let ex = executor();
    let path = bench_dir().join("read-0");
    let _ = std::fs::remove_dir_all(&path);
    let batch = record_batch(16, 16, 1024);
    let (log, end) = ex.run(async {
        let config = LogConfig {
            segment_bytes: 16 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, config).await.expect("open");
        // A tail reader from the start: the tail cache keeps the last of the log (its bound),
        // as it does for a consumer at the tail, rather than only the write backlog.
        log.note_reader_at(0);
        let header = validate_produce_records(&batch).expect("valid batch");
        let mut last = 0;
        for _ in 0..LOG_BYTES / batch.len() {
            last = log.append(&batch, &header).expect("append").last_offset;
            if last % 1024 == 15 {
                YieldNow(false).await;
            }
        }
        log.wait_durable(last, true).await.expect("durable");
        (log, last + 1)
    });
    let per_read = (CHUNK_BYTES / batch.len()) as i64 * 16;
    let mut group = c.benchmark_group("storage_read");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    // Two consumers in the first segment file (16 MiB): from its start and from 7 MiB in.
    let half_segment = 7 * per_read;
    let two_readers = [(0, half_segment), (half_segment, 2 * half_segment)];
    for (name, ranges, cold) in [
        (
            "tail_cache",
            &[(end - 4 * per_read, end - per_read)][..],
            false,
        ),
        ("catch_up_disk", &[(0, end / 2)][..], false),
        ("catch_up_cold", &[(0, end / 2)][..], true),
        ("catch_up_cold_two_readers", &two_readers[..], true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                ex.run(async {
                    let mut offsets: Vec<i64> = ranges.iter().map(|r| r.0).collect();
                    let mut elapsed = Duration::ZERO;
                    if cold {
                        drop_page_cache(&path);
                    }
                    for i in 0..iters as usize {
                        // Readers take turns, each in its own range.
                        let (reader, (from, to)) = (i % ranges.len(), ranges[i % ranges.len()]);
                        let start = Instant::now();
                        let got = log.read(offsets[reader], CHUNK_BYTES).await.expect("read");
                        elapsed += start.elapsed();
                        assert!(!got.is_empty());
                        offsets[reader] += per_read;
                        if offsets[reader] >= to {
                            offsets[reader] = from;
                            if cold && reader == 0 {
                                drop_page_cache(&path);
                            }
                        }
                    }
                    elapsed
                })
            })
        });
    }
    group.bench_function("raw_odirect_read", |b| {
        b.iter_custom(|iters| ex.run(raw_read(&path, iters)));
    });
    group.finish();
    ex.run(async { log.close().await.expect("close") });
    let _ = std::fs::remove_dir_all(&path);
}

/// `iters` sequential 1 MiB O_DIRECT reads through the segment files of `dir`, two in
/// flight, starting over at the first file after the last.
async fn raw_read(dir: &std::path::Path, iters: u64) -> Duration {
    use futures::stream::{FuturesOrdered, StreamExt};
    let mut files = Vec::new();
    for path in segment_files(dir) {
        let size = std::fs::metadata(&path).expect("stat").len();
        let file = Rc::new(glommio::io::DmaFile::open(&path).await.expect("open"));
        files.push((file, size));
    }
    let positions = files.iter().enumerate().flat_map(|(i, (_, size))| {
        (0..*size / CHUNK_BYTES as u64).map(move |k| (i, k * CHUNK_BYTES as u64))
    });
    let mut positions = positions.cycle().take(iters as usize);
    let start = Instant::now();
    let mut in_flight = FuturesOrdered::new();
    loop {
        while in_flight.len() < 2 {
            let Some((i, pos)) = positions.next() else {
                break;
            };
            let file: Rc<glommio::io::DmaFile> = files[i].0.clone();
            in_flight.push_back(async move {
                let got = file.read_at_aligned(pos, CHUNK_BYTES).await.expect("read");
                assert_eq!(got.len(), CHUNK_BYTES);
            });
        }
        if in_flight.next().await.is_none() {
            break;
        }
    }
    let elapsed = start.elapsed();
    for (file, _) in files {
        file.close_rc().await.expect("close");
    }
    elapsed
}

fn segment_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("log dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Drops the page cache of the log's segment files (what a consumer catching up on data
/// written long ago finds).
fn drop_page_cache(dir: &std::path::Path) {
    use std::os::fd::AsRawFd;
    for path in segment_files(dir) {
        let file = std::fs::File::open(&path).expect("open");
        // SAFETY: a valid fd; fadvise only drops clean cached pages.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

criterion_group!(benches, append_vs_raw, tail_vs_catch_up_reads);
criterion_main!(benches);
