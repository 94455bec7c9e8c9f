//! The authorizer (Kafka's `StandardAuthorizer`): whether a connection's principal may do an
//! operation on a resource. Handlers ask it, since they know the resources; the ACLs come
//! from the metadata image (`controller::acl`, kept in the metadata log), the rest from the
//! broker settings `authorizer.class.name`, `super.users` and
//! `allow.everyone.if.no.acl.found`.
//!
//! One [`Authz`] is made per request. With no authorizer configured it holds nothing and
//! every question is one branch answering yes; with one, it holds the image's immutable ACL
//! index (an `Arc`), so a lookup takes no lock and allocates nothing.

use crate::session::{Principal, Session};
use crate::shard::Shard;
use controller::acl::{AclVerdict, Acls, Operation, Requester, ResourceType, CLUSTER_NAME};
use std::rc::Rc;
use std::sync::Arc;

/// The `authorizer.class.name` values that turn the authorizer on (Kafka's KRaft and
/// ZooKeeper authorizers; both mean the same semantics here).
pub const AUTHORIZER_CLASSES: [&str; 2] = [
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The authorizer's settings, when `authorizer.class.name` turns it on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `super.users`: principals allowed everything.
    pub super_users: Vec<Principal>,
    /// `allow.everyone.if.no.acl.found`: with no ACL on a resource, allow (else deny).
    pub allow_if_no_acl: bool,
}

impl AuthorizerConfig {
    /// From the settings' text: `None` when `class_name` is empty (authorizer off);
    /// `Err` for a class this broker does not implement or a malformed super user.
    pub fn parse(
        class_name: &str,
        super_users: &str,
        allow_if_no_acl: bool,
    ) -> Result<Option<AuthorizerConfig>, String> {
        let class_name = class_name.trim();
        if class_name.is_empty() {
            return Ok(None);
        }
        if !AUTHORIZER_CLASSES.contains(&class_name) {
            return Err(format!(
                "authorizer.class.name: {class_name} is not one of {AUTHORIZER_CLASSES:?}"
            ));
        }
        let super_users = super_users
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Principal::parse(s).ok_or_else(|| format!("super.users: bad principal {s}")))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Some(AuthorizerConfig {
            super_users,
            allow_if_no_acl,
        }))
    }
}

/// One request's authorizer: who asks, and the ACLs of the image it is served from.
pub struct Authz {
    on: Option<On>,
}

struct On {
    acls: Arc<Acls>,
    principal: Rc<Principal>,
    /// The session's client host as Kafka shows it (`/1.2.3.4`; ACLs name `1.2.3.4`).
    client_host: Rc<str>,
    super_user: bool,
    allow_if_no_acl: bool,
}

impl Authz {
    /// No authorizer: everything allowed.
    pub fn off() -> Authz {
        Authz { on: None }
    }

    /// The authorizer for a request of `session` on `shard`.
    pub fn new(shard: &Shard, session: &Session) -> Authz {
        match &shard.config.authorizer {
            None => Authz::off(),
            Some(config) => Authz::with(config, shard.image().acls.clone(), session),
        }
    }

    /// The authorizer of `config` over `acls`, for `session`.
    pub fn with(config: &AuthorizerConfig, acls: Arc<Acls>, session: &Session) -> Authz {
        let principal = session.principal();
        Authz {
            on: Some(On {
                super_user: config.super_users.contains(&principal),
                acls,
                principal,
                client_host: session.client_host.clone(),
                allow_if_no_acl: config.allow_if_no_acl,
            }),
        }
    }

    /// Whether an authorizer is configured (the ACL APIs answer SECURITY_DISABLED without).
    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// The ACLs this request is authorized against (none when the authorizer is off).
    pub fn acls(&self) -> Arc<Acls> {
        self.on
            .as_ref()
            .map(|on| on.acls.clone())
            .unwrap_or_default()
    }

