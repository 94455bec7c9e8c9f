//! Connection quotas, node-wide (every shard's listener shares one [`ConnectionQuotas`]):
//! Kafka's `max.connections` and `max.connections.per.ip` (with its per-address overrides).
//!
//! As in Kafka, a listener at the node-wide bound stops accepting until a connection closes
//! (new clients wait in the kernel's backlog; one a shard had already accepted waits unserved,
//! which the client cannot tell apart), and a connection from an address at its own bound is
//! accepted and closed at once. Connections are counted when accepted and uncounted
//! when their [`ConnectionSlot`] drops; accepting and closing are the only moments that touch
//! the counts (an atomic for the total, a mutex-guarded map for the addresses), never a
//! request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The bounds, by their Kafka names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaSettings {
    /// `max.connections`: connections open on the node at once.
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections open from one address at once.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: per-address bounds that replace the one above.
    pub per_ip_overrides: HashMap<IpAddr, usize>,
}

impl Default for QuotaSettings {
    /// Kafka's defaults: no bound.
    fn default() -> Self {
        QuotaSettings {
            max_connections: usize::MAX,
            max_connections_per_ip: usize::MAX,
            per_ip_overrides: HashMap::new(),
        }
    }
}

/// Why an accepted connection is not served now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already has `max.connections.per.ip` (or its override) open: close it.
    PerIp,
    /// The node already has `max.connections` open (another shard took the last slot while
    /// this one waited in accept): it waits for a slot.
    Node,
}

/// The node's open connections against its bounds.
#[derive(Debug)]
pub struct ConnectionQuotas {
    settings: QuotaSettings,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused_per_ip: AtomicU64,
    node_waits: AtomicU64,
}

impl ConnectionQuotas {
    pub fn new(settings: QuotaSettings) -> Arc<ConnectionQuotas> {
        Arc::new(ConnectionQuotas {
            settings,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused_per_ip: AtomicU64::new(0),
            node_waits: AtomicU64::new(0),
        })
    }

    /// Whether a listener may accept: the node is below `max.connections`.
    pub fn has_room(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.settings.max_connections
    }

    /// Counts that a listener found the node at `max.connections` and waits for a slot.
    pub fn count_wait(&self) {
        self.node_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted connection from `ip`, or says why not (see [`Refusal`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let ip = canonical(ip);
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.settings.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Node);
        }
        let bound = self.per_ip_bound(ip);
        let mut per_ip = self.per_ip.lock().expect("no panic holds the lock");
        let count = per_ip.entry(ip).or_default();
        if *count >= bound {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            drop(per_ip);
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerIp);
        }
        *count += 1;
        Ok(ConnectionSlot {
            quotas: self.clone(),
            ip,
        })
    }

    fn per_ip_bound(&self, ip: IpAddr) -> usize {
        self.settings
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.settings.max_connections_per_ip)
    }

    /// Connections open on the node now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed at once because their address was at its bound, since start.
    pub fn refused_per_ip(&self) -> u64 {
        self.refused_per_ip.load(Ordering::Relaxed)
    }

    /// Times a listener waited for a slot at `max.connections`, since start.
    pub fn node_waits(&self) -> u64 {
        self.node_waits.load(Ordering::Relaxed)
    }

    fn release(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().expect("no panic holds the lock");
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        drop(per_ip);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) counts as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One counted connection; dropping it uncounts it.
#[derive(Debug)]
pub struct ConnectionSlot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.quotas.release(self.ip);
    }
}

/// Parses `max.connections.per.ip.overrides`: `host:count` pairs, comma-separated, as Kafka
/// writes them (`127.0.0.1:200,::1:50`; the count follows the last colon). Hosts must be IP
/// addresses (Kafka also takes names, resolved once at start).
pub fn parse_overrides(text: &str) -> Result<HashMap<IpAddr, usize>, String> {
    let mut overrides = HashMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (host, count) = pair
            .rsplit_once(':')
            .ok_or_else(|| format!("'{pair}' is not HOST:COUNT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("'{host}' in '{pair}' is not an IP address"))?;
        let count: usize = count
            .parse()
            .map_err(|_| format!("'{count}' in '{pair}' is not a connection count"))?;
        overrides.insert(canonical(ip), count);
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn quotas(max: usize, per_ip: usize, overrides: &str) -> Arc<ConnectionQuotas> {
        ConnectionQuotas::new(QuotaSettings {
            max_connections: max,
            max_connections_per_ip: per_ip,
            per_ip_overrides: parse_overrides(overrides).unwrap(),
        })
    }

    #[test]
    fn an_address_at_its_bound_is_refused_until_one_of_its_connections_closes() {
        let q = quotas(usize::MAX, 2, "");
        let a = ip("127.0.0.1");
        let first = q.admit(a).unwrap();
        let _second = q.admit(a).unwrap();
        assert_eq!(q.admit(a).unwrap_err(), Refusal::PerIp);
        let _other = q
            .admit(ip("127.0.0.2"))
            .expect("other addresses have their own count");
        drop(first);
        let _third = q.admit(a).expect("a slot freed");
        assert_eq!(q.open(), 3);
        assert_eq!(q.refused_per_ip(), 1);
    }

    #[test]
    fn the_node_bound_counts_every_address_and_frees_on_drop() {
        let q = quotas(2, usize::MAX, "");
        let one = q.admit(ip("10.0.0.1")).unwrap();
        let _two = q.admit(ip("10.0.0.2")).unwrap();
        assert!(!q.has_room());
        assert_eq!(q.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Node);
        drop(one);
        assert!(q.has_room());
        assert_eq!(q.open(), 1);
        assert_eq!(q.refused_per_ip(), 0);
    }

    #[test]
    fn overrides_replace_the_per_ip_bound_and_mapped_v4_counts_as_v4() {
        let q = quotas(usize::MAX, 1, "127.0.0.1:3, [::1]:0");
        let mapped = ip("::ffff:127.0.0.1");
        let _slots: Vec<_> = (0..3).map(|_| q.admit(mapped).unwrap()).collect();
        assert_eq!(q.admit(ip("127.0.0.1")).unwrap_err(), Refusal::PerIp);
        assert_eq!(q.admit(ip("::1")).unwrap_err(), Refusal::PerIp);
        let _one = q.admit(ip("127.0.0.9")).unwrap();
        assert_eq!(q.admit(ip("127.0.0.9")).unwrap_err(), Refusal::PerIp);
    }

    #[test]
    fn overrides_must_be_addresses_with_counts() {
        assert_eq!(parse_overrides("").unwrap().len(), 0);
        assert_eq!(parse_overrides("::1:5").unwrap()[&ip("::1")], 5);
        for bad in ["127.0.0.1", "localhost:5", "127.0.0.1:many"] {
            assert!(parse_overrides(bad).is_err(), "{bad}");
        }
    }
}
