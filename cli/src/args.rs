//! A small command-line parser: positionals, `--flag VALUE` / `--flag=VALUE` options (repeatable)
//! and `--switch`es, each command naming the ones it takes. Every command also takes the
//! common `--brokers HOST:PORT,...`, `--command-config FILE` (read by `lib::main`) and `--json`.

use std::str::FromStr;

/// Options every command takes.
const COMMON_VALUED: &[&str] = &["--brokers", "--command-config"];
const COMMON_SWITCHES: &[&str] = &["--json"];

/// Where the brokers are when neither `--brokers` nor `SPATE_BROKERS` says.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

#[derive(Debug, Default)]
pub struct Args {
    positionals: Vec<String>,
    options: Vec<(String, String)>,
    switches: Vec<String>,
}

/// Parses `args` for a command that takes the `valued` options and the `switches`.
pub fn parse(args: &[String], valued: &[&str], switches: &[&str]) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") || arg == "--" {
            parsed.positionals.push(arg.clone());
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        if valued.contains(&flag) || COMMON_VALUED.contains(&flag) {
            let value = inline
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))?;
            parsed.options.push((flag.to_string(), value));
        } else if (switches.contains(&flag) || COMMON_SWITCHES.contains(&flag)) && inline.is_none()
        {
            parsed.switches.push(flag.to_string());
        } else {
            return Err(format!("unknown option '{arg}' (try `spate --help`)"));
        }
    }
    Ok(parsed)
}

impl Args {
    /// The last value of an option.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable option, in order.
    pub fn values(&self, flag: &str) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    /// An option parsed as `T`, when given.
    pub fn parsed<T: FromStr>(&self, flag: &str) -> Result<Option<T>, String> {
        self.value(flag)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| format!("{flag}: '{v}' is not a valid value"))
            })
            .transpose()
    }

    /// The `index`th positional argument, named `what` in the error when missing.
    pub fn positional(&self, index: usize, what: &str) -> Result<&str, String> {
        self.positionals
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| format!("missing {what}"))
    }

    /// Fails on positionals beyond the first `count`.
    pub fn no_more_than(&self, count: usize) -> Result<(), String> {
        match self.positionals.get(count) {
            Some(extra) => Err(format!("unexpected argument '{extra}'")),
            None => Ok(()),
        }
    }

    /// `--brokers`, else `SPATE_BROKERS`, else 127.0.0.1:9092.
    pub fn brokers(&self) -> String {
        self.value("--brokers")
            .map(str::to_string)
            .or_else(|| {
                std::env::var("SPATE_BROKERS")
                    .ok()
                    .filter(|b| !b.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_BROKERS.to_string())
    }

    pub fn json(&self) -> bool {
        self.has("--json")
    }
}

/// Splits `k=v` (a config or a header).
pub fn key_value(text: &str, what: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{what} '{text}': expected NAME=VALUE"))
}

/// Kafka's topic name rules: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("the name is empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not allowed")
    } else if name.len() > 249 {
        Some("longer than 249 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("legal characters are [a-zA-Z0-9._-]")
    } else {
        None
    };
    match problem {
        Some(why) => Err(format!("topic '{name}': invalid topic name ({why})")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_switches_and_positionals() {
        let args = parse(
            &strings(&[
                "t1",
                "--partitions",
                "3",
                "--config=a=b",
                "--config",
                "c=d",
                "--json",
                "--brokers=h:1",
            ]),
            &["--partitions", "--config"],
            &[],
        )
        .unwrap();
        assert_eq!(args.positional(0, "topic").unwrap(), "t1");
        assert!(args.positional(1, "x").is_err());
        assert_eq!(args.parsed::<u32>("--partitions").unwrap(), Some(3));
        assert_eq!(args.values("--config"), vec!["a=b", "c=d"]);
        assert!(args.json());
        assert_eq!(args.brokers(), "h:1");
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse(&strings(&["--nope"]), &[], &[]).is_err());
        assert!(parse(&strings(&["--partitions"]), &["--partitions"], &[]).is_err());
        assert!(parse(&strings(&["--json=1"]), &[], &[]).is_err());
        let args = parse(&strings(&["--partitions", "x"]), &["--partitions"], &[]).unwrap();
        assert!(args.parsed::<u32>("--partitions").is_err());
        assert!(key_value("novalue", "--config").is_err());
        assert_eq!(
            key_value("a=b=c", "--header").unwrap(),
            ("a".into(), "b=c".into())
        );
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for ok in ["a", "my-topic.v1_2", &"x".repeat(249)] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            let err = validate_topic(bad).unwrap_err();
            assert!(err.contains("invalid topic name"), "{err}");
        }
    }
}
