//! `spate plan --check`: predicts throughput, broker CPU and p99 for configurations the profile
//! did not run (other record sizes and partition counts, fixed rates at 50-80 % of the
//! predicted peak), runs them on a fresh local broker with the profile's cores, and reports the
//! prediction error of each figure.

use super::measure::{Bench, ProfileOptions};
use super::profile::{interp_log, Profile};
use crate::compare::{self, Broker};
use crate::workload::{Options, Rate, RecordSize};
use serde_json::{json, Value};
use std::path::Path;

/// A configuration to check: record bytes, partitions, and the rate as a fraction of the
/// predicted peak (None: unlimited).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    pub record_bytes: usize,
    pub partitions: u32,
    pub fraction: Option<f64>,
}

/// The configurations `--check` runs (none is a point of a profile's curves).
pub fn configs(short: bool) -> Vec<Config> {
    let mut list = vec![
        Config {
            record_bytes: 512,
            partitions: 8,
            fraction: None,
        },
        Config {
            record_bytes: 1024,
            partitions: 32,
            fraction: None,
        },
        Config {
            record_bytes: 3000,
            partitions: 8,
            fraction: Some(0.6),
        },
    ];
    if !short {
        list.push(Config {
            record_bytes: 2048,
            partitions: 4,
            fraction: Some(0.75),
        });
        list.push(Config {
            record_bytes: 1024,
            partitions: 16,
            fraction: Some(0.5),
        });
    }
    list
}

/// What the profile predicts for `c`: MB/s, broker CPU s/GB, broker CPU cores, p99 ms.
/// `cpu_at_mb_s`: the rate to predict the CPU at. A fixed-rate configuration's run is driven at
/// that rate (None: the fraction of the predicted peak, the rate `run` drives it at); an
/// unlimited one's is the rate its run reached (None: the predicted peak). The plan is always
/// given its rate (the load), so the CPU model is checked at the rate the broker carried.
pub fn predict(p: &Profile, c: &Config, cpu_at_mb_s: Option<f64>) -> Value {
    let size = c.record_bytes as f64;
    let parts = c.partitions as f64;
    let peak = p.peak_mb_s(size) * p.partitions_peak_factor(parts);
    // The configuration's CPU per GB over the base's, from the record-size and partition
    // curves: its load is this many times the same rate of the base configuration.
    let relative_cost = p.produce_cpu_s_per_gb(size) / p.produce_cpu_s_per_gb(p.base_record_bytes)
        * p.partitions_factor(parts);
    let (mb_per_s, cpu_mb_s, p99_ms) = match c.fraction {
        // Unlimited: the peak; p99 as the curves measured it at that size and partition count,
        // the partition curve's change from the base scaled onto the record-size curve.
        None => (
            peak,
            cpu_at_mb_s.unwrap_or(peak),
            interp_log(&p.record_bytes, size, |q| q.p99_ms)
                * interp_log(&p.partitions, parts, |q| q.p99_ms)
                / interp_log(&p.partitions, p.base_partitions, |q| q.p99_ms),
        ),
        Some(f) => {
            let rate = cpu_at_mb_s.unwrap_or(peak * f);
            (rate, rate, p.p99_at(f))
        }
    };
    // The broker's CPU is the base configuration's measured CPU curve at the equal work.
    let cpu_cores = p.cores_at(cpu_mb_s / 1e3 * relative_cost);
    json!({
        "mb_per_s": mb_per_s,
        "cpu_s_per_gb": cpu_cores / (cpu_mb_s / 1e3),
        "cpu_cores": cpu_cores,
        "p99_ms": p99_ms,
        "cpu_at_mb_per_s": cpu_mb_s,
    })
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
        "{} B, {} partitions, {}",
        c.record_bytes,
        c.partitions,
        c.fraction.map_or("unlimited".into(), |f| format!(
            "{:.0} % of predicted peak",
            f * 100.0
        ))
    )
}

