//! The client side of SASL (issue 19) for the project's client: what `--command-config` asks
//! for (`sasl.mechanism`, credentials from `sasl.username`/`sasl.password` or
//! `sasl.jaas.config`), and the exchange each new connection runs before it speaks Kafka:
//! SaslHandshake v1, then SaslAuthenticate v2 with PLAIN's one message or SCRAM's two
//! (RFC 5802, RFC 7677; SHA-256 and SHA-512, no channel binding, as Kafka's clients). The
//! same exchange re-authenticates a connection (KIP-368) when the broker gave its session a
//! lifetime (`Session`, `Connection::reauthenticate`).

use crate::jaas;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const HANDSHAKE_VERSION: i16 = 1;
const AUTHENTICATE_VERSION: i16 = 2;
/// A SASL reply larger than this is no SASL reply.
const REPLY_BYTES_MAX: usize = 1 << 20;
/// librdkafka's bound on the iterations a server may ask for (each costs the client a hash).
const ITERATIONS_MAX: u32 = 1_000_000;

/// The SCRAM hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

/// A mechanism the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramHash),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(ScramHash::Sha256) => "SCRAM-SHA-256",
            Mechanism::Scram(ScramHash::Sha512) => "SCRAM-SHA-512",
        }
    }

    fn from_name(name: &str) -> Result<Self, String> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Mechanism::Plain),
            "SCRAM-SHA-256" => Ok(Mechanism::Scram(ScramHash::Sha256)),
            "SCRAM-SHA-512" => Ok(Mechanism::Scram(ScramHash::Sha512)),
            _ => Err(format!(
                "sasl.mechanism={name} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
            )),
        }
    }
}

/// The mechanism and the credentials every connection authenticates with.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslConfig {
    pub mechanism: Mechanism,
    pub username: String,
    password: String,
}

impl std::fmt::Debug for SaslConfig {
    /// The password stays out of logs and error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SaslConfig({} {})", self.mechanism.name(), self.username)
    }
}

impl SaslConfig {
    /// From client properties: `sasl.mechanism` (Java) or `sasl.mechanisms` (librdkafka), and
    /// `sasl.username` with `sasl.password` (librdkafka) or `sasl.jaas.config` (Java's
    /// `PlainLoginModule`/`ScramLoginModule required username=".." password="..";`).
    pub fn from_properties(p: &BTreeMap<String, String>) -> Result<SaslConfig, String> {
        let get = |key: &str| p.get(key).map(String::as_str).filter(|v| !v.is_empty());
        let mechanism = get("sasl.mechanism")
            .or(get("sasl.mechanisms"))
            .ok_or("SASL needs sasl.mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")?;
        let mechanism = Mechanism::from_name(mechanism)?;
        let (username, password) = match (get("sasl.username"), get("sasl.jaas.config")) {
            (Some(user), None) => (
                user.to_string(),
                get("sasl.password")
                    .ok_or("sasl.username needs sasl.password")?
                    .to_string(),
            ),
            (None, Some(text)) => jaas_credentials(text)?,
            (Some(_), Some(_)) => {
                return Err("give sasl.username/sasl.password or sasl.jaas.config, not both".into())
            }
            (None, None) => {
                return Err(
                    "SASL needs sasl.username and sasl.password, or sasl.jaas.config".into(),
                )
            }
        };
        Ok(SaslConfig {
            mechanism,
            username,
            password,
        })
    }
}

/// The username and password of a `sasl.jaas.config` for PLAIN or SCRAM.
pub fn jaas_credentials(text: &str) -> Result<(String, String), String> {
    let modules = jaas::parse(text).map_err(|e| format!("sasl.jaas.config: {e}"))?;
    let [module] = modules.as_slice() else {
        return Err("sasl.jaas.config: give one login module".into());
    };
    let class = module.class.rsplit('.').next().unwrap_or_default();
    if class != "PlainLoginModule" && class != "ScramLoginModule" {
        return Err(format!(
            "sasl.jaas.config: {} is not supported (PlainLoginModule or ScramLoginModule)",
            module.class
        ));
    }
    let option = |key: &str| {
        module
            .options
            .get(key)
            .cloned()
            .ok_or(format!("sasl.jaas.config: {class} needs {key}=\"...\""))
    };
    Ok((option("username")?, option("password")?))
}

