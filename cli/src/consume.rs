//! `spate consume TOPIC`: assign-style from a start position, or as a member of a consumer
//! group (`--group`), printing each record through a `--format` template (or JSON lines).

use crate::args::{self, validate_topic};
use crate::format::{self, Template};
use crate::member::Member;
use crate::output::Progress;
use crate::records;
use crate::session::{check, is_retriable, run, Result, Session, TopicInfo};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FETCH_MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Where partitions without a committed offset start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
}

struct Options {
    topic: String,
    partition: Option<i32>,
    start: Start,
    group: Option<String>,
    max: Option<u64>,
    idle_timeout: Option<Duration>,
    template: Template,
    json: bool,
    brokers: String,
}

pub fn main(args: &[String]) -> std::result::Result<(), String> {
    let args = args::parse(
        args,
        &[
            "--offset",
            "--partition",
            "--from-time",
            "--group",
            "--max",
            "--timeout-ms",
            "--format",
        ],
        &["--from-beginning"],
    )?;
    let topic = args.positional(0, "topic name")?.to_string();
    args.no_more_than(1)?;
    validate_topic(&topic)?;
    let partition: Option<i32> = args.parsed("--partition")?;
    let offset: Option<i64> = args.parsed("--offset")?;
    let starts = [
        args.has("--from-beginning"),
        offset.is_some(),
        args.value("--from-time").is_some(),
    ];
    if starts.iter().filter(|s| **s).count() > 1 {
        return Err("--from-beginning, --offset and --from-time exclude each other".into());
    }
    let start = match (offset, args.value("--from-time")) {
        (Some(o), _) if o < 0 => return Err(format!("--offset {o}: must be at least 0")),
        (Some(_), _) if partition.is_none() => {
            return Err("--offset needs --partition".into());
        }
        (Some(o), _) => Start::Offset(o),
        (None, Some(t)) => {
            Start::Time(crate::time::parse_ms(t).map_err(|e| format!("--from-time: {e}"))?)
        }
        _ if args.has("--from-beginning") => Start::Earliest,
        _ => Start::Latest,
    };
    let group = args.value("--group").map(str::to_string);
    if group.is_some() && partition.is_some() {
        return Err("--group and --partition exclude each other (the group assigns)".into());
    }
    let options = Options {
        topic,
        partition,
        start,
        group,
        max: args.parsed("--max")?,
        idle_timeout: args
            .parsed::<u64>("--timeout-ms")?
            .map(Duration::from_millis),
        template: Template::parse(args.value("--format").unwrap_or(format::DEFAULT))?,
        json: args.json(),
        brokers: args.brokers(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let count = run(move || consume(options, stop))?;
    eprintln!(
        "spate: consumed {count} record{}",
        if count == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Start offsets of partitions by the `start` rule, asked of their leaders.
async fn start_offsets(
    session: &Session,
    topic: &TopicInfo,
    partitions: &[i32],
    start: Start,
) -> Result<BTreeMap<i32, i64>> {
    let timestamp = match start {
        Start::Offset(o) => return Ok(partitions.iter().map(|&p| (p, o)).collect()),
        Start::Earliest => -2,
        Start::Latest => -1,
        Start::Time(ms) => ms,
    };
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader(topic, partitions) {
        let connection = session.broker(leader).await?;
        let found =
            spate_bench::client::list_offsets(&connection, &topic.name, &parts, timestamp).await?;
        let mut missing = Vec::new();
        for (p, offset) in found {
            if offset < 0 {
                missing.push(p); // no record at or after the time: the end
            } else {
                out.insert(p, offset);
            }
        }
        if !missing.is_empty() {
            let ends =
                spate_bench::client::list_offsets(&connection, &topic.name, &missing, -1).await?;
            out.extend(ends);
        }
    }
    Ok(out)
}

fn by_leader(topic: &TopicInfo, partitions: &[i32]) -> BTreeMap<i32, Vec<i32>> {
    let mut out: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for &p in partitions {
        if let Some(info) = topic.partitions.iter().find(|i| i.index == p) {
            out.entry(info.leader).or_default().push(p);
        }
    }
    out
}

/// Prints records and counts them; stops at `max`.
struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    buf: Vec<u8>,
    printed: u64,
    max: Option<u64>,
    progress: Progress,
}

impl Printer {
    fn done(&self) -> bool {
        self.max.is_some_and(|m| self.printed >= m)
    }
}

async fn consume(options: Options, stop: Arc<AtomicBool>) -> Result<u64> {
    let session = Session::connect(&options.brokers).await?;
    let topic = session.topic(&options.topic, false).await?;
    let mut printer = Printer {
        out: std::io::BufWriter::new(std::io::stdout()),
        buf: Vec::new(),
        printed: 0,
        max: options.max,
        progress: Progress::new("records consumed", options.max),
    };
    let mut group = None;
    let mut positions = match &options.group {
        Some(name) => {
            let member = Member::join(&session, name, vec![options.topic.clone()]).await?;
            let positions = group_positions(&session, &topic, &member, options.start).await?;
            group = Some(Membership {
                member,
                committed: positions.clone(),
                last_commit: Instant::now(),
            });
            positions
        }
        None => {
            let partitions: Vec<i32> = match options.partition {
                Some(p) if topic.partitions.iter().any(|i| i.index == p) => vec![p],
                Some(p) => {
                    return Err(format!(
                        "topic '{}': partition {p}: UNKNOWN_TOPIC_OR_PARTITION",
                        topic.name
                    ))
                }
                None => topic.partitions.iter().map(|p| p.index).collect(),
            };
            start_offsets(&session, &topic, &partitions, options.start).await?
        }
    };
    // A broker may answer a time lookup with the base offset of a compressed batch (Spate
    // does): records before the time are skipped until each partition reaches it.
    let mut seeking: std::collections::BTreeSet<i32> = match options.start {
        Start::Time(_) if group.is_none() => positions.keys().copied().collect(),
        _ => Default::default(),
    };
    let mut last_record = Instant::now();
    while !printer.done() && !stop.load(Ordering::Relaxed) {
        if options
            .idle_timeout
            .is_some_and(|t| last_record.elapsed() >= t)
        {
            break;
        }
        if let Some(g) = group.as_mut() {
            g.tick(&session, &topic, options.start, &mut positions)
                .await?;
        }
        if positions.is_empty() {
            glommio::timer::sleep(Duration::from_millis(FETCH_MAX_WAIT_MS as u64)).await;
            continue;
        }
        if fetch_round(
            &session,
            &topic,
            &options,
            &mut positions,
            &mut seeking,
            &mut printer,
        )
        .await?
        {
            last_record = Instant::now();
        }
    }
    printer.progress.finish();
    if let Some(g) = group {
        g.close(&topic.name, &positions).await?;
    }
    Ok(printer.printed)
}

/// A consumer-group member's state in the consume loop.
struct Membership {
    member: Member,
    /// What the group has committed of the positions.
    committed: BTreeMap<i32, i64>,
    last_commit: Instant,
}

impl Membership {
    /// Heartbeats, commits every `COMMIT_INTERVAL`, and rejoins when the group rebalances
    /// (then `positions` are the new assignment's).
    async fn tick(
        &mut self,
        session: &Session,
        topic: &TopicInfo,
        start: Start,
        positions: &mut BTreeMap<i32, i64>,
    ) -> Result<()> {
        let mut rebalance = self.member.heartbeat().await?;
        let due = self.last_commit.elapsed() >= COMMIT_INTERVAL;
        if !rebalance && due && self.committed != *positions {
            rebalance = !self.member.commit(&topic.name, positions).await?;
            self.committed = positions.clone();
            self.last_commit = Instant::now();
        }
        if rebalance {
            // What was read is committed before the partitions may move (Kafka accepts
            // commits of the old generation while the group prepares to rebalance).
            self.member.commit(&topic.name, positions).await?;
            self.member.rejoin(session).await?;
            *positions = group_positions(session, topic, &self.member, start).await?;
            self.committed = positions.clone();
        }
        Ok(())
    }

    /// Commits what was read and leaves the group.
    async fn close(self, topic: &str, positions: &BTreeMap<i32, i64>) -> Result<()> {
        if self.committed != *positions && !self.member.commit(topic, positions).await? {
            eprintln!("spate: the last offsets were not committed: the group is rebalancing");
        }
        self.member.leave().await
    }
}

/// Positions of the member's assigned partitions: committed offsets, else `start`.
async fn group_positions(
    session: &Session,
    topic: &TopicInfo,
    member: &Member,
    start: Start,
) -> Result<BTreeMap<i32, i64>> {
    let assigned = member
        .assignment
        .get(&topic.name)
        .cloned()
        .unwrap_or_default();
    let mut positions = member.committed(&topic.name, &assigned).await?;
    let uncommitted: Vec<i32> = assigned
        .iter()
        .copied()
        .filter(|p| !positions.contains_key(p))
        .collect();
    positions.extend(start_offsets(session, topic, &uncommitted, start).await?);
    Ok(positions)
}

/// The log start or end of a partition, whichever `position` fell off (Kafka's consumers reset
/// the same way after retention deleted what they were about to read).
async fn into_log(
    connection: &spate_bench::client::Connection,
    topic: &TopicInfo,
    partition: i32,
    position: i64,
) -> Result<i64> {
    let partitions = [partition];
    let list = |timestamp| {
        spate_bench::client::list_offsets(connection, &topic.name, &partitions, timestamp)
    };
    let start = list(-2).await?.first().map_or(0, |(_, o)| *o);
    if position < start {
        return Ok(start);
    }
    Ok(list(-1).await?.first().map_or(start, |(_, o)| *o))
}

/// One fetch from each leader; prints what came. True when any record came.
async fn fetch_round(
    session: &Session,
    topic: &TopicInfo,
    options: &Options,
    positions: &mut BTreeMap<i32, i64>,
    seeking: &mut std::collections::BTreeSet<i32>,
    printer: &mut Printer,
) -> Result<bool> {
    let partitions: Vec<i32> = positions.keys().copied().collect();
    let mut any = false;
    for (leader, parts) in by_leader(topic, &partitions) {
        let connection = session.broker(leader).await?;
        let offsets: Vec<(i32, i64)> = parts.iter().map(|p| (*p, positions[p])).collect();
        let fetched = crate::fetch::fetch(
            &connection,
            &topic.name,
            &offsets,
            FETCH_MAX_WAIT_MS,
            PARTITION_MAX_BYTES,
        )
        .await?;
        for partition in fetched {
            let position = positions[&partition.partition];
            match partition.error_code {
                0 => {}
                OFFSET_OUT_OF_RANGE => {
                    let moved = into_log(&connection, topic, partition.partition, position).await?;
                    eprintln!(
                        "spate: {}-{}: offset {position} is out of range, continuing at {moved}",
                        topic.name, partition.partition
                    );
                    positions.insert(partition.partition, moved);
                    continue;
                }
                code if is_retriable(code) && code != UNKNOWN_TOPIC_OR_PARTITION => continue,
                code => check(code, || {
                    format!("topic '{}' partition {}", topic.name, partition.partition)
                })?,
            }
            let decoded = records::decode(&partition.records, position)?;
            let mut next = decoded.next_offset;
            for record in &decoded.records {
                if let Start::Time(ms) = options.start {
                    if seeking.contains(&partition.partition) {
                        if record.timestamp < ms {
                            continue;
                        }
                        seeking.remove(&partition.partition);
                    }
                }
                if printer.done() {
                    next = record.offset;
                    break;
                }
                if options.json {
                    let line = format::json(&topic.name, partition.partition, record);
                    printer.buf.extend_from_slice(line.to_string().as_bytes());
                    printer.buf.push(b'\n');
                } else {
                    options.template.render(
                        &mut printer.buf,
                        &topic.name,
                        partition.partition,
                        record,
                    );
                }
                printer.printed += 1;
                any = true;
            }
            positions.insert(partition.partition, next);
        }
        if let Err(e) = printer
            .out
            .write_all(&printer.buf)
            .and_then(|_| printer.out.flush())
        {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                printer.max = Some(printer.printed); // the reader went away: stop
            } else {
                return Err(format!("write to stdout: {e}"));
            }
        }
        printer.buf.clear();
        printer.progress.update(printer.printed);
    }
    Ok(any)
}
