//! `spate plan --check`: predicts throughput, broker CPU and p99 for configurations the profile
//! did not run (other record sizes and partition counts, fixed rates at 50-80 % of the
//! predicted peak, RF 3 with acks=all on a local 3-node cluster), runs them on a fresh local
//! broker (cluster) with the profile's cores, and reports the prediction error of each figure.

use super::measure::{Bench, ProfileOptions, Target};
use super::profile::{interp_log, Profile};
use crate::compare::{self, Broker};
use crate::replicated;
use crate::workload::{Options, Rate, RecordSize};
use serde_json::{json, Value};
use std::path::Path;

/// A configuration to check: record bytes, partitions, the rate as a fraction of the
/// predicted peak (None: unlimited) and the replication factor (1: one broker, acks=1; 3: a
/// local 3-node cluster, acks=all, `min.insync.replicas=2`, as the profile's RF 3 point).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub record_bytes: usize,
    pub partitions: u32,
    pub fraction: Option<f64>,
    pub replication_factor: u32,
}

impl Config {
    const fn single(record_bytes: usize, partitions: u32, fraction: Option<f64>) -> Config {
        Config {
            record_bytes,
            partitions,
            fraction,
            replication_factor: 1,
        }
    }
}

/// The configurations `--check` runs (none is a point of a profile's curves).
pub fn configs(short: bool) -> Vec<Config> {
    let mut list = vec![
        Config::single(512, 8, None),
        Config::single(1024, 32, None),
        Config::single(3000, 8, Some(0.6)),
    ];
    if !short {
        list.push(Config::single(2048, 4, Some(0.75)));
        list.push(Config::single(1024, 16, Some(0.5)));
    }
    list.push(Config {
        record_bytes: 2048,
        partitions: 16,
        fraction: Some(0.6),
        replication_factor: replicated::REPLICATION_FACTOR as u32,
    });
    list
}

/// Why the profile cannot predict `c`, if it cannot: a replicated configuration needs the
/// profile's replication-factor curve to have a replicated point.
pub fn unpredictable(p: &Profile, c: &Config) -> Option<String> {
    (c.replication_factor > 1 && p.replica_cpu_s_per_gb().is_none()).then(|| {
        format!(
            "cannot check RF={} on a local {}-node cluster: the profile has no replicated point (curves.replication_factor has RF 1 only{}); a profile measured without --no-replication, whose cluster run succeeded, has one",
            c.replication_factor,
            replicated::NODES,
            p.raw["measured"]["notes"]
                .as_array()
                .and_then(|n| n.first())
                .and_then(Value::as_str)
                .map_or(String::new(), |n| format!(": {n}"))
        )
    })
}

/// What `c` costs per GB on `p`, relative to the base configuration's CPU per GB: its
/// record size, partitions and, replicated, acks=all plus the follower copies. None when
/// `unpredictable`.
fn relative_cost(p: &Profile, c: &Config) -> Option<f64> {
    let base = p.produce_cpu_s_per_gb(p.base_record_bytes);
    let produce =
        p.produce_cpu_s_per_gb(c.record_bytes as f64) * p.partitions_factor(c.partitions as f64);
    if c.replication_factor <= 1 {
        return Some(produce / base);
    }
    let replica = p.replica_cpu_s_per_gb()?;
    let followers = f64::from(c.replication_factor) - 1.0;
    Some((produce * p.acks_cpu_factor("all") + followers * replica) / base)
}

/// The predicted peak MB/s of `c`. One broker: the record-size curve's peak at its size times
/// the partition curve's change. Replicated: the profile's highest-RF point's rate, scaled by
/// that point's CPU per GB over `c`'s (the cluster is taken as CPU-bound at the CPU that
/// point used).
fn peak_mb_s(p: &Profile, c: &Config) -> Option<f64> {
    if c.replication_factor <= 1 {
        return Some(
            p.peak_mb_s(c.record_bytes as f64) * p.partitions_peak_factor(c.partitions as f64),
        );
    }
    let high = p.replication_factor_high()?;
    let at_point = Config {
        record_bytes: p.base_record_bytes as usize,
        partitions: p.base_partitions as u32,
        fraction: None,
        replication_factor: high.x.parse().ok()?,
    };
    Some(high.mb_per_s * relative_cost(p, &at_point)? / relative_cost(p, c)?)
}

