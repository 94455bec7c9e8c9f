//! SCRAM credentials in the metadata (Kafka's `UserScramCredentialRecord` and
//! `RemoveUserScramCredentialRecord`): the salt, stored key, server key and iterations of a
//! user's credential per mechanism, never the password. They travel in the metadata log and
//! snapshots like topics do, so they survive restarts and are the same on every node.
//!
//! The keys are computed by the broker from the salted password the client sends
//! (AlterUserScramCredentials); this module only keeps them.

use std::collections::BTreeMap;

use crate::error::ApplyError;

/// Kafka's `ScramMechanism` types (`UNKNOWN` is 0).
#[derive(
    Clone,
    Copy,
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
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The mechanism of Kafka's type number (1: SCRAM-SHA-256, 2: SCRAM-SHA-512).
    pub fn from_type(t: i8) -> Option<Self> {
        match t {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn type_number(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The SASL mechanism name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One user's credential for one mechanism.
#[derive(Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl std::fmt::Debug for ScramCredential {
    /// Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ScramCredential(iterations={}, keys hidden)",
            self.iterations
        )
    }
}

/// A credential set (created or replaced).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ScramCredentialSet {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub credential: ScramCredential,
}

/// A credential removed.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ScramCredentialRemoved {
    pub user: String,
    pub mechanism: ScramMechanism,
}

/// Every user's credentials, by (user, mechanism).
pub type ScramCredentials = BTreeMap<(String, ScramMechanism), ScramCredential>;

/// Resolves a removal: refused (Kafka's RESOURCE_NOT_FOUND) when there is nothing to remove.
pub fn propose_removal(
    credentials: &ScramCredentials,
    user: String,
    mechanism: ScramMechanism,
) -> Result<ScramCredentialRemoved, ApplyError> {
    if !credentials.contains_key(&(user.clone(), mechanism)) {
        return Err(ApplyError::Refused {
            code: 91,
            message: "Attempt to delete a user credential that does not exist".into(),
        });
    }
    Ok(ScramCredentialRemoved { user, mechanism })
}

/// Applies a set record.
pub fn apply_set(credentials: &mut ScramCredentials, set: &ScramCredentialSet) {
    credentials.insert((set.user.clone(), set.mechanism), set.credential.clone());
}

/// Applies a removal record; refused when the credential does not exist (a corrupt log).
pub fn apply_removal(
    credentials: &mut ScramCredentials,
    offset: u64,
    removed: &ScramCredentialRemoved,
) -> Result<(), ApplyError> {
    credentials
        .remove(&(removed.user.clone(), removed.mechanism))
        .map(|_| ())
        .ok_or_else(|| {
            ApplyError::corrupt(format!(
                "offset {offset}: removing an unknown SCRAM credential of '{}'",
                removed.user
            ))
        })
}

/// The credentials as a snapshot holds them.
pub fn to_snapshot(credentials: &ScramCredentials) -> Vec<ScramCredentialSet> {
    credentials
        .iter()
        .map(|((user, mechanism), credential)| ScramCredentialSet {
            user: user.clone(),
            mechanism: *mechanism,
            credential: credential.clone(),
        })
        .collect()
}

/// The credentials of a snapshot; refused when one appears twice.
pub fn from_snapshot(sets: Vec<ScramCredentialSet>) -> Result<ScramCredentials, ApplyError> {
    let mut credentials = ScramCredentials::new();
    for set in sets {
        if credentials
            .insert((set.user, set.mechanism), set.credential)
            .is_some()
        {
            return Err(ApplyError::corrupt(
                "snapshot has a duplicate SCRAM credential",
            ));
        }
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(user: &str) -> ScramCredentialSet {
        ScramCredentialSet {
            user: user.into(),
            mechanism: ScramMechanism::Sha512,
            credential: ScramCredential {
                salt: vec![1],
                stored_key: vec![2],
                server_key: vec![3],
                iterations: 8192,
            },
        }
    }

    #[test]
    fn mechanisms_follow_kafkas_numbers_and_names() {
        assert_eq!(ScramMechanism::from_type(1), Some(ScramMechanism::Sha256));
        assert_eq!(ScramMechanism::from_type(2), Some(ScramMechanism::Sha512));
        assert_eq!(ScramMechanism::from_type(0), None);
        assert_eq!(
            ScramMechanism::from_name("SCRAM-SHA-512").map(|m| m.type_number()),
            Some(2)
        );
        assert_eq!(ScramMechanism::from_name("PLAIN"), None);
    }

    #[test]
    fn removals_need_an_existing_credential() {
        let mut credentials = ScramCredentials::new();
        apply_set(&mut credentials, &set("alice"));
        let removal =
            propose_removal(&credentials, "alice".into(), ScramMechanism::Sha512).unwrap();
        let refused = propose_removal(&credentials, "alice".into(), ScramMechanism::Sha256);
        assert_eq!(refused.unwrap_err().kafka_error_code(), 91);
        apply_removal(&mut credentials, 5, &removal).unwrap();
        assert!(credentials.is_empty());
        assert!(apply_removal(&mut credentials, 6, &removal).is_err());
    }

    #[test]
    fn credentials_live_in_the_metadata_log_and_snapshots_across_reopens() {
        use crate::image::MetadataCommand;
        use crate::store::{Controller, ControllerOptions, LocalBroker};
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).unwrap();
        let open = || {
            let local = LocalBroker {
                host: "127.0.0.1".into(),
                port: 9092,
                shards: 1,
                rack: None,
            };
            let options = ControllerOptions {
                snapshot_interval_records: 1_000_000,
            };
            Controller::open_single_node(dir.path(), 1, local, options).unwrap()
        };
        let mut c = open();
        c.apply(MetadataCommand::SetScramCredential(Box::new(set("alice"))))
            .unwrap();
        c.apply(MetadataCommand::SetScramCredential(Box::new(set("bob"))))
            .unwrap();
        c.apply(MetadataCommand::RemoveScramCredential {
            user: "bob".into(),
            mechanism: ScramMechanism::Sha512,
        })
        .unwrap();
        let refused = c.apply(MetadataCommand::RemoveScramCredential {
            user: "bob".into(),
            mechanism: ScramMechanism::Sha512,
        });
        assert_eq!(refused.unwrap_err().kafka_error_code(), 91);
        let before = c.image().scram_credentials.clone();
        assert_eq!(before.len(), 1);
        drop(c);
        // Replayed from the log, then from a snapshot.
        let mut c = open();
        assert_eq!(c.image().scram_credentials, before);
        c.snapshot().unwrap();
        drop(c);
        assert_eq!(open().image().scram_credentials, before);
    }

    #[test]
    fn snapshots_round_trip_and_refuse_duplicates() {
        let mut credentials = ScramCredentials::new();
        apply_set(&mut credentials, &set("alice"));
        apply_set(&mut credentials, &set("bob"));
        assert_eq!(
            from_snapshot(to_snapshot(&credentials)).unwrap(),
            credentials
        );
        assert!(from_snapshot(vec![set("a"), set("a")]).is_err());
        assert!(!format!("{:?}", set("a")).contains("stored_key"));
    }
}
