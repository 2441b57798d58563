//! Time formats of the Loki API: nanoseconds, seconds with a fraction, RFC 3339.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2024-05-01T00:00:00Z` for a time in nanoseconds (whole seconds).
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses RFC 3339 (`2024-05-01T10:00:00.5+02:00`, `...Z`) into nanoseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 || b[16] != b':' {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &text[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac_ns = padded.parse().ok()?;
    }
    let offset = match text.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (tz[1..3].parse::<i64>().ok()? * 3600 + tz[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// Parses a Loki API time: RFC 3339, seconds with a fraction (`1700000000.5`), whole seconds
/// (at most 10 digits) or nanoseconds. Returns nanoseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad = || format!("cannot parse {text:?} as a time (nanoseconds, seconds or RFC 3339)");
    if text.contains('.') && !text.contains('-') && !text.contains(':') {
        // Split rather than go through f64, which cannot hold nanoseconds since 1970 exactly.
        let (secs, frac) = text.split_once('.').ok_or_else(bad)?;
        if frac.is_empty() || !frac.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let mut digits: String = frac.chars().take(9).collect();
        while digits.len() < 9 {
            digits.push('0');
        }
        let frac: i64 = digits.parse().map_err(|_| bad())?;
        let sign = if text.starts_with('-') { -1 } else { 1 };
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(sign * frac))
            .ok_or_else(bad);
    }
    if let Ok(n) = text.parse::<i64>() {
        let digits = text.trim_start_matches('-').len();
        return if digits <= 10 {
            n.checked_mul(1_000_000_000).ok_or_else(bad)
        } else {
            Ok(n)
        };
    }
    parse_rfc3339(text).ok_or_else(bad)
}

/// Parses a duration (`5m`, `1h30m`, `500ms`) or plain seconds (`15`, `0.5`) into nanoseconds.
pub fn parse_duration_ns(text: &str) -> Result<i64, String> {
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
        && (0.0..1e10).contains(&f)
    {
        return Ok((f * 1e9).round() as i64);
    }
    text.parse::<tidewatch_model::Duration>()
        .map(|d| d.as_std().as_nanos().min(i64::MAX as u128) as i64)
        .map_err(|e| e.to_string())
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_parse() {
        let t = parse_rfc3339("2024-05-01T00:00:00Z").unwrap();
        assert_eq!(t, 1_714_521_600_000_000_000);
        assert_eq!(format_rfc3339(t), "2024-05-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-05-01T02:00:00.5+02:00").unwrap(), t + 500_000_000);
        assert_eq!(parse_time("1714521600").unwrap(), t);
        assert_eq!(parse_time("1714521600000000000").unwrap(), t);
        assert_eq!(parse_time("1714521600.25").unwrap(), t + 250_000_000);
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration_ns("5m").unwrap(), 300_000_000_000);
        assert_eq!(parse_duration_ns("15").unwrap(), 15_000_000_000);
    }
}
