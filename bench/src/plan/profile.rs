//! A machine profile (`spate bench profile` writes it, `spate plan` reads it): the machine's
//! facts, its disk and loopback, and curves of short bench runs. The JSON layout is
//! `schema: "spate-profile/1"`, described in bench/PLANNING.md; this module reads it and
//! derives the per-byte costs the model uses.

use serde_json::Value;

pub const SCHEMA: &str = "spate-profile/1";

/// The default profiles, measured with `spate bench profile` and kept in the repository.
pub const BUNDLED_SPATE: &str = include_str!("../../profiles/spate-default.json");

/// One bench run of a curve: its parameter (`x`: record bytes, partitions, acks, codec, RF,
/// consumer groups) and what was measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub x: String,
    pub mb_per_s: f64,
    /// Broker CPU seconds (all nodes) per GB of produced payload.
    pub cpu_s_per_gb: f64,
    pub p99_ms: f64,
    pub rss_mib: f64,
    /// Partitions on the broker when `rss_mib` was read (the partition curve's runs share a
    /// broker, so partitions add up); `x` when not given.
    pub rss_partitions: f64,
    /// Compressed batch bytes / payload bytes (compression curve; 1 elsewhere).
    pub ratio: f64,
    /// Broker CPU cores busy over the run: `cpu_cores` when recorded, else the rate times the
    /// CPU per GB (the same figure: CPU seconds over the run's seconds).
    pub cpu_cores: f64,
}

impl Point {
    fn x_f64(&self) -> f64 {
        self.x.parse().unwrap_or(f64::NAN)
    }
}

/// A profile as the model uses it.
#[derive(Clone, Debug)]
pub struct Profile {
    pub broker: String,
    pub broker_cores: f64,
    pub disk_write_mb_s: f64,
    pub fsync_p99_ms: f64,
    /// Bytes the broker wrote to disk per payload byte (indexes, metadata, batch headers).
    pub disk_write_amplification: f64,
    pub loopback_mb_s: f64,
    pub base_record_bytes: f64,
    pub base_partitions: f64,
    pub record_bytes: Vec<Point>,
    pub partitions: Vec<Point>,
    pub acks: Vec<Point>,
    pub compression: Vec<Point>,
    pub replication_factor: Vec<Point>,
    pub consumer_groups: Vec<Point>,
    /// (fraction of the peak rate, p99 ms) of the base configuration at fixed rates.
    pub latency: Vec<(f64, f64)>,
    pub raw: Value,
}

fn num(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("profile: {what} is missing or not a number"))
}

fn points(v: &Value, curve: &str) -> Result<Vec<Point>, String> {
    let list = v["curves"][curve].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|p| {
            let x = match &p["x"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let what = |field: &str| format!("curves.{curve}[x={x}].{field}");
            if num(&p["mb_per_s"], &what("mb_per_s"))? <= 0.0 {
                return Err(format!(
                    "profile: {} is 0: that run acknowledged nothing, so it measured no cost (measure the profile again)",
                    what("mb_per_s")
                ));
            }
            Ok(Point {
                mb_per_s: num(&p["mb_per_s"], &what("mb_per_s"))?,
                cpu_s_per_gb: num(&p["cpu_s_per_gb"], &what("cpu_s_per_gb"))?,
                p99_ms: num(&p["p99_ms"], &what("p99_ms"))?,
                rss_mib: p["rss_mib"].as_f64().unwrap_or(0.0),
                rss_partitions: p["rss_partitions"]
                    .as_f64()
                    .unwrap_or_else(|| x.parse().unwrap_or(f64::NAN)),
                ratio: p["ratio"].as_f64().unwrap_or(1.0),
                cpu_cores: p["cpu_cores"].as_f64().unwrap_or_else(|| {
                    p["mb_per_s"].as_f64().unwrap_or(0.0) / 1e3
                        * p["cpu_s_per_gb"].as_f64().unwrap_or(0.0)
                }),
                x,
            })
        })
        .collect()
}

