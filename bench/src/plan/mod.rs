//! Capacity planning: `spate bench profile` measures this machine (`measure`), `spate plan`
//! sizes a cluster for a load from a profile (`model`, `profile`), sweeps a load range
//! (`sweep`, `svg`) and checks its own predictions against runs (`check`). The model is
//! written down in bench/PLANNING.md.

pub mod check;
pub mod measure;
pub mod model;
pub mod profile;
pub mod rescore;
pub mod svg;
pub mod sweep;
pub mod units;

use crate::flags::Flags;
use model::{Load, Plan};
use profile::Profile;
use std::path::PathBuf;
use units::{fmt_bytes, fmt_rate};

pub const USAGE: &str = "\
spate plan --ingest RATE [options]    cluster size for a load, from a measured profile
  --ingest 300MB/s|50000rec/s   produced payload (uncompressed) per second
  --record-bytes N      record value size (default 1024)
  --keys none|N         accepted for the record; the model does not depend on keys
  --partitions N        (default 64)          --rf N (default 3)
  --acks 0|1|all        (default all)         --compression none|gzip|snappy|lz4|zstd
  --consumer-groups N   groups reading everything (default 1)
  --retention 7d        (default 7d)          --p99 10ms  expected p99 target
  --headroom 30%        resources a broker may use: 1 - headroom (default 30%)
  --profile FILE        a `spate bench profile` record (default: bench/profiles/spate-default.json,
                        built in)
  --broker spate|kafka  plan on the profile's broker; kafka needs --profile of a Kafka profile
                        and prints Spate's plan (bundled or --spate-profile FILE) beside it
  --json                the plan as JSON
  --sweep ingest=100MB/s..2GB/s [--steps N] [--svg FILE]   a table (and an SVG plot, default
                        plan-sweep.svg) of what each step needs
  assumptions the profile cannot measure: --nic 10Gbit/s (per broker, each way),
  --max-cores 32 (per broker), --disk-per-broker 8TB, --disk-write RATE (default: the
  profile's O_DIRECT write bandwidth), --page-cache-s 30
spate plan --check [--short] [--profile FILE] [--out FILE.json]
  predicts throughput, broker CPU and p99 for configurations the profile did not run, runs
  them on a fresh local broker, reports the prediction error per figure
spate plan --check --rescore CHECK.json --profile FILE [--out FILE.json]
  the errors of a stored check's measurements under this build's model (same profile),
  without running anything again; labelled as a re-score
";

/// Parsed `spate plan` command line.
struct Args {
    load: Load,
    profile: Option<PathBuf>,
    spate_profile: Option<PathBuf>,
    broker: String,
    json: bool,
    sweep: Option<(f64, f64)>,
    steps: usize,
    svg: PathBuf,
    check: bool,
    rescore: Option<PathBuf>,
    short: bool,
    out: Option<PathBuf>,
    ingest_given: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        load: Load::default(),
        profile: None,
        spate_profile: None,
        broker: "spate".into(),
        json: false,
        sweep: None,
        steps: 8,
        svg: "plan-sweep.svg".into(),
        check: false,
        rescore: None,
        short: false,
        out: None,
        ingest_given: false,
    };
    let l = &mut a.load;
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value();
        let count = |v: String, flag: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0)
                .ok_or_else(|| format!("{flag}: a whole number, not '{v}'"))
        };
        match flag.as_str() {
            "--ingest" => {
                l.ingest = units::parse_rate(&value()?).map_err(|e| format!("{flag}: {e}"))?;
                a.ingest_given = true;
            }
            "--record-bytes" => {
                l.record_bytes =
                    units::parse_bytes(&value()?).map_err(|e| format!("{flag}: {e}"))?
            }
            "--keys" => drop(value()?),
            "--partitions" => l.partitions = count(value()?, "--partitions")?,
            "--rf" => l.rf = count(value()?, "--rf")?,
            "--acks" => {
                l.acks = match value()?.as_str() {
                    "all" | "-1" => "all".into(),
                    v @ ("0" | "1") => v.into(),
                    v => return Err(format!("--acks: 0, 1 or all, not '{v}'")),
                }
            }
            "--compression" => {
                l.compression = crate::batch::Compression::parse(&value()?)?
                    .name()
                    .to_string()
            }
            "--consumer-groups" => l.consumer_groups = count(value()?, "--consumer-groups")?,
            "--retention" => {
                l.retention_s =
                    units::parse_duration_s(&value()?).map_err(|e| format!("{flag}: {e}"))?
            }
            "--p99" => {
                l.p99_target_ms =
                    Some(units::parse_ms(&value()?).map_err(|e| format!("{flag}: {e}"))?)
            }
            "--headroom" => {
                l.headroom = units::parse_fraction(&value()?).map_err(|e| format!("{flag}: {e}"))?
            }
            "--nic" => l.nic_bytes_s = units::parse_rate(&value()?)?.bytes_per_s(1.0),
            "--max-cores" => l.max_cores_per_broker = count(value()?, "--max-cores")?.max(1.0),
            "--disk-per-broker" => l.disk_bytes_per_broker = units::parse_bytes(&value()?)?,
            "--disk-write" => {
                l.disk_write_bytes_s = Some(units::parse_rate(&value()?)?.bytes_per_s(1.0))
            }
            "--page-cache-s" => l.page_cache_s = count(value()?, "--page-cache-s")?,
            "--profile" => a.profile = Some(value()?.into()),
            "--spate-profile" => a.spate_profile = Some(value()?.into()),
            "--broker" => {
                a.broker = match value()?.as_str() {
                    b @ ("spate" | "kafka") => b.into(),
                    b => return Err(format!("--broker: spate or kafka, not '{b}'")),
                }
            }
            "--json" => a.json = true,
            "--sweep" => a.sweep = Some(sweep::parse_range(&value()?)?),
            "--steps" => {
                a.steps = count(value()?, "--steps")? as usize;
                if a.steps < 2 {
                    return Err("--steps: at least 2".into());
                }
            }
            "--svg" => a.svg = value()?.into(),
            "--check" => a.check = true,
            "--rescore" => a.rescore = Some(value()?.into()),
            "--short" => a.short = true,
            "--out" => a.out = Some(value()?.into()),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if a.rescore.is_some() && !(a.check && a.profile.is_some()) {
        return Err(
            "--rescore goes with --check and the --profile the check predicted from".into(),
        );
    }
    if !a.check && a.sweep.is_none() && !a.ingest_given {
        return Err(format!(
            "--ingest is needed (or --sweep, or --check)\n{USAGE}"
        ));
    }
    Ok(a)
}

