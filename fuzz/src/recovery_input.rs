//! The recovery target's input: the files of one partition directory, as a sequence of
//! `tag: u8 | len: u32 LE | bytes` (a length past the end takes what is left). Tags (mod 8):
//! 0/1 the first segment's `.log`/`.index` (base offset 0), 2 the producer snapshot, 3 the
//! leader-epoch checkpoint, 4 the log start offset, 5 the cleaner checkpoint, 6 a second
//! segment's `.log` (its first 8 bytes: base offset, LE), 7 that segment's `.index`.

use std::path::Path;

const NAMED: [&str; 4] = [
    "producer.snapshot",
    "leader-epoch-checkpoint",
    "log-start-offset",
    "cleaner-checkpoint",
];
/// Base offset of the second segment when its `.log` does not say (or is absent).
const SECOND_BASE_DEFAULT: u64 = 100;
/// Largest second-segment base offset (a file name has 20 digits; keep it plausible).
const SECOND_BASE_MAX: u64 = 1 << 40;

fn segment_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Splits `data` into its files.
pub fn files(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut parts: Vec<(u8, &[u8])> = Vec::new();
    let mut rest = data;
    while let Some((&tag, after)) = rest.split_first() {
        let len = after.get(..4).map_or(0, |b| {
            u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
        });
        let body = after.get(4..).unwrap_or(&[]);
        let len = len.min(body.len());
        parts.push((tag % 8, &body[..len]));
        rest = &body[len..];
    }
    let second_base = parts
        .iter()
        .find(|(tag, _)| *tag == 6)
        .and_then(|(_, b)| b.get(..8))
        .map_or(SECOND_BASE_DEFAULT, |b| {
            u64::from_le_bytes(b.try_into().expect("8 bytes")) % SECOND_BASE_MAX
        })
        .max(1);
    parts
        .into_iter()
        .map(|(tag, body)| match tag {
            0 => (segment_name(0, "log"), body.to_vec()),
            1 => (segment_name(0, "index"), body.to_vec()),
            6 => (
                segment_name(second_base, "log"),
                body.get(8..).unwrap_or(&[]).to_vec(),
            ),
            7 => (segment_name(second_base, "index"), body.to_vec()),
            n => (NAMED[usize::from(n) - 2].to_string(), body.to_vec()),
        })
        .collect()
}

/// Packs the files of a partition directory (the first two segments, the known small files)
/// into an input.
pub fn pack(dir: &Path) -> Vec<u8> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listing a seed log")
        .map(|e| {
            e.expect("listing a seed log")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let bases: Vec<u64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse().ok())
        .collect();
    let mut out = Vec::new();
    let mut put = |tag: u8, prefix: &[u8], bytes: Vec<u8>| {
        out.push(tag);
        out.extend_from_slice(&((prefix.len() + bytes.len()) as u32).to_le_bytes());
        out.extend_from_slice(prefix);
        out.extend_from_slice(&bytes);
    };
    for name in &names {
        let bytes = std::fs::read(dir.join(name)).expect("reading a seed log file");
        let base = name.split('.').next().and_then(|s| s.parse::<u64>().ok());
        match (base, name.rsplit('.').next()) {
            (Some(0), Some("log")) => put(0, &[], bytes),
            (Some(0), Some("index")) => put(1, &[], bytes),
            (Some(b), Some("log")) if bases.get(1) == Some(&b) => put(6, &b.to_le_bytes(), bytes),
            (Some(b), Some("index")) if bases.get(1) == Some(&b) => put(7, &[], bytes),
            _ => {
                if let Some(i) = NAMED.iter().position(|n| n == name) {
                    put(i as u8 + 2, &[], bytes);
                }
            }
        }
    }
    out
}

/// Real partition logs written by `PartitionLog`, packed: one segment, two segments, and
/// torn copies of them.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use storage::batch::test_support::{encode_batch, simple_records, TestProducer};
    let scratch = crate::scratch_dir("seeds");
    let mut out = Vec::new();
    for (name, segment_bytes, batches) in
        [("one_segment", 1u64 << 30, 6), ("two_segments", 2048, 12)]
    {
        let dir = scratch.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        crate::run_local(async {
            let config = storage::LogConfig {
                segment_bytes,
                index_interval_bytes: 256,
                ..Default::default()
            };
            let log = storage::PartitionLog::open(&dir, config)
                .await
                .expect("seed log opens");
            for i in 0..batches {
                let producer = TestProducer {
                    producer_id: 9,
                    producer_epoch: 0,
                    base_sequence: i * 3,
                };
                let batch = encode_batch(
                    0,
                    1_700_000_000_000 + i64::from(i),
                    producer,
                    &simple_records(3),
                );
                let header = storage::batch::validate_produce_records(&batch).expect("seed batch");
                log.append(&batch, &header).expect("seed append");
            }
            log.wait_durable(log.log_end_offset() - 1, true)
                .await
                .expect("seed sync");
            log.close().await.expect("seed close");
        });
        let packed = pack(&dir);
        // A torn copy: the first segment cut in the middle of its second entry.
        let mut torn = files(&packed);
        if let Some((_, log)) = torn.iter_mut().find(|(n, _)| n.ends_with("0.log")) {
            log.truncate(log.len().min(300));
        }
        let mut torn_packed = Vec::new();
        for (file, bytes) in torn {
            let tag = match file.as_str() {
                f if f == segment_name(0, "log") => 0,
                f if f == segment_name(0, "index") => 1,
                f if f.ends_with(".log") => continue,
                f if f.ends_with(".index") => continue,
                f => NAMED.iter().position(|n| *n == f).expect("known file") as u8 + 2,
            };
            torn_packed.push(tag);
            torn_packed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            torn_packed.extend_from_slice(&bytes);
        }
        out.push((name.to_string(), packed));
        out.push((format!("{name}_torn"), torn_packed));
    }
    out
}
