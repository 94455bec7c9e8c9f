//! `spate plan --sweep ingest=A..B`: the plan at evenly spaced ingest rates, as a table (or
//! JSON) and an SVG plot.

use super::model::{self, Load, Plan};
use super::profile::Profile;
use super::units::{self, fmt_bytes, fmt_rate, Rate};
use serde_json::Value;
use std::path::Path;

/// `ingest=100MB/s..2GB/s`: (from, to) in bytes/s.
pub fn parse_range(v: &str) -> Result<(f64, f64), String> {
    let range = v
        .strip_prefix("ingest=")
        .ok_or_else(|| format!("--sweep '{v}': only ingest=FROM..TO is swept"))?;
    let (from, to) = range
        .split_once("..")
        .ok_or_else(|| format!("--sweep '{v}': FROM..TO"))?;
    let bytes = |s: &str| match units::parse_rate(s)? {
        Rate::BytesPerS(b) => Ok(b),
        Rate::RecordsPerS(_) => Err(format!("--sweep '{v}': give bytes per second (MB/s)")),
    };
    let (from, to) = (bytes(from)?, bytes(to)?);
    if !(from > 0.0 && to > from) {
        return Err(format!("--sweep '{v}': 0 < FROM < TO"));
    }
    Ok((from, to))
}

/// The ingest rates of a sweep: `steps` points from `from` to `to`, evenly spaced.
pub fn steps(from: f64, to: f64, steps: usize) -> Vec<f64> {
    (0..steps)
        .map(|i| from + (to - from) * i as f64 / (steps - 1) as f64)
        .collect()
}

pub fn plans(
    load: &Load,
    profile: &Profile,
    range: (f64, f64),
    n: usize,
) -> Result<Vec<(f64, Plan)>, String> {
    steps(range.0, range.1, n)
        .into_iter()
        .map(|b| {
            let load = Load {
                ingest: Rate::BytesPerS(b),
                ..load.clone()
            };
            Ok((b, model::plan(&load, profile)?))
        })
        .collect()
}

pub fn table(rows: &[(f64, Plan)]) -> String {
    let mut out = format!(
        "{:>14} {:>8} {:>7} {:>11} {:>11} {:>13} {:>13} {:>13} {:>8}  {}\n",
        "ingest",
        "brokers",
        "cores",
        "memory",
        "disk",
        "disk write",
        "net in",
        "net out",
        "p99 ms",
        "limit"
    );
    for (b, p) in rows {
        out += &format!(
            "{:>14} {:>8} {:>7} {:>11} {:>11} {:>13} {:>13} {:>13} {:>8.2}  {}\n",
            fmt_rate(*b),
            p.brokers,
            p.cores_per_broker,
            fmt_bytes(p.memory_per_broker_bytes),
            fmt_bytes(p.disk_capacity_per_broker_bytes),
            fmt_rate(p.disk_write_per_broker_bytes_s),
            fmt_rate(p.network_in_per_broker_bytes_s),
            fmt_rate(p.network_out_per_broker_bytes_s),
            p.p99_ms,
            p.limit
        );
    }
    out += "(cores, memory, disk, disk write, net in/out: per broker)\n";
    out
}

pub fn run(
    load: &Load,
    profile: &Profile,
    range: (f64, f64),
    n: usize,
    svg_path: &Path,
    json: bool,
) -> Result<(), String> {
    let rows = plans(load, profile, range, n)?;
    std::fs::write(svg_path, super::svg::plot(&rows, &profile.broker))
        .map_err(|e| format!("write {}: {e}", svg_path.display()))?;
    if json {
        let list: Vec<Value> = rows.iter().map(|(_, p)| p.json(load, profile)).collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("json"));
    } else {
        print!("{}", table(&rows));
    }
    eprintln!("wrote {}", svg_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::profile::tests::FIXED;
    use super::*;

    #[test]
    fn a_sweep_steps_evenly_and_needs_more_brokers_as_it_grows() {
        assert_eq!(parse_range("ingest=100MB/s..2GB/s"), Ok((1e8, 2e9)));
        assert!(parse_range("partitions=1..2").is_err());
        assert!(parse_range("ingest=2GB/s..1GB/s").is_err());
        assert_eq!(steps(100.0, 200.0, 3), vec![100.0, 150.0, 200.0]);
        let profile = Profile::parse(FIXED).expect("valid");
        let rows = plans(&Load::default(), &profile, (1e8, 2e9), 5).expect("plans");
        assert_eq!(rows.len(), 5);
        assert!(rows.windows(2).all(|w| w[0].1.brokers <= w[1].1.brokers));
        let text = table(&rows);
        assert_eq!(text.lines().count(), 7);
        assert!(text.contains("2.00 GB/s"));
    }
}
