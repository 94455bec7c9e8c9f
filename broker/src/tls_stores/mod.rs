//! Kafka's key and trust stores turned into the PEM that `net::tls` and the inter-broker client
//! take: PKCS12 (`p12-keystore`), JKS (`jks`, read here) and PEM with an encrypted PKCS#8 key
//! (`pkcs8`, PBES2). Pure functions over the stores' bytes; every error names the setting.

pub mod jks;

use base64::Engine;

/// `ssl.keystore.type` / `ssl.truststore.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreType {
    Pem,
    Pkcs12,
    Jks,
}

impl StoreType {
    /// From the setting's value (any case); `setting` names it in the error.
    pub fn parse(value: &str, setting: &str) -> Result<StoreType, String> {
        match value.to_ascii_uppercase().as_str() {
            "PEM" => Ok(StoreType::Pem),
            "PKCS12" => Ok(StoreType::Pkcs12),
            "JKS" => Ok(StoreType::Jks),
            _ => Err(format!(
                "{setting}={value} is not supported; use PEM, PKCS12 or JKS"
            )),
        }
    }
}

/// A keystore's first private key and its chain, as (certificate chain PEM, PKCS#8 key PEM).
/// `key_password` is Kafka's `ssl.key.password` (the store's password when not set).
pub fn keystore(
    kind: StoreType,
    bytes: &[u8],
    store_password: &str,
    key_password: &str,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let key_password = match key_password.is_empty() {
        true => store_password,
        false => key_password,
    };
    match kind {
        StoreType::Pem => Ok((bytes.to_vec(), pem_key(bytes, key_password)?)),
        StoreType::Pkcs12 => {
            let store = pkcs12(bytes, store_password, "ssl.keystore.password")?;
            let (_, chain) = store
                .private_key_chain()
                .ok_or("ssl.keystore.location: the PKCS12 store holds no private key")?;
            if chain.certs().is_empty() {
                return Err(
                    "ssl.keystore.location: the PKCS12 store's key has no certificate".into(),
                );
            }
            let certs = chain.certs().iter().map(|c| c.as_der().to_vec()).collect();
            Ok((pem_chain(certs), pem("PRIVATE KEY", chain.key().as_der())))
        }
        StoreType::Jks => {
            let store = jks::parse(bytes, Some(store_password))
                .map_err(|e| format!("ssl.keystore.password / ssl.keystore.location: {e}"))?;
            let (alias, key, chain) = store
                .keys
                .into_iter()
                .next()
                .ok_or("ssl.keystore.location: the JKS store holds no private key")?;
            let key = jks::decrypt_key(&key, key_password)
                .map_err(|e| format!("ssl.key.password: JKS entry {alias}: {e}"))?;
            Ok((pem_chain(chain), pem("PRIVATE KEY", &key)))
        }
    }
}

/// A truststore's certificates as PEM (PKCS12 and JKS: every certificate it holds).
pub fn truststore(kind: StoreType, bytes: &[u8], password: &str) -> Result<Vec<u8>, String> {
    let certs: Vec<Vec<u8>> = match kind {
        StoreType::Pem => return Ok(bytes.to_vec()),
        StoreType::Pkcs12 => pkcs12(bytes, password, "ssl.truststore.password")?
            .entries()
            .flat_map(|(_, entry)| match entry {
                p12_keystore::KeyStoreEntry::Certificate(c) => vec![c.as_der().to_vec()],
                p12_keystore::KeyStoreEntry::PrivateKeyChain(chain) => {
                    chain.certs().iter().map(|c| c.as_der().to_vec()).collect()
                }
                _ => Vec::new(),
            })
            .collect(),
        StoreType::Jks => {
            // Java loads a truststore without a password too (no integrity check then).
            let password = (!password.is_empty()).then_some(password);
            let store = jks::parse(bytes, password)
                .map_err(|e| format!("ssl.truststore.password / ssl.truststore.location: {e}"))?;
            let chains = store.keys.into_iter().flat_map(|(_, _, chain)| chain);
            store.trusted.into_iter().chain(chains).collect()
        }
    };
    if certs.is_empty() {
        return Err("ssl.truststore.location: the store holds no certificate".into());
    }
    Ok(pem_chain(certs))
}

fn pkcs12(bytes: &[u8], password: &str, setting: &str) -> Result<p12_keystore::KeyStore, String> {
    if password.is_empty() {
        return Err(format!("{setting} is needed to read a PKCS12 store"));
    }
    p12_keystore::KeyStore::from_pkcs12(bytes, password, p12_keystore::Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| {
            format!("{setting}: cannot read the PKCS12 store (wrong password, or not PKCS12: {e})")
        })
}

/// The private key of a PEM keystore: an `ENCRYPTED PRIVATE KEY` is decrypted with
/// `password` (`ssl.key.password`) into PKCS#8; an unencrypted one is taken as it is.
fn pem_key(bytes: &[u8], password: &str) -> Result<Vec<u8>, String> {
    let Some(encrypted) = pem_block(bytes, "ENCRYPTED PRIVATE KEY")? else {
        return Ok(bytes.to_vec());
    };
    if password.is_empty() {
        return Err("ssl.keystore: the private key is encrypted; set ssl.key.password".into());
    }
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(encrypted.as_slice())
        .map_err(|e| format!("ssl.keystore: bad encrypted private key ({e})"))?;
    let key = info
        .decrypt(password)
        .map_err(|e| format!("ssl.key.password: cannot decrypt the private key ({e})"))?;
    Ok(pem("PRIVATE KEY", key.as_bytes()))
}

