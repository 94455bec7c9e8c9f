//! The cluster flags of `spate start`: `--node-id`, `--roles`, `--controller-listen`,
//! `--controller-quorum`. Without any of them the node is the single-node default.

use controller::quorum::validate_voters;
use std::collections::BTreeSet;

/// What this node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// A node of a multi-node cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    pub node_id: u64,
    pub roles: Roles,
    /// Where this node's controller listens (controller role only).
    pub controller_listen: Option<String>,
    /// The voters: node id and controller address, as given.
    pub quorum: Vec<(u64, String)>,
    /// The broker's rack (`--rack`, Kafka's `broker.rack`): placement interleaves racks.
    pub rack: Option<String>,
}

/// The cluster flags as given, before validation.
#[derive(Debug, Default)]
pub struct ClusterFlags {
    node_id: Option<String>,
    roles: Option<String>,
    controller_listen: Option<String>,
    quorum: Option<String>,
    rack: Option<String>,
}

impl ClusterFlags {
    /// Takes `flag` if it is a cluster flag; `Ok(false)` when it is not one.
    pub fn take(
        &mut self,
        flag: &str,
        value: impl FnOnce() -> Result<String, String>,
    ) -> Result<bool, String> {
        let slot = match flag {
            "--node-id" => &mut self.node_id,
            "--roles" => &mut self.roles,
            "--controller-listen" => &mut self.controller_listen,
            "--controller-quorum" => &mut self.quorum,
            "--rack" => &mut self.rack,
            _ => return Ok(false),
        };
        *slot = Some(value()?);
        Ok(true)
    }

    /// `None` for the single-node default (no cluster flag given).
    pub fn finish(self) -> Result<Option<ClusterOptions>, String> {
        let ClusterFlags {
            node_id,
            roles,
            controller_listen,
            quorum,
            rack,
        } = self;
        if node_id.is_none() && roles.is_none() && controller_listen.is_none() && quorum.is_none() {
            return match rack {
                Some(_) => Err("--rack needs a multi-node cluster (--controller-quorum)".into()),
                None => Ok(None),
            };
        }
        let quorum = parse_quorum(&quorum.ok_or(
            "--controller-quorum is needed with --node-id, --roles or --controller-listen",
        )?)?;
        let node_id = node_id.ok_or("--node-id is needed with --controller-quorum")?;
        let node_id = node_id
            .parse::<u64>()
            .ok()
            .filter(|id| (1..=i32::MAX as u64).contains(id))
            .ok_or_else(|| format!("--node-id expects a positive number, got '{node_id}'"))?;
        let roles = parse_roles(roles.as_deref().unwrap_or("broker,controller"))?;
        let in_quorum = quorum.iter().find(|(id, _)| *id == node_id);
        if roles.controller {
            let Some((_, address)) = in_quorum else {
                return Err(format!(
                    "node {node_id} has the controller role but is not in --controller-quorum"
                ));
            };
            if let Some(listen) = &controller_listen {
                if listen != address {
                    return Err(format!(
                        "--controller-listen {listen} differs from node {node_id}'s address \
                         {address} in --controller-quorum"
                    ));
                }
            }
        } else if in_quorum.is_some() {
            return Err(format!(
                "node {node_id} is a voter in --controller-quorum but --roles has no controller"
            ));
        }
        let controller_listen = if roles.controller {
            Some(controller_listen.unwrap_or_else(|| in_quorum.expect("checked").1.clone()))
        } else if controller_listen.is_some() {
            return Err("--controller-listen needs the controller role".into());
        } else {
            None
        };
        Ok(Some(ClusterOptions {
            node_id,
            roles,
            controller_listen,
            quorum,
            rack: rack.filter(|r| !r.is_empty()),
        }))
    }
}

/// `broker`, `controller` or both, comma-separated.
fn parse_roles(roles: &str) -> Result<Roles, String> {
    let mut out = Roles {
        broker: false,
        controller: false,
    };
    for role in roles.split(',').map(str::trim) {
        match role {
            "broker" => out.broker = true,
            "controller" => out.controller = true,
            other => {
                return Err(format!(
                    "--roles: unknown role '{other}' (broker, controller or broker,controller)"
                ))
            }
        }
    }
    Ok(out)
}

