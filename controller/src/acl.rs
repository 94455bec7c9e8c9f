//! Access control lists: the bindings the metadata log keeps, the filters DescribeAcls and
//! DeleteAcls select them with, and the lookup Kafka's `StandardAuthorizer` does (pure).
//!
//! Codes are Kafka's (`ResourceType`, `PatternType`, `AclOperation`, `AclPermissionType`),
//! so a binding goes to and from the wire without a table. [`Acls`] is immutable: every
//! change builds a new one (its index with it), held by the [`crate::MetadataImage`] behind
//! an `Arc`, so a shard's lookup takes no lock and allocates nothing.

use std::collections::{BTreeSet, HashMap};

/// Kafka's wildcard resource name (a LITERAL `*` matches every name) and host.
pub const WILDCARD: &str = "*";
/// The only name of the Cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// Most ACL bindings the cluster keeps.
pub const ACLS_MAX: usize = 100_000;
/// Longest resource name, principal or host of a binding.
pub const ACL_FIELD_BYTES_MAX: usize = 32 * 1024;

macro_rules! kafka_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
                 rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        #[rkyv(derive(Debug))]
        pub enum $name { $($variant),* }

        impl $name {
            /// Kafka's code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }
            /// From Kafka's code; `None` for UNKNOWN and codes Kafka does not define.
            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
        }
    };
}

kafka_enum!(
    /// Kafka's `ResourceType` (UNKNOWN = 0 has no variant).
    ResourceType {
        Any = 1,
        Topic = 2,
        Group = 3,
        Cluster = 4,
        TransactionalId = 5,
        DelegationToken = 6,
        User = 7,
    }
);

kafka_enum!(
    /// Kafka's `PatternType`; bindings are LITERAL or PREFIXED, filters any.
    PatternType {
        Any = 1,
        Match = 2,
        Literal = 3,
        Prefixed = 4,
    }
);

kafka_enum!(
    /// Kafka's `AclOperation`.
    Operation {
        Any = 1,
        All = 2,
        Read = 3,
        Write = 4,
        Create = 5,
        Delete = 6,
        Alter = 7,
        Describe = 8,
        ClusterAction = 9,
        DescribeConfigs = 10,
        AlterConfigs = 11,
        IdempotentWrite = 12,
        CreateTokens = 13,
        DescribeTokens = 14,
        TwoPhaseCommit = 15,
    }
);

kafka_enum!(
    /// Kafka's `AclPermissionType`.
    Permission {
        Any = 1,
        Deny = 2,
        Allow = 3,
    }
);

