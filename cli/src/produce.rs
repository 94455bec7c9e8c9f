//! `spate produce TOPIC`: lines from stdin or `--file`, batched per partition (one Produce
//! request per leader per chunk of input), acknowledged before the next chunk is sent.

use crate::args::{self, key_value, validate_topic};
use crate::output::{print_json, Progress};
use crate::records;
use crate::session::{now_ms, run, Session};
use bytes::Bytes;
use kafka_protocol::records::{Compression, Record};
use spate_bench::partitioner::{DefaultPartitioner, Keyless, Partitioner};
use std::collections::BTreeMap;
use std::io::BufRead;

/// Input read before the records are sent (bounded so a batch stays under the broker's
/// default `message.max.bytes`, about 1 MiB).
const CHUNK_BYTES: usize = 512 << 10;
/// The Java producer's default `batch.size`, for the sticky spreading of keyless records.
const STICKY_BATCH_BYTES: usize = 16 << 10;

struct Options {
    topic: String,
    file: Option<String>,
    key_separator: Option<Vec<u8>>,
    headers: Vec<(String, Bytes)>,
    acks: i16,
    compression: Compression,
    partition: Option<i32>,
    brokers: String,
    json: bool,
}

pub fn main(args: &[String]) -> Result<(), String> {
    let args = args::parse(
        args,
        &[
            "--file",
            "--key-separator",
            "--header",
            "--acks",
            "--compression",
            "--partition",
        ],
        &[],
    )?;
    let topic = args.positional(0, "topic name")?.to_string();
    args.no_more_than(1)?;
    validate_topic(&topic)?;
    let acks = match args.value("--acks").unwrap_or("all") {
        "0" => 0,
        "1" => 1,
        "all" | "-1" => -1,
        other => return Err(format!("--acks: '{other}' is not 0, 1 or all")),
    };
    let headers = args
        .values("--header")
        .into_iter()
        .map(|h| key_value(h, "--header").map(|(k, v)| (k, Bytes::from(v))))
        .collect::<Result<Vec<_>, _>>()?;
    let key_separator = args.value("--key-separator").map(|s| s.as_bytes().to_vec());
    if key_separator.as_ref().is_some_and(|s| s.is_empty()) {
        return Err("--key-separator must not be empty".into());
    }
    let options = Options {
        topic,
        file: args.value("--file").map(str::to_string),
        key_separator,
        headers,
        acks,
        compression: crate::records::compression(args.value("--compression").unwrap_or("none"))?,
        partition: args.parsed("--partition")?,
        brokers: args.brokers(),
        json: args.json(),
    };
    let input: Box<dyn BufRead + Send> = match &options.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(|e| format!("--file {path}: {e}"))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let topic = options.topic.clone();
    let json = options.json;
    let count = run(move || produce(options, input))?;
    eprintln!("spate: produced {count} records to {topic}");
    if json {
        print_json(&serde_json::json!({"topic": topic, "records": count}));
    }
    Ok(())
}

/// Splits a line into key and value at the first separator (no separator: no key).
fn split_line<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(sep) = separator else {
        return (None, line);
    };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
        None => (None, line),
    }
}

async fn produce(options: Options, mut input: Box<dyn BufRead + Send>) -> Result<u64, String> {
    let session = Session::connect(&options.brokers).await?;
    let topic = session.topic(&options.topic, true).await?;
    let partitions = topic.partitions.len() as u32;
    if let Some(p) = options.partition {
        if p < 0 || p as u32 >= partitions {
            return Err(format!(
                "--partition {p}: topic '{}' has {partitions} partitions",
                options.topic
            ));
        }
    }
    let mut partitioner = DefaultPartitioner::new(Keyless::Sticky {
        batch_bytes: STICKY_BATCH_BYTES,
    });
    let mut progress = Progress::new("records produced", None);
    let mut total = 0u64;
    loop {
        let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        let mut bytes = 0;
        let mut line = Vec::new();
        while bytes < CHUNK_BYTES {
            line.clear();
            let read = input
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("read input: {e}"))?;
            if read == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let (key, value) = split_line(&line, options.key_separator.as_deref());
            let partition = match options.partition {
                Some(p) => p,
                None => partitioner.partition(key, line.len(), partitions) as i32,
            };
            let batch = pending.entry(partition).or_default();
            batch.push(records::record(
                batch.len() as i64,
                now_ms(),
                key.map(Bytes::copy_from_slice),
                Bytes::copy_from_slice(value),
                &options.headers,
            ));
            bytes += line.len() + 16;
        }
        if pending.is_empty() {
            break;
        }
        total += send(&session, &topic, &options, pending).await?;
        progress.update(total);
    }
    progress.finish();
    Ok(total)
}

/// Sends the batches, one request per leader, and waits for every acknowledgement.
async fn send(
    session: &Session,
    topic: &crate::session::TopicInfo,
    options: &Options,
    pending: BTreeMap<i32, Vec<Record>>,
) -> Result<u64, String> {
    let mut by_leader: BTreeMap<i32, Vec<(i32, Bytes)>> = BTreeMap::new();
    let mut count = 0u64;
    for (partition, batch) in pending {
        count += batch.len() as u64;
        let leader = topic.partitions[partition as usize].leader;
        by_leader
            .entry(leader)
            .or_default()
            .push((partition, records::encode(&batch, options.compression)?));
    }
    let mut requests = Vec::new();
    for (leader, batches) in by_leader {
        let connection = session.broker(leader).await?;
        requests.push(async move {
            spate_bench::client::produce(&connection, &topic.name, options.acks, batches).await
        });
    }
    for result in futures::future::join_all(requests).await {
        result?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::split_line;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_line(b"k:v:w", Some(b":")),
            (Some(&b"k"[..]), &b"v:w"[..])
        );
        assert_eq!(split_line(b"novalue", Some(b":")), (None, &b"novalue"[..]));
        assert_eq!(
            split_line(b"a::b", Some(b"::")),
            (Some(&b"a"[..]), &b"b"[..])
        );
        assert_eq!(split_line(b"k:v", None), (None, &b"k:v"[..]));
    }
}
