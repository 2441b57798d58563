//! `time_intervals`: times of day, weekdays, days of month (negative = from the end), months and
//! years, each a list of `a:b` ranges, evaluated in a location (`UTC` or `Local`).

use chrono::{DateTime, Datelike, Local, NaiveDate, Timelike, Utc};

use super::config::{AlertmanagerConfigFile, ConfigError, TimeIntervalSpec};

/// One compiled `time_intervals` entry: every non-empty list must match.
#[derive(Clone, Debug, Default)]
pub struct TimeInterval {
    times: Vec<(u32, u32)>,
    weekdays: Vec<(u32, u32)>,
    days_of_month: Vec<(i32, i32)>,
    months: Vec<(u32, u32)>,
    years: Vec<(i32, i32)>,
    local: bool,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn split_range(s: &str) -> (&str, &str) {
    match s.split_once(':') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    }
}

fn named(s: &str, names: &[&str], base: u32) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + base);
    }
    match s.parse::<u32>() {
        Ok(n) if base == 1 && (1..=names.len() as u32).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a valid name")),
    }
}

fn minutes(s: &str) -> Result<u32, String> {
    let (h, m) = s.split_once(':').ok_or_else(|| format!("time {s:?} is not HH:MM"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("time {s:?} is not HH:MM"))?,
        m.parse().map_err(|_| format!("time {s:?} is not HH:MM"))?,
    );
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("time {s:?} is out of range"));
    }
    Ok(h * 60 + m)
}

impl TimeInterval {
    /// Compiles one entry; errors name the field.
    pub fn compile(spec: &TimeIntervalSpec, field: &str, file: &AlertmanagerConfigFile) -> Result<Self, ConfigError> {
        let err = |sub: &str, needle: &str, msg: String| file.error(format!("{field}.{sub}"), needle, msg);
        let mut ti = TimeInterval::default();
        for t in &spec.times {
            let (a, b) = (
                minutes(&t.start_time).map_err(|e| err("times", &t.start_time, e))?,
                minutes(&t.end_time).map_err(|e| err("times", &t.end_time, e))?,
            );
            if a >= b {
                return Err(err("times", &t.start_time, "start_time must be before end_time".into()));
            }
            ti.times.push((a, b));
        }
        for w in &spec.weekdays {
            let (a, b) = split_range(w);
            let r = (
                named(a, &WEEKDAYS, 0).map_err(|e| err("weekdays", w, e))?,
                named(b, &WEEKDAYS, 0).map_err(|e| err("weekdays", w, e))?,
            );
            if r.0 > r.1 {
                return Err(err("weekdays", w, format!("start day after end day in {w:?}")));
            }
            ti.weekdays.push(r);
        }
        for d in &spec.days_of_month {
            let (a, b) = split_range(d);
            let parse = |s: &str| -> Result<i32, ConfigError> {
                match s.parse::<i32>() {
                    Ok(n) if n != 0 && (-31..=31).contains(&n) => Ok(n),
                    _ => Err(err(
                        "days_of_month",
                        d,
                        format!("{s:?} is not a day of month (1..31 or -31..-1)"),
                    )),
                }
            };
            ti.days_of_month.push((parse(a)?, parse(b)?));
        }
        for m in &spec.months {
            let (a, b) = split_range(m);
            let r = (
                named(a, &MONTHS, 1).map_err(|e| err("months", m, e))?,
                named(b, &MONTHS, 1).map_err(|e| err("months", m, e))?,
            );
            if r.0 > r.1 {
                return Err(err("months", m, format!("start month after end month in {m:?}")));
            }
            ti.months.push(r);
        }
        for y in &spec.years {
            let (a, b) = split_range(y);
            let parse = |s: &str| {
                s.parse::<i32>()
                    .map_err(|_| err("years", y, format!("{s:?} is not a year")))
            };
            ti.years.push((parse(a)?, parse(b)?));
        }
        ti.local = match spec.location.as_deref() {
            None | Some("UTC") | Some("") => false,
            Some("Local") => true,
            Some(other) => {
                return Err(err(
                    "location",
                    other,
                    format!("location {other:?} is not supported (only UTC and Local)"),
                ));
            }
        };
        Ok(ti)
    }

    /// Whether `t` lies in this interval.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let (minute, weekday, day, month, year, days_in_month) = if self.local {
            fields(t.with_timezone(&Local))
        } else {
            fields(t)
        };
        let in_times = self.times.is_empty() || self.times.iter().any(|&(a, b)| (a..b).contains(&minute));
        let in_weekdays = self.weekdays.is_empty() || self.weekdays.iter().any(|&(a, b)| (a..=b).contains(&weekday));
        let in_days = self.days_of_month.is_empty()
            || self.days_of_month.iter().any(|&(a, b)| {
                let abs = |d: i32| if d < 0 { days_in_month as i32 + d + 1 } else { d };
                (abs(a)..=abs(b)).contains(&(day as i32))
            });
        let in_months = self.months.is_empty() || self.months.iter().any(|&(a, b)| (a..=b).contains(&month));
        let in_years = self.years.is_empty() || self.years.iter().any(|&(a, b)| (a..=b).contains(&year));
        in_times && in_weekdays && in_days && in_months && in_years
    }
}

fn fields<T: Datelike + Timelike>(t: T) -> (u32, u32, u32, u32, i32, u32) {
    let (y, m) = (t.year(), t.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    let days_in_month = next.and_then(|n| n.pred_opt()).map(|d| d.day()).unwrap_or(31);
    (
        t.hour() * 60 + t.minute(),
        t.weekday().num_days_from_sunday(),
        t.day(),
        m,
        y,
        days_in_month,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::TimeRangeConfig;

    #[test]
    fn business_hours() {
        let file = AlertmanagerConfigFile::default();
        let spec = TimeIntervalSpec {
            times: vec![TimeRangeConfig {
                start_time: "09:00".into(),
                end_time: "17:00".into(),
            }],
            weekdays: vec!["monday:friday".into()],
            days_of_month: vec!["-7:-1".into()],
            ..Default::default()
        };
        let ti = TimeInterval::compile(&spec, "x", &file).unwrap();
        // 2026-11-27 is a Friday in the last week of November.
        assert!(ti.contains("2026-11-27T10:00:00Z".parse().unwrap()));
        assert!(!ti.contains("2026-11-27T17:00:00Z".parse().unwrap()));
        assert!(!ti.contains("2026-11-28T10:00:00Z".parse().unwrap()));
        assert!(!ti.contains("2026-11-20T10:00:00Z".parse().unwrap()));
    }
}