/// Entry of `spate plan ARGS...`.
pub fn main(args: &[String]) -> Result<(), String> {
    if matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        print!("{USAGE}");
        return Ok(());
    }
    let a = parse(args)?;
    let profile = Profile::load(a.profile.as_deref())?;
    if profile.broker != a.broker {
        return Err(format!(
            "--broker {} but the profile was measured on {}{}",
            a.broker,
            profile.broker,
            if a.broker == "kafka" && a.profile.is_none() {
                " (no Kafka profile is bundled: measure one with `spate bench profile --broker kafka --out F` and pass --profile F)"
            } else {
                ""
            }
        ));
    }
    if let (true, Some(stored)) = (a.check, &a.rescore) {
        return rescore::run(&profile, stored, a.out.as_deref());
    }
    if a.check {
        return check::run(&profile, a.short, a.out.as_deref());
    }
    if let Some(range) = a.sweep {
        return sweep::run(&a.load, &profile, range, a.steps, &a.svg, a.json);
    }
    let plan = model::plan(&a.load, &profile)?;
    let spate = if a.broker == "kafka" {
        let spate = Profile::load(a.spate_profile.as_deref())?;
        Some((model::plan(&a.load, &spate)?, spate))
    } else {
        None
    };
    if a.json {
        let mut out = plan.json(&a.load, &profile);
        if let Some((s, sp)) = &spate {
            out["spate"] = s.json(&a.load, sp);
        }
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(());
    }
    print!("{}", table(&a.load, &profile, &plan));
    if let Some((s, _)) = spate {
        println!(
            "\nthis load needs {} Kafka brokers ({} cores each) or {} Spate brokers ({} cores each; limit: {})",
            plan.brokers, plan.cores_per_broker, s.brokers, s.cores_per_broker, s.limit
        );
    }
    Ok(())
}

