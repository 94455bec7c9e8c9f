//! `spate consume --format TEMPLATE`: kcat's placeholders.
//!
//! `%k` key, `%s` value, `%h` headers (`k=v,k2=v2`), `%T` timestamp (ms), `%p` partition,
//! `%o` offset, `%t` topic, `%K` key length, `%S` value length (-1 when null), `%%` a percent
//! sign; escapes `\n`, `\t`, `\r`, `\\`. A null key or value prints as nothing.

use kafka_protocol::records::Record;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Text(Vec<u8>),
    Key,
    Value,
    Headers,
    Timestamp,
    Partition,
    Offset,
    Topic,
    KeyLength,
    ValueLength,
}

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    tokens: Vec<Token>,
}

const USE: &str = "use %k %s %h %T %p %o %t %K %S %%";

/// The default: one value per line.
pub const DEFAULT: &str = "%s\\n";

impl Template {
    pub fn parse(template: &str) -> Result<Template, String> {
        let mut tokens = Vec::new();
        let mut text = Vec::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '%' => match chars.next() {
                    Some('k') => Token::Key,
                    Some('s') => Token::Value,
                    Some('h') => Token::Headers,
                    Some('T') => Token::Timestamp,
                    Some('p') => Token::Partition,
                    Some('o') => Token::Offset,
                    Some('t') => Token::Topic,
                    Some('K') => Token::KeyLength,
                    Some('S') => Token::ValueLength,
                    Some('%') => {
                        text.push(b'%');
                        continue;
                    }
                    other => {
                        let other = other.map(String::from).unwrap_or_default();
                        return Err(format!("--format: unknown placeholder '%{other}' ({USE})"));
                    }
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('\\') => '\\',
                        Some(other) => return Err(format!("--format: unknown escape '\\{other}'")),
                        None => '\\',
                    };
                    text.extend_from_slice(escaped.to_string().as_bytes());
                    continue;
                }
                c => {
                    let mut utf8 = [0; 4];
                    text.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    continue;
                }
            };
            if !text.is_empty() {
                tokens.push(Token::Text(std::mem::take(&mut text)));
            }
            tokens.push(token);
        }
        if !text.is_empty() {
            tokens.push(Token::Text(text));
        }
        Ok(Template { tokens })
    }

    /// Appends one record, formatted, to `out`.
    pub fn render(&self, out: &mut Vec<u8>, topic: &str, partition: i32, record: &Record) {
        let length = |b: &Option<bytes::Bytes>| b.as_ref().map_or(-1, |b| b.len() as i64);
        for token in &self.tokens {
            match token {
                Token::Text(text) => out.extend_from_slice(text),
                Token::Key => out.extend_from_slice(record.key.as_deref().unwrap_or_default()),
                Token::Value => out.extend_from_slice(record.value.as_deref().unwrap_or_default()),
                Token::Headers => {
                    for (i, (name, value)) in record.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(name.as_bytes());
                        out.push(b'=');
                        out.extend_from_slice(value.as_deref().unwrap_or_default());
                    }
                }
                Token::Timestamp => out.extend_from_slice(record.timestamp.to_string().as_bytes()),
                Token::Partition => out.extend_from_slice(partition.to_string().as_bytes()),
                Token::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
                Token::Topic => out.extend_from_slice(topic.as_bytes()),
                Token::KeyLength => {
                    out.extend_from_slice(length(&record.key).to_string().as_bytes())
                }
                Token::ValueLength => {
                    out.extend_from_slice(length(&record.value).to_string().as_bytes())
                }
            }
        }
    }
}

/// One record as a JSON object (`--json`): key, value and header values as strings (lossy
/// UTF-8), null when null.
pub fn json(topic: &str, partition: i32, record: &Record) -> serde_json::Value {
    let text = |b: &Option<bytes::Bytes>| {
        b.as_ref()
            .map(|b| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
            .unwrap_or(serde_json::Value::Null)
    };
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), text(v)))
        .collect();
    serde_json::json!({
        "topic": topic,
        "partition": partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": text(&record.key),
        "value": text(&record.value),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sample() -> Record {
        let headers = vec![
            ("a".to_string(), Bytes::from_static(b"1")),
            ("b".to_string(), Bytes::from_static(b"2")),
        ];
        let mut r = crate::records::record(
            0,
            1_700_000_000_123,
            Some(Bytes::from_static(b"key")),
            Bytes::from_static(b"value"),
            &headers,
        );
        r.offset = 42;
        r
    }

    fn render(template: &str, record: &Record) -> String {
        let mut out = Vec::new();
        Template::parse(template)
            .unwrap()
            .render(&mut out, "t", 3, record);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn placeholders_and_escapes() {
        let r = sample();
        assert_eq!(render(DEFAULT, &r), "value\n");
        assert_eq!(
            render("%t/%p@%o %k=%s [%h] %T %K %S 100%%\\t|", &r),
            "t/3@42 key=value [a=1,b=2] 1700000000123 3 5 100%\t|"
        );
        let mut null_key = r.clone();
        null_key.key = None;
        assert_eq!(render("<%k>%K", &null_key), "<>-1");
        assert_eq!(render("ünï %s", &r), "ünï value");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert!(Template::parse("%x")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(Template::parse("%").is_err());
        assert!(Template::parse("\\q").is_err());
    }

    #[test]
    fn json_records() {
        let v = json("t", 3, &sample());
        assert_eq!(v["key"], "key");
        assert_eq!(v["offset"], 42);
        assert_eq!(v["headers"]["b"], "2");
    }
}