/// Authenticates a fresh connection to `address` (its first bytes: nothing else may be
/// in flight). The error says what the broker answered, never the password.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    sasl: &SaslConfig,
    address: &str,
    client_id: &str,
) -> Result<Session, String> {
    let mut wire = Wire {
        stream,
        client_id,
        correlation_id: 0,
    };
    exchange(&mut wire, sasl, address).await
}

/// What an authentication gave: the session's lifetime (KIP-368), counted from when the
/// exchange began (a little before the broker's count starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub began: Instant,
    /// The broker's `session_lifetime_ms`; 0: the session does not expire.
    pub lifetime_ms: i64,
}

impl Session {
    /// When to re-authenticate, as Kafka's clients do: at a random point between 85 % and
    /// 95 % of the lifetime (`None`: never). `random` is in [0, 1].
    pub fn reauthenticate_at(&self, random: f64) -> Option<Instant> {
        if self.lifetime_ms <= 0 {
            return None;
        }
        let fraction = 0.85 + 0.10 * random.clamp(0.0, 1.0);
        let after_ms = (self.lifetime_ms as f64 * fraction) as u64;
        Some(self.began + Duration::from_millis(after_ms))
    }
}

/// A number in [0, 1] from the process's randomness (v4 UUIDs, as the nonces).
pub fn random_fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 10_001) as f64 / 10_000.0
}

/// How the SASL requests reach the broker: a fresh stream, or a `Connection` between two of
/// its requests (re-authentication).
pub(crate) trait SaslCall {
    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, String>;
}

/// SaslHandshake v1, then SaslAuthenticate v2 round(s) of `sasl`'s mechanism.
pub(crate) async fn exchange(
    wire: &mut impl SaslCall,
    sasl: &SaslConfig,
    address: &str,
) -> Result<Session, String> {
    let failed = |e: String| {
        format!(
            "SASL {} authentication with {address}: {e}",
            sasl.mechanism.name()
        )
    };
    let began = Instant::now();
    let handshake: SaslHandshakeResponse = wire
        .call(
            ApiKey::SaslHandshake,
            HANDSHAKE_VERSION,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name())),
        )
        .await
        .map_err(failed)?;
    if handshake.error_code != 0 {
        let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(failed(format!(
            "the broker refused the mechanism ({}); it offers {}",
            error_name(handshake.error_code),
            offered.join(", ")
        )));
    }
    let lifetime_ms = match sasl.mechanism {
        Mechanism::Plain => {
            let token = format!("\0{}\0{}", sasl.username, sasl.password);
            authenticate_round(wire, token.into_bytes())
                .await
                .map_err(failed)?
                .1
        }
        Mechanism::Scram(hash) => {
            let client = ScramClient::new(hash, &sasl.username, &sasl.password, &fresh_nonce());
            let (server_first, _) = authenticate_round(wire, client.client_first().into_bytes())
                .await
                .map_err(failed)?;
            let server_first = std::str::from_utf8(&server_first)
                .map_err(|_| failed("server-first is not UTF-8".into()))?;
            let (client_final, expected) = client.client_final(server_first).map_err(failed)?;
            let (server_final, lifetime_ms) = authenticate_round(wire, client_final.into_bytes())
                .await
                .map_err(failed)?;
            verify_server_final(&expected, &server_final).map_err(failed)?;
            lifetime_ms
        }
    };
    Ok(Session { began, lifetime_ms })
}

/// One SaslAuthenticate round: the broker's bytes and session lifetime, or its error.
async fn authenticate_round(
    wire: &mut impl SaslCall,
    token: Vec<u8>,
) -> Result<(Bytes, i64), String> {
    let reply: SaslAuthenticateResponse = wire
        .call(
            ApiKey::SaslAuthenticate,
            AUTHENTICATE_VERSION,
            &SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
        )
        .await?;
    if reply.error_code != 0 {
        let message = reply.error_message.as_ref().map_or("", |m| m.as_str());
        return Err(format!("{}: {message}", error_name(reply.error_code)));
    }
    Ok((reply.auth_bytes, reply.session_lifetime_ms))
}

