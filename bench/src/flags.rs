//! Walks `--flag VALUE` / `--flag=VALUE` command-line arguments, for the commands that match
//! their flags one by one (`spate start`, `spate bench produce|consume|e2e|compare`).

/// The flags of a command line, one at a time; `value()` takes the current flag's value.
pub struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
    flag: String,
    inline: Option<String>,
}

impl<'a> Flags<'a> {
    pub fn new(args: &'a [String]) -> Self {
        Flags {
            args: args.iter(),
            flag: String::new(),
            inline: None,
        }
    }

    /// The next flag (`--name` of `--name=value`), or the next word as it is.
    pub fn next_flag(&mut self) -> Option<String> {
        let arg = self.args.next()?;
        (self.flag, self.inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.into(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        Some(self.flag.clone())
    }

    /// The current flag's value: what followed its `=`, else the next argument.
    pub fn value(&mut self) -> Result<String, String> {
        self.inline
            .take()
            .or_else(|| self.args.next().cloned())
            .ok_or_else(|| format!("{} needs a value", self.flag))
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn values_follow_the_flag_or_its_equals_sign() {
        let args = words("--a 1 --b=2 --set x=y --switch --c");
        let mut flags = Flags::new(&args);
        assert_eq!(flags.next_flag().as_deref(), Some("--a"));
        assert_eq!(flags.value(), Ok("1".into()));
        assert_eq!(flags.next_flag().as_deref(), Some("--b"));
        assert_eq!(flags.value(), Ok("2".into()));
        assert_eq!(flags.next_flag().as_deref(), Some("--set"));
        assert_eq!(flags.value(), Ok("x=y".into()));
        assert_eq!(flags.next_flag().as_deref(), Some("--switch"));
        assert_eq!(flags.next_flag().as_deref(), Some("--c"));
        assert_eq!(flags.value(), Err("--c needs a value".into()));
        assert_eq!(flags.next_flag(), None);
    }
}