impl Operation {
    /// The operations Kafka reports as `authorized_operations` of a topic.
    pub const TOPIC: [Operation; 8] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
    ];
    /// The operations Kafka reports as `authorized_operations` of the cluster.
    pub const CLUSTER: [Operation; 7] = [
        Operation::Create,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::Alter,
        Operation::Describe,
    ];
    /// The operations Kafka reports as `authorized_operations` of a group.
    pub const GROUP: [Operation; 3] = [Operation::Read, Operation::Describe, Operation::Delete];

    /// Whether an ALLOW of `self` grants `wanted` (ALL grants everything; Read, Write,
    /// Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs).
    fn allow_grants(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` refuses `wanted` (no implication: a DENY of Read does not
    /// refuse Describe).
    fn deny_refuses(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

/// One ACL: who may (or may not) do what on which resources, from where.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    /// A name, a prefix (PREFIXED) or `*` (LITERAL: every name).
    pub resource_name: String,
    /// Literal or Prefixed.
    pub pattern_type: PatternType,
    /// `type:name`, `User:*` for every user.
    pub principal: String,
    /// An IP address as Kafka prints it, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Checks a binding to be created as Kafka's controller does (`AclControlManager`):
    /// the message says what is wrong (INVALID_REQUEST).
    pub fn validate(&self) -> Result<(), String> {
        if matches!(self.resource_type, ResourceType::Any) {
            return Err("Invalid resourceType ANY".into());
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Err(format!("Invalid patternType {:?}", self.pattern_type));
        }
        if matches!(self.operation, Operation::Any) {
            return Err("Invalid operation ANY".into());
        }
        if matches!(self.permission, Permission::Any) {
            return Err("Invalid permissionType ANY".into());
        }
        if self.resource_name.is_empty() {
            return Err("Resource name should not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if !self.principal.contains(':') {
            return Err(format!(
                "Could not parse principal from `{}` (no colon is present separating the \
                 principal type from the principal name)",
                self.principal
            ));
        }
        if self.host.is_empty() {
            return Err("Host should not be empty".into());
        }
        let too_long = [&self.resource_name, &self.principal, &self.host]
            .iter()
            .any(|f| f.len() > ACL_FIELD_BYTES_MAX);
        if too_long {
            return Err(format!(
                "ACL fields are limited to {ACL_FIELD_BYTES_MAX} bytes"
            ));
        }
        Ok(())
    }
}

/// A DescribeAcls or DeleteAcls filter (Kafka's `AclBindingFilter`): `None` and the ANY
/// codes match everything; pattern type MATCH selects every binding that applies to the
/// named resource (literal, `*` and prefixes of it).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    /// Whether the filter selects `acl`.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let any_or = |filter: Option<&String>, value: &String| filter.is_none_or(|f| f == value);
        self.matches_pattern(acl)
            && any_or(self.principal.as_ref(), &acl.principal)
            && any_or(self.host.as_ref(), &acl.host)
            && (self.operation == Operation::Any || self.operation == acl.operation)
            && (self.permission == Permission::Any || self.permission == acl.permission)
    }

    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != acl.resource_type {
            return false;
        }
        let exact = !matches!(self.pattern_type, PatternType::Any | PatternType::Match);
        if exact && self.pattern_type != acl.pattern_type {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type != PatternType::Match {
            return *name == acl.resource_name;
        }
        match acl.pattern_type {
            PatternType::Literal => *name == acl.resource_name || acl.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&acl.resource_name),
            _ => false,
        }
    }
}

/// What the ACLs say about one action, before super users and the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclVerdict {
    /// A matching ALLOW and no matching DENY.
    Allowed,
    /// A matching DENY, or ACLs on the resource of which none allows.
    Denied,
    /// No ACL applies to the resource at all (for any principal): the authorizer's default
    /// (`allow.everyone.if.no.acl.found`) decides.
    NoAcls,
}

/// The session side of an action: who asks, from where.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal_type: &'a str,
    pub principal_name: &'a str,
    /// The client's IP address as Kafka prints it (no leading `/`).
    pub host: &'a str,
}

/// The per-binding part the lookup needs, split once when the index is built.
#[derive(Clone, Debug)]
struct Entry {
    principal_type: Box<str>,
    principal_name: Box<str>,
    host: Box<str>,
    operation: Operation,
    allow: bool,
}

impl Entry {
    fn of(acl: &AclBinding) -> Self {
        let (principal_type, principal_name) = acl
            .principal
            .split_once(':')
            .unwrap_or(("", &acl.principal));
        Entry {
            principal_type: principal_type.into(),
            principal_name: principal_name.into(),
            host: acl.host.as_str().into(),
            operation: acl.operation,
            allow: acl.permission == Permission::Allow,
        }
    }

    /// Kafka's `findResult`: `Some(allow)` when this binding decides `wanted` for `who`.
    fn decides(&self, who: &Requester<'_>, wanted: Operation) -> Option<bool> {
        let principal = (&*self.principal_type == who.principal_type
            && &*self.principal_name == who.principal_name)
            || (&*self.principal_type == "User" && &*self.principal_name == WILDCARD);
        if !principal || (&*self.host != WILDCARD && &*self.host != who.host) {
            return None;
        }
        let applies = if self.allow {
            self.operation.allow_grants(wanted)
        } else {
            self.operation.deny_refuses(wanted)
        };
        applies.then_some(self.allow)
    }
}

/// The bindings of one resource type, indexed by how they match names.
#[derive(Clone, Debug, Default)]
struct TypeIndex {
    /// LITERAL bindings by exact name (`*` included, looked up for every name).
    literal: HashMap<Box<str>, Vec<Entry>>,
    /// PREFIXED bindings by prefix.
    prefixed: HashMap<Box<str>, Vec<Entry>>,
    /// The distinct lengths of the prefixes, ascending: a lookup tries only these.
    prefix_lens: Vec<usize>,
}

/// Every ACL binding of the cluster and the index the authorizer looks them up in.
#[derive(Clone, Debug, Default)]
pub struct Acls {
    bindings: BTreeSet<AclBinding>,
    /// By [`ResourceType::code`].
    by_type: [TypeIndex; 8],
}

impl PartialEq for Acls {
    fn eq(&self, other: &Self) -> bool {
        self.bindings == other.bindings
    }
}

impl Eq for Acls {}

impl Acls {
    /// The ACLs holding exactly `bindings`, indexed.
    pub fn new(bindings: BTreeSet<AclBinding>) -> Self {
        let mut by_type: [TypeIndex; 8] = Default::default();
        for acl in &bindings {
            let index = &mut by_type[acl.resource_type.code() as usize];
            let map = match acl.pattern_type {
                PatternType::Prefixed => &mut index.prefixed,
                _ => &mut index.literal,
            };
            map.entry(acl.resource_name.as_str().into())
                .or_default()
                .push(Entry::of(acl));
        }
        for index in &mut by_type {
            index.prefix_lens = index.prefixed.keys().map(|p| p.len()).collect();
            index.prefix_lens.sort_unstable();
            index.prefix_lens.dedup();
        }
        Acls { bindings, by_type }
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn contains(&self, acl: &AclBinding) -> bool {
        self.bindings.contains(acl)
    }

    /// Every binding, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.bindings.iter()
    }

    /// The bindings `filter` selects.
    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = &'a AclBinding> {
        self.bindings.iter().filter(move |acl| filter.matches(acl))
    }

    /// These ACLs with `added` and without `removed` (a new index).
    pub fn changed(&self, added: &[AclBinding], removed: &[AclBinding]) -> Acls {
        let mut bindings = self.bindings.clone();
        for acl in removed {
            bindings.remove(acl);
        }
        bindings.extend(added.iter().cloned());
        Acls::new(bindings)
    }

    /// Kafka's StandardAuthorizer lookup of `operation` on resource `name` of type
    /// `resource_type` for `who`: a matching DENY wins over any ALLOW; with no ACL on the
    /// resource at all, [`AclVerdict::NoAcls`]. Literal bindings of the name and of `*` and
    /// prefixed bindings of every prefix of the name apply. No allocation.
    pub fn verdict(
        &self,
        who: &Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> AclVerdict {
        let index = &self.by_type[resource_type.code() as usize];
        let mut any = false;
        let mut allowed = false;
        let wildcard = (name != WILDCARD).then_some(WILDCARD);
        let literal = std::iter::once(name)
            .chain(wildcard)
            .filter_map(|n| index.literal.get(n));
        let prefixed = index
            .prefix_lens
            .iter()
            .take_while(|len| **len <= name.len())
            .filter_map(|len| name.get(..*len))
            .filter_map(|prefix| index.prefixed.get(prefix));
        for entries in literal.chain(prefixed) {
            any = true;
            for entry in entries {
                match entry.decides(who, operation) {
                    Some(false) => return AclVerdict::Denied,
                    Some(true) => allowed = true,
                    None => {}
                }
            }
        }
        match (allowed, any) {
            (true, _) => AclVerdict::Allowed,
            (false, true) => AclVerdict::Denied,
            (false, false) => AclVerdict::NoAcls,
        }
    }

    /// Whether `who` is allowed `operation` on at least one resource of `resource_type`
    /// (Kafka's `authorizeByResourceType`, used for an idempotent producer's Write on any
    /// topic): an ALLOW of it not covered by a DENY of the same principal and host.
    pub fn allows_any(
        &self,
        who: &Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let index = &self.by_type[resource_type.code() as usize];
        let decided = |entries: &Vec<Entry>, allow: bool| {
            entries
                .iter()
                .any(|e| e.decides(who, operation) == Some(allow))
        };
        if index
            .literal
            .get(WILDCARD)
            .is_some_and(|e| decided(e, false))
        {
            return false;
        }
        let denied_prefix = |name: &str| {
            index
                .prefixed
                .iter()
                .any(|(p, e)| name.starts_with(&**p) && decided(e, false))
        };
        let literal = index.literal.iter().any(|(name, entries)| {
            decided(entries, true)
                && !denied_prefix(name)
                && !(index.literal.get(name).is_some_and(|e| decided(e, false)))
        });
        literal
            || index
                .prefixed
                .iter()
                .any(|(prefix, entries)| decided(entries, true) && !denied_prefix(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation: op,
            permission,
        }
    }

    fn topic(name: &str, pattern: PatternType, principal: &str, op: Operation) -> AclBinding {
        acl(
            ResourceType::Topic,
            name,
            pattern,
            principal,
            op,
            Permission::Allow,
        )
    }

    fn deny(mut acl: AclBinding) -> AclBinding {
        acl.permission = Permission::Deny;
        acl
    }

    const ALICE: Requester<'static> = Requester {
        principal_type: "User",
        principal_name: "alice",
        host: "127.0.0.1",
    };
    const BOB: Requester<'static> = Requester {
        principal_type: "User",
        principal_name: "bob",
        host: "10.0.0.2",
    };

    fn of(bindings: Vec<AclBinding>) -> Acls {
        Acls::new(bindings.into_iter().collect())
    }

    use AclVerdict::*;
    use Operation::*;
    use PatternType::*;
    use ResourceType::{Cluster, Group, Topic};

    #[test]
    fn literal_prefixed_and_wildcard_names_apply() {
        let acls = of(vec![
            topic("orders", Literal, "User:alice", Read),
            topic("logs-", Prefixed, "User:alice", Write),
            topic("*", Literal, "User:bob", Read),
        ]);
        assert_eq!(acls.verdict(&ALICE, Read, Topic, "orders"), Allowed);
        // bob's `*` puts ACLs on every topic: none of alice's applies here.
        assert_eq!(acls.verdict(&ALICE, Read, Topic, "orders2"), Denied);
        assert_eq!(acls.verdict(&ALICE, Write, Topic, "logs-2026"), Allowed);
        assert_eq!(acls.verdict(&ALICE, Write, Topic, "logs-"), Allowed);
        assert_eq!(acls.verdict(&ALICE, Write, Topic, "logs"), Denied);
        let no_wildcard = of(vec![topic("logs-", Prefixed, "User:alice", Write)]);
        assert_eq!(no_wildcard.verdict(&ALICE, Write, Topic, "logs"), NoAcls);
        assert_eq!(no_wildcard.verdict(&ALICE, Write, Topic, "log"), NoAcls);
        // The wildcard applies to every topic: bob reads all, alice has ACLs everywhere.
        assert_eq!(acls.verdict(&BOB, Read, Topic, "anything"), Allowed);
        assert_eq!(acls.verdict(&ALICE, Read, Topic, "anything"), Denied);
        // A prefixed name `*` is a prefix, not a wildcard.
        let star_prefix = of(vec![topic("*", Prefixed, "User:alice", Read)]);
        assert_eq!(star_prefix.verdict(&ALICE, Read, Topic, "t"), NoAcls);
        assert_eq!(star_prefix.verdict(&ALICE, Read, Topic, "*t"), Allowed);
        // Other resource types are separate.
        assert_eq!(acls.verdict(&ALICE, Read, Group, "orders"), NoAcls);
    }

    #[test]
    fn a_matching_deny_wins_over_any_allow() {
        let acls = of(vec![
            topic("t", Literal, "User:alice", All),
            deny(topic("t", Prefixed, "User:alice", Write)),
            topic("*", Literal, "User:*", Read),
        ]);
        assert_eq!(acls.verdict(&ALICE, Write, Topic, "t"), Denied);
        assert_eq!(acls.verdict(&ALICE, Read, Topic, "t"), Allowed);
        // A DENY of Write does not refuse Describe (no implication for DENY).
        assert_eq!(acls.verdict(&ALICE, Describe, Topic, "t"), Allowed);
        let wild_deny = of(vec![
            topic("t", Literal, "User:alice", Read),
            deny(topic("*", Literal, "User:*", All)),
        ]);
        assert_eq!(wild_deny.verdict(&ALICE, Read, Topic, "t"), Denied);
        assert_eq!(wild_deny.verdict(&ALICE, Describe, Topic, "t"), Denied);
    }

    #[test]
    fn allows_imply_describe_and_describe_configs_only() {
        for op in [Read, Write, Delete, Alter, Describe, All] {
            let acls = of(vec![topic("t", Literal, "User:alice", op)]);
            assert_eq!(
                acls.verdict(&ALICE, Describe, Topic, "t"),
                Allowed,
                "{op:?}"
            );
        }
        for op in [Create, AlterConfigs, DescribeConfigs, ClusterAction] {
            let acls = of(vec![topic("t", Literal, "User:alice", op)]);
            assert_eq!(acls.verdict(&ALICE, Describe, Topic, "t"), Denied, "{op:?}");
        }
        let configs = of(vec![topic("t", Literal, "User:alice", AlterConfigs)]);
        assert_eq!(
            configs.verdict(&ALICE, DescribeConfigs, Topic, "t"),
            Allowed
        );
        assert_eq!(configs.verdict(&ALICE, Alter, Topic, "t"), Denied);
        let read = of(vec![topic("t", Literal, "User:alice", Read)]);
        assert_eq!(read.verdict(&ALICE, Write, Topic, "t"), Denied);
        assert_eq!(read.verdict(&ALICE, DescribeConfigs, Topic, "t"), Denied);
    }

    #[test]
    fn principals_and_hosts_must_match() {
        let mut from_host = topic("t", Literal, "User:alice", Read);
        from_host.host = "10.0.0.9".into();
        let acls = of(vec![from_host, topic("u", Literal, "User:*", Read)]);
        assert_eq!(acls.verdict(&ALICE, Read, Topic, "t"), Denied);
        let there = Requester {
            host: "10.0.0.9",
            ..ALICE
        };
        assert_eq!(acls.verdict(&there, Read, Topic, "t"), Allowed);
        assert_eq!(acls.verdict(&BOB, Read, Topic, "u"), Allowed);
        // `User:*` is the wildcard; another type with `*` is not, nor another type's name.
        let group_star = of(vec![topic("t", Literal, "Group:*", Read)]);
        assert_eq!(group_star.verdict(&ALICE, Read, Topic, "t"), Denied);
        let other_type = Requester {
            principal_type: "Service",
            ..ALICE
        };
        let alice = of(vec![topic("t", Literal, "User:alice", Read)]);
        assert_eq!(alice.verdict(&other_type, Read, Topic, "t"), Denied);
    }

    #[test]
    fn idempotent_write_on_any_topic() {
        let acls = of(vec![topic("t", Literal, "User:alice", Write)]);
        assert!(acls.allows_any(&ALICE, Write, Topic));
        assert!(!acls.allows_any(&BOB, Write, Topic));
        let prefixed_denied = of(vec![
            topic("logs-1", Literal, "User:alice", Write),
            deny(topic("logs", Prefixed, "User:alice", Write)),
        ]);
        assert!(!prefixed_denied.allows_any(&ALICE, Write, Topic));
        let all_denied = of(vec![
            topic("t", Prefixed, "User:alice", All),
            deny(topic("*", Literal, "User:alice", Write)),
        ]);
        assert!(!all_denied.allows_any(&ALICE, Write, Topic));
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let lit = topic("orders", Literal, "User:alice", Read);
        let pre = topic("ord", Prefixed, "User:bob", Write);
        let star = topic("*", Literal, "User:alice", Read);
        let acls = of(vec![lit.clone(), pre.clone(), star.clone()]);
        let all = AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        assert_eq!(acls.matching(&all).count(), 3);
        let named = |pattern| AclFilter {
            resource_name: Some("orders".into()),
            pattern_type: pattern,
            ..all.clone()
        };
        let found = |f: AclFilter| acls.matching(&f).cloned().collect::<BTreeSet<_>>();
        assert_eq!(found(named(Match)), [lit.clone(), pre.clone(), star].into());
        assert_eq!(found(named(PatternType::Any)), [lit.clone()].into());
        assert_eq!(found(named(Prefixed)), BTreeSet::new());
        let bob = AclFilter {
            principal: Some("User:bob".into()),
            ..all.clone()
        };
        assert_eq!(found(bob), [pre].into());
        let write = AclFilter {
            operation: Write,
            permission: Permission::Allow,
            ..all
        };
        assert_eq!(acls.matching(&write).count(), 1);
    }

    #[test]
    fn bindings_are_validated_as_kafka_does() {
        let good = topic("t", Literal, "User:alice", Read);
        assert_eq!(good.validate(), Ok(()));
        let bad = |f: fn(&mut AclBinding)| {
            let mut acl = good.clone();
            f(&mut acl);
            acl.validate().expect_err("refused")
        };
        assert!(bad(|a| a.resource_name.clear()).contains("empty"));
        assert!(bad(|a| a.principal = "alice".into()).contains("colon"));
        assert!(bad(|a| a.pattern_type = Match).contains("patternType"));
        assert!(bad(|a| a.operation = Operation::Any).contains("operation"));
        assert!(bad(|a| a.permission = Permission::Any).contains("permissionType"));
        assert!(bad(|a| a.resource_type = ResourceType::Any).contains("resourceType"));
        assert!(bad(|a| a.resource_type = Cluster).contains("kafka-cluster"));
        assert_eq!(ResourceType::from_code(0), None);
        assert_eq!(Operation::from_code(12), Some(IdempotentWrite));
        assert_eq!(Permission::Allow.code(), 3);
    }

    #[test]
    fn changes_rebuild_the_index() {
        let a = topic("t", Literal, "User:alice", Read);
        let acls = Acls::default().changed(std::slice::from_ref(&a), &[]);
        assert_eq!(acls.verdict(&ALICE, Read, Topic, "t"), Allowed);
        let acls = acls.changed(&[], &[a]);
        assert!(acls.is_empty());
        assert_eq!(acls.verdict(&ALICE, Read, Topic, "t"), NoAcls);
    }

    #[test]
    fn acl_commands_apply_and_survive_a_snapshot() {
        use crate::codec::{decode_snapshot, encode_snapshot, SnapshotPayload};
        use crate::{MetadataCommand, MetadataImage, MetadataRecord};
        let init = MetadataRecord::ClusterInit {
            cluster_id: "c".into(),
        };
        let (image, _) = MetadataImage::empty(1).apply(1, &init).expect("init");
        let a = topic("t", Literal, "User:alice", Read);
        let b = deny(topic("t", Prefixed, "User:bob", Write));
        let create = MetadataCommand::CreateAcls {
            acls: vec![a.clone(), b.clone(), a.clone()],
        };
        let records = image.propose_records(create, || [7; 16]).expect("valid");
        let (image, _) = image.apply_batch(&records).expect("applies");
        assert_eq!(image.acls.len(), 2);
        assert_eq!(image.acls.verdict(&ALICE, Read, Topic, "t"), Allowed);
        let bytes = encode_snapshot(&SnapshotPayload::of(&image));
        let payload = decode_snapshot(&bytes).expect("decodes");
        let restored = MetadataImage::from_snapshot(1, payload).expect("restores");
        assert_eq!(restored, image);
        assert_eq!(restored.acls.verdict(&ALICE, Read, Topic, "t"), Allowed);
        let mut invalid = a.clone();
        invalid.principal = "nobody".into();
        let refused = MetadataCommand::CreateAcls {
            acls: vec![invalid],
        };
        assert!(image.propose_records(refused, || [7; 16]).is_err());
        let bob = AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: Some("User:bob".into()),
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        let delete = MetadataCommand::DeleteAcls {
            filters: vec![bob.clone(), bob],
        };
        let records = image.propose_records(delete, || [7; 16]).expect("valid");
        assert_eq!(records, [MetadataRecord::AclsDeleted(Box::new(vec![b]))]);
        let (image, _) = image.apply_batch(&records).expect("applies");
        assert_eq!(image.acls.iter().collect::<Vec<_>>(), [&a]);
    }
}
