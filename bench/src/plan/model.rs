//! The capacity model (bench/PLANNING.md writes it down term by term): a load and a profile in,
//! brokers, cores, memory, disk, network, the limiting resource and the expected p99 out.

use super::profile::Profile;
use super::units::Rate;
use serde_json::{json, Value};

/// What the user plans for, and the assumptions the profile cannot measure (flags with
/// defaults, each named in PLANNING.md).
#[derive(Clone, Debug)]
pub struct Load {
    pub ingest: Rate,
    pub record_bytes: f64,
    pub partitions: f64,
    pub rf: f64,
    /// "0", "1" or "all".
    pub acks: String,
    pub compression: String,
    pub consumer_groups: f64,
    pub retention_s: f64,
    pub p99_target_ms: Option<f64>,
    pub headroom: f64,
    /// Assumption: each broker's NIC, bytes/s each way (default 10 Gbit/s).
    pub nic_bytes_s: f64,
    /// Assumption: the largest broker machine, in cores.
    pub max_cores_per_broker: f64,
    /// Assumption: disk capacity per broker.
    pub disk_bytes_per_broker: f64,
    /// Disk write bandwidth per broker; None: the profile's O_DIRECT write bandwidth.
    pub disk_write_bytes_s: Option<f64>,
    /// Assumption: offset and time indexes per log byte (Kafka's defaults: 8 + 12 bytes per
    /// 4096, index.interval.bytes).
    pub index_overhead: f64,
    /// Assumption: segment size (log.segment.bytes): one more segment per partition replica may
    /// be on disk past retention (whole segments are deleted).
    pub segment_bytes: f64,
    /// Assumption: seconds of writes the page cache should hold for tail reads.
    pub page_cache_s: f64,
}

impl Default for Load {
    fn default() -> Load {
        Load {
            ingest: Rate::BytesPerS(100e6),
            record_bytes: 1024.0,
            partitions: 64.0,
            rf: 3.0,
            acks: "all".into(),
            compression: "none".into(),
            consumer_groups: 1.0,
            retention_s: 7.0 * 86_400.0,
            p99_target_ms: None,
            headroom: 0.3,
            nic_bytes_s: 1.25e9,
            max_cores_per_broker: 32.0,
            disk_bytes_per_broker: 8e12,
            disk_write_bytes_s: None,
            index_overhead: 20.0 / 4096.0,
            segment_bytes: 1024.0 * 1024.0 * 1024.0,
            page_cache_s: 30.0,
        }
    }
}

/// One term of the model: its value, unit and where it comes from.
#[derive(Clone, Debug)]
pub struct Term {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub source: String,
}

