//! Quantities on `spate plan`'s command line and in its tables: rates (`300MB/s`,
//! `50000rec/s`), sizes (`4TB`, `1KiB`), durations (`7d`), latencies (`10ms`), percentages
//! (`30%`). Decimal prefixes are powers of 1000 (MB/s as `spate bench` prints it), binary ones
//! (KiB, MiB, GiB, TiB) powers of 1024.

/// An ingest rate: payload bytes per second, or records per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    BytesPerS(f64),
    RecordsPerS(f64),
}

impl Rate {
    pub fn bytes_per_s(self, record_bytes: f64) -> f64 {
        match self {
            Rate::BytesPerS(b) => b,
            Rate::RecordsPerS(r) => r * record_bytes,
        }
    }
}

fn split_number(v: &str) -> Result<(f64, &str), String> {
    let v = v.trim();
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '_'))
        .unwrap_or(v.len());
    let number: f64 = v[..end]
        .replace('_', "")
        .parse()
        .map_err(|_| format!("'{v}': expected a number first"))?;
    if !number.is_finite() || number < 0.0 {
        return Err(format!("'{v}': expected a number >= 0"));
    }
    Ok((number, v[end..].trim()))
}

fn byte_unit(unit: &str) -> Option<f64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

/// `4TB`, `1KiB`, `512`: bytes.
pub fn parse_bytes(v: &str) -> Result<f64, String> {
    let (n, unit) = split_number(v)?;
    byte_unit(unit).map(|m| n * m).ok_or_else(|| {
        format!("'{v}': unknown size unit '{unit}' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    })
}

/// `300MB/s`, `1.5GB/s`, `50000rec/s`, `50krec/s`, `10Gbit/s`.
pub fn parse_rate(v: &str) -> Result<Rate, String> {
    let (n, unit) = split_number(v)?;
    let per_s = unit
        .strip_suffix("/s")
        .ok_or_else(|| format!("'{v}': a rate ends in /s (300MB/s, 50000rec/s)"))?;
    let lower = per_s.to_ascii_lowercase();
    if let Some(prefix) = lower.strip_suffix("rec") {
        let m = match prefix {
            "" => 1.0,
            "k" => 1e3,
            "m" => 1e6,
            _ => {
                return Err(format!(
                    "'{v}': records per second as N rec/s, Nkrec/s, NMrec/s"
                ))
            }
        };
        return Ok(Rate::RecordsPerS(n * m));
    }
    if let Some(prefix) = lower.strip_suffix("bit") {
        let m = byte_unit(prefix).ok_or_else(|| format!("'{v}': unknown unit"))?;
        return Ok(Rate::BytesPerS(n * m / 8.0));
    }
    byte_unit(per_s)
        .map(|m| Rate::BytesPerS(n * m))
        .ok_or_else(|| format!("'{v}': unknown rate unit '{per_s}/s'"))
}

/// `7d`, `12h`, `30m`, `90s`, `2w`: seconds.
pub fn parse_duration_s(v: &str) -> Result<f64, String> {
    let (n, unit) = split_number(v)?;
    let m = match unit {
        "s" | "" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        _ => return Err(format!("'{v}': a duration in s, m, h, d or w (7d)")),
    };
    Ok(n * m)
}

/// `10ms`, `1.5ms`, `1s`, `500us`: milliseconds.
pub fn parse_ms(v: &str) -> Result<f64, String> {
    let (n, unit) = split_number(v)?;
    let m = match unit {
        "ms" | "" => 1.0,
        "s" => 1e3,
        "us" => 1e-3,
        _ => return Err(format!("'{v}': a latency in ms, s or us (10ms)")),
    };
    Ok(n * m)
}

/// `30%` or `0.3`: a fraction in [0, 1).
pub fn parse_fraction(v: &str) -> Result<f64, String> {
    let (n, unit) = split_number(v)?;
    let f = match unit {
        "%" => n / 100.0,
        "" => n,
        _ => return Err(format!("'{v}': a percentage (30%)")),
    };
    if f >= 1.0 {
        return Err(format!("'{v}': must be below 100%"));
    }
    Ok(f)
}

/// Bytes with a decimal prefix: `1.23 TB`.
pub fn fmt_bytes(b: f64) -> String {
    let units = [
        (1e15, "PB"),
        (1e12, "TB"),
        (1e9, "GB"),
        (1e6, "MB"),
        (1e3, "kB"),
    ];
    for (scale, unit) in units {
        if b.abs() >= scale {
            return format!("{:.2} {unit}", b / scale);
        }
    }
    format!("{b:.0} B")
}

/// Bytes per second with a decimal prefix: `300.0 MB/s`.
pub fn fmt_rate(b: f64) -> String {
    format!("{}/s", fmt_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_sizes_durations_and_fractions_parse() {
        assert_eq!(parse_rate("300MB/s"), Ok(Rate::BytesPerS(300e6)));
        assert_eq!(parse_rate("1.5GB/s"), Ok(Rate::BytesPerS(1.5e9)));
        assert_eq!(parse_rate("50000rec/s"), Ok(Rate::RecordsPerS(50_000.0)));
        assert_eq!(parse_rate("50krec/s"), Ok(Rate::RecordsPerS(50_000.0)));
        assert_eq!(parse_rate("10Gbit/s"), Ok(Rate::BytesPerS(1.25e9)));
        assert!(parse_rate("300MB").is_err());
        assert!(parse_rate("fast/s").is_err());
        assert_eq!(parse_bytes("4TB"), Ok(4e12));
        assert_eq!(parse_bytes("1KiB"), Ok(1024.0));
        assert_eq!(parse_bytes("512"), Ok(512.0));
        assert!(parse_bytes("3 furlongs").is_err());
        assert_eq!(parse_duration_s("7d"), Ok(604_800.0));
        assert_eq!(parse_duration_s("12h"), Ok(43_200.0));
        assert_eq!(parse_ms("10ms"), Ok(10.0));
        assert_eq!(parse_ms("1s"), Ok(1000.0));
        assert_eq!(parse_fraction("30%"), Ok(0.3));
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("100%").is_err());
        assert!(parse_fraction("-5%").is_err());
        assert_eq!(Rate::RecordsPerS(1000.0).bytes_per_s(512.0), 512_000.0);
        assert_eq!(fmt_bytes(1.5e12), "1.50 TB");
        assert_eq!(fmt_rate(3e8), "300.00 MB/s");
    }
}
