//! The broker's latency budget beside the client's view: `--broker-admin HOST:PORT` reads the
//! broker's `/v1/stages` (per-stage histograms, see the `latency` crate) when the measured
//! window starts and when it ends; the difference is the window's budget, printed under the
//! client's percentiles and kept in the result JSON (`broker_stages`).

use latency::{Budget, Stage};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The broker's histograms now, from `GET http://admin/v1/stages`.
pub fn fetch(admin: &str) -> Result<Budget, String> {
    let body = http_get(admin, "/v1/stages")?;
    parse(&body)
}

fn http_get(admin: &str, path: &str) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("--broker-admin {admin}{path}: {e}");
    let mut stream = TcpStream::connect(admin).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(fail)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("--broker-admin {admin}{path}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(format!("--broker-admin {admin}{path}: {status}"));
    }
    Ok(body.to_string())
}

/// A `/v1/stages` answer as histograms (stages this build does not know are skipped).
pub fn parse(body: &str) -> Result<Budget, String> {
    let answer: Value =
        serde_json::from_str(body).map_err(|e| format!("/v1/stages is not JSON: {e}"))?;
    let mut budget = Budget::default();
    for entry in answer["stages"].as_array().into_iter().flatten() {
        let labels = (entry["path"].as_str(), entry["stage"].as_str());
        let Some(stage) = labels
            .0
            .zip(labels.1)
            .and_then(|(p, n)| Stage::from_labels(p, n))
        else {
            continue;
        };
        let buckets: Vec<(u64, u64)> = entry["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| Some((b[0].as_u64()?, b[1].as_u64()?)))
            .collect();
        budget.add_buckets(stage, &buckets);
    }
    Ok(budget)
}

/// The window's budget as the result JSON keeps it (microseconds).
pub fn to_json(window: &Budget) -> Value {
    let us = |ns: u64| (ns as f64 / 1e3 * 10.0).round() / 10.0;
    window
        .summaries()
        .iter()
        .map(|s| {
            json!({
                "path": s.stage.path(), "stage": s.stage.name(), "count": s.count,
                "p50_us": us(s.p50_ns), "p99_us": us(s.p99_ns), "p99.9_us": us(s.p999_ns),
                "max_us": us(s.max_ns),
            })
        })
        .collect()
}

/// The table printed after a run: one line per stage.
pub fn print(stages: &Value) {
    let Some(stages) = stages.as_array().filter(|s| !s.is_empty()) else {
        return;
    };
    eprintln!("broker latency budget over the window (ms):      count      p50      p99    p99.9      max");
    for s in stages {
        let ms = |key: &str| s[key].as_f64().unwrap_or(0.0) / 1e3;
        eprintln!(
            "  {:8} {:14}                      {:>10} {:8.3} {:8.3} {:8.3} {:8.3}",
            s["path"].as_str().unwrap_or(""),
            s["stage"].as_str().unwrap_or(""),
            s["count"],
            ms("p50_us"),
            ms("p99_us"),
            ms("p99.9_us"),
            ms("max_us"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stages_answer_parses_and_a_window_is_the_difference() {
        let before = r#"{"stages":[{"path":"produce","stage":"append","count":2,
            "buckets":[[20000,2]]},{"path":"produce","stage":"future","buckets":[[1,1]]}]}"#;
        let after = r#"{"stages":[{"path":"produce","stage":"append","count":3,
            "buckets":[[20000,2],[3000000,1]]},
            {"path":"storage","stage":"fdatasync","count":1,"buckets":[[500000,1]]}]}"#;
        let window = parse(after).unwrap().since(&parse(before).unwrap());
        let stages = to_json(&window);
        let stages = stages.as_array().unwrap();
        assert_eq!(stages.len(), 2, "{stages:?}");
        assert_eq!(stages[0]["stage"], "append");
        assert_eq!(stages[0]["count"], 1);
        let p50 = stages[0]["p50_us"].as_f64().unwrap();
        assert!((2970.0..=3030.0).contains(&p50), "{p50}");
        assert_eq!(
            (stages[1]["path"].as_str(), stages[1]["count"].as_u64()),
            (Some("storage"), Some(1))
        );
        assert!(parse("not json").is_err());
    }
}
