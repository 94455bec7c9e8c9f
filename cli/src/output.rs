//! Output: aligned tables for people, JSON for scripts, and a progress line on stderr when it
//! is a terminal.

use serde_json::Value;
use std::io::{IsTerminal, Write};

/// `print!` without the panic on a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::print_text(&format!($($arg)*)) };
}

/// `println!` without the panic on a closed stdout.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::print_text(&format!("{}\n", format_args!($($arg)*))) };
}

/// Left-aligned columns separated by two spaces, a header line first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Prints a JSON document on stdout (a closed stdout is not an error: the reader left).
pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Prints text on stdout, as `print!` does, minus the panic when the reader went away.
pub fn print_text(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A comma-separated list of numbers.
pub fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// A progress line rewritten in place on stderr, only when stderr is a terminal.
pub struct Progress {
    enabled: bool,
    what: &'static str,
    total: Option<u64>,
    last: std::time::Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: Option<u64>) -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            what,
            total,
            last: std::time::Instant::now(),
        }
    }

    /// Shows `done` at most ten times a second.
    pub fn update(&mut self, done: u64) {
        if !self.enabled || self.last.elapsed() < std::time::Duration::from_millis(100) {
            return;
        }
        self.last = std::time::Instant::now();
        let mut err = std::io::stderr();
        let _ = match self.total {
            Some(total) if total > 0 => {
                let filled = (done.min(total) * 30 / total) as usize;
                write!(
                    err,
                    "\r[{}{}] {done}/{total} {}",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    self.what
                )
            }
            _ => write!(err, "\r{done} {}", self.what),
        };
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_columns() {
        let out = super::table(
            &["TOPIC", "PARTITIONS"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer-name".into(), "12".into()],
            ],
        );
        assert_eq!(
            out,
            "TOPIC        PARTITIONS\na            1\nlonger-name  12\n"
        );
    }
}
