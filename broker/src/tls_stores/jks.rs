//! Java's JKS keystore format (`keytool -storetype JKS`), read only: private key entries
//! (the key protected by Sun's `KeyProtector`, a SHA-1 keystream) with their certificate
//! chains, and trusted certificate entries. The store's SHA-1 integrity digest is checked when
//! a password is given, as Java's `KeyStore.load` does.

use ring::digest::{digest, Context, SHA1_FOR_LEGACY_USE_ONLY as SHA1};

const MAGIC: u32 = 0xFEED_FEED;
const TAG_PRIVATE_KEY: u32 = 1;
const TAG_TRUSTED_CERTIFICATE: u32 = 2;
const DIGEST_BYTES: usize = 20;
/// Bounds a hostile count or length before anything is allocated for it.
const ENTRIES_MAX: u32 = 10_000;

/// What a JKS store holds.
#[derive(Debug, Default)]
pub struct Jks {
    /// Each private key entry: (alias, encrypted key, certificate chain DER, leaf first).
    pub keys: Vec<(String, Vec<u8>, Vec<Vec<u8>>)>,
    /// Each trusted certificate entry (DER).
    pub trusted: Vec<Vec<u8>>,
}

/// Parses a JKS store; with `password`, its integrity digest must match.
pub fn parse(bytes: &[u8], password: Option<&str>) -> Result<Jks, String> {
    if bytes.len() < DIGEST_BYTES {
        return Err("not a JKS store (too short)".into());
    }
    let (body, stored_digest) = bytes.split_at(bytes.len() - DIGEST_BYTES);
    let mut r = Reader { bytes: body };
    if r.u32()? != MAGIC {
        return Err("not a JKS store (bad magic number)".into());
    }
    let version = r.u32()?;
    if !(1..=2).contains(&version) {
        return Err(format!("JKS version {version} is not supported"));
    }
    let count = r.u32()?;
    if count > ENTRIES_MAX {
        return Err(format!("JKS store claims {count} entries"));
    }
    let mut jks = Jks::default();
    for _ in 0..count {
        let tag = r.u32()?;
        let alias = r.utf()?;
        r.take(8)?; // creation date
        match tag {
            TAG_PRIVATE_KEY => {
                let key = r.block()?.to_vec();
                let chain_len = r.u32()?;
                if chain_len > ENTRIES_MAX {
                    return Err(format!("JKS entry {alias} claims {chain_len} certificates"));
                }
                let chain = (0..chain_len)
                    .map(|_| r.certificate(version))
                    .collect::<Result<_, _>>()?;
                jks.keys.push((alias, key, chain));
            }
            TAG_TRUSTED_CERTIFICATE => jks.trusted.push(r.certificate(version)?),
            other => return Err(format!("JKS entry {alias}: unknown tag {other}")),
        }
    }
    if let Some(password) = password {
        let mut context = Context::new(&SHA1);
        context.update(&utf16_be(password));
        context.update(b"Mighty Aphrodite");
        context.update(body);
        if context.finish().as_ref() != stored_digest {
            return Err("wrong password, or the store was tampered with".into());
        }
    }
    Ok(jks)
}

/// The PKCS#8 DER of a private key entry's `encrypted` key (Sun's `KeyProtector`).
pub fn decrypt_key(encrypted: &[u8], password: &str) -> Result<Vec<u8>, String> {
    let protected = encrypted_data(encrypted)?;
    if protected.len() < 2 * DIGEST_BYTES {
        return Err("JKS key entry too short".into());
    }
    let (salt, rest) = protected.split_at(DIGEST_BYTES);
    let (cipher, check) = rest.split_at(rest.len() - DIGEST_BYTES);
    let password = utf16_be(password);
    let mut key = Vec::with_capacity(cipher.len());
    let mut block = salt.to_vec();
    while key.len() < cipher.len() {
        block = digest(&SHA1, &[password.as_slice(), &block].concat())
            .as_ref()
            .to_vec();
        key.extend_from_slice(&block);
    }
    let plain: Vec<u8> = cipher.iter().zip(&key).map(|(c, k)| c ^ k).collect();
    let expected = digest(&SHA1, &[password.as_slice(), &plain].concat());
    if expected.as_ref() != check {
        return Err("wrong key password".into());
    }
    Ok(plain)
}

/// The OCTET STRING of an `EncryptedPrivateKeyInfo` (its algorithm, Sun's, is not looked at).
fn encrypted_data(der: &[u8]) -> Result<&[u8], String> {
    let bad = || "JKS key entry: bad EncryptedPrivateKeyInfo".to_string();
    let (tag, info, _) = tlv(der).ok_or_else(bad)?;
    let (_, _, rest) = tlv(info).filter(|_| tag == 0x30).ok_or_else(bad)?;
    match tlv(rest) {
        Some((0x04, data, _)) => Ok(data),
        _ => Err(bad()),
    }
}

