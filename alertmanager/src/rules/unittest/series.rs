//! promtool's input series: a selector-like series name and values in expanding notation
//! (`1+2x3`, `1x4`, `_`, `_x3`, `stale`), one value per `interval` from time 0.

use promql_parser::parser::Expr;
use tidewatch_model::{Labels, stale_nan};

/// One value of the notation: a number, a missing sample or a staleness marker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    /// A sample.
    Value(f64),
    /// No sample at this step.
    Omitted,
    /// A staleness marker.
    Stale,
}

fn number(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.to_ascii_lowercase().trim_start_matches('+') {
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    };
    match v {
        Some(v) => Ok(v),
        None => t.parse::<f64>().map_err(|_| format!("invalid number {t:?}")),
    }
}

/// Expands the `values` notation.
pub fn parse_values(text: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        if token == "_" {
            out.push(SeqValue::Omitted);
            continue;
        }
        if token == "stale" {
            out.push(SeqValue::Stale);
            continue;
        }
        let (head, times) = match token.rfind('x') {
            Some(i) if i + 1 < token.len() && token[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
                let n: usize = token[i + 1..]
                    .parse()
                    .map_err(|_| format!("invalid repetition in {token:?}"))?;
                (&token[..i], Some(n))
            }
            _ => (token, None),
        };
        if out.len() + times.unwrap_or(0) > 10_000_000 {
            return Err(format!("{token:?} expands to too many samples"));
        }
        if head == "_" {
            let n = times.ok_or_else(|| format!("invalid value {token:?}"))?;
            out.extend(std::iter::repeat_n(SeqValue::Omitted, n));
            continue;
        }
        // The operator of `a+b` / `a-b`: a sign after the first character not part of an exponent.
        let op = head
            .char_indices()
            .skip(1)
            .find(|&(i, c)| (c == '+' || c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E'))
            .map(|(i, _)| i);
        match (op, times) {
            (Some(i), Some(n)) => {
                let start = number(&head[..i])?;
                let step = number(&head[i..])?;
                for k in 0..=n {
                    out.push(SeqValue::Value(start + step * k as f64));
                }
            }
            (None, Some(n)) => {
                let v = number(head)?;
                out.extend(std::iter::repeat_n(SeqValue::Value(v), n + 1));
            }
            (Some(_), None) => return Err(format!("invalid value {token:?}: expected a+bxN")),
            (None, None) => out.push(SeqValue::Value(number(head)?)),
        }
    }
    Ok(out)
}

/// Parses a series name as `parser.ParseMetric` does: `name{a="b"}` or `{__name__="x", a="b"}`.
pub fn parse_metric(text: &str) -> Result<Labels, String> {
    let t = text.trim();
    if t.is_empty() || t == "{}" {
        return Ok(Labels::new());
    }
    let ast = promql_parser::parser::parse(t)?;
    let Expr::VectorSelector(vs) = ast else {
        return Err(format!("{t:?} is not a series"));
    };
    let mut labels = Labels::new();
    if let Some(n) = &vs.name {
        labels.set("__name__", n.clone());
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!("{t:?}: only = matchers are allowed in a series"));
        }
        labels.set(m.name.clone(), m.value.clone());
    }
    Ok(labels)
}

/// The sample values: `Omitted` dropped, `Stale` as the staleness marker.
pub fn to_samples(values: &[SeqValue], interval_ms: i64) -> Vec<tidewatch_model::Sample> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let value = match v {
                SeqValue::Value(v) => *v,
                SeqValue::Stale => stale_nan(),
                SeqValue::Omitted => return None,
            };
            Some(tidewatch_model::Sample {
                timestamp_ms: i as i64 * interval_ms,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use SeqValue::*;

    #[test]
    fn expanding_notation() {
        assert_eq!(
            parse_values("-2+4x3").unwrap(),
            vec![Value(-2.0), Value(2.0), Value(6.0), Value(10.0)]
        );
        assert_eq!(
            parse_values("1-2x4").unwrap(),
            vec![Value(1.0), Value(-1.0), Value(-3.0), Value(-5.0), Value(-7.0)]
        );
        assert_eq!(parse_values("1x2").unwrap(), vec![Value(1.0); 3]);
        assert_eq!(
            parse_values("1 _x3 stale").unwrap(),
            vec![Value(1.0), Omitted, Omitted, Omitted, Stale]
        );
        assert_eq!(
            parse_values("1e3 -1e-3+1e-3x1").unwrap(),
            vec![Value(1000.0), Value(-0.001), Value(0.0)]
        );
        assert!(parse_values("abc").is_err());
        assert!(parse_values("1+2").is_err());
        let l = parse_metric(r#"up{job="a", instance="b"}"#).unwrap();
        assert_eq!(l.to_string(), r#"up{instance="b", job="a"}"#);
        assert!(parse_metric(r#"up{job="a""#).is_err());
    }
}