impl Profile {
    pub fn parse(text: &str) -> Result<Profile, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("profile: {e}"))?;
        if v["schema"] != SCHEMA {
            return Err(format!(
                "profile: schema is {}, expected {SCHEMA}",
                v["schema"]
            ));
        }
        let latency = v["curves"]["latency"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                Ok((
                    num(&p["x"], "latency x")?,
                    num(&p["p99_ms"], "latency p99_ms")?,
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let profile = Profile {
            broker: v["broker"].as_str().unwrap_or("spate").to_string(),
            broker_cores: num(&v["broker_cores"], "broker_cores")?,
            disk_write_mb_s: num(&v["disk"]["direct_write_mb_s"], "disk.direct_write_mb_s")?,
            fsync_p99_ms: num(&v["disk"]["fsync_p99_ms"], "disk.fsync_p99_ms")?,
            disk_write_amplification: v["disk"]["write_amplification"]
                .as_f64()
                .filter(|a| *a >= 1.0)
                .unwrap_or(1.0),
            loopback_mb_s: num(&v["network"]["loopback_mb_s"], "network.loopback_mb_s")?,
            base_record_bytes: num(&v["base"]["record_bytes"], "base.record_bytes")?,
            base_partitions: num(&v["base"]["partitions"], "base.partitions")?,
            record_bytes: points(&v, "record_bytes")?,
            partitions: points(&v, "partitions")?,
            acks: points(&v, "acks")?,
            compression: points(&v, "compression")?,
            replication_factor: points(&v, "replication_factor")?,
            consumer_groups: points(&v, "consumer_groups")?,
            latency,
            raw: v,
        };
        if profile.record_bytes.is_empty() || profile.partitions.is_empty() {
            return Err("profile: curves.record_bytes and curves.partitions need points".into());
        }
        Ok(profile)
    }

    pub fn load(path: Option<&std::path::Path>) -> Result<Profile, String> {
        match path {
            Some(p) => Profile::parse(
                &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            ),
            None => Profile::parse(BUNDLED_SPATE),
        }
    }

    /// Produce CPU s/GB at `record_bytes` (base partitions, acks 1, no compression).
    pub fn produce_cpu_s_per_gb(&self, record_bytes: f64) -> f64 {
        interp_log(&self.record_bytes, record_bytes, |p| p.cpu_s_per_gb)
    }

    /// Peak MB/s of the whole profiled broker at `record_bytes` (base partitions).
    pub fn peak_mb_s(&self, record_bytes: f64) -> f64 {
        interp_log(&self.record_bytes, record_bytes, |p| p.mb_per_s)
    }

    /// CPU s/GB at `partitions` relative to the base partition count (1 at the base).
    pub fn partitions_factor(&self, partitions: f64) -> f64 {
        let at = |n| interp_log(&self.partitions, n, |p| p.cpu_s_per_gb);
        at(partitions) / at(self.base_partitions)
    }

    /// Peak MB/s at `partitions` relative to the base partition count.
    pub fn partitions_peak_factor(&self, partitions: f64) -> f64 {
        let at = |n| interp_log(&self.partitions, n, |p| p.mb_per_s);
        at(partitions) / at(self.base_partitions)
    }

    /// A named point's figure relative to another named point of the same curve (1 when
    /// either is missing: the profile did not measure it).
    fn relative(curve: &[Point], x: &str, base: &str, f: fn(&Point) -> f64) -> f64 {
        let find = |x: &str| curve.iter().find(|p| p.x == x).map(f);
        match (find(x), find(base)) {
            (Some(a), Some(b)) if b > 0.0 => a / b,
            _ => 1.0,
        }
    }

    pub fn acks_cpu_factor(&self, acks: &str) -> f64 {
        Self::relative(&self.acks, acks, "1", |p| p.cpu_s_per_gb)
    }

    pub fn compression_cpu_factor(&self, codec: &str) -> f64 {
        Self::relative(&self.compression, codec, "none", |p| p.cpu_s_per_gb)
    }

    /// Compressed bytes per payload byte of `codec` (1 for none or an unmeasured codec).
    pub fn compression_ratio(&self, codec: &str) -> f64 {
        self.compression
            .iter()
            .find(|p| p.x == codec)
            .map_or(1.0, |p| p.ratio)
    }

    pub fn has_codec(&self, codec: &str) -> bool {
        codec == "none" || self.compression.iter().any(|p| p.x == codec)
    }

    /// CPU s per GB of ingest that each follower copy costs the cluster: (CPU per GB at the
    /// highest RF measured - CPU per GB at RF 1) / (RF - 1). None without an RF > 1 point.
    pub fn replica_cpu_s_per_gb(&self) -> Option<f64> {
        let one = self.replication_factor.iter().find(|p| p.x == "1")?;
        let high = self.replication_factor_high()?;
        Some(((high.cpu_s_per_gb - one.cpu_s_per_gb) / (high.x_f64() - 1.0)).max(0.0))
    }

    /// The replication-factor curve's point at the highest RF above 1 (a local cluster).
    pub fn replication_factor_high(&self) -> Option<&Point> {
        self.replication_factor
            .iter()
            .filter(|p| p.x_f64() > 1.0)
            .max_by(|a, b| a.x_f64().total_cmp(&b.x_f64()))
    }

    /// p99 added by replication (highest RF measured minus RF 1, both acks=all), ms.
    pub fn replica_p99_add_ms(&self) -> f64 {
        let one = self.replication_factor.iter().find(|p| p.x == "1");
        match (one, self.replication_factor_high()) {
            (Some(o), Some(h)) => (h.p99_ms - o.p99_ms).max(0.0),
            _ => 0.0,
        }
    }

    /// Broker CPU s per GB each consumer group reads: the slope of CPU per GB produced over
    /// the number of groups (least squares through the measured points).
    pub fn fetch_cpu_s_per_gb_per_group(&self) -> f64 {
        let pts: Vec<(f64, f64)> = self
            .consumer_groups
            .iter()
            .map(|p| (p.x_f64(), p.cpu_s_per_gb))
            .collect();
        slope(&pts).unwrap_or(0.0).max(0.0)
    }

    /// Peak RSS (MiB) the broker has with no partitions, and KiB per partition: the line
    /// through the partition curve's peak RSS.
    pub fn memory_line(&self) -> (f64, f64) {
        let pts: Vec<(f64, f64)> = self
            .partitions
            .iter()
            .filter(|p| p.rss_mib > 0.0 && p.rss_partitions.is_finite())
            .map(|p| (p.rss_partitions, p.rss_mib))
            .collect();
        let per = slope(&pts).unwrap_or(0.0).max(0.0);
        let mean_x = pts.iter().map(|p| p.0).sum::<f64>() / pts.len().max(1) as f64;
        let mean_y = pts.iter().map(|p| p.1).sum::<f64>() / pts.len().max(1) as f64;
        ((mean_y - per * mean_x).max(0.0), per * 1024.0)
    }

    /// What `curves.partitions` says of partitions per broker core (bench/PLANNING.md,
    /// "Partitions per core"). A partition count limits the broker when its run was
    /// CPU-bound (the broker busy on at least `CPU_BOUND_SHARE` of its cores) and its
    /// throughput fell under `PARTITIONS_PEAK_SHARE_MIN` of the best count's: then the broker,
    /// not the bench's one producer, set the rate. The limit is the largest count measured
    /// below the first such count. A drop with CPU to spare is the client's (one producer
    /// spreading the same batches over more partitions) and limits nothing.
    pub fn partitions_per_core(&self) -> PartitionsPerCore {
        let mut pts: Vec<&Point> = self.partitions.iter().filter(|p| p.x_f64() > 0.0).collect();
        pts.sort_by(|a, b| a.x_f64().total_cmp(&b.x_f64()));
        let best = pts.iter().map(|p| p.mb_per_s).fold(0.0, f64::max);
        let bound = |p: &Point| {
            p.cpu_cores >= CPU_BOUND_SHARE * self.broker_cores
                && p.mb_per_s < PARTITIONS_PEAK_SHARE_MIN * best
        };
        let first_bound = pts.iter().position(|p| bound(p));
        let last_within = match first_bound {
            Some(i) => i.checked_sub(1),
            None => pts.len().checked_sub(1),
        };
        let per_core = |i: Option<usize>| i.map_or(0.0, |i| pts[i].x_f64() / self.broker_cores);
        PartitionsPerCore {
            measured: per_core(pts.len().checked_sub(1)),
            max: first_bound.map(|_| per_core(last_within).max(1.0 / self.broker_cores)),
        }
    }

    /// p99 (ms) of the base configuration at `fraction` of its peak rate: linear between the
    /// fixed-rate runs, flat beyond them. The unlimited run (`x` >= 1) is left out: its latency
    /// runs from record creation, not from the intended send time, so it is no point of this
    /// curve. p99 cannot fall as the load rises: a run whose p99 is above a later (higher rate)
    /// run's is taken at the later run's value (a stall that did not recur at a higher load is
    /// not the load's doing).
    pub fn p99_at(&self, fraction: f64) -> f64 {
        interp(&self.p99_curve(), fraction)
    }

    /// The points `p99_at` interpolates: (fraction, p99 ms), sorted, non-decreasing.
    pub fn p99_curve(&self) -> Vec<(f64, f64)> {
        let fixed: Vec<(f64, f64)> = self.latency.iter().copied().filter(|p| p.0 < 1.0).collect();
        let mut pts = if fixed.is_empty() {
            self.latency.clone()
        } else {
            fixed
        };
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut lowest_above = f64::INFINITY;
        for p in pts.iter_mut().rev() {
            lowest_above = lowest_above.min(p.1);
            p.1 = lowest_above;
        }
        pts
    }

    /// The broker's CPU against its load: (GB/s of the base configuration, broker CPU cores),
    /// the runs of `curves.latency` that measured CPU (the fixed-rate runs and the unlimited
    /// one), sorted by rate, made non-decreasing (CPU cannot fall as the load rises: a point
    /// below an earlier one is taken at the earlier one's value). Empty when no run measured
    /// CPU (then the cost is the base run's CPU per GB, proportional to the rate).
    pub fn cpu_curve(&self) -> Vec<(f64, f64)> {
        let runs = self.raw["curves"]["latency"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut pts: Vec<(f64, f64)> = runs
            .iter()
            .filter_map(|r| Some((r["mb_per_s"].as_f64()? / 1e3, r["cpu_cores"].as_f64()?)))
            .filter(|p| p.0 > 0.0 && p.1 > 0.0 && p.0.is_finite() && p.1.is_finite())
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut highest_below = 0.0f64;
        for p in pts.iter_mut() {
            highest_below = highest_below.max(p.1);
            p.1 = highest_below;
        }
        pts
    }

    /// Broker CPU cores (of the profiled broker) at `work`: GB/s of the base configuration, or
    /// of any load whose CPU per GB has been scaled to the base's (`work` = rate x its CPU per
    /// GB / the base's). Linear between the measured runs; below the lowest and above the
    /// highest, proportional to the rate at that run's CPU per GB.
    pub fn cores_at(&self, work: f64) -> f64 {
        let pts = self.cpu_curve();
        let (Some(&low), Some(&high)) = (pts.first(), pts.last()) else {
            return work * self.produce_cpu_s_per_gb(self.base_record_bytes);
        };
        if work <= low.0 {
            work * low.1 / low.0
        } else if work >= high.0 {
            work * high.1 / high.0
        } else {
            interp(&pts, work)
        }
    }

    /// The inverse of `cores_at`: the most work (GB/s of the base configuration) the profiled
    /// broker does within `cores` of CPU.
    pub fn work_within(&self, cores: f64) -> f64 {
        let pts = self.cpu_curve();
        let (Some(&low), Some(&high)) = (pts.first(), pts.last()) else {
            return cores / self.produce_cpu_s_per_gb(self.base_record_bytes);
        };
        if cores < low.1 {
            return cores * low.0 / low.1;
        }
        if cores >= high.1 {
            return cores * high.0 / high.1;
        }
        // the first segment that rises past `cores` holds the largest work within it
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if y1 > cores {
                return x0 + (cores - y0) / (y1 - y0) * (x1 - x0);
            }
        }
        high.0
    }

    /// p99 acks=all adds over acks=1 at the peak (ms, not below 0).
    pub fn acks_p99_add_ms(&self, acks: &str) -> f64 {
        let find = |x: &str| self.acks.iter().find(|p| p.x == x).map(|p| p.p99_ms);
        match (find(acks), find("1")) {
            (Some(a), Some(b)) => (a - b).max(0.0),
            _ => 0.0,
        }
    }
}

/// Share of its cores a broker must be busy on for a run to count as CPU-bound (assumption:
/// a thread-per-core broker at its limit keeps its cores near 100 %).
pub const CPU_BOUND_SHARE: f64 = 0.9;

/// A CPU-bound partition count whose peak is under this share of the best count's is past
/// the broker's limit.
pub const PARTITIONS_PEAK_SHARE_MIN: f64 = 0.8;

/// Partitions per broker core, from `curves.partitions`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartitionsPerCore {
    /// The most partitions per core the curve measured.
    pub measured: f64,
    /// The most partitions per core before a count that limited the broker; None when no
    /// measured count did (then there is no limit within the measured range, and none
    /// known beyond it).
    pub max: Option<f64>,
}