/// What the profile predicts for `c`: MB/s, broker CPU s/GB, broker CPU cores, p99 ms.
/// `cpu_at_mb_s`: the rate to predict the CPU at. A fixed-rate configuration's run is driven at
/// that rate (None: the fraction of the predicted peak, the rate `run` drives it at); an
/// unlimited one's is the rate its run reached (None: the predicted peak). The plan is always
/// given its rate (the load), so the CPU model is checked at the rate the broker carried.
/// A replicated configuration is predicted as `spate plan` plans RF > 1: CPU from the
/// replication-factor curve's cost per follower copy (all nodes' CPU, on the profile's broker
/// cores, read off the base CPU curve at the equal work), p99 at the fraction of the peak plus
/// what acks=all and replication added in the profile. Err: `unpredictable`'s reason.
pub fn predict(p: &Profile, c: &Config, cpu_at_mb_s: Option<f64>) -> Result<Value, String> {
    if let Some(why) = unpredictable(p, c) {
        return Err(why);
    }
    let size = c.record_bytes as f64;
    let parts = c.partitions as f64;
    let why = || format!("the profile cannot predict {}", describe(c));
    let peak = peak_mb_s(p, c).ok_or_else(why)?;
    // The configuration's CPU per GB over the base's: its load is this many times the same
    // rate of the base configuration.
    let relative_cost = relative_cost(p, c).ok_or_else(why)?;
    let (mb_per_s, cpu_mb_s, p99_ms) = match (c.fraction, c.replication_factor > 1) {
        // Unlimited, one broker: the peak; p99 as the curves measured it at that size and
        // partition count, the partition curve's change from the base scaled onto the
        // record-size curve.
        (None, false) => (
            peak,
            cpu_at_mb_s.unwrap_or(peak),
            interp_log(&p.record_bytes, size, |q| q.p99_ms)
                * interp_log(&p.partitions, parts, |q| q.p99_ms)
                / interp_log(&p.partitions, p.base_partitions, |q| q.p99_ms),
        ),
        // Unlimited, replicated: the highest-RF point's p99.
        (None, true) => (
            peak,
            cpu_at_mb_s.unwrap_or(peak),
            p.replication_factor_high().map_or(f64::NAN, |h| h.p99_ms),
        ),
        (Some(f), replicated) => {
            let rate = cpu_at_mb_s.unwrap_or(peak * f);
            let added = if replicated {
                p.acks_p99_add_ms("all") + p.replica_p99_add_ms()
            } else {
                0.0
            };
            (rate, rate, p.p99_at(f) + added)
        }
    };
    // The broker's CPU is the base configuration's measured CPU curve at the equal work.
    let cpu_cores = p.cores_at(cpu_mb_s / 1e3 * relative_cost);
    Ok(json!({
        "mb_per_s": mb_per_s,
        "cpu_s_per_gb": cpu_cores / (cpu_mb_s / 1e3),
        "cpu_cores": cpu_cores,
        "p99_ms": p99_ms,
        "cpu_at_mb_per_s": cpu_mb_s,
    }))
}

pub const FIGURES: [&str; 4] = ["mb_per_s", "cpu_s_per_gb", "cpu_cores", "p99_ms"];

