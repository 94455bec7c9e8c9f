//! Validation of produce batches (length, magic, CRC32C, record walk): work done for every
//! produced batch on the shard that received it.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spate_bench::record_batch;
use storage::batch::validate_produce_records;

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_produce_records");
    for (records, value_bytes) in [(16usize, 1024usize), (1000, 100)] {
        let batch = record_batch(records, 16, value_bytes);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(format!("{records}x{value_bytes}B"), |b| {
            b.iter(|| validate_produce_records(std::hint::black_box(&batch)).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
