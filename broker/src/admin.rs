//! The admin endpoint, served over HTTP by shard 0: `/metrics` (Prometheus text format),
//! `/v1/status` and `/v1/stages` (the latency budget) in JSON. Each scrape gathers every shard's counters with `Shard::run_on_all`;
//! nothing here runs on the request path of Kafka clients.

use crate::metrics::{scrape, text};
use crate::shard::Shard;
use futures::future::LocalBoxFuture;
use net::http::{HttpHandler, HttpListener, HttpRequest, HttpResponse};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// What `/v1/status` reports besides the shards' state; shared with the main thread, which
/// sets `ready` once every shard serves.
#[derive(Debug)]
pub struct NodeInfo {
    pub started_at: Instant,
    pub ready: AtomicBool,
    pub listen: String,
    pub admin_listen: Option<String>,
    pub data_dir: PathBuf,
}

/// The HTTP handler; lives on shard 0.
pub struct Admin {
    pub shard: Rc<Shard>,
    pub node: Arc<NodeInfo>,
}

impl HttpHandler for Admin {
    fn handle(&self, request: HttpRequest) -> LocalBoxFuture<'static, HttpResponse> {
        let (shard, node) = (self.shard.clone(), self.node.clone());
        Box::pin(async move {
            match route_status(&request.method, &request.path) {
                Some(404) => {
                    let known = "not found: try /metrics, /v1/status or /v1/stages\n";
                    return HttpResponse::text(404, known);
                }
                Some(status) => {
                    return HttpResponse::text(status, "method not allowed: GET only\n")
                }
                None => {}
            }
            match request.path.as_str() {
                "/metrics" => metrics(&shard, &node).await,
                "/v1/stages" => stages(&shard).await,
                _ => status(&shard, &node).await,
            }
        })
    }
}

/// The error status (404 unknown path, 405 not a GET) of a request the endpoint refuses;
/// `None` for one it serves.
pub fn route_status(method: &str, path: &str) -> Option<u16> {
    if !matches!(path, "/metrics" | "/v1/status" | "/v1/stages") {
        return Some(404);
    }
    (method != "GET").then_some(405)
}

/// Where shard 0 serves the admin endpoint.
pub struct AdminListen {
    pub addr: SocketAddr,
    pub is_default: bool,
    pub node: Arc<NodeInfo>,
}

/// Binds the admin listener and serves it in the background. A default address that is taken
/// only warns (a second broker on one host); an address asked for must bind.
pub fn start_admin(shard: &Rc<Shard>, admin: Option<&AdminListen>) -> Result<(), String> {
    let Some(admin) = admin else {
        info!("admin listener disabled");
        return Ok(());
    };
    let listener = match HttpListener::bind(admin.addr) {
        Ok(listener) => listener,
        Err(e) if admin.is_default => {
            warn!(address = %admin.addr, "admin listener not started, /metrics unavailable: {e} (set --admin-listen)");
            return Ok(());
        }
        Err(e) => {
            return Err(format!(
                "cannot listen on --admin-listen {}: {e}",
                admin.addr
            ))
        }
    };
    let address = listener.local_addr().unwrap_or(admin.addr);
    info!(%address, "admin listener bound (/metrics, /v1/status)");
    let handler = Rc::new(Admin {
        shard: shard.clone(),
        node: admin.node.clone(),
    });
    glommio::spawn_local(listener.serve(handler)).detach();
    Ok(())
}

async fn metrics(shard: &Rc<Shard>, node: &NodeInfo) -> HttpResponse {
    let shards = scrape::collect(shard).await;
    let process = text::ProcessInfo {
        uptime_s: node.started_at.elapsed().as_secs_f64(),
        resident_bytes: resident_bytes(),
        connections: shard.connection_quotas.open(),
        refused_connections_per_ip: shard.connection_quotas.refused_per_ip(),
        connection_slot_waits: shard.connection_quotas.node_waits(),
    };
    HttpResponse {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: text::render(&shards, &process),
    }
}

async fn status(shard: &Rc<Shard>, node: &NodeInfo) -> HttpResponse {
    let partitions: Vec<usize> = shard
        .run_on_all(|s| async move { s.partition_logs().len() })
        .await;
    let image = shard.image();
    let mut topics: Vec<&str> = image.topics.values().map(|t| t.name.as_str()).collect();
    topics.sort_unstable();
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": shard.config.node_id,
        "uptime_s": node.started_at.elapsed().as_secs_f64(),
        "ready": node.ready.load(Ordering::SeqCst),
        "shards": shard.count,
        "partitions": partitions.iter().sum::<usize>(),
        "partitions_per_shard": partitions,
        "topics": topics,
        "listeners": {
            "kafka": node.listen,
            "admin": node.admin_listen,
        },
        "data_dir": node.data_dir.display().to_string(),
    });
    HttpResponse {
        status: 200,
        content_type: "application/json",
        body: format!("{body}\n"),
    }
}

/// The latency budget merged over the shards, as JSON: per stage its summary (ns) and its
/// histogram buckets, `[value_ns, count]` (what `spate bench` subtracts to get its window).
async fn stages(shard: &Rc<Shard>) -> HttpResponse {
    let budget = scrape::stages(shard).await;
    let stages: Vec<serde_json::Value> = budget
        .summaries()
        .iter()
        .map(|s| {
            serde_json::json!({
                "path": s.stage.path(),
                "stage": s.stage.name(),
                "count": s.count,
                "p50_ns": s.p50_ns,
                "p99_ns": s.p99_ns,
                "p999_ns": s.p999_ns,
                "max_ns": s.max_ns,
                "buckets": budget.buckets(s.stage),
            })
        })
        .collect();
    HttpResponse {
        status: 200,
        content_type: "application/json",
        body: format!("{}\n", serde_json::json!({ "stages": stages })),
    }
}

/// Resident set size from `/proc/self/statm` (pages, second field).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page_bytes.max(1) as u64)
}
