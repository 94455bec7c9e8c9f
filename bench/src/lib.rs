//! Spate's benchmark suite: the project's Kafka client library (`client`, `partitioner`,
//! `batch`), the `spate bench` load generator (`workload`), the side-by-side comparison with
//! Apache Kafka (`compare`, with its replicated 3-node workloads in `replicated`), capacity
//! planning (`plan`: `spate bench profile` and `spate plan`), the perf-report generator (`report`), and the record batches the
//! criterion benchmarks feed to the storage crate.

pub mod batch;
pub mod client;
pub mod compare;
pub mod flags;
pub mod jaas;
pub mod partitioner;
pub mod plan;
pub mod replicated;
pub mod report;
pub mod sasl;
pub mod security;
pub mod stages;
pub mod stats;
pub mod workload;

/// Usage of `spate bench`.
pub const USAGE: &str = concat!(
    "spate bench: load generator, comparison with Apache Kafka, reports\n\n",
    "spate bench produce|consume|e2e [options]   (see below)\n",
    "spate bench compare [--quick] ...            Spate vs Kafka side by side\n",
    "spate bench report RECORD.json...            markdown + SVG from a compare record\n",
    "spate bench profile [--short] --out FILE     measure this machine for `spate plan`\n\n"
);

/// Entry of `spate bench ARGS...`.
pub fn main(args: &[String]) -> Result<(), String> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("produce") => {
            workload::run(&workload::parse(workload::Mode::Produce, rest)?).map(|_| ())
        }
        Some("consume") => {
            workload::run(&workload::parse(workload::Mode::Consume, rest)?).map(|_| ())
        }
        Some("e2e") => workload::run(&workload::parse(workload::Mode::E2e, rest)?).map(|_| ()),
        Some("compare") => compare::run(&compare::parse(rest)?).map(|_| ()),
        Some("profile") => plan::measure::run(&plan::measure::parse(rest)?).map(|_| ()),
        Some("report") => {
            if rest.is_empty() {
                return Err("usage: spate bench report RECORD.json...".into());
            }
            for path in rest {
                report::write(std::path::Path::new(path))?;
                eprintln!("wrote the report of {path}");
            }
            Ok(())
        }
        Some("--help") | Some("-h") | None => {
            print!(
                "{USAGE}{}\n{}\n{}",
                workload::USAGE,
                compare::USAGE,
                plan::measure::USAGE
            );
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown bench mode '{other}' (try `spate bench --help`)"
        )),
    }
}

/// glommio locks memory for its rings: lift RLIMIT_MEMLOCK as far as allowed (best effort).
pub fn raise_memlock() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0 {
            let wanted = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &wanted) != 0 {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
            }
        }
    }
}

/// Encodes an uncompressed Kafka record batch (magic v2) of `records` records, each with a
/// `key_bytes`-byte key and a `value_bytes`-byte value, base offset 0, CRC32C filled in.
pub fn record_batch(records: usize, key_bytes: usize, value_bytes: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..records {
        let mut record = Vec::new();
        record.push(0); // attributes
        put_varint(&mut record, i as i64); // timestamp delta
        put_varint(&mut record, i as i64); // offset delta
        put_varint(&mut record, key_bytes as i64);
        record.extend(std::iter::repeat_n(b'k', key_bytes));
        put_varint(&mut record, value_bytes as i64);
        record.extend(std::iter::repeat_n(b'v', value_bytes));
        put_varint(&mut record, 0); // headers
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let mut batch = Vec::with_capacity(61 + body.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes()); // batch length
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&(records as i32 - 1).to_be_bytes()); // last offset delta
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // base timestamp
    batch.extend_from_slice(&(1_700_000_000_000i64 + records as i64 - 1).to_be_bytes());
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&(records as i32).to_be_bytes());
    batch.extend_from_slice(&body);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

#[cfg(test)]
mod tests {
    #[test]
    fn built_batches_pass_the_brokers_validation() {
        let batch = super::record_batch(10, 8, 100);
        let header = storage::batch::validate_produce_records(&batch).expect("valid batch");
        assert_eq!(header.record_count, 10);
        assert_eq!(header.last_offset_delta, 9);
        assert_eq!(header.total_bytes(), batch.len());
    }
}
