//! Kafka's `ssl.principal.mapping.rules` (KIP-371, `SslPrincipalMapper`): how an mTLS client's
//! certificate subject, in RFC 2253 form as Java prints it (`net::x500`), becomes its principal
//! name. The rules are a comma-separated list, tried in order, the first that applies wins:
//!
//! - `DEFAULT`: the whole distinguished name.
//! - `RULE:pattern/replacement/` (optionally ending `L` or `U` to lower- or upper-case the
//!   result): applies when `pattern` matches the *whole* name; the result is the name with every
//!   match of `pattern` replaced as Java's `String.replaceAll` does (`$1`, `${name}`, `\x`).
//!
//! No rule applying refuses the client (Kafka closes its connection). The rules are split and
//! parsed with Kafka's own two regular expressions, so what Kafka accepts and how it splits a
//! list are the same here; patterns are compiled with the `regex` crate, which has Java's
//! syntax for what rules use (classes, groups, lazy quantifiers, named groups) but neither
//! look-around nor back-references: a pattern with those is refused at start with the reason.
//! Kafka's replacement quirks are kept: a `$n` naming a group the pattern lacks is literal text
//! (its `escapeLiteralBackReferences`), digits after `$` are read as Java reads them. Kafka
//! fails a replacement Java cannot expand (`$x`, a trailing `\`) at each connection; Spate
//! refuses it at start.

use regex::{Captures, Regex};
use std::fmt;
use std::sync::OnceLock;

/// Kafka's `RULE_PATTERN`: group 1 `DEFAULT`, 2 the pattern, 4 the replacement, 6 `L`/`U`.
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";

/// `ssl.principal.mapping.rules` parsed: the rules in order.
#[derive(Clone, Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
enum Rule {
    Default,
    Replace {
        /// The pattern as written (Kafka prints rules with it).
        source: String,
        /// `source` anchored at both ends: Java's `Matcher.matches()`.
        whole: Regex,
        /// `source` as it is, for the replacement's matches.
        each: Regex,
        replacement: Vec<Piece>,
        /// The replacement as written.
        replacement_source: String,
        case: Case,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// A replacement, expanded once at start: literal text and group references.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

impl PrincipalMapper {
    /// Parses the rules; the error names the rule that is wrong and why.
    pub fn new(rules: &str) -> Result<PrincipalMapper, String> {
        let rules = split(rules)
            .iter()
            .map(|rule| parse(rule))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PrincipalMapper {
            rules: rules.into_iter().flatten().collect(),
        })
    }

    /// Whether the rules are exactly `DEFAULT` (the name is the subject itself).
    pub fn is_default(&self) -> bool {
        matches!(self.rules.as_slice(), [Rule::Default])
    }

    /// The principal name of `distinguished_name`; `None` when no rule applies.
    pub fn name(&self, distinguished_name: &str) -> Option<String> {
        self.rules
            .iter()
            .find_map(|rule| rule.apply(distinguished_name))
    }
}

impl fmt::Display for PrincipalMapper {
    /// As Kafka's `SslPrincipalMapper.toString()` lists the rules.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self.rules.iter().map(Rule::to_string).collect();
        write!(f, "[{}]", rules.join(", "))
    }
}

/// Kafka's `splitRules`: every match of its splitter over the trimmed text.
fn split(rules: &str) -> Vec<String> {
    static SPLITTER: OnceLock<Regex> = OnceLock::new();
    let splitter = SPLITTER.get_or_init(|| {
        Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(,\s*|$)")).expect("Kafka's rule splitter")
    });
    splitter
        .captures_iter(rules.trim())
        .map(|c| c.get(1).map_or("", |m| m.as_str()).to_string())
        .collect()
}