/// Least-squares slope of y over x; None with under two distinct x.
pub fn slope(pts: &[(f64, f64)]) -> Option<f64> {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Linear interpolation through (x, y) points sorted by x here; flat beyond the ends.
pub fn interp(pts: &[(f64, f64)], x: f64) -> f64 {
    let mut p: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.0.is_finite()).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (Some(first), Some(last)) = (p.first(), p.last()) else {
        return f64::NAN;
    };
    if x <= first.0 {
        return first.1;
    }
    if x >= last.0 {
        return last.1;
    }
    for w in p.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x >= x0 && x <= x1 {
            return if x1 > x0 {
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            } else {
                y0
            };
        }
    }
    last.1
}

/// Interpolation of a curve's figure, linear in log(x) (record sizes and partition counts
/// span decades).
pub fn interp_log(curve: &[Point], x: f64, f: fn(&Point) -> f64) -> f64 {
    let pts: Vec<(f64, f64)> = curve
        .iter()
        .filter(|p| p.x_f64() > 0.0)
        .map(|p| (p.x_f64().ln(), f(p)))
        .collect();
    interp(&pts, x.max(f64::MIN_POSITIVE).ln())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The fixed profile the unit tests and tests/integration/test_plan.py plan with.
    pub const FIXED: &str = include_str!("../../profiles/test-fixed.json");

    #[test]
    fn the_fixed_profile_derives_its_costs() {
        let p = Profile::parse(FIXED).expect("valid");
        assert_eq!(p.produce_cpu_s_per_gb(1000.0), 2.0);
        // halfway between 100 B (4.0) and 1000 B (2.0) in log scale
        assert!((p.produce_cpu_s_per_gb(316.227_766) - 3.0).abs() < 1e-6);
        assert_eq!(p.produce_cpu_s_per_gb(50.0), 4.0); // flat beyond the ends
        assert_eq!(p.acks_cpu_factor("all"), 1.25);
        assert_eq!(p.compression_cpu_factor("zstd"), 1.5);
        assert_eq!(p.compression_ratio("zstd"), 0.5);
        assert_eq!(p.compression_ratio("none"), 1.0);
        assert_eq!(p.replica_cpu_s_per_gb(), Some(1.0));
        assert_eq!(p.fetch_cpu_s_per_gb_per_group(), 0.5);
        let (base, per_kib) = p.memory_line();
        assert!((base - 100.0).abs() < 1e-9 && (per_kib - 102.4).abs() < 1e-9);
        // no partition run was CPU-bound (at most 0.8 of its 1 core): no limit
        assert_eq!(
            p.partitions_per_core(),
            PartitionsPerCore {
                measured: 1000.0,
                max: None
            }
        );
        assert_eq!(p.p99_at(0.5), 2.0);
        assert_eq!(p.p99_at(0.65), 3.5);
        assert_eq!(p.acks_p99_add_ms("all"), 3.0);
        assert_eq!(p.replica_p99_add_ms(), 2.0);
    }

    #[test]
    fn the_cpu_curve_comes_from_the_latency_runs() {
        let mut p = Profile::parse(FIXED).expect("valid");
        // no cpu_cores: the base run's 2 s/GB, proportional to the rate
        assert!(p.cpu_curve().is_empty());
        assert!((p.cores_at(0.2) - 0.4).abs() < 1e-12);
        assert!((p.work_within(0.7) - 0.35).abs() < 1e-12);
        // runs at 100, 200, 300 and 400 MB/s; the 300 MB/s run's 0.5 cores is below the
        // 200 MB/s run's 0.6, so it is taken as 0.6 (CPU does not fall as the load rises)
        p.raw["curves"]["latency"] = serde_json::json!([
            { "x": 0.25, "mb_per_s": 100.0, "cpu_cores": 0.4, "p99_ms": 1.0 },
            { "x": 0.5, "mb_per_s": 200.0, "cpu_cores": 0.6, "p99_ms": 1.0 },
            { "x": 0.75, "mb_per_s": 300.0, "cpu_cores": 0.5, "p99_ms": 1.0 },
            { "x": 1.0, "mb_per_s": 400.0, "cpu_cores": 0.8, "p99_ms": 1.0 }
        ]);
        assert_eq!(
            p.cpu_curve(),
            vec![(0.1, 0.4), (0.2, 0.6), (0.3, 0.6), (0.4, 0.8)]
        );
        // below the lowest run: its 4 s/GB; between: linear; above the highest: its 2 s/GB
        assert!((p.cores_at(0.05) - 0.2).abs() < 1e-12);
        assert!((p.cores_at(0.15) - 0.5).abs() < 1e-12);
        assert!((p.cores_at(0.35) - 0.7).abs() < 1e-12);
        assert!((p.cores_at(0.5) - 1.0).abs() < 1e-12);
        // the inverse: the most work within a CPU budget (0.6 cores holds up to 300 MB/s)
        assert!((p.work_within(0.2) - 0.05).abs() < 1e-12);
        assert!((p.work_within(0.5) - 0.15).abs() < 1e-12);
        assert!((p.work_within(0.6) - 0.3).abs() < 1e-12);
        assert!((p.work_within(0.7) - 0.35).abs() < 1e-12);
        assert!((p.work_within(1.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_p99_curve_leaves_out_the_unlimited_run_and_never_falls() {
        let mut p = Profile::parse(FIXED).expect("valid");
        // the fixed profile's 20 ms at 1.0 is the unlimited run: flat at 0.8's 5 ms beyond
        assert_eq!(p.p99_at(0.9), 5.0);
        assert_eq!(p.p99_at(1.0), 5.0);
        // a stall at 0.8 (300 ms) that 0.9 (30 ms) did not repeat is taken at 30 ms
        p.latency = vec![
            (0.5, 20.0),
            (0.7, 30.0),
            (0.8, 300.0),
            (0.9, 30.0),
            (1.0, 3.0),
        ];
        assert_eq!(
            p.p99_curve(),
            vec![(0.5, 20.0), (0.7, 30.0), (0.8, 30.0), (0.9, 30.0)]
        );
        assert_eq!(p.p99_at(0.75), 30.0);
        assert_eq!(p.p99_at(0.6), 25.0);
    }

    /// `curves.partitions` as (partitions, MB/s, CPU s/GB, CPU cores or None).
    fn with_partitions(cores: f64, runs: &[(u32, f64, f64, Option<f64>)]) -> Profile {
        let mut v: serde_json::Value = serde_json::from_str(FIXED).expect("json");
        v["broker_cores"] = serde_json::json!(cores);
        v["curves"]["partitions"] = runs
            .iter()
            .map(|&(x, mb, cpu, cores)| {
                serde_json::json!({ "x": x, "mb_per_s": mb, "cpu_s_per_gb": cpu,
                                    "cpu_cores": cores, "p99_ms": 5.0 })
            })
            .collect();
        Profile::parse(&v.to_string()).expect("valid")
    }

    #[test]
    fn partitions_per_core_is_judged_by_the_broker_cpu() {
        // The idle profile of perf-reports/2026-12-07-plan-profile-idle-4cacfa7.json: the one
        // producer's rate falls from 253 to 178 MB/s at 8 partitions (70 %) while the broker
        // uses under half its core. The old rule (peak >= 80 % of the best) read that as a
        // broker limit of 1 partition per core; the broker was never the limit.
        let idle = with_partitions(
            1.0,
            &[
                (1, 253.5, 1.857, Some(0.519)),
                (8, 178.5, 2.382, Some(0.428)),
                (64, 111.5, 3.464, Some(0.368)),
                (256, 116.4, 3.603, Some(0.392)),
                (1024, 99.2, 5.12, Some(0.402)),
            ],
        );
        assert_eq!(
            idle.partitions_per_core(),
            PartitionsPerCore {
                measured: 1024.0,
                max: None
            }
        );
        // A broker busy on its 2 cores whose rate falls to 62 % at 256 partitions: 64 is the
        // last count within its limit, 32 per core. The 1024 run recovers, but the first
        // limiting count decides.
        let bound = with_partitions(
            2.0,
            &[
                (1, 400.0, 4.75, Some(1.9)),
                (8, 390.0, 4.9, Some(1.91)),
                (64, 380.0, 5.0, Some(1.9)),
                (256, 250.0, 7.6, Some(1.9)),
                (1024, 330.0, 5.8, Some(1.92)),
            ],
        );
        assert_eq!(bound.partitions_per_core().max, Some(32.0));
        // A drop with CPU to spare (64) limits nothing; the CPU-bound drop at 1024 does.
        // Without cpu_cores, the cores are the rate x CPU per GB (0.2 GB/s x 4.75 = 0.95).
        let mixed = with_partitions(
            1.0,
            &[
                (1, 400.0, 2.0, Some(0.8)),
                (64, 200.0, 2.0, None),
                (256, 390.0, 2.3, None),
                (1024, 200.0, 4.75, None),
            ],
        );
        assert_eq!(mixed.partitions_per_core().max, Some(256.0));
        // CPU-bound at the lowest count already: at least one partition per core
        let first = with_partitions(1.0, &[(1, 100.0, 9.5, None), (8, 400.0, 2.4, Some(0.96))]);
        assert_eq!(first.partitions_per_core().max, Some(1.0));
    }

    #[test]
    fn a_profile_of_another_schema_is_refused() {
        assert!(Profile::parse(r#"{"schema":"other"}"#).is_err());
        assert!(Profile::parse("not json").is_err());
        // a run that acknowledged nothing is no curve point
        let mut v: serde_json::Value = serde_json::from_str(FIXED).expect("json");
        v["curves"]["replication_factor"][1]["mb_per_s"] = serde_json::json!(0.0);
        let refused = Profile::parse(&v.to_string()).expect_err("refused");
        assert!(
            refused.contains("replication_factor[x=3].mb_per_s is 0"),
            "{refused}"
        );
    }
}