/// The DER of the first `-----BEGIN <label>-----` block, if there is one.
fn pem_block(text: &[u8], label: &str) -> Result<Option<Vec<u8>>, String> {
    let text = String::from_utf8_lossy(text);
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let Some((_, rest)) = text.split_once(&begin) else {
        return Ok(None);
    };
    let (body, _) = rest
        .split_once(&end)
        .ok_or_else(|| format!("PEM {label} without its END line"))?;
    let base64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map(Some)
        .map_err(|e| format!("PEM {label}: bad base64 ({e})"))
}

fn pem_chain(certs: Vec<Vec<u8>>) -> Vec<u8> {
    certs.iter().flat_map(|c| pem("CERTIFICATE", c)).collect()
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let base64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    //! `testdata/`: a P-256 key and self-signed certificate (`server.key`, `server.crt`) and
    //! the stores operators make of them: `openssl pkcs12 -export` (`server.p12`, store-secret),
    //! `keytool -importkeystore -deststoretype JKS` (`server.jks`, store-secret, the key under
    //! key-secret), `openssl pkcs8 -topk8 -v2 aes-256-cbc` (`server-encrypted.key`,
    //! key-secret), `keytool -importcert -storetype PKCS12` (`trust.p12`, store-secret).
    use super::*;

    const CERT: &[u8] = include_bytes!("testdata/server.crt");
    const KEY: &[u8] = include_bytes!("testdata/server.key");

    fn der(pem: &[u8], label: &str) -> Vec<u8> {
        pem_block(pem, label).unwrap().unwrap()
    }

    /// The keystore's chain and key are the files it was made of.
    fn assert_is_the_server(chain: &[u8], key: &[u8]) {
        assert_eq!(der(chain, "CERTIFICATE"), der(CERT, "CERTIFICATE"));
        assert_eq!(der(key, "PRIVATE KEY"), der(KEY, "PRIVATE KEY"));
    }

    #[test]
    fn pkcs12_jks_and_encrypted_pem_keystores_give_the_same_key_and_chain() {
        let p12 = include_bytes!("testdata/server.p12");
        let (chain, key) = keystore(StoreType::Pkcs12, p12, "store-secret", "").unwrap();
        assert_is_the_server(&chain, &key);
        let jks = include_bytes!("testdata/server.jks");
        let (chain, key) = keystore(StoreType::Jks, jks, "store-secret", "key-secret").unwrap();
        assert_is_the_server(&chain, &key);
        let encrypted = [
            include_bytes!("testdata/server-encrypted.key").as_slice(),
            CERT,
        ]
        .concat();
        let (chain, key) = keystore(StoreType::Pem, &encrypted, "", "key-secret").unwrap();
        assert_is_the_server(&chain, &key);
        let plain = [KEY, CERT].concat();
        assert_eq!(keystore(StoreType::Pem, &plain, "", "").unwrap().1, plain);
    }

    #[test]
    fn truststores_give_their_certificates() {
        let p12 = include_bytes!("testdata/trust.p12");
        let pem = truststore(StoreType::Pkcs12, p12, "store-secret").unwrap();
        assert_eq!(der(&pem, "CERTIFICATE"), der(CERT, "CERTIFICATE"));
        let jks = include_bytes!("testdata/server.jks");
        let pem = truststore(StoreType::Jks, jks, "").unwrap();
        assert_eq!(der(&pem, "CERTIFICATE"), der(CERT, "CERTIFICATE"));
    }

    #[test]
    fn wrong_passwords_and_missing_keys_name_the_setting() {
        let p12 = include_bytes!("testdata/server.p12");
        let jks = include_bytes!("testdata/server.jks");
        let encrypted = include_bytes!("testdata/server-encrypted.key");
        let trust = include_bytes!("testdata/trust.p12");
        for (result, want) in [
            (
                keystore(StoreType::Pkcs12, p12, "wrong", ""),
                "ssl.keystore.password",
            ),
            (
                keystore(StoreType::Pkcs12, p12, "", ""),
                "ssl.keystore.password",
            ),
            (
                keystore(StoreType::Jks, jks, "wrong", ""),
                "ssl.keystore.password",
            ),
            (
                keystore(StoreType::Jks, jks, "store-secret", ""),
                "ssl.key.password",
            ),
            (
                keystore(StoreType::Pem, encrypted, "", "wrong"),
                "ssl.key.password",
            ),
            (
                keystore(StoreType::Pem, encrypted, "", ""),
                "ssl.key.password",
            ),
            (
                keystore(StoreType::Pkcs12, trust, "store-secret", ""),
                "no private key",
            ),
            (
                keystore(StoreType::Jks, b"garbage", "p", ""),
                "ssl.keystore",
            ),
        ] {
            let err = result.unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = truststore(StoreType::Pkcs12, trust, "wrong").unwrap_err();
        assert!(err.contains("ssl.truststore.password"), "{err}");
        let err = StoreType::parse("BCFKS", "ssl.truststore.type").unwrap_err();
        assert!(err.contains("ssl.truststore.type=BCFKS"), "{err}");
    }
}