/// Requests and replies on a connection before it is handed to `Connection`.
struct Wire<'a, S> {
    stream: &'a mut S,
    client_id: &'a str,
    correlation_id: i32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SaslCall for Wire<'_, S> {
    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, String> {
        self.correlation_id += 1;
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.to_string())))
            .encode(&mut buf, api_key.request_header_version(version))
            .map_err(|e| format!("{api_key:?} header: {e}"))?;
        body.encode(&mut buf, version)
            .map_err(|e| format!("{api_key:?} v{version}: {e}"))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let closed = |e: std::io::Error| format!("connection closed during {api_key:?} ({e})");
        self.stream.write_all(&buf).await.map_err(closed)?;
        self.stream.flush().await.map_err(closed)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.map_err(closed)?;
        let size = i32::from_be_bytes(size);
        if !(4..=REPLY_BYTES_MAX as i32).contains(&size) {
            return Err(format!("{api_key:?}: bad reply size {size}"));
        }
        let mut frame = BytesMut::zeroed(size as usize);
        self.stream.read_exact(&mut frame).await.map_err(closed)?;
        let mut frame = frame.freeze();
        let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
            .map_err(|e| format!("{api_key:?} reply header: {e}"))?;
        if header.correlation_id != self.correlation_id {
            return Err(format!("{api_key:?}: reply to another request"));
        }
        Resp::decode(&mut frame, version).map_err(|e| format!("{api_key:?} v{version} reply: {e}"))
    }
}

fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("error {code}"),
    }
}

/// 32 random characters (a v4 UUID's hex: printable, no commas).
fn fresh_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The client's half of one SCRAM exchange.
pub struct ScramClient {
    hash: ScramHash,
    password: Vec<u8>,
    nonce: String,
    client_first_bare: String,
}

