//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's `ScramSaslServer` speaks
//! them: a pure state machine stepped with the client's two messages.
//!
//! client-first `n,,n=<user>,r=<cnonce>` -> server-first `r=<cnonce><snonce>,s=<salt>,i=<n>`
//! -> client-final `c=biws,r=<nonce>,p=<proof>` -> server-final `v=<signature>`.
//! No channel binding (`n` or `y` only), no extensions (Kafka's `tokenauth`, delegation
//! tokens, is refused). An unknown user gets a made-up salt and fails at the proof, so the
//! answers do not tell which half of the credentials was wrong.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use controller::scram::{ScramCredential, ScramMechanism};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's `ScramMechanism.minIterations()`.
pub const ITERATIONS_MIN: i32 = 4096;
/// Kafka's `ScramControlManager.MAX_ITERATIONS`.
pub const ITERATIONS_MAX: i32 = 16384;

/// HMAC(key, data) with the mechanism's hash.
pub fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// H(data) with the mechanism's hash.
pub fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// Hi(password, salt, iterations): PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
        }
    }
}

/// The stored credential of a salted password (what AlterUserScramCredentials sends): the
/// stored key H(HMAC(salted, "Client Key")) and the server key HMAC(salted, "Server Key").
pub fn credential(
    mechanism: ScramMechanism,
    salt: &[u8],
    salted: &[u8],
    iterations: i32,
) -> ScramCredential {
    let client_key = hmac(mechanism, salted, b"Client Key");
    ScramCredential {
        salt: salt.to_vec(),
        stored_key: hash(mechanism, &client_key),
        server_key: hmac(mechanism, salted, b"Server Key"),
        iterations,
    }
}

/// Why an exchange failed: a malformed message (the client's fault, logged as such) or bad
/// credentials. Both answer the same to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramError {
    Malformed(&'static str),
    BadCredentials,
}

/// Where one exchange stands.
pub enum ScramServer {
    /// Waiting for client-first.
    Start { mechanism: ScramMechanism },
    /// Server-first sent; waiting for client-final.
    Challenged(Box<Challenged>),
    /// Server-final sent: `user` is authenticated.
    Done { user: String },
    /// The exchange failed (with the user, once client-first named one).
    Failed { user: Option<String> },
}

pub struct Challenged {
    mechanism: ScramMechanism,
    user: String,
    /// `None` for an unknown user (the exchange goes on with a made-up salt and fails).
    credential: Option<ScramCredential>,
    nonce: String,
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
}

/// What the server answers to a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send these bytes and wait for the next message.
    Challenge(Vec<u8>),
    /// Send these bytes (server-final); the user is authenticated.
    Authenticated { user: String, response: Vec<u8> },
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        ScramServer::Start { mechanism }
    }

    /// The user named in client-first, once it arrived (for logs and metrics).
    pub fn user(&self) -> Option<&str> {
        match self {
            ScramServer::Start { .. } => None,
            ScramServer::Challenged(c) => Some(&c.user),
            ScramServer::Done { user } => Some(user),
            ScramServer::Failed { user } => user.as_deref(),
        }
    }

    /// Takes one client message. `lookup` finds a user's credential; `server_nonce` and
    /// `fake_salt` are the randomness (a fresh nonce, and a salt for unknown users that is
    /// stable per user, so probing twice does not tell a real user from a made-up one).
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
        fake_salt: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<ScramStep, ScramError> {
        let message =
            std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        match std::mem::replace(self, ScramServer::Failed { user: None }) {
            ScramServer::Start { mechanism } => {
                let first = parse_client_first(message)?;
                let credential = lookup(&first.user);
                let (salt, iterations) = match &credential {
                    Some(c) => (c.salt.clone(), c.iterations),
                    None => (fake_salt(&first.user), ITERATIONS_MIN),
                };
                let nonce = format!("{}{server_nonce}", first.nonce);
                let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&salt));
                let response = server_first.clone().into_bytes();
                *self = ScramServer::Challenged(Box::new(Challenged {
                    mechanism,
                    user: first.user,
                    credential,
                    nonce,
                    client_first_bare: first.bare,
                    server_first,
                    gs2_header: first.gs2_header,
                }));
                Ok(ScramStep::Challenge(response))
            }
            ScramServer::Challenged(c) => {
                let user = c.user.clone();
                let verified = c.verify_final(message);
                *self = match verified {
                    Ok(_) => ScramServer::Done { user: user.clone() },
                    Err(_) => ScramServer::Failed {
                        user: Some(user.clone()),
                    },
                };
                Ok(ScramStep::Authenticated {
                    user,
                    response: verified?,
                })
            }
            ScramServer::Done { .. } | ScramServer::Failed { .. } => {
                Err(ScramError::Malformed("exchange already over"))
            }
        }
    }
}

