//! The JAAS text Kafka takes in `sasl.jaas.config`:
//! `<LoginModule class> <flag> key="value" key=value ... ;` (one or more modules).

use std::collections::BTreeMap;

/// One login module entry.
#[derive(Clone, PartialEq, Eq)]
pub struct JaasModule {
    pub class: String,
    pub flag: String,
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for JaasModule {
    /// Option values (passwords) stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.options.keys().collect();
        write!(f, "JaasModule({} {} {keys:?})", self.class, self.flag)
    }
}

const FLAGS: [&str; 4] = ["required", "requisite", "sufficient", "optional"];

/// Parses the modules of a JAAS configuration; the error says what is wrong, without values.
pub fn parse(text: &str) -> Result<Vec<JaasModule>, String> {
    let tokens = tokenize(text)?;
    let mut modules = Vec::new();
    let mut rest = tokens.as_slice();
    while !rest.is_empty() {
        let [Token::Word(class), Token::Word(flag), tail @ ..] = rest else {
            return Err("expected '<LoginModule> <flag>'".into());
        };
        if !FLAGS.contains(&flag.to_ascii_lowercase().as_str()) {
            return Err(format!("unknown control flag '{flag}'"));
        }
        let mut module = JaasModule {
            class: class.clone(),
            flag: flag.to_ascii_lowercase(),
            options: BTreeMap::new(),
        };
        rest = tail;
        loop {
            match rest {
                [Token::Semicolon, tail @ ..] => {
                    rest = tail;
                    break;
                }
                [Token::Word(key), Token::Equals, Token::Word(value) | Token::Quoted(value), tail @ ..] =>
                {
                    module.options.insert(key.clone(), value.clone());
                    rest = tail;
                }
                _ => return Err(format!("bad option list of {class} (missing ';'?)")),
            }
        }
        modules.push(module);
    }
    if modules.is_empty() {
        return Err("no login module".into());
    }
    Ok(modules)
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                tokens.push(Token::Equals);
            }
            ';' => {
                chars.next();
                tokens.push(Token::Semicolon);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => value.push(chars.next().ok_or("unterminated quote")?),
                        Some(c) => value.push(c),
                        None => return Err("unterminated quote".into()),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '=' | ';' | '"') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_plain_example_parses() {
        let modules = parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
             user_alice=\"alice-secret\";",
        )
        .unwrap();
        assert_eq!(modules.len(), 1);
        let m = &modules[0];
        assert_eq!(
            m.class,
            "org.apache.kafka.common.security.plain.PlainLoginModule"
        );
        assert_eq!(m.flag, "required");
        assert_eq!(m.options["user_alice"], "alice-secret");
        assert_eq!(m.options["username"], "admin");
        assert!(!format!("{m:?}").contains("secret"));
    }

    #[test]
    fn quotes_escapes_unquoted_values_and_several_modules() {
        let modules = parse("a.B required k=v x=\"sp ace;\\\"q\";\n c.D optional;").unwrap();
        assert_eq!(modules[0].options["k"], "v");
        assert_eq!(modules[0].options["x"], "sp ace;\"q");
        assert_eq!(modules[1].class, "c.D");
        assert!(modules[1].options.is_empty());
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "",
            "a.B required k=\"v\"",
            "a.B maybe;",
            "a.B required k=;",
            "a.B required k=\"open;",
            "a.B;",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