/// `1@host:port,2@host:port,3@host:port`.
fn parse_quorum(quorum: &str) -> Result<Vec<(u64, String)>, String> {
    let mut voters = Vec::new();
    for voter in quorum.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let (id, address) = voter
            .split_once('@')
            .ok_or_else(|| format!("--controller-quorum: '{voter}' is not ID@HOST:PORT"))?;
        let id = id
            .parse::<u64>()
            .ok()
            .filter(|id| *id >= 1)
            .ok_or_else(|| format!("--controller-quorum: bad node id '{id}' in '{voter}'"))?;
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(format!(
                "--controller-quorum: '{address}' is not HOST:PORT (in '{voter}')"
            ));
        }
        voters.push((id, address.to_owned()));
    }
    let ids: Vec<u64> = voters.iter().map(|(id, _)| *id).collect();
    validate_voters(&ids).map_err(|e| format!("--controller-quorum: {e}"))?;
    let addresses: BTreeSet<&str> = voters.iter().map(|(_, a)| a.as_str()).collect();
    if addresses.len() != voters.len() {
        return Err("--controller-quorum: two voters share an address".into());
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[(&str, &str)]) -> Result<Option<ClusterOptions>, String> {
        let mut flags = ClusterFlags::default();
        for (flag, value) in args {
            assert!(flags.take(flag, || Ok(value.to_string()))?);
        }
        flags.finish()
    }

    const Q3: &str = "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103";

    #[test]
    fn no_cluster_flags_is_the_single_node_default() {
        assert_eq!(parse(&[]), Ok(None));
        let mut flags = ClusterFlags::default();
        assert_eq!(flags.take("--listen", || Ok("x".into())), Ok(false));
    }

    #[test]
    fn a_combined_node_of_three() {
        let options = parse(&[("--node-id", "2"), ("--controller-quorum", Q3)])
            .expect("valid")
            .expect("cluster");
        assert_eq!(options.node_id, 2);
        assert!(options.roles.broker && options.roles.controller);
        assert_eq!(options.controller_listen.as_deref(), Some("127.0.0.1:9102"));
        assert_eq!(options.quorum.len(), 3);
        let broker_only = parse(&[
            ("--node-id", "4"),
            ("--roles", "broker"),
            ("--controller-quorum", Q3),
        ])
        .expect("valid")
        .expect("cluster");
        assert_eq!(broker_only.controller_listen, None);
    }

    #[test]
    fn bad_configurations_say_why() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("--node-id", "1"), ("--controller-quorum", "1@h:1,2@h:2")],
                "must have 1, 3 or 5",
            ),
            (
                &[
                    ("--node-id", "1"),
                    ("--controller-quorum", "1@h:1,1@h:2,3@h:3"),
                ],
                "node id twice",
            ),
            (
                &[("--node-id", "1"), ("--controller-quorum", "")],
                "must have 1, 3 or 5",
            ),
            (
                &[("--node-id", "1"), ("--controller-quorum", "1@h")],
                "not HOST:PORT",
            ),
            (
                &[("--node-id", "x"), ("--controller-quorum", Q3)],
                "positive number",
            ),
            (
                &[("--node-id", "4"), ("--controller-quorum", Q3)],
                "not in --controller-quorum",
            ),
            (
                &[
                    ("--node-id", "1"),
                    ("--roles", "broker"),
                    ("--controller-quorum", Q3),
                ],
                "has no controller",
            ),
            (
                &[
                    ("--node-id", "1"),
                    ("--roles", "leader"),
                    ("--controller-quorum", Q3),
                ],
                "unknown role",
            ),
            (&[("--node-id", "1")], "--controller-quorum is needed"),
            (&[("--controller-quorum", Q3)], "--node-id is needed"),
            (
                &[
                    ("--node-id", "1"),
                    ("--controller-listen", "127.0.0.1:1"),
                    ("--controller-quorum", Q3),
                ],
                "differs",
            ),
            (
                &[
                    ("--node-id", "1"),
                    ("--controller-quorum", "1@h:1,2@h:1,3@h:3"),
                ],
                "share an address",
            ),
        ];
        for (args, expect) in cases {
            let err = parse(args).expect_err("refused");
            assert!(err.contains(expect), "{args:?}: {err}");
        }
    }
}
