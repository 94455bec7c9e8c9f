//! `spate plan --check --rescore CHECK.json --profile PROFILE.json`: the prediction errors of a
//! stored check's measurements under this build's model, against the profile the check
//! predicted from, without running anything again. The output says it is a re-score, of
//! measurements taken at which commit, with the model of which commit.

use super::check::{self, Config};
use super::profile::Profile;
use crate::compare;
use serde_json::{json, Value};
use std::path::Path;

/// The configuration a stored check row ran.
fn config(row: &Value) -> Result<Config, String> {
    let c = &row["config"];
    let whole = |field: &str| {
        c[field]
            .as_u64()
            .ok_or_else(|| format!("check row without config.{field}: {row}"))
    };
    Ok(Config {
        record_bytes: whole("record_bytes")? as usize,
        partitions: whole("partitions")? as u32,
        fraction: c["fraction_of_predicted_peak"].as_f64(),
        // rows stored before replicated checks existed ran on one broker
        replication_factor: c["replication_factor"].as_u64().unwrap_or(1) as u32,
    })
}

/// The rate a fixed-rate row's run was driven at: recorded since `driven_mb_per_s` exists,
/// before that the row's predicted throughput (the rate `--check` drove it at).
fn driven_mb_s(row: &Value, c: &Config) -> Option<f64> {
    c.fraction?;
    row["driven_mb_per_s"]
        .as_f64()
        .or_else(|| row["predicted"]["mb_per_s"].as_f64())
}

/// Re-scores the check stored at `stored` with `profile`; prints the table and writes the
/// re-scored report to `out` when given.
pub fn run(profile: &Profile, stored: &Path, out: Option<&Path>) -> Result<(), String> {
    let text = std::fs::read_to_string(stored).map_err(|e| format!("{}: {e}", stored.display()))?;
    let old: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", stored.display()))?;
    if old["profile"]["measured"] != profile.raw["measured"] {
        return Err(format!(
            "{} was predicted from the profile measured {}, not from the one given (measured {}): re-score it against its own profile",
            stored.display(),
            old["profile"]["measured"],
            profile.raw["measured"]
        ));
    }
    let rows = old["checks"]
        .as_array()
        .ok_or_else(|| format!("{}: no checks", stored.display()))?
        .iter()
        .map(|row| {
            let c = config(row)?;
            check::scored(profile, &c, driven_mb_s(row, &c), row["measured"].clone())
                .map_err(|e| format!("{}: {}: {e}", stored.display(), check::describe(&c)))
        })
        .collect::<Result<Vec<Value>, String>>()?;
    let measured_at = old["measured"]["commit"].as_str().map_or_else(
        || {
            format!(
                "{} (the profile's commit: the check file does not name its own)",
                old["profile"]["measured"]["commit"].as_str().unwrap_or("?")
            )
        },
        String::from,
    );
    let model_at = compare::repo_root()
        .map(|root| compare::git(&root, &["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|_| "?".into());
    let label = format!(
        "re-score of the measurements of {} taken at commit {measured_at}, with the model of this build (repository at {model_at}); nothing was run again",
        stored.display()
    );
    let report = json!({
        "rescore": { "of": stored.display().to_string(), "measurements_commit": measured_at,
                     "model_commit": model_at, "label": label },
        "measured": old["measured"],
        "profile": old["profile"],
        "short": old["short"],
        "loadavg_at_end": old["loadavg_at_end"],
        "checks": rows,
        "skipped": old["skipped"],
        "checks_as_stored": old["checks"],
    });
    println!("{label}");
    print!("{}", check::table(&report));
    check::write(&report, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_gives_its_config_and_driven_rate() {
        let fixed = json!({
            "config": { "record_bytes": 3000, "partitions": 8, "fraction_of_predicted_peak": 0.6 },
            "predicted": { "mb_per_s": 255.9 },
        });
        let c = config(&fixed).expect("config");
        assert_eq!(
            c,
            Config {
                record_bytes: 3000,
                partitions: 8,
                fraction: Some(0.6),
                replication_factor: 1,
            }
        );
        assert_eq!(driven_mb_s(&fixed, &c), Some(255.9));
        let mut recorded = fixed.clone();
        recorded["driven_mb_per_s"] = json!(250.0);
        assert_eq!(driven_mb_s(&recorded, &c), Some(250.0));
        let unlimited = json!({
            "config": { "record_bytes": 512, "partitions": 8, "fraction_of_predicted_peak": null },
            "predicted": { "mb_per_s": 420.0 },
        });
        let c = config(&unlimited).expect("config");
        assert_eq!(c.fraction, None);
        assert_eq!(driven_mb_s(&unlimited, &c), None);
        assert!(config(&json!({ "config": {} })).is_err());
        let replicated = json!({
            "config": { "record_bytes": 2048, "partitions": 16, "fraction_of_predicted_peak": 0.6,
                        "replication_factor": 3, "acks": "all" },
            "driven_mb_per_s": 25.0,
        });
        let c = config(&replicated).expect("config");
        assert_eq!((c.replication_factor, c.partitions), (3, 16));
        assert_eq!(driven_mb_s(&replicated, &c), Some(25.0));
    }
}