impl ScramClient {
    pub fn new(hash: ScramHash, user: &str, password: &str, nonce: &str) -> Self {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.as_bytes().to_vec(),
            nonce: nonce.to_string(),
            client_first_bare: format!("n={user},r={nonce}"),
        }
    }

    /// `n,,n=<user>,r=<nonce>`.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Checks server-first (`r=<nonce>,s=<salt>,i=<iterations>`) and answers client-final; also
    /// gives the server-final the broker must send (`v=<signature>`).
    pub fn client_final(&self, server_first: &str) -> Result<(String, Vec<u8>), String> {
        let first = parse_server_first(server_first)?;
        if first.nonce.len() <= self.nonce.len() || !first.nonce.starts_with(&self.nonce) {
            return Err("the server's nonce does not extend ours".into());
        }
        let h = self.hash;
        let salted = salted_password(h, &self.password, &first.salt, first.iterations);
        let client_key = hmac(h, &salted, b"Client Key");
        let without_proof = format!("c=biws,r={}", first.nonce);
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(h, &hash(h, &client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = hmac(h, &hmac(h, &salted, b"Server Key"), auth.as_bytes());
        Ok((
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        ))
    }
}

/// Server-final must be the signature expected (`e=<error>` is the broker refusing).
pub fn verify_server_final(expected: &[u8], server_final: &[u8]) -> Result<(), String> {
    if let Some(error) = server_final.strip_prefix(b"e=") {
        return Err(format!("refused: {}", String::from_utf8_lossy(error)));
    }
    if server_final != expected {
        return Err(
            "the broker's signature is wrong (not the server that holds the credentials)".into(),
        );
    }
    Ok(())
}

pub struct ServerFirst {
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// `r=<nonce>,s=<base64 salt>,i=<iterations>[,extensions]`; a mandatory extension (`m=`)
/// is refused as RFC 5802 asks.
pub fn parse_server_first(message: &str) -> Result<ServerFirst, String> {
    let mut fields = message.split(',');
    let mut field = |name: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .ok_or(format!("server-first without {name}"))
    };
    if message.starts_with("m=") {
        return Err("server-first has a mandatory extension".into());
    }
    let nonce = field("r=")?.to_string();
    let salt = BASE64
        .decode(field("s=")?)
        .map_err(|_| "server-first salt is not base64")?;
    let iterations: u32 = field("i=")?
        .parse()
        .map_err(|_| "server-first iterations is not a number")?;
    if iterations == 0 || iterations > ITERATIONS_MAX || salt.is_empty() {
        return Err(format!(
            "server-first asks {iterations} iterations or no salt"
        ));
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

fn hmac(h: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match h {
        ScramHash::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramHash::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(h: ScramHash, data: &[u8]) -> Vec<u8> {
    match h {
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        ScramHash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

fn salted_password(h: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match h {
        ScramHash::Sha256 => {
            pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
        }
        ScramHash::Sha512 => {
            pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_session_is_reauthenticated_between_85_and_95_percent_of_its_lifetime() {
        let began = Instant::now();
        let session = Session {
            began,
            lifetime_ms: 10_000,
        };
        let after = |random| session.reauthenticate_at(random).unwrap() - began;
        assert_eq!(after(0.0), Duration::from_millis(8_500));
        assert_eq!(after(1.0), Duration::from_millis(9_500));
        assert_eq!(after(7.0), Duration::from_millis(9_500));
        for _ in 0..100 {
            let at = after(random_fraction());
            assert!(at >= Duration::from_millis(8_500) && at <= Duration::from_millis(9_500));
        }
        let endless = Session {
            began,
            lifetime_ms: 0,
        };
        assert_eq!(endless.reauthenticate_at(0.5), None);
    }

    #[test]
    fn rfc7677_sha256_exchange_as_the_client() {
        // RFC 7677 section 3: user "user", password "pencil".
        let client = ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let (last, expected) = client
            .client_final("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            last,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(expected, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        verify_server_final(&expected, &expected).unwrap();
        assert!(verify_server_final(&expected, b"v=AAAA").is_err());
        assert!(verify_server_final(&expected, b"e=invalid-proof")
            .unwrap_err()
            .contains("invalid-proof"));
    }

    #[test]
    fn a_server_first_that_does_not_extend_our_nonce_or_is_malformed_is_refused() {
        let client = ScramClient::new(ScramHash::Sha512, "a,b=c", "pw", "abc");
        assert_eq!(client.client_first(), "n,,n=a=2Cb=3Dc,r=abc");
        for bad in [
            "r=abc,s=c2FsdA==,i=4096",
            "r=xyzabc,s=c2FsdA==,i=4096",
            "r=abcd,s=***,i=4096",
            "r=abcd,s=c2FsdA==,i=0",
            "r=abcd,s=c2FsdA==,i=99999999",
            "r=abcd,s=c2FsdA==",
            "m=ext,r=abcd,s=c2FsdA==,i=4096",
            "",
        ] {
            assert!(client.client_final(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_come_from_librdkafka_names_or_a_jaas_config() {
        let plain = SaslConfig::from_properties(&props(&[
            ("sasl.mechanisms", "plain"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ]))
        .unwrap();
        assert_eq!(plain.mechanism, Mechanism::Plain);
        assert_eq!(
            (plain.username.as_str(), plain.password.as_str()),
            ("alice", "alice-secret")
        );
        assert!(!format!("{plain:?}").contains("secret"));
        let scram = SaslConfig::from_properties(&props(&[
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"bob\" password=\"b;o\\\"b\";",
            ),
        ]))
        .unwrap();
        assert_eq!(scram.mechanism, Mechanism::Scram(ScramHash::Sha512));
        assert_eq!(
            (scram.username.as_str(), scram.password.as_str()),
            ("bob", "b;o\"b")
        );
    }

    #[test]
    fn incomplete_sasl_settings_are_refused_with_what_is_missing() {
        for (pairs, want) in [
            (
                vec![("sasl.username", "a"), ("sasl.password", "b")],
                "needs sasl.mechanism",
            ),
            (vec![("sasl.mechanism", "GSSAPI")], "not supported"),
            (vec![("sasl.mechanism", "PLAIN")], "needs sasl.username"),
            (
                vec![("sasl.mechanism", "PLAIN"), ("sasl.username", "a")],
                "needs sasl.password",
            ),
            (
                vec![
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.jaas.config", "x.OAuthBearerLoginModule required;"),
                ],
                "not supported",
            ),
            (
                vec![
                    ("sasl.mechanism", "PLAIN"),
                    (
                        "sasl.jaas.config",
                        "x.PlainLoginModule required username=\"a\";",
                    ),
                ],
                "needs password",
            ),
            (
                vec![
                    ("sasl.mechanism", "PLAIN"),
                    ("sasl.jaas.config", "x.PlainLoginModule"),
                ],
                "sasl.jaas.config:",
            ),
        ] {
            let err = SaslConfig::from_properties(&props(&pairs)).unwrap_err();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }
}