/// The plan for people.
fn table(load: &Load, profile: &Profile, p: &Plan) -> String {
    let bytes_s = load.ingest.bytes_per_s(load.record_bytes);
    let measured = &profile.raw["measured"];
    let mut out = format!(
        "load: {} of {:.0}-byte records, {} partitions, RF {}, acks={}, compression {}, {} consumer group(s), retention {:.1} d, headroom {:.0} %{}\n",
        fmt_rate(bytes_s),
        load.record_bytes,
        load.partitions,
        load.rf,
        load.acks,
        load.compression,
        load.consumer_groups,
        load.retention_s / 86_400.0,
        load.headroom * 100.0,
        load.p99_target_ms.map_or(String::new(), |t| format!(", p99 <= {t} ms")),
    );
    out += &format!(
        "profile: {} on {} cpus ({}), measured {} at {}\n\n",
        profile.broker,
        profile.raw["machine"]["cpus"],
        profile.raw["machine"]["cpu_model"].as_str().unwrap_or("?"),
        measured["date"].as_str().unwrap_or("?"),
        measured["commit"].as_str().unwrap_or("?"),
    );
    let margin = if load.rf >= 2.0 {
        "sized to carry the load with one broker down"
    } else {
        "no failure margin at RF 1"
    };
    let rows = [
        (
            "brokers",
            format!("{}   (limit: {}; {margin})", p.brokers, p.limit),
        ),
        (
            "cores per broker",
            format!(
                "{}   ({:.2} cores of work in all)",
                p.cores_per_broker, p.cpu_cores_total
            ),
        ),
        (
            "memory per broker",
            format!(
                "{}   (broker RSS + partitions + {:.0} s of writes in page cache)",
                fmt_bytes(p.memory_per_broker_bytes),
                load.page_cache_s
            ),
        ),
        (
            "disk per broker",
            format!(
                "{}   ({} in all)",
                fmt_bytes(p.disk_capacity_per_broker_bytes),
                fmt_bytes(p.disk_capacity_total_bytes)
            ),
        ),
        (
            "disk write per broker",
            fmt_rate(p.disk_write_per_broker_bytes_s),
        ),
        (
            "network in per broker",
            fmt_rate(p.network_in_per_broker_bytes_s),
        ),
        (
            "network out per broker",
            fmt_rate(p.network_out_per_broker_bytes_s),
        ),
        (
            "expected p99",
            format!(
                "{:.2} ms   (at {:.0} % CPU, one broker down)",
                p.p99_ms,
                p.utilisation * 100.0
            ),
        ),
    ];
    for (name, value) in rows {
        out += &format!("  {name:<24}{value}\n");
    }
    out += "\nbrokers each resource needs: ";
    out += &p
        .brokers_by_resource
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    out += "\n";
    for w in &p.warnings {
        out += &format!("note: {w}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_command_line_becomes_a_load() {
        let a = parse(&words(
            "--ingest 50krec/s --record-bytes 512 --partitions 12 --rf 2 --acks 1 --compression zstd --consumer-groups 3 --retention 2d --p99 10ms --headroom 20% --json",
        ))
        .expect("parses");
        assert_eq!(
            a.load.ingest.bytes_per_s(a.load.record_bytes),
            50_000.0 * 512.0
        );
        assert_eq!(
            (a.load.partitions, a.load.rf, a.load.consumer_groups),
            (12.0, 2.0, 3.0)
        );
        assert_eq!(a.load.acks, "1");
        assert_eq!(a.load.compression, "zstd");
        assert_eq!(a.load.retention_s, 172_800.0);
        assert_eq!(a.load.p99_target_ms, Some(10.0));
        assert_eq!(a.load.headroom, 0.2);
        assert!(a.json);
        assert!(parse(&words("--partitions 3")).is_err(), "no --ingest");
        let bad = parse(&words("--ingest fast")).err().expect("refused");
        assert!(bad.starts_with("--ingest: "), "{bad}");
        assert!(parse(&words("--ingest 1MB/s --acks 2")).is_err());
        assert!(parse(&words("--ingest 1MB/s --rf 1.5")).is_err());
        assert!(parse(&words("--sweep ingest=1MB/s..2MB/s")).is_ok());
    }

    #[test]
    fn the_bundled_profile_plans() {
        let profile = Profile::load(None).expect("bundled profile parses");
        let plan = model::plan(&Load::default(), &profile).expect("plan");
        assert!(plan.brokers >= 3);
        assert!(table(&Load::default(), &profile, &plan).contains("brokers"));
    }
}