/// The answer.
#[derive(Clone, Debug)]
pub struct Plan {
    pub brokers: u64,
    pub cores_per_broker: u64,
    pub memory_per_broker_bytes: f64,
    pub disk_capacity_per_broker_bytes: f64,
    pub disk_capacity_total_bytes: f64,
    pub disk_write_per_broker_bytes_s: f64,
    pub network_in_per_broker_bytes_s: f64,
    pub network_out_per_broker_bytes_s: f64,
    /// CPU cores of work over the whole cluster.
    pub cpu_cores_total: f64,
    /// The resource that sets the broker count.
    pub limit: &'static str,
    /// Brokers each resource alone needs.
    pub brokers_by_resource: Vec<(&'static str, u64)>,
    /// CPU utilisation of a broker while one broker is down (the sizing point).
    pub utilisation: f64,
    pub p99_ms: f64,
    pub terms: Vec<Term>,
    pub warnings: Vec<String>,
}

/// Per-byte costs of a load on a profile, independent of the broker count.
struct Costs {
    bytes_s: f64,
    wire_bytes_s: f64,
    produce_cpu_s_per_gb_at_base: f64,
    base_cpu_s_per_gb: f64,
    replica_cpu_s_per_gb: f64,
    fetch_cpu_s_per_gb: f64,
    utilisation_max: f64,
    p99_add_ms: f64,
    write_amplification: f64,
    disk_write_bytes_s: f64,
}

const MAX_BROKERS: u64 = 100_000;

/// Whether one resource fits at a broker count.
type Fit<'a> = Box<dyn Fn(&AtN) -> bool + 'a>;

fn costs(
    load: &Load,
    profile: &Profile,
    terms: &mut Vec<Term>,
    warnings: &mut Vec<String>,
) -> Costs {
    let mut term = |name, value, unit, source: String| {
        terms.push(Term {
            name,
            value,
            unit,
            source,
        });
        value
    };
    let bytes_s = term(
        "ingest",
        load.ingest.bytes_per_s(load.record_bytes),
        "B/s",
        "load: --ingest (records/s x --record-bytes)".into(),
    );
    let ratio = term(
        "compression_ratio",
        profile.compression_ratio(&load.compression),
        "",
        format!(
            "profile: curves.compression[{}].ratio (1 for none)",
            load.compression
        ),
    );
    if !profile.has_codec(&load.compression) {
        warnings.push(format!(
            "the profile did not measure {}: compression ratio and CPU taken as none's",
            load.compression
        ));
    }
    let wire_bytes_s = term(
        "wire_and_disk_bytes",
        bytes_s * ratio,
        "B/s",
        "ingest x compression_ratio".into(),
    );
    let per_record = term(
        "produce_cpu_per_gb_at_record_bytes",
        profile.produce_cpu_s_per_gb(load.record_bytes),
        "s/GB",
        format!(
            "profile: curves.record_bytes cpu_s_per_gb at {} B (log-linear in size)",
            load.record_bytes
        ),
    );
    let base_cpu_s_per_gb = term(
        "base_cpu_per_gb",
        profile.produce_cpu_s_per_gb(profile.base_record_bytes),
        "s/GB",
        "profile: curves.record_bytes at the base size: a load's CPU per GB over this is the base-configuration work it equals".into(),
    );
    let acks = term(
        "acks_cpu_factor",
        profile.acks_cpu_factor(&load.acks),
        "",
        format!("profile: curves.acks[{}] / curves.acks[1]", load.acks),
    );
    let codec = term(
        "compression_cpu_factor",
        profile.compression_cpu_factor(&load.compression),
        "",
        format!(
            "profile: curves.compression[{}] / curves.compression[none]",
            load.compression
        ),
    );
    let replica = match profile.replica_cpu_s_per_gb() {
        Some(r) => r,
        None => {
            if load.rf > 1.0 {
                warnings.push(
                    "the profile has no RF > 1 point: a follower copy is costed as a produce at acks=1"
                        .into(),
                );
            }
            per_record
        }
    };
    let replica = term(
        "replica_cpu_per_gb",
        replica,
        "s/GB",
        "profile: (curves.replication_factor[max] - [1]) / (max - 1), per follower copy".into(),
    );
    let fetch = term(
        "fetch_cpu_per_gb_per_group",
        profile.fetch_cpu_s_per_gb_per_group(),
        "s/GB",
        "profile: slope of curves.consumer_groups (CPU per GB produced over groups)".into(),
    );
    let headroom_max = 1.0 - load.headroom;
    let acks_add = if load.acks == "all" {
        profile.acks_p99_add_ms("all")
    } else {
        0.0
    };
    let rf_add = if load.rf > 1.0 {
        profile.replica_p99_add_ms()
    } else {
        0.0
    };
    let p99_add_ms = term(
        "p99_added_ms",
        acks_add + rf_add,
        "ms",
        "profile: curves.acks[all].p99 - [1].p99 (acks=all), + curves.replication_factor[max].p99 - [1].p99 (RF > 1)".into(),
    );
    let utilisation_max = match load.p99_target_ms {
        None => headroom_max,
        Some(target) => {
            let fits = |u: f64| profile.p99_at(u) + p99_add_ms <= target + 1e-9;
            let best = (0..=200)
                .map(|i| i as f64 / 200.0)
                .filter(|&u| u <= headroom_max && fits(u))
                .fold(None, |_, u| Some(u));
            match best {
                Some(u) if u > 0.0 => u.min(headroom_max),
                _ => {
                    warnings.push(format!(
                        "--p99 {target} ms is below what the profile measured at its lowest rate ({:.2} ms): sized at the lowest measured utilisation",
                        profile.p99_at(0.0) + p99_add_ms
                    ));
                    profile
                        .latency
                        .iter()
                        .map(|p| p.0)
                        .fold(1.0, f64::min)
                        .min(headroom_max)
                }
            }
        }
    };
    let utilisation_max = term(
        "utilisation_max",
        utilisation_max,
        "",
        "1 - --headroom, lowered until profile: curves.latency gives p99 + p99_added <= --p99"
            .into(),
    );
    let write_amplification = term(
        "disk_write_amplification",
        profile.disk_write_amplification,
        "",
        "profile: disk.write_amplification (broker write_bytes / payload bytes of the base run)"
            .into(),
    );
    let disk_write_bytes_s = term(
        "disk_write_bandwidth_per_broker",
        load.disk_write_bytes_s
            .unwrap_or(profile.disk_write_mb_s * 1e6),
        "B/s",
        "--disk-write, else profile: disk.direct_write_mb_s (one such disk per broker)".into(),
    );
    Costs {
        bytes_s,
        wire_bytes_s,
        produce_cpu_s_per_gb_at_base: per_record * acks * codec,
        base_cpu_s_per_gb,
        replica_cpu_s_per_gb: replica,
        fetch_cpu_s_per_gb: fetch,
        utilisation_max,
        p99_add_ms,
        write_amplification,
        disk_write_bytes_s,
    }
}

/// Brokers that carry the load while one is down (RF >= 2); with RF 1 a broker down loses its
/// partitions anyway, so all N carry it.
fn serving(load: &Load, n: u64) -> f64 {
    if load.rf >= 2.0 && n >= 2 {
        (n - 1) as f64
    } else {
        n as f64
    }
}

/// A serving broker's share of the load as work of the profile's base configuration (GB/s):
/// the CPU it costs at the curves' CPU per GB, over the base run's CPU per GB.
fn work_per_broker(c: &Costs, cpu_cores_total: f64, serving: f64) -> f64 {
    cpu_cores_total / serving / c.base_cpu_s_per_gb
}

/// A broker's CPU utilisation with `cores` cores doing `work` (GB/s of the base
/// configuration): a broker of `cores` cores is taken as `cores / broker_cores` profiled
/// brokers side by side, each doing its share (thread-per-core: no shared state on the data
/// path).
fn utilisation(profile: &Profile, work: f64, cores: f64) -> f64 {
    let k = profile.broker_cores;
    profile.cores_at(work * k / cores) / k
}

/// One broker count's figures.
struct AtN {
    cpu_cores_total: f64,
    cores_per_broker: f64,
    replicas_per_broker: f64,
    disk_write: f64,
    net_in: f64,
    net_out: f64,
    capacity_per_broker: f64,
}

fn at_n(load: &Load, profile: &Profile, c: &Costs, capacity_total: f64, n: u64) -> AtN {
    let s = serving(load, n);
    let partitions_factor = profile.partitions_factor(load.partitions / s);
    let cpu_s_per_gb = c.produce_cpu_s_per_gb_at_base * partitions_factor
        + (load.rf - 1.0) * c.replica_cpu_s_per_gb
        + load.consumer_groups * c.fetch_cpu_s_per_gb;
    let cpu_cores_total = c.bytes_s / 1e9 * cpu_s_per_gb;
    let replicas_per_broker = load.partitions * load.rf / s;
    let for_partitions = profile
        .partitions_per_core()
        .max
        .map_or(0.0, |per_core| replicas_per_broker / per_core);
    let cores = (work_per_broker(c, cpu_cores_total, s)
        / profile.work_within(c.utilisation_max * profile.broker_cores)
        * profile.broker_cores)
        .max(for_partitions);
    AtN {
        cpu_cores_total,
        cores_per_broker: cores.ceil().max(1.0),
        replicas_per_broker,
        disk_write: c.wire_bytes_s * load.rf * c.write_amplification / s,
        net_in: c.wire_bytes_s * load.rf / s,
        net_out: c.wire_bytes_s * (load.consumer_groups + load.rf - 1.0) / s,
        capacity_per_broker: capacity_total / n as f64,
    }
}

/// The plan of `load` on `profile`.
pub fn plan(load: &Load, profile: &Profile) -> Result<Plan, String> {
    if load.rf < 1.0 || load.partitions < 1.0 || load.record_bytes <= 0.0 {
        return Err("--rf, --partitions and --record-bytes must be >= 1".into());
    }
    let mut terms = Vec::new();
    let mut warnings = Vec::new();
    let c = costs(load, profile, &mut terms, &mut warnings);
    let capacity_total = c.wire_bytes_s * load.retention_s * load.rf * (1.0 + load.index_overhead)
        + load.partitions * load.rf * load.segment_bytes;
    let headroom_max = 1.0 - load.headroom;
    let fits: [(&'static str, Fit); 6] = [
        (
            "cpu",
            Box::new(|a: &AtN| a.cores_per_broker <= load.max_cores_per_broker),
        ),
        (
            "disk bandwidth",
            Box::new(|a: &AtN| a.disk_write <= c.disk_write_bytes_s * headroom_max),
        ),
        (
            "disk capacity",
            Box::new(|a: &AtN| a.capacity_per_broker <= load.disk_bytes_per_broker * headroom_max),
        ),
        (
            "network in",
            Box::new(|a: &AtN| a.net_in <= load.nic_bytes_s * headroom_max),
        ),
        (
            "network out",
            Box::new(|a: &AtN| a.net_out <= load.nic_bytes_s * headroom_max),
        ),
        (
            "replication factor",
            Box::new(|a: &AtN| a.replicas_per_broker.is_finite()),
        ),
    ];
    let min_n = (load.rf.ceil() as u64).max(1);
    let mut by_resource = Vec::new();
    for (name, fit) in &fits {
        let n = (min_n..=MAX_BROKERS)
            .find(|&n| fit(&at_n(load, profile, &c, capacity_total, n)))
            .ok_or_else(|| format!("{name}: not within {MAX_BROKERS} brokers"))?;
        by_resource.push((*name, n));
    }
    let (limit, brokers) =
        by_resource
            .iter()
            .copied()
            .fold(("replication factor", min_n), |best, r| {
                if r.1 > best.1 {
                    r
                } else {
                    best
                }
            });
    let a = at_n(load, profile, &c, capacity_total, brokers);
    let s = serving(load, brokers);
    let utilisation = utilisation(
        profile,
        work_per_broker(&c, a.cpu_cores_total, s),
        a.cores_per_broker,
    );
    let p99_ms = profile.p99_at(utilisation) + c.p99_add_ms;
    let (rss_base_mib, per_partition_kib) = profile.memory_line();
    let memory = rss_base_mib * 1048576.0
        + a.replicas_per_broker * per_partition_kib * 1024.0
        + c.wire_bytes_s * load.rf / s * load.page_cache_s;
    terms.push(Term {
        name: "memory_per_partition",
        value: per_partition_kib,
        unit: "KiB",
        source: "profile: slope of curves.partitions rss_mib over partitions".into(),
    });
    partitions_per_core_term(profile, &a, &mut terms, &mut warnings);
    if load.rf < 2.0 {
        warnings.push("RF 1: no failure margin (a broker down loses its partitions)".into());
    }
    if let Some(target) = load.p99_target_ms {
        if p99_ms > target {
            warnings.push(format!(
                "expected p99 {p99_ms:.2} ms is above --p99 {target} ms"
            ));
        }
    }
    Ok(Plan {
        brokers,
        cores_per_broker: a.cores_per_broker as u64,
        memory_per_broker_bytes: memory,
        disk_capacity_per_broker_bytes: a.capacity_per_broker,
        disk_capacity_total_bytes: capacity_total,
        disk_write_per_broker_bytes_s: a.disk_write,
        network_in_per_broker_bytes_s: a.net_in,
        network_out_per_broker_bytes_s: a.net_out,
        cpu_cores_total: a.cpu_cores_total,
        limit,
        brokers_by_resource: by_resource,
        utilisation,
        p99_ms,
        terms,
        warnings,
    })
}

/// The partitions-per-core term: a limit when a measured partition count limited the
/// broker's CPU, else the measured range, with a warning when the plan goes beyond it.
fn partitions_per_core_term(
    profile: &Profile,
    a: &AtN,
    terms: &mut Vec<Term>,
    warnings: &mut Vec<String>,
) {
    let ppc = profile.partitions_per_core();
    let per_core = a.replicas_per_broker / a.cores_per_broker;
    match ppc.max {
        Some(max) => terms.push(Term {
            name: "partitions_per_core_max",
            value: max,
            unit: "",
            source: "profile: curves.partitions, the most partitions per core before a count whose run was CPU-bound (>= 90 % of the broker cores) with its peak under 80 % of the best count's".into(),
        }),
        None => {
            terms.push(Term {
                name: "partitions_per_core_measured",
                value: ppc.measured,
                unit: "",
                source: "profile: curves.partitions, the most partitions per core measured; no count limited the broker (no run CPU-bound with its peak under 80 % of the best): no limit applied".into(),
            });
            if per_core > ppc.measured {
                warnings.push(format!(
                    "{per_core:.0} partition replicas per core is beyond the {:.0} per core the profile measured: their CPU per GB is taken at that count's (flat beyond the curve)",
                    ppc.measured
                ));
            }
        }
    }
}

impl Plan {
    pub fn json(&self, load: &Load, profile: &Profile) -> Value {
        json!({
            "broker": profile.broker,
            "load": {
                "ingest_bytes_per_s": load.ingest.bytes_per_s(load.record_bytes),
                "record_bytes": load.record_bytes, "partitions": load.partitions, "rf": load.rf,
                "acks": load.acks, "compression": load.compression,
                "consumer_groups": load.consumer_groups, "retention_s": load.retention_s,
                "p99_target_ms": load.p99_target_ms, "headroom": load.headroom,
            },
            "brokers": self.brokers,
            "cores_per_broker": self.cores_per_broker,
            "memory_per_broker_bytes": self.memory_per_broker_bytes,
            "disk_capacity_per_broker_bytes": self.disk_capacity_per_broker_bytes,
            "disk_capacity_total_bytes": self.disk_capacity_total_bytes,
            "disk_write_per_broker_bytes_per_s": self.disk_write_per_broker_bytes_s,
            "network_in_per_broker_bytes_per_s": self.network_in_per_broker_bytes_s,
            "network_out_per_broker_bytes_per_s": self.network_out_per_broker_bytes_s,
            "cpu_cores_total": self.cpu_cores_total,
            "limit": self.limit,
            "brokers_by_resource": self.brokers_by_resource.iter()
                .map(|(r, n)| (r.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "utilisation_one_broker_down": self.utilisation,
            "p99_ms": self.p99_ms,
            "terms": self.terms.iter().map(|t| json!({
                "name": t.name, "value": t.value, "unit": t.unit, "source": t.source,
            })).collect::<Vec<_>>(),
            "warnings": self.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::profile::tests::FIXED;
    use super::*;

    fn fixed() -> Profile {
        Profile::parse(FIXED).expect("valid")
    }

    /// 300 MB/s of 1000-byte records, 64 partitions, RF 3, acks=all, 2 groups, 1 day, 30 %
    /// headroom, 10 Gbit/s NICs, 8 TB disks, on the fixed profile. By hand:
    /// CPU s/GB = 2.0 x 1.25 (acks all) + 2 x 1.0 (replicas) + 2 x 0.5 (groups) = 5.5, so
    /// 0.3 GB/s x 5.5 = 1.65 cores of work.
    /// Disk write = 300 MB/s x 3 x 1.05 = 945 MB/s over N-1 brokers <= 500 x 0.7 = 350 MB/s:
    /// N-1 >= 2.7, N = 4. Network in 900 MB/s / (N-1) <= 875 MB/s: N = 3. Out 300 x (2 + 2)
    /// = 1200 MB/s / (N-1) <= 875: N = 3. Capacity 300 MB/s x 86400 s x 3 x (1 + 20/4096)
    /// plus 64 x 3 x 1 GiB = 78.35 TB; / N <= 5.6 TB: N = 14 (the limit).
    /// At N = 14 (13 serving): 1.65 / 13 / 0.7 = 0.18 core (no partition count of the
    /// profile limited its broker, so partitions add no cores): 1 core per broker, utilisation 1.65 / 13 = 0.127, p99 = 2.0 (flat below
    /// 0.5) + 3 (acks all) + 2 (RF 3) = 7 ms.
    #[test]
    fn a_known_load_gives_known_answers() {
        let load = Load {
            ingest: Rate::BytesPerS(300e6),
            record_bytes: 1000.0,
            partitions: 64.0,
            consumer_groups: 2.0,
            retention_s: 86_400.0,
            ..Load::default()
        };
        let p = plan(&load, &fixed()).expect("plan");
        assert!(
            (p.cpu_cores_total - 1.65).abs() < 1e-9,
            "{}",
            p.cpu_cores_total
        );
        let by: Vec<(&str, u64)> = p.brokers_by_resource.clone();
        assert_eq!(
            by,
            vec![
                ("cpu", 3),
                ("disk bandwidth", 4),
                ("disk capacity", 14),
                ("network in", 3),
                ("network out", 3),
                ("replication factor", 3)
            ]
        );
        assert_eq!(p.brokers, 14);
        assert_eq!(p.limit, "disk capacity");
        assert_eq!(p.cores_per_broker, 1);
        let capacity = 300e6 * 86_400.0 * 3.0 * (1.0 + 20.0 / 4096.0) + 192.0 * 1073741824.0;
        assert!((p.disk_capacity_total_bytes - capacity).abs() < 1.0);
        assert!((p.disk_write_per_broker_bytes_s - 945e6 / 13.0).abs() < 1e-3);
        assert!((p.network_out_per_broker_bytes_s - 1200e6 / 13.0).abs() < 1e-3);
        assert!((p.utilisation - 1.65 / 13.0).abs() < 1e-9);
        assert!((p.p99_ms - 7.0).abs() < 1e-9);
        // 100 MiB + 192/13 replicas x 102.4 KiB + 900 MB/s / 13 x 30 s
        let memory = 100.0 * 1048576.0 + 192.0 / 13.0 * 102.4 * 1024.0 + 900e6 / 13.0 * 30.0;
        assert!((p.memory_per_broker_bytes - memory).abs() < 1.0);
    }

    /// Compression halves the wire and disk bytes and costs 1.5x produce CPU; RF 1 has no
    /// failure margin; a p99 target lowers the utilisation a broker may run at.
    #[test]
    fn compression_rf1_and_a_p99_target() {
        let load = Load {
            ingest: Rate::RecordsPerS(1e6),
            record_bytes: 1000.0,
            partitions: 8.0,
            rf: 1.0,
            acks: "1".into(),
            compression: "zstd".into(),
            consumer_groups: 0.0,
            retention_s: 3600.0,
            p99_target_ms: Some(3.5),
            ..Load::default()
        };
        let p = plan(&load, &fixed()).expect("plan");
        // 1 GB/s x 2.0 x 1.5 = 3 cores of work; p99 3.5 ms => utilisation 0.65
        assert!((p.cpu_cores_total - 3.0).abs() < 1e-9);
        let u = p
            .terms
            .iter()
            .find(|t| t.name == "utilisation_max")
            .unwrap()
            .value;
        assert!((u - 0.65).abs() < 1e-9, "{u}");
        // disk: 0.5 GB/s x 1.05 / N <= 350 MB/s => N = 2 (RF 1: all N serve)
        assert_eq!(p.brokers, 2);
        assert_eq!(p.limit, "disk bandwidth");
        // 3 cores / 2 brokers / 0.65 = 2.31 => 3 cores each
        assert_eq!(p.cores_per_broker, 3);
        assert!(p.p99_ms <= 3.5);
        assert!(p.warnings.iter().any(|w| w.contains("no failure margin")));
    }

    /// With CPU measured over the rate (curves.latency's cpu_cores), a broker's CPU is read
    /// from that curve at its share of the work instead of being proportional to the rate.
    /// 700 MB/s of 1000 B records, RF 1, acks=1, no groups, 1 h: disk 735 MB/s over N <= 350
    /// gives N = 3, each doing 1.4 cores of work / 3 / 2 s/GB = 0.233 GB/s of base work; the
    /// curve holds 0.35 GB/s within 70 % of a core, so 1 core, at the curve's 0.6 cores for
    /// 0.233 GB/s (flat from 0.2 to 0.3 GB/s); p99 at 0.6 = 3 ms.
    #[test]
    fn the_measured_cpu_curve_sizes_the_cores() {
        let mut profile = fixed();
        profile.raw["curves"]["latency"] = serde_json::json!([
            { "x": 0.25, "mb_per_s": 100.0, "cpu_cores": 0.4, "p99_ms": 1.0 },
            { "x": 0.5, "mb_per_s": 200.0, "cpu_cores": 0.6, "p99_ms": 1.0 },
            { "x": 0.75, "mb_per_s": 300.0, "cpu_cores": 0.5, "p99_ms": 1.0 },
            { "x": 1.0, "mb_per_s": 400.0, "cpu_cores": 0.8, "p99_ms": 1.0 }
        ]);
        let load = Load {
            ingest: Rate::BytesPerS(700e6),
            record_bytes: 1000.0,
            partitions: 8.0,
            rf: 1.0,
            acks: "1".into(),
            consumer_groups: 0.0,
            retention_s: 3600.0,
            ..Load::default()
        };
        let p = plan(&load, &profile).expect("plan");
        assert!((p.cpu_cores_total - 1.4).abs() < 1e-9);
        assert_eq!((p.brokers, p.limit), (3, "disk bandwidth"));
        assert_eq!(p.cores_per_broker, 1);
        assert!((p.utilisation - 0.6).abs() < 1e-9, "{}", p.utilisation);
        assert!((p.p99_ms - 3.0).abs() < 1e-9, "{}", p.p99_ms);
        // 2.1 GB/s: 4.2 cores of work, N = 7 by disk (2205 / 7 = 315 MB/s); 0.3 GB/s of base
        // work per broker needs 0.3 / 0.35 = 0.86 -> 1 core, at 0.6 cores (the flat stretch)
        let load = Load {
            ingest: Rate::BytesPerS(2.1e9),
            ..load
        };
        let p = plan(&load, &profile).expect("plan");
        assert_eq!((p.brokers, p.cores_per_broker), (7, 1));
        assert!((p.utilisation - 0.6).abs() < 1e-9, "{}", p.utilisation);
    }

    /// A partition count that limited the broker caps partitions per core: the curve's
    /// broker was CPU-bound (0.95 of its core) at 256 partitions with half the best rate, so
    /// 64 per core is the most. 2000 partitions at RF 3 are 6000 replicas: 3 brokers (2
    /// serving) would need 3000 / 64 = 47 cores each, over the 32 a machine has; 4 brokers
    /// (3 serving) need 2000 / 64 = 31.25, so 32 cores, and CPU is the limit.
    #[test]
    fn a_partition_count_that_limited_the_broker_caps_partitions_per_core() {
        let mut profile = fixed();
        profile.partitions = super::super::profile::Profile::parse(
            &FIXED.replace(
                r#"{ "x": 100, "mb_per_s": 350.0, "cpu_s_per_gb": 2.0, "p99_ms": 5.0, "rss_mib": 110.0 },
      { "x": 1000, "mb_per_s": 200.0, "cpu_s_per_gb": 3.0, "p99_ms": 8.0, "rss_mib": 200.0 }"#,
                r#"{ "x": 64, "mb_per_s": 380.0, "cpu_s_per_gb": 2.5, "p99_ms": 5.0, "cpu_cores": 0.95 },
      { "x": 256, "mb_per_s": 200.0, "cpu_s_per_gb": 4.75, "p99_ms": 5.0, "cpu_cores": 0.95 }"#,
            ),
        )
        .expect("valid")
        .partitions;
        assert_eq!(profile.partitions_per_core().max, Some(64.0));
        let load = Load {
            ingest: Rate::BytesPerS(10e6),
            record_bytes: 1000.0,
            partitions: 2000.0,
            consumer_groups: 0.0,
            retention_s: 3600.0,
            ..Load::default()
        };
        let p = plan(&load, &profile).expect("plan");
        assert_eq!((p.brokers, p.limit, p.cores_per_broker), (4, "cpu", 32));
        let term = p.terms.iter().find(|t| t.name == "partitions_per_core_max");
        assert_eq!(term.map(|t| t.value), Some(64.0));
        // the fixed profile's partition runs were never CPU-bound: no cap, 1 core, and a
        // warning past the 1000 per core it measured
        let p = plan(&load, &fixed()).expect("plan");
        assert_eq!((p.brokers, p.cores_per_broker), (3, 1));
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("beyond the 1000 per core")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn an_unreachable_p99_is_said() {
        let load = Load {
            p99_target_ms: Some(1.0),
            ..Load::default()
        };
        let p = plan(&load, &fixed()).expect("plan");
        assert!(
            p.warnings.iter().any(|w| w.contains("--p99")),
            "{:?}",
            p.warnings
        );
    }
}