impl Challenged {
    /// Checks client-final's channel binding, nonce and proof; returns server-final.
    fn verify_final(&self, message: &str) -> Result<Vec<u8>, ScramError> {
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("client-final without a proof"))?;
        let mut fields = without_proof.split(',');
        let binding =
            fields
                .next()
                .and_then(|f| f.strip_prefix("c="))
                .ok_or(ScramError::Malformed(
                    "client-final without channel binding",
                ))?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("client-final without a nonce"))?;
        if fields.next().is_some() {
            return Err(ScramError::Malformed(
                "client-final extensions are not supported",
            ));
        }
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        // Kafka's check is `endsWith`, not equality: librdkafka before 2.1 sends its own nonce
        // again in front (`r=<cnonce><cnonce><snonce>`, and signs that). The fresh server nonce
        // still has to be there, and the proof covers the message as sent.
        if !nonce.ends_with(&self.nonce) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let Some(credential) = &self.credential else {
            return Err(ScramError::BadCredentials);
        };
        let m = self.mechanism;
        let signature = hmac(m, &credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::BadCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let matches: bool = hash(m, &client_key).ct_eq(&credential.stored_key).into();
        if !matches {
            return Err(ScramError::BadCredentials);
        }
        let server_signature = hmac(m, &credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
}

/// `gs2-header client-first-bare`: `[ny],[a=authzid],n=user,r=nonce[,ext...]`.
fn parse_client_first(message: &str) -> Result<ClientFirst, ScramError> {
    let malformed = ScramError::Malformed;
    let (binding, rest) = message
        .split_once(',')
        .ok_or(malformed("client-first without a gs2 header"))?;
    if binding != "n" && binding != "y" {
        return Err(malformed("channel binding is not supported"));
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(malformed("client-first without a gs2 header"))?;
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .ok_or(malformed("client-first without a user name"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or(malformed("client-first without a nonce"))?;
    if fields.next().is_some() {
        // Kafka's only extension is `tokenauth` (delegation tokens), which Spate lacks.
        return Err(malformed("client-first extensions are not supported"));
    }
    let user = sasl_name(user).ok_or(malformed("bad user name encoding"))?;
    if user.is_empty()
        || nonce.is_empty()
        || !nonce.bytes().all(|b| b.is_ascii_graphic() && b != b',')
    {
        return Err(malformed("empty user name or bad nonce"));
    }
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if sasl_name(authzid).as_deref() != Some(user.as_str()) {
            return Err(malformed("authorization id differs from the user name"));
        }
    } else if !authzid.is_empty() {
        return Err(malformed("bad gs2 header"));
    }
    Ok(ClientFirst {
        gs2_header: format!("{binding},{authzid},"),
        bare: bare.to_string(),
        user,
        nonce: nonce.to_string(),
    })
}

/// Decodes RFC 5802's saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid.
fn sasl_name(encoded: &str) -> Option<String> {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3)? {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of an exchange, for the tests (and the CLI's counterpart).
    fn client_final(
        m: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        client_final_with(m, password, client_first_bare, server_first, None)
    }

    /// `client_final` sending `nonce` instead of the server's, when given.
    fn client_final_with(
        m: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce: Option<&str>,
    ) -> (String, Vec<u8>) {
        let mut fields = server_first.split(',');
        let servers = fields.next().unwrap().strip_prefix("r=").unwrap();
        let nonce = nonce.unwrap_or(servers);
        let salt = BASE64
            .decode(fields.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = fields.next().unwrap()[2..].parse().unwrap();
        let salted = salted_password(m, password.as_bytes(), &salt, iterations);
        let client_key = hmac(m, &salted, b"Client Key");
        let stored_key = hash(m, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(m, &stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(m, &salted, b"Server Key");
        let expected = hmac(m, &server_key, auth.as_bytes());
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!("v={}", BASE64.encode(expected)).into_bytes(),
        )
    }

    fn stored(m: ScramMechanism, password: &str) -> ScramCredential {
        let salt = b"salt-of-alice".to_vec();
        credential(
            m,
            &salt,
            &salted_password(m, password.as_bytes(), &salt, 4096),
            4096,
        )
    }

    fn run(m: ScramMechanism, user: &str, password: &str) -> Result<ScramStep, ScramError> {
        let mut server = ScramServer::new(m);
        let lookup = |u: &str| (u == "alice").then(|| stored(m, "alice-secret"));
        let bare = format!("n={user},r=clientnonce");
        let first = server.step(
            format!("n,,{bare}").as_bytes(),
            lookup,
            "servernonce",
            |_| b"fake".to_vec(),
        )?;
        let ScramStep::Challenge(server_first) = first else {
            panic!("challenge expected")
        };
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=clientnonceservernonce,s="));
        let (message, expected) = client_final(m, password, &bare, &server_first);
        let step = server.step(message.as_bytes(), |_| None, "", |_| vec![])?;
        if let ScramStep::Authenticated { response, .. } = &step {
            assert_eq!(response, &expected, "server signature");
        }
        Ok(step)
    }

    #[test]
    fn rfc7677_sha256_test_vector_verifies() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = ScramMechanism::Sha256;
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(m, b"pencil", &salt, 4096);
        let cred = credential(m, &salt, &salted, 4096);
        let mut server = ScramServer::new(m);
        let first = server
            .step(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |_| Some(cred.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                |_| vec![],
            )
            .unwrap();
        assert_eq!(
            first,
            ScramStep::Challenge(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            )
        );
        let last = server
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                |_| None,
                "",
                |_| vec![],
            )
            .unwrap();
        assert_eq!(
            last,
            ScramStep::Authenticated {
                user: "user".into(),
                response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
    }

    #[test]
    fn both_mechanisms_authenticate_the_right_password_only() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            assert!(matches!(
                run(m, "alice", "alice-secret"),
                Ok(ScramStep::Authenticated { ref user, .. }) if user == "alice"
            ));
            assert_eq!(run(m, "alice", "wrong"), Err(ScramError::BadCredentials));
            // An unknown user gets a challenge like any other and fails at the proof.
            assert_eq!(run(m, "mallory", "x"), Err(ScramError::BadCredentials));
        }
    }

    #[test]
    fn malformed_messages_and_extensions_are_refused() {
        let m = ScramMechanism::Sha512;
        for bad in [
            &b"p=tls-unique,,n=alice,r=abc"[..],
            b"n,,n=alice",
            b"n,,n=alice,r=abc,tokenauth=true",
            b"n,a=bob,n=alice,r=abc",
            b"n,,n=al=ice,r=abc",
            b"n,,n=,r=abc",
            b"\xff\xfe",
            b"",
        ] {
            let mut server = ScramServer::new(m);
            assert!(
                matches!(
                    server.step(bad, |_| None, "s", |_| vec![0]),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        // A wrong nonce or channel binding in client-final.
        for bad in [
            "c=biws,r=other,p=AAAA",
            "c=eSws,r=abcs,p=AAAA",
            "c=biws,r=abcs",
        ] {
            let mut server = ScramServer::new(m);
            server
                .step(b"n,,n=alice,r=abc", |_| None, "s", |_| vec![0])
                .unwrap();
            assert!(
                matches!(
                    server.step(bad.as_bytes(), |_| None, "", |_| vec![]),
                    Err(ScramError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_client_final_nonce_ending_in_the_servers_is_accepted_as_kafka_does() {
        // librdkafka 2.0 (kcat 1.7.1) repeats its nonce: r=<cnonce><cnonce><snonce>.
        let m = ScramMechanism::Sha512;
        for (nonce, ok) in [
            ("cncnsn", true),
            ("cnsn", true),
            ("cnsnx", false),
            ("sn", false),
        ] {
            let mut server = ScramServer::new(m);
            let bare = "n=alice,r=cn";
            let lookup = |_: &str| Some(stored(m, "alice-secret"));
            let ScramStep::Challenge(first) = server
                .step(format!("n,,{bare}").as_bytes(), lookup, "sn", |_| vec![])
                .unwrap()
            else {
                panic!("challenge expected")
            };
            let first = String::from_utf8(first).unwrap();
            let (message, _) = client_final_with(m, "alice-secret", bare, &first, Some(nonce));
            let auth = server.step(message.as_bytes(), |_| None, "", |_| vec![]);
            assert_eq!(auth.is_ok(), ok, "{nonce}: {auth:?}");
        }
    }

    #[test]
    fn sasl_names_decode_escapes() {
        assert_eq!(sasl_name("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(sasl_name("plain").as_deref(), Some("plain"));
        assert_eq!(sasl_name("a=2"), None);
        assert_eq!(sasl_name("a=41"), None);
    }
}
