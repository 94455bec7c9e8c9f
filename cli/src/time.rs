//! Timestamps given on the command line: epoch milliseconds or ISO-8601
//! (`2026-11-25`, `2026-11-25T10:00:00`, with optional `.mmm` and `Z` or `±HH:MM`; no zone
//! means UTC).

/// Milliseconds since the epoch of `text`.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    iso8601(text).ok_or_else(|| {
        format!(
            "'{text}' is neither epoch milliseconds nor an ISO-8601 time (2026-11-25T10:00:00Z)"
        )
    })
}

fn number(text: &str) -> Option<i64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn iso8601(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (year, month, day) = (
        number(parts.next()?)?,
        number(parts.next()?)?,
        number(parts.next()?)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if let Some(time) = time {
        let (clock, offset_ms) = if let Some(clock) = time.strip_suffix('Z') {
            (clock, 0)
        } else if let Some(at) = time.rfind(['+', '-']) {
            let (clock, zone) = time.split_at(at);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
            (clock, sign * (number(h)? * 3_600_000 + number(m)? * 60_000))
        } else {
            (time, 0)
        };
        let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let mut fields = clock.split(':');
        let hours = number(fields.next()?)?;
        let minutes = number(fields.next()?)?;
        let seconds = fields.next().map_or(Some(0), number)?;
        if fields.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
            return None;
        }
        let millis = if fraction.is_empty() {
            0
        } else {
            let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
            number(&digits)?
        };
        ms += hours * 3_600_000 + minutes * 60_000 + seconds * 1000 + millis - offset_ms;
    }
    Some(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn epoch_and_iso8601() {
        assert_eq!(parse_ms("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_ms("1970-01-01").unwrap(), 0);
        assert_eq!(parse_ms("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_ms("2023-11-14T22:13:20.5").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_ms("2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_ms("2000-03-01T00:00").unwrap(), 951_868_800_000);
        for bad in ["yesterday", "2023-13-01", "2023-11-14T25:00:00", "2023-11"] {
            assert!(parse_ms(bad).is_err(), "{bad}");
        }
    }
}