pub fn run(profile: &Profile, short: bool, out: Option<&Path>) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let options = ProfileOptions {
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
    };
    let mut bench = Bench::new(&options)?;
    let base = bench.base();
    let target = bench.single()?;
    let mut rows = Vec::new();
    let list = configs(short);
    let outcome = (|| -> Result<(), String> {
        for (i, c) in list.iter().enumerate() {
            let driven = c.fraction.map(|_| {
                predict(profile, c, None)["mb_per_s"]
                    .as_f64()
                    .unwrap_or(1.0)
            });
            let opts = Options {
                record_bytes: RecordSize::Fixed(c.record_bytes),
                partitions: c.partitions,
                rate: driven.map_or(Rate::Unlimited, |mb_s| Rate::BytesPerS(mb_s * 1e6)),
                ..base.clone()
            };
            let run = bench.run(&target, &opts)?;
            let measured = json!({
                "mb_per_s": run["mb_per_s"], "cpu_s_per_gb": run["cpu_s_per_gb"],
                "cpu_cores": run["cpu_cores"], "p99_ms": run["p99_ms"],
            });
            let row = scored(profile, c, driven, measured);
            eprintln!("check [{}/{}] {}", i + 1, list.len(), progress(&row));
            rows.push(row);
        }
        Ok(())
    })();
    target.stop();
    outcome?;
    let report = json!({
        "measured": { "commit": compare::git(&bench.root, &["rev-parse", "--short", "HEAD"]),
                      "date": compare::today() },
        "profile": { "broker": profile.broker, "measured": profile.raw["measured"],
                     "machine": profile.raw["machine"] },
        "short": short,
        "loadavg_at_end": compare::loadavg(),
        "checks": rows,
    });
    print!("{}", table(&report));
    write(&report, out)
}

/// One check's record: its configuration, the rate its run was driven at (None: unlimited),
/// what the profile predicts, what was measured and the error of each figure.
pub fn scored(profile: &Profile, c: &Config, driven_mb_s: Option<f64>, measured: Value) -> Value {
    let cpu_at = match c.fraction {
        None => measured["mb_per_s"].as_f64(),
        Some(_) => driven_mb_s,
    };
    let predicted = predict(profile, c, cpu_at);
    let errors = errors(&predicted, &measured);
    json!({
        "config": { "record_bytes": c.record_bytes, "partitions": c.partitions,
                    "fraction_of_predicted_peak": c.fraction },
        "what": describe(c),
        "driven_mb_per_s": driven_mb_s,
        "predicted": predicted, "measured": measured, "error_pct": errors,
    })
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
        "{:<44} {:<13} {:>11} {:>11} {:>9}\n",
        "configuration", "figure", "predicted", "measured", "error"
    );
    for row in report["checks"].as_array().into_iter().flatten() {
        for f in FIGURES {
            out += &format!(
                "{:<44} {:<13} {:>11.3} {:>11.3} {:>+8.1}%\n",
                row["what"].as_str().unwrap_or(""),
                f,
                row["predicted"][f].as_f64().unwrap_or(f64::NAN),
                row["measured"][f].as_f64().unwrap_or(f64::NAN),
                row["error_pct"][f].as_f64().unwrap_or(f64::NAN),
            );
        }
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
        let base_config = Config {
            record_bytes: 1000,
            partitions: 8,
            fraction: None,
        };
        let base = predict(&p, &base_config, None);
        assert_eq!(base["mb_per_s"], 400.0);
        assert_eq!(base["cpu_s_per_gb"], 2.0);
        assert_eq!(base["cpu_cores"], 0.8);
        // 60 % of the peak at 10000 B: 480 MB/s, 1 s/GB, 0.48 cores, p99 at 0.6 = 3 ms
        let c = predict(
            &p,
            &Config {
                record_bytes: 10_000,
                partitions: 8,
                fraction: Some(0.6),
            },
            None,
        );
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
        let row = scored(&p, &base_config, None, measured);
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
}