/// Kafka's `parseRules` for one rule: `None` for an empty one (ignored).
fn parse(rule: &str) -> Result<Option<Rule>, String> {
    static PARSER: OnceLock<Regex> = OnceLock::new();
    let parser = PARSER.get_or_init(|| {
        Regex::new(&format!(r"\A(?:{RULE_PATTERN})")).expect("Kafka's rule parser")
    });
    let invalid = |why: String| format!("ssl.principal.mapping.rules: invalid rule `{rule}`{why}");
    let Some(c) = parser.captures(rule) else {
        return Err(invalid(String::new()));
    };
    let end = c.get(0).map_or(0, |m| m.end());
    if end != rule.len() {
        return Err(invalid(format!(
            ", unmatched substring: `{}`",
            &rule[end..]
        )));
    }
    if c.get(1).is_some() {
        return Ok(Some(Rule::Default));
    }
    let Some(pattern) = c.get(2) else {
        return Ok(None);
    };
    let source = pattern.as_str().to_string();
    let compile = |text: &str| Regex::new(text).map_err(|e| invalid(format!(": {e}")));
    let whole = compile(&format!(r"\A(?:{source})\z"))?;
    let each = compile(&source)?;
    let replacement_source = c.get(4).map_or("", |m| m.as_str()).to_string();
    let replacement =
        expand_plan(&replacement_source, &each).map_err(|e| invalid(format!(": {e}")))?;
    let case = match c.get(6).map(|m| m.as_str()) {
        Some("L") => Case::Lower,
        Some("U") => Case::Upper,
        _ => Case::Keep,
    };
    Ok(Some(Rule::Replace {
        source,
        whole,
        each,
        replacement,
        replacement_source,
        case,
    }))
}

/// The replacement as Java's `Matcher.appendReplacement` reads it, after Kafka's
/// `escapeLiteralBackReferences` (a `$n` beyond the pattern's groups is literal text).
fn expand_plan(replacement: &str, pattern: &Regex) -> Result<Vec<Piece>, String> {
    // Java counts the groups without group 0.
    let groups = pattern.captures_len() - 1;
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = replacement.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => text.push(escaped),
                // The rule parser pairs every backslash; kept for Java's rule anyway.
                None => return Err("replacement ends with a backslash".into()),
            },
            '$' if groups > 0 && literal_reference(&replacement[at + 1..], groups) => {
                text.push('$')
            }
            '$' => {
                let piece = group_reference(&mut chars, groups)?;
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(piece);
            }
            c => text.push(c),
        }
    }
    pieces.push(Piece::Text(text));
    pieces.retain(|p| *p != Piece::Text(String::new()));
    Ok(pieces)
}

/// Kafka's `escapeLiteralBackReferences` for the `$` before `after`: whether its digits name
/// no group of the `groups` (the longest prefix of the digits is tried, then shorter ones).
fn literal_reference(after: &str, groups: usize) -> bool {
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.starts_with('0') {
        return false;
    }
    // Kafka parses the digits as an int; more than fit is an exception there, a group here.
    let Ok(mut index) = digits.parse::<u64>() else {
        return false;
    };
    while index > groups as u64 && index >= 10 {
        index /= 10;
    }
    index > groups as u64
}

/// Java's group reference after a `$`: `${name}`, or digits read while they name a group.
fn group_reference(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    groups: usize,
) -> Result<Piece, String> {
    if chars.peek().is_some_and(|(_, c)| *c == '{') {
        chars.next();
        let mut name = String::new();
        loop {
            match chars.next() {
                Some((_, '}')) => break,
                Some((_, c)) if c.is_ascii_alphanumeric() => name.push(c),
                _ => return Err("named group reference is not ${name}".into()),
            }
        }
        return Ok(Piece::Named(name));
    }
    let Some(first) = chars.peek().and_then(|(_, c)| c.to_digit(10)) else {
        return Err("illegal group reference ($ not followed by a digit or {)".into());
    };
    chars.next();
    let mut index = first as usize;
    if index > groups {
        return Err(format!("no group {index} in the pattern"));
    }
    while let Some(digit) = chars.peek().and_then(|(_, c)| c.to_digit(10)) {
        let longer = index * 10 + digit as usize;
        if longer > groups {
            break;
        }
        index = longer;
        chars.next();
    }
    Ok(Piece::Group(index))
}

impl Rule {
    fn apply(&self, name: &str) -> Option<String> {
        let Rule::Replace {
            whole,
            each,
            replacement,
            case,
            ..
        } = self
        else {
            return Some(name.to_string());
        };
        if !whole.is_match(name) {
            return None;
        }
        let result = replace_all(each, name, replacement);
        Some(match case {
            Case::Keep => result,
            Case::Lower => result.to_lowercase(),
            Case::Upper => result.to_uppercase(),
        })
    }
}