/// One DER element: (tag, contents, what follows).
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (first as usize, rest),
        0x81..=0x84 => {
            let n = (first & 0x7f) as usize;
            let bytes = rest.get(..n)?;
            let len = bytes.iter().fold(0usize, |len, b| (len << 8) | *b as usize);
            (len, &rest[n..])
        }
        _ => return None,
    };
    let contents = rest.get(..len)?;
    Some((tag, contents, &rest[len..]))
}

/// Java's password bytes: each UTF-16 unit, big-endian.
fn utf16_be(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("JKS store is truncated".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Java's `writeUTF` (modified UTF-8; aliases are plain text in practice).
    fn utf(&mut self) -> Result<String, String> {
        let b = self.take(2)?;
        let len = u16::from_be_bytes([b[0], b[1]]) as usize;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn block(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A certificate (version 2 names its type, which must be X.509).
    fn certificate(&mut self, version: u32) -> Result<Vec<u8>, String> {
        if version == 2 {
            let kind = self.utf()?;
            if kind != "X.509" {
                return Err(format!("JKS certificate of type {kind} is not supported"));
            }
        }
        Ok(self.block()?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JKS store as `keytool` writes it: one key entry and one trusted certificate.
    fn store(password: &str, key_password: &str, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&2u32.to_be_bytes());
        out.extend_from_slice(&2u32.to_be_bytes());
        let utf = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        let block = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        out.extend_from_slice(&TAG_PRIVATE_KEY.to_be_bytes());
        utf(&mut out, "server");
        out.extend_from_slice(&0u64.to_be_bytes());
        block(&mut out, &protect(key, key_password));
        out.extend_from_slice(&1u32.to_be_bytes());
        utf(&mut out, "X.509");
        block(&mut out, b"LEAF");
        out.extend_from_slice(&TAG_TRUSTED_CERTIFICATE.to_be_bytes());
        utf(&mut out, "ca");
        out.extend_from_slice(&0u64.to_be_bytes());
        utf(&mut out, "X.509");
        block(&mut out, b"CA");
        let mut context = Context::new(&SHA1);
        context.update(&utf16_be(password));
        context.update(b"Mighty Aphrodite");
        context.update(&out);
        out.extend_from_slice(context.finish().as_ref());
        out
    }

    /// Sun's KeyProtector, the other way, wrapped in a short-form EncryptedPrivateKeyInfo.
    fn protect(key: &[u8], password: &str) -> Vec<u8> {
        let password = utf16_be(password);
        let salt = [7u8; DIGEST_BYTES];
        let (mut stream, mut block) = (Vec::new(), salt.to_vec());
        while stream.len() < key.len() {
            block = digest(&SHA1, &[password.as_slice(), &block].concat())
                .as_ref()
                .to_vec();
            stream.extend_from_slice(&block);
        }
        let mut data = salt.to_vec();
        data.extend(key.iter().zip(&stream).map(|(k, s)| k ^ s));
        data.extend_from_slice(digest(&SHA1, &[password.as_slice(), key].concat()).as_ref());
        let algorithm = [0x30, 0x02, 0x05, 0x00];
        let mut octets = vec![0x04, data.len() as u8];
        octets.extend_from_slice(&data);
        let mut info = vec![0x30, (algorithm.len() + octets.len()) as u8];
        info.extend_from_slice(&algorithm);
        info.extend_from_slice(&octets);
        info
    }

    #[test]
    fn reads_keys_and_trusted_certificates() {
        let bytes = store("storepw", "keypw", b"PKCS8 KEY BYTES");
        let jks = parse(&bytes, Some("storepw")).unwrap();
        assert_eq!(jks.trusted, [b"CA".to_vec()]);
        let (alias, key, chain) = &jks.keys[0];
        assert_eq!(
            (alias.as_str(), chain.clone()),
            ("server", vec![b"LEAF".to_vec()])
        );
        assert_eq!(decrypt_key(key, "keypw").unwrap(), b"PKCS8 KEY BYTES");
        assert!(decrypt_key(key, "storepw")
            .unwrap_err()
            .contains("wrong key password"));
        assert!(parse(&bytes, None).is_ok());
    }

    #[test]
    fn bad_stores_are_refused_with_a_reason() {
        let bytes = store("storepw", "keypw", b"K");
        let err = parse(&bytes, Some("other")).unwrap_err();
        assert!(err.contains("wrong password"), "{err}");
        for (bad, want) in [
            (
                b"garbage that is long enough to parse".to_vec(),
                "bad magic",
            ),
            (bytes[..30].to_vec(), "truncated"),
            (vec![1, 2], "too short"),
        ] {
            let err = parse(&bad, None).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(decrypt_key(b"\x30\x00", "p").is_err());
    }
}