    /// Whether the principal may do `operation` on resource `name` of `resource_type`.
    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let Some(on) = &self.on else {
            return true;
        };
        if on.super_user {
            return true;
        }
        match on
            .acls
            .verdict(&on.requester(), operation, resource_type, name)
        {
            AclVerdict::Allowed => true,
            AclVerdict::Denied => false,
            AclVerdict::NoAcls => on.allow_if_no_acl,
        }
    }

    pub fn topic(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::Topic, name)
    }

    pub fn group(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::Group, name)
    }

    pub fn cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether the principal may do `operation` on some resource of `resource_type`
    /// (Kafka's `authorizeByResourceType`).
    pub fn allows_any(&self, operation: Operation, resource_type: ResourceType) -> bool {
        let Some(on) = &self.on else {
            return true;
        };
        on.super_user
            || on
                .acls
                .allows_any(&on.requester(), operation, resource_type)
            || (on.allow_if_no_acl && on.acls.is_empty())
    }

    /// Kafka's `authorized_operations` bit field: bit `code` set for each of `operations`
    /// allowed on the resource.
    pub fn operations(
        &self,
        resource_type: ResourceType,
        name: &str,
        operations: &[Operation],
    ) -> i32 {
        operations
            .iter()
            .filter(|op| self.allows(**op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

impl On {
    fn requester(&self) -> Requester<'_> {
        Requester {
            principal_type: &self.principal.principal_type,
            principal_name: &self.principal.name,
            host: self.client_host.trim_start_matches('/'),
        }
    }
}

/// Kafka's `authorized_operations` when they were not asked for.
pub const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

#[cfg(test)]
mod tests {
    use super::*;
    use controller::acl::{AclBinding, PatternType, Permission};

    fn session(user: &str) -> Session {
        let session = Session::new(
            Some("127.0.0.1:5000".parse().expect("address")),
            std::rc::Rc::new(
                crate::listeners::ListenerInfo::plaintext("127.0.0.1:9092").expect("listener"),
            ),
        );
        session.set_principal(Principal::user(user));
        session
    }

    fn acls(list: &[(&str, Operation, Permission)]) -> Arc<Acls> {
        let bindings = list
            .iter()
            .map(|(principal, operation, permission)| AclBinding {
                resource_type: ResourceType::Topic,
                resource_name: "t".into(),
                pattern_type: PatternType::Literal,
                principal: (*principal).into(),
                host: "127.0.0.1".into(),
                operation: *operation,
                permission: *permission,
            })
            .collect();
        Arc::new(Acls::new(bindings))
    }

    fn config(super_users: &str, allow_if_no_acl: bool) -> AuthorizerConfig {
        AuthorizerConfig::parse(AUTHORIZER_CLASSES[0], super_users, allow_if_no_acl)
            .expect("valid")
            .expect("on")
    }

    #[test]
    fn settings_turn_it_on_and_name_super_users() {
        assert_eq!(AuthorizerConfig::parse("", "User:a", false), Ok(None));
        assert!(AuthorizerConfig::parse("com.example.Mine", "", false).is_err());
        assert!(AuthorizerConfig::parse(AUTHORIZER_CLASSES[1], "alice", false).is_err());
        let parsed = config(" User:admin ; User:CN=broker,O=x;", true);
        assert_eq!(
            parsed.super_users,
            [Principal::user("admin"), Principal::user("CN=broker,O=x")]
        );
        assert!(parsed.allow_if_no_acl);
    }

    #[test]
    fn super_users_bypass_and_the_default_decides_without_acls() {
        let acls = acls(&[("User:alice", Operation::Write, Permission::Deny)]);
        let strict = config("User:admin", false);
        let admin = Authz::with(&strict, acls.clone(), &session("admin"));
        assert!(admin.topic(Operation::Write, "t"));
        let alice = Authz::with(&strict, acls.clone(), &session("alice"));
        assert!(!alice.topic(Operation::Write, "t"));
        // No ACL on "u": denied unless allow.everyone.if.no.acl.found.
        assert!(!alice.topic(Operation::Read, "u"));
        let lenient = config("", true);
        let alice = Authz::with(&lenient, acls.clone(), &session("alice"));
        assert!(alice.topic(Operation::Read, "u"));
        // ACLs on "t" (for alice) leave bob denied even with the lenient default.
        let bob = Authz::with(&lenient, acls, &session("bob"));
        assert!(!bob.topic(Operation::Read, "t"));
        assert!(Authz::off().topic(Operation::Read, "t"));
        assert!(bob.is_on() && !Authz::off().is_on());
    }

    #[test]
    fn authorized_operations_are_a_bit_field() {
        let acls = acls(&[("User:alice", Operation::Read, Permission::Allow)]);
        let alice = Authz::with(&config("", false), acls, &session("alice"));
        let bits = alice.operations(ResourceType::Topic, "t", &Operation::TOPIC);
        assert_eq!(bits, (1 << 3) | (1 << 8)); // Read, and the Describe it implies
    }
}