/// Java's `String.replaceAll`: after an empty match the search resumes one character on,
/// after any other where it ended (so an empty match may follow a non-empty one).
fn replace_all(pattern: &Regex, haystack: &str, replacement: &[Piece]) -> String {
    let mut out = String::with_capacity(haystack.len());
    let (mut copied, mut from) = (0, 0);
    while from <= haystack.len() {
        let Some(c) = pattern.captures_at(haystack, from) else {
            break;
        };
        let found = c.get(0).expect("group 0 is the match");
        out.push_str(&haystack[copied..found.start()]);
        expand(&c, replacement, &mut out);
        copied = found.end();
        from = match found.is_empty() {
            false => found.end(),
            true => haystack[found.end()..]
                .chars()
                .next()
                .map_or(haystack.len() + 1, |c| found.end() + c.len_utf8()),
        };
    }
    out.push_str(&haystack[copied..]);
    out
}

fn expand(c: &Captures<'_>, replacement: &[Piece], out: &mut String) {
    for piece in replacement {
        let group = match piece {
            Piece::Text(text) => {
                out.push_str(text);
                continue;
            }
            Piece::Group(index) => c.get(*index),
            Piece::Named(name) => c.name(name),
        };
        out.push_str(group.map_or("", |m| m.as_str()));
    }
}

