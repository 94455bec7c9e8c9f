//! A certificate's subject as Java's `X500Principal.getName()` writes it (RFC 2253): the
//! relative distinguished names last to first, `,` between them, `+` inside a multi-valued
//! one, RFC 2253's keywords (CN, C, L, ST, O, OU, STREET, DC, UID) and other attributes as
//! `OID=#hex` of their DER value. Kafka's `ssl.principal.mapping.rules=DEFAULT` makes the
//! principal name of an mTLS client exactly this (`User:CN=alice,OU=eng,O=Acme,C=US`).
//!
//! Only called on a certificate rustls has already verified; still, every read is bounded
//! and anything unexpected is `None`.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;

/// The subject of a DER certificate in RFC 2253 form; `None` when it cannot be read.
pub fn subject_name(certificate: &[u8]) -> Option<String> {
    let (tag, cert, _) = tlv(certificate)?;
    expect(tag, SEQUENCE)?;
    let (tag, tbs, _) = tlv(cert)?;
    expect(tag, SEQUENCE)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == CONTEXT_0 {
        rest = after; // the version
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (tag, subject, _) = tlv(rest)?;
    expect(tag, SEQUENCE)?;
    rdn_sequence(subject)
}

fn rdn_sequence(mut rdns: &[u8]) -> Option<String> {
    let mut names = Vec::new();
    while !rdns.is_empty() {
        let (tag, set, rest) = tlv(rdns)?;
        expect(tag, SET)?;
        let mut values = Vec::new();
        let mut avas = set;
        while !avas.is_empty() {
            let (tag, ava, rest) = tlv(avas)?;
            expect(tag, SEQUENCE)?;
            values.push(attribute(ava)?);
            avas = rest;
        }
        names.push(values.join("+"));
        rdns = rest;
    }
    names.reverse();
    Some(names.join(","))
}

/// `TYPE=value` of one AttributeTypeAndValue.
fn attribute(ava: &[u8]) -> Option<String> {
    let (tag, oid, value) = tlv(ava)?;
    expect(tag, OID)?;
    let (value_tag, content, _) = tlv(value)?;
    match (keyword(oid), text(value_tag, content)) {
        (Some(keyword), Some(text)) => Some(format!("{keyword}={}", escape(&text))),
        _ => Some(format!("{}=#{}", dotted(oid)?, hex(value))),
    }
}

fn keyword(oid: &[u8]) -> Option<&'static str> {
    const DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
    const UID: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01];
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        DC => "DC",
        UID => "UID",
        _ => return None,
    })
}

/// A directory string's text (the string types X.520 uses).
fn text(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String
        0x0c | 0x13 | 0x16 => String::from_utf8(content.to_vec()).ok(),
        // TeletexString, read as Latin-1 as Java does.
        0x14 => Some(content.iter().map(|&b| b as char).collect()),
        // BMPString: UTF-16BE.
        0x1e if content.len().is_multiple_of(2) => {
            let units: Vec<u16> = content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1c if content.len().is_multiple_of(4) => content
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 2253's escapes: `,+"\<>;` anywhere, `#` or a space first, a space last.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &byte in oid {
        value = value.checked_mul(128)? | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn expect(tag: u8, wanted: u8) -> Option<()> {
    (tag == wanted).then_some(())
}

/// One DER element: (tag, content, what follows). Lengths up to 4 bytes long.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of `SEQUENCE { OID, value }` in a SET.
    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut ava = vec![OID, oid.len() as u8];
        ava.extend_from_slice(oid);
        ava.extend_from_slice(&[tag, value.len() as u8]);
        ava.extend_from_slice(value);
        let mut seq = vec![SEQUENCE, ava.len() as u8];
        seq.extend(ava);
        let mut set = vec![SET, seq.len() as u8];
        set.extend(seq);
        set
    }

    fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend_from_slice(&[0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn certificate(subject: &[u8]) -> Vec<u8> {
        let mut tbs = wrap(CONTEXT_0, &[0x02, 0x01, 0x02]);
        tbs.extend(wrap(0x02, &[0x01])); // serial
        tbs.extend(wrap(SEQUENCE, &[])); // signature algorithm
        tbs.extend(wrap(SEQUENCE, &rdn(&[0x55, 0x04, 0x03], 0x0c, b"ca"))); // issuer
        tbs.extend(wrap(SEQUENCE, &[])); // validity
        tbs.extend(wrap(SEQUENCE, subject));
        wrap(SEQUENCE, &wrap(SEQUENCE, &tbs))
    }

    #[test]
    fn the_subject_reads_as_java_writes_it() {
        let mut subject = rdn(&[0x55, 0x04, 0x06], 0x13, b"US");
        subject.extend(rdn(&[0x55, 0x04, 0x0a], 0x0c, b"Acme, Inc."));
        subject.extend(rdn(&[0x55, 0x04, 0x0b], 0x0c, b"eng"));
        subject.extend(rdn(&[0x55, 0x04, 0x03], 0x0c, b"alice"));
        assert_eq!(
            subject_name(&certificate(&subject)).as_deref(),
            Some("CN=alice,OU=eng,O=Acme\\, Inc.,C=US")
        );
    }

    #[test]
    fn unknown_attributes_are_oid_and_hex() {
        // emailAddress 1.2.840.113549.1.9.1, an IA5String.
        let email = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        let mut subject = rdn(&email, 0x16, b"a@b");
        subject.extend(rdn(&[0x55, 0x04, 0x03], 0x13, b" x#"));
        assert_eq!(
            subject_name(&certificate(&subject)).as_deref(),
            Some("CN=\\ x#,1.2.840.113549.1.9.1=#1603614062")
        );
    }

    #[test]
    fn truncated_or_wrong_input_is_none() {
        let cert = certificate(&rdn(&[0x55, 0x04, 0x03], 0x0c, b"alice"));
        assert_eq!(subject_name(&cert).as_deref(), Some("CN=alice"));
        for cut in 0..cert.len() {
            assert_eq!(subject_name(&cert[..cut]), None, "cut at {cut}");
        }
        assert_eq!(subject_name(&[0xff; 8]), None);
    }
}
