//! DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), with Kafka's
//! semantics (`ScramControlManager`, `KRaftMetadataCache.describeScramCredentials`): at most
//! one change per user in a request, iterations in 4096..=16384, the stored and server keys
//! computed here from the salted password the client sends, kept in the metadata log.

use crate::authorizer::Authz;
use crate::handlers::code;
use crate::sasl::scram::{self, ITERATIONS_MAX, ITERATIONS_MIN};
use crate::shard::Shard;
use controller::acl::Operation;
use controller::image::MetadataCommand;
use controller::scram::{ScramCredentialSet, ScramMechanism};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Kafka asks Describe on the Cluster before answering anything.
pub fn describe(
    shard: &Shard,
    request: DescribeUserScramCredentialsRequest,
    authz: &Authz,
) -> DescribeUserScramCredentialsResponse {
    if !authz.cluster(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(Some(StrBytes::from_static_str(
                "Cluster authorization failed.",
            )));
    }
    let image = shard.image();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), credential) in &image.scram_credentials {
        by_user.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(mechanism.type_number())
                .with_iterations(credential.iterations),
        );
    }
    let found = |user: &str, infos: Vec<CredentialInfo>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
            .with_credential_infos(infos)
    };
    let results = match request.users.filter(|users| !users.is_empty()) {
        None => by_user
            .into_iter()
            .map(|(user, infos)| found(user, infos))
            .collect(),
        Some(users) => {
            let mut seen = std::collections::HashSet::new();
            let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
            let duplicated: std::collections::HashSet<&str> =
                names.iter().copied().filter(|n| !seen.insert(*n)).collect();
            let mut answered = std::collections::HashSet::new();
            names
                .into_iter()
                .filter(|n| answered.insert(*n))
                .map(|name| {
                    if duplicated.contains(name) {
                        failed(name, code::DUPLICATE_RESOURCE, "Cannot describe SCRAM credentials for the same user twice in a single request")
                    } else if let Some(infos) = by_user.get(name) {
                        found(name, infos.clone())
                    } else {
                        failed(name, code::RESOURCE_NOT_FOUND, "Attempt to describe a user credential that does not exist")
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

fn failed(user: &str, error: i16, message: &str) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_string()))
        .with_error_code(error)
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}

/// One user's change, validated.
enum Change {
    Set(ScramCredentialSet),
    Remove(ScramMechanism),
}

/// Kafka asks Alter on the Cluster: without it every user named gets
/// CLUSTER_AUTHORIZATION_FAILED.
pub async fn alter(
    shard: &Rc<Shard>,
    request: AlterUserScramCredentialsRequest,
    authz: &Authz,
) -> AlterUserScramCredentialsResponse {
    let image = shard.image();
    let mut changes: BTreeMap<String, Result<Change, (i16, String)>> = BTreeMap::new();
    let authorized = authz.cluster(Operation::Alter);
    if !authorized {
        let names = request.deletions.iter().map(|d| &d.name);
        for user in names.chain(request.upsertions.iter().map(|u| &u.name)) {
            let refused = Err((
                code::CLUSTER_AUTHORIZATION_FAILED,
                "Cluster authorization failed.".to_string(),
            ));
            changes.insert(user.to_string(), refused);
        }
    }
    let duplicate = || {
        Err((
            code::DUPLICATE_RESOURCE,
            "A user credential cannot be altered twice in the same request".to_string(),
        ))
    };
    for deletion in request.deletions.iter().filter(|_| authorized) {
        let user = deletion.name.to_string();
        let change = validate(&user, deletion.mechanism).and_then(|m| {
            if image.scram_credentials.contains_key(&(user.clone(), m)) {
                Ok(Change::Remove(m))
            } else {
                Err((
                    code::RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist".into(),
                ))
            }
        });
        match changes.get(&user) {
            Some(Err(_)) => {}
            Some(Ok(_)) => drop(changes.insert(user, duplicate())),
            None => drop(changes.insert(user, change)),
        }
    }
    for upsertion in request.upsertions.iter().filter(|_| authorized) {
        let user = upsertion.name.to_string();
        let change = validate(&user, upsertion.mechanism).and_then(|m| {
            if upsertion.iterations < ITERATIONS_MIN {
                return Err((code::UNACCEPTABLE_CREDENTIAL, "Too few iterations".into()));
            }
            if upsertion.iterations > ITERATIONS_MAX {
                return Err((code::UNACCEPTABLE_CREDENTIAL, "Too many iterations".into()));
            }
            Ok(Change::Set(ScramCredentialSet {
                user: user.clone(),
                mechanism: m,
                credential: scram::credential(
                    m,
                    &upsertion.salt,
                    &upsertion.salted_password,
                    upsertion.iterations,
                ),
            }))
        });
        match changes.get(&user) {
            Some(Err(_)) => {}
            Some(Ok(_)) => drop(changes.insert(user, duplicate())),
            None => drop(changes.insert(user, change)),
        }
    }
    let mut results = Vec::with_capacity(changes.len());
    for (user, change) in changes {
        let outcome = match change {
            Ok(change) => {
                let command = match change {
                    Change::Set(set) => MetadataCommand::SetScramCredential(Box::new(set)),
                    Change::Remove(mechanism) => MetadataCommand::RemoveScramCredential {
                        user: user.clone(),
                        mechanism,
                    },
                };
                shard
                    .propose(command)
                    .await
                    .map(|_| ())
                    .map_err(|e| (e.kafka_error_code(), e.to_string()))
            }
            Err(e) => Err(e),
        };
        let result = AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.clone()));
        results.push(match outcome {
            Ok(()) => {
                tracing::info!(%user, "SCRAM credentials altered");
                result
            }
            Err((error, message)) => result
                .with_error_code(error)
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Kafka's `validateScramUsernameAndMechanism`.
fn validate(user: &str, mechanism: i8) -> Result<ScramMechanism, (i16, String)> {
    if user.is_empty() {
        return Err((
            code::UNACCEPTABLE_CREDENTIAL,
            "Username must not be empty".into(),
        ));
    }
    ScramMechanism::from_type(mechanism).ok_or((
        code::UNSUPPORTED_SASL_MECHANISM,
        "Unknown SCRAM mechanism".into(),
    ))
}