impl fmt::Display for Rule {
    /// As Kafka's `Rule.toString()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Default => write!(f, "DEFAULT"),
            Rule::Replace {
                source,
                replacement_source,
                case,
                ..
            } => {
                write!(f, "RULE:{source}/{replacement_source}")?;
                match case {
                    Case::Keep => Ok(()),
                    Case::Lower => write!(f, "/L"),
                    Case::Upper => write!(f, "/U"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Kafka's SslPrincipalMapperTest, case for case.

    #[test]
    fn valid_rules() {
        for rules in [
            "DEFAULT",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
            "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
            "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
            "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
        ] {
            PrincipalMapper::new(rules).unwrap_or_else(|e| panic!("{rules}: {e}"));
        }
    }

    #[test]
    fn invalid_rules() {
        for rules in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
        ] {
            let e = PrincipalMapper::new(rules).expect_err(rules);
            assert!(e.contains("invalid rule"), "{rules}: {e}");
        }
    }

    #[test]
    fn names_map_as_in_kafka() {
        let mapper = PrincipalMapper::new(
            &[
                "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
                "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
                "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
                "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
                "DEFAULT",
            ]
            .join(", "),
        )
        .unwrap();
        for (dn, name) in [
            ("CN=Duke,OU=ServiceUsers,O=Org,C=US", "duke"),
            ("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US", "duke@sme"),
            ("cn=duke,ou=sme,dc=mycp,dc=com", "DUKE@SME"),
            ("cN=duke,OU=JavaSoft,O=Sun Microsystems", "DUKE"),
            (
                "OU=JavaSoft,O=Sun Microsystems,C=US",
                "OU=JavaSoft,O=Sun Microsystems,C=US",
            ),
        ] {
            assert_eq!(mapper.name(dn).as_deref(), Some(name), "{dn}");
        }
    }

    #[test]
    fn rules_split_as_in_kafka() {
        for (expected, rules) in [
            ("[]", ""),
            ("[DEFAULT]", "DEFAULT"),
            ("[RULE:/]", "RULE://"),
            ("[RULE:/.*]", "RULE:/.*/"),
            ("[RULE:/.*/L]", "RULE:/.*/L"),
            ("[RULE:/, DEFAULT]", "RULE://,DEFAULT"),
            ("[RULE:/, DEFAULT]", "  RULE:// ,  DEFAULT  "),
            (
                "[RULE:   /     , DEFAULT]",
                "  RULE:   /     / ,  DEFAULT  ",
            ),
            (
                "[RULE:  /     /U, DEFAULT]",
                "  RULE:  /     /U   ,DEFAULT  ",
            ),
            (
                "[RULE:([A-Z]*)/$1/U, RULE:([a-z]+)/$1, DEFAULT]",
                "  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ",
            ),
            // empty rules are ignored
            ("[]", ",   , , ,      , , ,   "),
            ("[RULE:/, DEFAULT]", ",,RULE://,,,DEFAULT,,"),
            (
                "[RULE: /   , DEFAULT]",
                ",  , RULE: /   /    ,,,   DEFAULT, ,   ",
            ),
            (
                "[RULE:   /  /U, DEFAULT]",
                "     ,  , RULE:   /  /U    ,,  ,DEFAULT, ,",
            ),
            // escape sequences
            (r"[RULE:\/\\\(\)\n\t/\/\/]", r"RULE:\/\\\(\)\n\t/\/\//"),
            (
                r"[RULE:\**\/+/*/L, RULE:\/*\**/**]",
                r"RULE:\**\/+/*/L,RULE:\/*\**/**/",
            ),
            // rules rule
            (
                r"[RULE:,RULE:,/,RULE:,\//U, RULE:,/RULE:,, RULE:,RULE:,/L,RULE:,/L, RULE:, DEFAULT, /DEFAULT, DEFAULT]",
                r"RULE:,RULE:,/,RULE:,\//U,RULE:,/RULE:,/,RULE:,RULE:,/L,RULE:,/L,RULE:, DEFAULT, /DEFAULT/,DEFAULT",
            ),
        ] {
            let mapper = PrincipalMapper::new(rules).unwrap_or_else(|e| panic!("{rules}: {e}"));
            assert_eq!(mapper.to_string(), expected, "{rules}");
        }
    }

    #[test]
    fn a_comma_with_whitespace_stays_in_the_name() {
        let mapper = PrincipalMapper::new(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT").unwrap();
        assert_eq!(
            mapper
                .name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz")
                .as_deref(),
            Some(r"Tkac\, Adam")
        );
    }

    // Spate's own cases: no rule applying, Java's replacement rules, what regex cannot do.

    #[test]
    fn no_rule_applying_is_none_and_an_empty_list_applies_to_nothing() {
        let mapper = PrincipalMapper::new("RULE:^CN=([^,]+),OU=eng,.*$/$1/L").unwrap();
        assert_eq!(
            mapper.name("CN=Alice,OU=eng,O=Acme").as_deref(),
            Some("alice")
        );
        assert_eq!(mapper.name("CN=bob,OU=ops,O=Acme"), None);
        assert_eq!(PrincipalMapper::new("").unwrap().name("CN=x"), None);
        assert!(PrincipalMapper::new("DEFAULT").unwrap().is_default());
        assert!(!PrincipalMapper::new("DEFAULT,DEFAULT")
            .unwrap()
            .is_default());
    }

    #[test]
    fn replacements_read_as_java_reads_them() {
        let name = |rules: &str, dn: &str| PrincipalMapper::new(rules).unwrap().name(dn);
        // $12 with one group: group 1 then "2"; $3 with two groups: literal (Kafka's escape).
        assert_eq!(name("RULE:^CN=(.*)$/$12/", "CN=a").as_deref(), Some("a2"));
        assert_eq!(
            name("RULE:^CN=(.*),O=(.*)$/$3-$2/", "CN=a,O=b").as_deref(),
            Some("$3-b")
        );
        assert_eq!(
            name(r"RULE:^CN=(.*)$/\$1 \\ $0/", "CN=a").as_deref(),
            Some(r"$1 \ CN=a")
        );
        assert_eq!(
            name("RULE:^CN=(?<who>.*)$/${who}!/", "CN=a").as_deref(),
            Some("a!")
        );
        // Every match is replaced, an empty one after a non-empty one too (Java's replaceAll).
        assert_eq!(name("RULE:.*/x/", "CN=a").as_deref(), Some("xx"));
        assert_eq!(name("RULE:[a-z]*/-/U", "ab").as_deref(), Some("--"));
    }

    #[test]
    fn what_cannot_be_served_is_refused_with_the_rule_named() {
        for (rules, want) in [
            ("RULE:^CN=(?=x).*$/$1/", "look-around"),
            ("RULE:^CN=(.*)$/$x/", "illegal group reference"),
            ("RULE:^CN=.*$/$1/", "no group 1"),
        ] {
            let e = PrincipalMapper::new(rules).expect_err(rules);
            assert!(e.contains(want) && e.contains("RULE:^CN="), "{rules}: {e}");
        }
    }
}