/// (measured - predicted) / predicted, in percent, per figure.
pub fn errors(predicted: &Value, measured: &Value) -> Value {
    FIGURES
        .iter()
        .map(|f| {
            let (p, m) = (
                predicted[f].as_f64().unwrap_or(f64::NAN),
                measured[f].as_f64().unwrap_or(f64::NAN),
            );
            (f.to_string(), json!((m - p) / p * 100.0))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn describe(c: &Config) -> String {
    format!(
        "{} B, {} partitions, {}{}",
        c.record_bytes,
        c.partitions,
        c.fraction.map_or("unlimited".into(), |f| format!(
            "{:.0} % of predicted peak",
            f * 100.0
        )),
        if c.replication_factor > 1 {
            format!(", RF {} acks=all", c.replication_factor)
        } else {
            String::new()
        }
    )
}

/// The configurations of `configs(short)` the profile can predict, and a record (`what`,
/// `why`) of each it cannot.
pub fn plan_checks(p: &Profile, short: bool) -> (Vec<Config>, Vec<Value>) {
    let mut runnable = Vec::new();
    let mut skipped = Vec::new();
    for c in configs(short) {
        match unpredictable(p, &c) {
            None => runnable.push(c),
            Some(why) => skipped.push(json!({ "what": describe(&c), "why": why })),
        }
    }
    (runnable, skipped)
}

/// How the check measures: the profile's broker, broker cores and client cores.
fn bench_options(profile: &Profile, short: bool) -> ProfileOptions {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    ProfileOptions {
        broker: if profile.broker == "kafka" {
            Broker::Kafka
        } else {
            Broker::Spate
        },
        short,
        out: Default::default(),
        broker_cores: profile.raw["broker_cores_list"]
            .as_str()
            .unwrap_or("0")
            .into(),
        client_cores: profile.raw["client_cores"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_u64())
                    .map(|c| c as usize)
                    .collect()
            })
            .unwrap_or_else(|| vec![cpus.saturating_sub(1)]),
        work_dir: None,
        replication: false,
    }
}

pub fn run(profile: &Profile, short: bool, out: Option<&Path>) -> Result<(), String> {
    let mut bench = Bench::new(&bench_options(profile, short))?;
    let (list, skipped) = plan_checks(profile, short);
    for s in &skipped {
        eprintln!("check: {}", s["why"].as_str().unwrap_or(""));
    }
    let (single, replicated): (Vec<Config>, Vec<Config>) =
        list.iter().partition(|c| c.replication_factor <= 1);
    let mut rows = Vec::new();
    let total = list.len();
    for (configs, start) in [
        (
            single,
            Bench::single as fn(&Bench) -> Result<Target, String>,
        ),
        (replicated, Bench::cluster),
    ] {
        if configs.is_empty() {
            continue;
        }
        let target = start(&bench)?;
        let outcome = run_on(&mut bench, &target, profile, &configs, &mut rows, total);
        target.stop();
        outcome?;
    }
    let report = json!({
        "measured": { "commit": compare::git(&bench.root, &["rev-parse", "--short", "HEAD"]),
                      "date": compare::today() },
        "profile": { "broker": profile.broker, "measured": profile.raw["measured"],
                     "machine": profile.raw["machine"] },
        "short": short,
        "loadavg_at_end": compare::loadavg(),
        "checks": rows,
        "skipped": skipped,
    });
    print!("{}", table(&report));
    write(&report, out)
}

/// Runs `configs` on `target` (one broker or the cluster), appending each scored row.
fn run_on(
    bench: &mut Bench,
    target: &Target,
    profile: &Profile,
    configs: &[Config],
    rows: &mut Vec<Value>,
    total: usize,
) -> Result<(), String> {
    for c in configs {
        let driven = match c.fraction {
            Some(_) => predict(profile, c, None)?["mb_per_s"].as_f64(),
            None => None,
        };
        let base = bench.base();
        let opts = Options {
            record_bytes: RecordSize::Fixed(c.record_bytes),
            partitions: c.partitions,
            rate: driven.map_or(Rate::Unlimited, |mb_s| Rate::BytesPerS(mb_s * 1e6)),
            ..base
        };
        let opts = if c.replication_factor > 1 {
            bench.replicated(&opts)
        } else {
            opts
        };
        let run = bench.run(target, &opts)?;
        let measured = json!({
            "mb_per_s": run["mb_per_s"], "cpu_s_per_gb": run["cpu_s_per_gb"],
            "cpu_cores": run["cpu_cores"], "p99_ms": run["p99_ms"],
        });
        let row = scored(profile, c, driven, measured)?;
        eprintln!("check [{}/{total}] {}", rows.len() + 1, progress(&row));
        rows.push(row);
    }
    Ok(())
}

/// One check's record: its configuration, the rate its run was driven at (None: unlimited),
/// what the profile predicts, what was measured and the error of each figure.
pub fn scored(
    profile: &Profile,
    c: &Config,
    driven_mb_s: Option<f64>,
    measured: Value,
) -> Result<Value, String> {
    let cpu_at = match c.fraction {
        None => measured["mb_per_s"].as_f64(),
        Some(_) => driven_mb_s,
    };
    let predicted = predict(profile, c, cpu_at)?;
    let errors = errors(&predicted, &measured);
    Ok(json!({
        "config": { "record_bytes": c.record_bytes, "partitions": c.partitions,
                    "fraction_of_predicted_peak": c.fraction,
                    "replication_factor": c.replication_factor,
                    "acks": if c.replication_factor > 1 { "all" } else { "1" } },
        "what": describe(c),
        "driven_mb_per_s": driven_mb_s,
        "predicted": predicted, "measured": measured, "error_pct": errors,
    }))
}

/// A check's errors on one line.
pub fn progress(row: &Value) -> String {
    let e = |f: &str| row["error_pct"][f].as_f64().unwrap_or(f64::NAN);
    format!(
        "{}: error throughput {:+.1} %, CPU/GB {:+.1} %, CPU cores {:+.1} %, p99 {:+.1} %",
        row["what"].as_str().unwrap_or(""),
        e("mb_per_s"),
        e("cpu_s_per_gb"),
        e("cpu_cores"),
        e("p99_ms"),
    )
}

/// Writes a check report (JSON) to `out`, when given.
pub fn write(report: &Value, out: Option<&Path>) -> Result<(), String> {
    if let Some(path) = out {
        std::fs::write(
            path,
            serde_json::to_string_pretty(report).expect("json") + "\n",
        )
        .map_err(|e| format!("write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The check report for people: predicted, measured and error per figure.
pub fn table(report: &Value) -> String {
    let mut out = format!(
        "{:<62} {:<13} {:>11} {:>11} {:>9}\n",
        "configuration", "figure", "predicted", "measured", "error"
    );
    for row in report["checks"].as_array().into_iter().flatten() {
        for f in FIGURES {
            out += &format!(
                "{:<62} {:<13} {:>11.3} {:>11.3} {:>+8.1}%\n",
                row["what"].as_str().unwrap_or(""),
                f,
                row["predicted"][f].as_f64().unwrap_or(f64::NAN),
                row["measured"][f].as_f64().unwrap_or(f64::NAN),
                row["error_pct"][f].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    for s in report["skipped"].as_array().into_iter().flatten() {
        out += &format!("not checked: {}\n", s["why"].as_str().unwrap_or(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::profile::tests::FIXED;
    use super::*;

    #[test]
    fn predictions_on_the_fixed_profile() {
        let p = Profile::parse(FIXED).expect("valid");
        // 1000 B, 8 partitions: the base point itself
        let base_config = Config::single(1000, 8, None);
        let base = predict(&p, &base_config, None).expect("predicted");
        assert_eq!(base["mb_per_s"], 400.0);
        assert_eq!(base["cpu_s_per_gb"], 2.0);
        assert_eq!(base["cpu_cores"], 0.8);
        // 60 % of the peak at 10000 B: 480 MB/s, 1 s/GB, 0.48 cores, p99 at 0.6 = 3 ms
        let c = predict(&p, &Config::single(10_000, 8, Some(0.6)), None).expect("predicted");
        assert!((c["mb_per_s"].as_f64().unwrap() - 480.0).abs() < 1e-9);
        assert!((c["cpu_cores"].as_f64().unwrap() - 0.48).abs() < 1e-9);
        assert!((c["p99_ms"].as_f64().unwrap() - 3.0).abs() < 1e-9);
        let measured =
            json!({"mb_per_s": 440.0, "cpu_s_per_gb": 1.1, "cpu_cores": 0.48, "p99_ms": 6.0});
        let e = errors(&c, &measured);
        assert!((e["mb_per_s"].as_f64().unwrap() + 8.333_333).abs() < 1e-3);
        assert!((e["cpu_s_per_gb"].as_f64().unwrap() - 10.0).abs() < 1e-9);
        assert!((e["p99_ms"].as_f64().unwrap() - 100.0).abs() < 1e-9);
        // an unlimited run that reached 300 MB/s: throughput is still predicted at the peak,
        // CPU at the 300 MB/s the broker carried (0.3 GB/s x 2 s/GB = 0.6 cores)
        let measured =
            json!({"mb_per_s": 300.0, "cpu_s_per_gb": 2.4, "cpu_cores": 0.72, "p99_ms": 5.0});
        let row = scored(&p, &base_config, None, measured).expect("scored");
        assert_eq!(row["predicted"]["mb_per_s"], 400.0);
        assert!((row["predicted"]["cpu_cores"].as_f64().unwrap() - 0.6).abs() < 1e-9);
        assert!((row["predicted"]["cpu_s_per_gb"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        assert!((row["error_pct"]["mb_per_s"].as_f64().unwrap() + 25.0).abs() < 1e-9);
        assert!((row["error_pct"]["cpu_s_per_gb"].as_f64().unwrap() - 20.0).abs() < 1e-9);
        assert!(progress(&row).contains("error throughput -25.0 %"));
        // no check configuration is a point of the profile's curves
        for c in configs(false) {
            assert!(
                !(c.partitions == 8
                    && [100, 300, 1024, 4096, 16384].contains(&c.record_bytes)
                    && c.fraction.is_none())
            );
        }
    }

    /// RF 3, acks=all on the fixed profile, by hand: 10000 B on 8 partitions costs 1.0 s/GB
    /// to produce, x 1.25 for acks=all, plus 2 follower copies x 1.0 s/GB (RF 3's 4.5 - RF 1's
    /// 2.5, over 2) = 3.25 s/GB. The RF 3 point (1000 B: 2.0 x 1.25 + 2 = 4.5 s/GB) ran 150
    /// MB/s: the cluster, CPU-bound, does 150 x 4.5 / 3.25 = 207.7 MB/s of it. At 60 %:
    /// 124.6 MB/s, 0.1246 GB/s x 3.25 = 0.405 cores (no CPU curve: proportional), p99 =
    /// p99_at(0.6) 3 ms + acks=all's 3 ms + RF 3's 2 ms = 8 ms.
    #[test]
    fn a_three_node_configuration_is_predicted_from_the_rf_curve() {
        let p = Profile::parse(FIXED).expect("valid");
        let c = Config {
            record_bytes: 10_000,
            partitions: 8,
            fraction: Some(0.6),
            replication_factor: 3,
        };
        let peak = 150.0 * 4.5 / 3.25;
        assert!((peak_mb_s(&p, &c).unwrap() - peak).abs() < 1e-9);
        let predicted = predict(&p, &c, None).expect("predicted");
        let figure = |f: &str| predicted[f].as_f64().unwrap();
        assert!((figure("mb_per_s") - 0.6 * peak).abs() < 1e-9);
        assert!((figure("cpu_s_per_gb") - 3.25).abs() < 1e-9);
        assert!((figure("cpu_cores") - 0.6 * peak / 1e3 * 3.25).abs() < 1e-9);
        assert!((figure("cpu_cores") - 0.405).abs() < 1e-9);
        assert!((figure("p99_ms") - 8.0).abs() < 1e-9);
        // the RF 3 point itself, unlimited: its own rate, CPU per GB and p99
        let point = Config {
            record_bytes: 1000,
            fraction: None,
            ..c
        };
        let at_point = predict(&p, &point, None).expect("predicted");
        assert!((at_point["mb_per_s"].as_f64().unwrap() - 150.0).abs() < 1e-9);
        assert!((at_point["cpu_s_per_gb"].as_f64().unwrap() - 4.5).abs() < 1e-9);
        assert_eq!(at_point["p99_ms"], 7.0);
        // scored as the others: the row names its RF and acks
        let measured =
            json!({"mb_per_s": 124.6, "cpu_s_per_gb": 3.9, "cpu_cores": 0.486, "p99_ms": 8.0});
        let row = scored(&p, &c, Some(0.6 * peak), measured).expect("scored");
        assert_eq!(row["config"]["replication_factor"], 3);
        assert_eq!(row["config"]["acks"], "all");
        assert!((row["error_pct"]["cpu_s_per_gb"].as_f64().unwrap() - 20.0).abs() < 1e-9);
        assert!(row["what"].as_str().unwrap().ends_with("RF 3 acks=all"));
    }

    #[test]
    fn a_profile_without_a_replicated_point_says_it_cannot_check_rf3() {
        let mut v: Value = serde_json::from_str(FIXED).expect("json");
        v["curves"]["replication_factor"] = json!([{
            "x": 1, "mb_per_s": 300.0, "cpu_s_per_gb": 2.5, "p99_ms": 5.0
        }]);
        v["measured"]["notes"] = json!(["--no-replication: RF=1 only"]);
        let p = Profile::parse(&v.to_string()).expect("valid");
        let (runnable, skipped) = plan_checks(&p, true);
        assert!(runnable.iter().all(|c| c.replication_factor == 1));
        assert_eq!(runnable.len(), configs(true).len() - 1);
        assert_eq!(skipped.len(), 1);
        let why = skipped[0]["why"].as_str().unwrap();
        assert!(why.contains("cannot check RF=3"), "{why}");
        assert!(why.contains("--no-replication: RF=1 only"), "{why}");
        let rf3 = configs(true)
            .into_iter()
            .find(|c| c.replication_factor == 3)
            .expect("an RF 3 configuration");
        assert!(predict(&p, &rf3, None)
            .expect_err("refused")
            .contains("no replicated point"));
        let report = json!({ "checks": [], "skipped": skipped });
        assert!(table(&report).contains("not checked: cannot check RF=3"));
        // the fixed profile has its RF 3 point: every configuration is checked
        let fixed = Profile::parse(FIXED).expect("valid");
        assert!(plan_checks(&fixed, true).1.is_empty());
    }
}
