//! `spate user add|list|remove`: SCRAM users through AlterUserScramCredentials and
//! DescribeUserScramCredentials, as `kafka-configs --entity-type users` does. The password
//! is salted and hashed here (PBKDF2, RFC 5802's Hi); only the salted password travels.

use crate::args::{self, Args};
use crate::output::{print_json, table};
use crate::session::{check, error_name, run, str_bytes, Session};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use serde_json::json;
use sha2::{Sha256, Sha512};
use std::io::Read;

const MECHANISMS: [(&str, i8); 2] = [("SCRAM-SHA-256", 1), ("SCRAM-SHA-512", 2)];
/// Kafka's default iterations for a SCRAM credential.
const DEFAULT_ITERATIONS: i32 = 4096;

pub fn main(args: &[String]) -> Result<(), String> {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("add") => add(args::parse(
            rest,
            &["--password", "--mechanism", "--iterations"],
            &[],
        )?),
        Some("list") => list(args::parse(rest, &[], &[])?),
        Some("remove") => remove(args::parse(rest, &["--mechanism"], &[])?),
        Some(other) => Err(format!(
            "unknown user command '{other}' (add, list, remove)"
        )),
        None => Err("usage: spate user add|list|remove ...".into()),
    }
}

fn mechanism_type(name: &str) -> Result<i8, String> {
    MECHANISMS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("unknown mechanism '{name}' (SCRAM-SHA-256, SCRAM-SHA-512)"))
}

fn mechanism_name(t: i8) -> &'static str {
    MECHANISMS
        .iter()
        .find(|(_, n)| *n == t)
        .map_or("UNKNOWN", |(name, _)| name)
}

/// Hi(password, salt, iterations) with the mechanism's HMAC.
fn salted_password(mechanism: i8, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    if mechanism == 1 {
        pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations).to_vec()
    } else {
        pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password.as_bytes(), salt, iterations).to_vec()
    }
}

fn random_salt() -> Result<Vec<u8>, String> {
    let mut salt = vec![0; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(salt)
}

fn user_name(args: &Args) -> Result<String, String> {
    let name = args.positional(0, "user name")?;
    args.no_more_than(1)?;
    Ok(name.to_string())
}

async fn alter(session: &Session, request: AlterUserScramCredentialsRequest) -> Result<(), String> {
    let reply: AlterUserScramCredentialsResponse = session
        .call(ApiKey::AlterUserScramCredentials, 0, &request)
        .await?;
    for result in &reply.results {
        if result.error_code != 0 {
            let message = result.error_message.as_deref().unwrap_or_default();
            return Err(format!(
                "user '{}': {} {message}",
                result.user.as_str(),
                error_name(result.error_code)
            ));
        }
    }
    Ok(())
}

fn add(args: Args) -> Result<(), String> {
    let user = user_name(&args)?;
    let password = args
        .value("--password")
        .ok_or("--password is required")?
        .to_string();
    let mechanism = mechanism_type(args.value("--mechanism").unwrap_or("SCRAM-SHA-512"))?;
    let iterations = args
        .parsed::<i32>("--iterations")?
        .unwrap_or(DEFAULT_ITERATIONS);
    if iterations < 1 {
        return Err("--iterations must be positive".into());
    }
    let salt = random_salt()?;
    let salted = salted_password(mechanism, &password, &salt, iterations as u32);
    let (brokers, json) = (args.brokers(), args.json());
    run(move || {
        let (user, salt, salted) = (user.clone(), salt.clone(), salted.clone());
        let brokers = brokers.clone();
        async move {
            let session = Session::connect(&brokers).await?;
            let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(str_bytes(&user))
                    .with_mechanism(mechanism)
                    .with_iterations(iterations)
                    .with_salt(salt.into())
                    .with_salted_password(salted.into()),
            ]);
            alter(&session, request).await?;
            if json {
                print_json(
                    &json!({"user": user, "mechanism": mechanism_name(mechanism), "iterations": iterations}),
                );
            } else {
                outln!(
                    "set {} credential of user {user}",
                    mechanism_name(mechanism)
                );
            }
            Ok(())
        }
    })
}

async fn describe(
    session: &Session,
    users: Option<Vec<String>>,
) -> Result<Vec<(String, i8, i32)>, String> {
    let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|users| {
        users
            .iter()
            .map(|u| UserName::default().with_name(str_bytes(u)))
            .collect()
    }));
    let reply: DescribeUserScramCredentialsResponse = session
        .call(ApiKey::DescribeUserScramCredentials, 0, &request)
        .await?;
    check(reply.error_code, || "describe users".to_string())?;
    let mut out = Vec::new();
    for result in &reply.results {
        check(result.error_code, || {
            format!("user '{}'", result.user.as_str())
        })?;
        for info in &result.credential_infos {
            out.push((result.user.to_string(), info.mechanism, info.iterations));
        }
    }
    Ok(out)
}

fn list(args: Args) -> Result<(), String> {
    args.no_more_than(0)?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || {
        let brokers = brokers.clone();
        async move {
            let session = Session::connect(&brokers).await?;
            let users = describe(&session, None).await?;
            if json {
                print_json(&json!(users
                    .iter()
                    .map(|(u, m, i)| json!({"user": u, "mechanism": mechanism_name(*m), "iterations": i}))
                    .collect::<Vec<_>>()));
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|(u, m, i)| vec![u.clone(), mechanism_name(*m).into(), i.to_string()])
                    .collect();
                out!("{}", table(&["USER", "MECHANISM", "ITERATIONS"], &rows));
            }
            Ok(())
        }
    })
}

/// Removes one mechanism's credential, or every credential of the user (one request each:
/// Kafka takes one change per user per request).
fn remove(args: Args) -> Result<(), String> {
    let user = user_name(&args)?;
    let only = args.value("--mechanism").map(mechanism_type).transpose()?;
    let (brokers, json) = (args.brokers(), args.json());
    run(move || {
        let (user, brokers) = (user.clone(), brokers.clone());
        async move {
            let session = Session::connect(&brokers).await?;
            let mechanisms: Vec<i8> = match only {
                Some(m) => vec![m],
                None => describe(&session, Some(vec![user.clone()]))
                    .await?
                    .into_iter()
                    .map(|(_, m, _)| m)
                    .collect(),
            };
            for mechanism in &mechanisms {
                let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![
                    ScramCredentialDeletion::default()
                        .with_name(str_bytes(&user))
                        .with_mechanism(*mechanism),
                ]);
                alter(&session, request).await?;
            }
            let names: Vec<&str> = mechanisms.iter().map(|m| mechanism_name(*m)).collect();
            if json {
                print_json(&json!({"user": user, "removed": names}));
            } else {
                outln!("removed {} credential(s) of user {user}", names.join(", "));
            }
            Ok(())
        }
    })
}
