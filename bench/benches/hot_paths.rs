//! Hot paths of a produce request on the broker: request decode, CRC32C, offset assignment
//! (base offset patch), sparse index lookup, and append into a partition log's write buffer
//! through storage's public API.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, RequestKind, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use spate_bench::record_batch;
use std::hint::black_box;
use std::time::{Duration, Instant};
use storage::batch::{patch_base_offset, validate_produce_records};
use storage::index::SegmentIndex;

/// A Produce v9 request frame (after the size prefix) with 8 partitions of one batch each.
fn produce_frame(batch: &Bytes) -> Bytes {
    let version = 9;
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..8)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )]);
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .encode(&mut buf, ApiKey::Produce.request_header_version(version))
        .expect("header encodes");
    request.encode(&mut buf, version).expect("request encodes");
    buf.freeze()
}

fn decode(c: &mut Criterion) {
    let batch = Bytes::from(record_batch(16, 16, 1024));
    let frame = produce_frame(&batch);
    let mut group = c.benchmark_group("request_decode");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("produce_v9_8x16x1KiB", |b| {
        b.iter(|| {
            // What the broker's decode_request does: header, then body; batches stay slices.
            let mut frame = frame.clone();
            let header =
                RequestHeader::decode(&mut frame, ApiKey::Produce.request_header_version(9))
                    .expect("header");
            let body = RequestKind::decode(ApiKey::Produce, &mut frame, 9).expect("body");
            black_box((header, body))
        })
    });
    group.finish();
}

fn crc(c: &mut Criterion) {
    let batch = record_batch(16, 16, 1024);
    let mut group = c.benchmark_group("crc32c");
    group.throughput(Throughput::Bytes(batch.len() as u64 - 21));
    group.bench_function("16x1KiB_batch", |b| {
        b.iter(|| crc32c::crc32c(black_box(&batch[21..])))
    });
    group.finish();
}

fn offset_assignment(c: &mut Criterion) {
    let batch = record_batch(16, 16, 1024);
    let mut group = c.benchmark_group("offset_assignment");
    group.bench_function("patch_base_offset", |b| {
        b.iter_batched_ref(
            || batch.clone(),
            |batch| patch_base_offset(black_box(batch), black_box(123_456)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    // A full 1 GiB segment of 17 KiB entries, one index point per 4 KiB: ~60,000 points.
    let mut index = SegmentIndex::new(0);
    let entry_bytes = 17 << 10;
    for i in 0..60_000i64 {
        index.on_append(i * 16, i * 16 + 15, entry_bytes, i, 4096);
    }
    let mut group = c.benchmark_group("index_lookup");
    let mut probe = 0i64;
    group.bench_function("position_for_offset_60k_points", |b| {
        b.iter(|| {
            probe = (probe + 7919) % (60_000 * 16);
            index.position_for_offset(black_box(probe))
        })
    });
    group.finish();
}

/// Appends into a `PartitionLog` on a glommio executor. Only the synchronous `append` (validation
/// is done before, as on the broker: offset assignment, idempotence check, copy into the tail
/// cache and pending write buffer) is timed; the write-out to the DMA file after each chunk of
/// 256 appends is not.
fn append(c: &mut Criterion) {
    const CHUNK: u64 = 256;
    let (tx, rx) = std::sync::mpsc::channel::<(u64, std::sync::mpsc::Sender<Duration>)>();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("append-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir on the target filesystem");
    let worker = std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let log = storage::PartitionLog::open(&dir, storage::LogConfig::default())
                    .await
                    .expect("open log");
                let batch = record_batch(16, 16, 1024);
                let header = validate_produce_records(&batch).expect("valid");
                while let Ok((iters, reply)) = rx.recv() {
                    let mut timed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let started = Instant::now();
                        for _ in 0..n {
                            black_box(log.append(&batch, &header).expect("append"));
                        }
                        timed += started.elapsed();
                        left -= n;
                        log.wait_durable(log.log_end_offset() - 1, false)
                            .await
                            .expect("written");
                    }
                    let _ = reply.send(timed);
                }
                log.close().await.expect("close");
                let _ = std::fs::remove_dir_all(&dir);
            })
            .expect("executor")
            .join()
            .expect("executor ran")
    });
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(record_batch(16, 16, 1024).len() as u64));
    group.bench_function("partition_log_append_16x1KiB", |b| {
        b.iter_custom(|iters| {
            let (reply_tx, reply_rx) = std::sync::mpsc::channel();
            tx.send((iters, reply_tx)).expect("worker alive");
            reply_rx.recv().expect("worker answers")
        })
    });
    group.finish();
    drop(tx);
    worker.join().expect("worker exits");
}

criterion_group!(
    benches,
    decode,
    crc,
    offset_assignment,
    index_lookup,
    append
);
criterion_main!(benches);
