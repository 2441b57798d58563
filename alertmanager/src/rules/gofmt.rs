//! Go's number formatting (`fmt` and `strconv`), which Prometheus' templates print through: the
//! text a rule's annotation shows must be the text Prometheus would show, so `%v`, `%g`, `%.2f`,
//! `%e` and padding follow Go, not Rust (`1e+06`, not `1000000`).

/// How Go's `fmt` prints a float64 with `%v` (`strconv.FormatFloat(v, 'g', -1, 64)`).
pub fn float_v(v: f64) -> String {
    format_float(v, 'g', None)
}

/// `strconv.FormatFloat(v, verb, prec, 64)` for verbs `e`, `E`, `f`, `F`, `g`, `G` (`None` is the
/// shortest representation, Go's `-1`), with `fmt`'s `+Inf` for positive infinity.
pub fn format_float(v: f64, verb: char, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let upper = verb.is_ascii_uppercase();
    let out = match verb.to_ascii_lowercase() {
        'f' => match prec {
            Some(p) => format!("{v:.p$}"),
            None => format!("{v}"),
        },
        'e' => {
            let (neg, digits, dp) = decimal_digits(v, prec.map(|p| p + 1));
            let decimals = prec.unwrap_or(digits.len().saturating_sub(1));
            fmt_e(neg, &digits, dp, decimals)
        }
        _ => {
            // %g: Go picks %e when the exponent is < -4 or >= the precision (6 for shortest).
            let p = prec.map(|p| p.max(1));
            let (neg, digits, dp) = decimal_digits(v, p);
            let nd = digits.len() as i64;
            let mut eprec = p.map(|p| p as i64).unwrap_or(6);
            if p.is_some() && eprec > nd && nd >= dp {
                eprec = nd;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                let mut pr = p.map(|p| p as i64).unwrap_or(nd);
                if pr > nd {
                    pr = nd;
                }
                fmt_e(neg, &digits, dp, (pr - 1).max(0) as usize)
            } else {
                let mut pr = p.map(|p| p as i64).unwrap_or(nd);
                if pr > dp {
                    pr = nd;
                }
                fmt_f(neg, &digits, dp, (pr - dp).max(0) as usize)
            }
        }
    };
    if upper { out.to_uppercase() } else { out }
}

/// The decimal digits of |v| (no trailing zeros, at least one digit) rounded to `sig`
/// significant digits (shortest round-trip when `None`), whether it is negative, and the
/// position of the decimal point (`0.0123` → `"123"`, dp = -1).
fn decimal_digits(v: f64, sig: Option<usize>) -> (bool, String, i64) {
    let s = match sig {
        Some(n) => format!("{:.*e}", n.saturating_sub(1), v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    if digits == "0" {
        return (v.is_sign_negative(), digits, 1);
    }
    (v.is_sign_negative(), digits, exp + 1)
}

fn fmt_e(neg: bool, digits: &str, dp: i64, decimals: usize) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let mut chars = digits.chars();
    out.push(chars.next().unwrap_or('0'));
    if decimals > 0 {
        out.push('.');
        let rest: String = chars.collect();
        for i in 0..decimals {
            out.push(rest.chars().nth(i).unwrap_or('0'));
        }
    }
    let exp = if digits == "0" { 0 } else { dp - 1 };
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    out.push_str(&e.to_string());
    out
}

fn fmt_f(neg: bool, digits: &str, dp: i64, decimals: usize) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let d: Vec<char> = digits.chars().collect();
    let digit = |i: i64| -> char {
        if i >= 0 && (i as usize) < d.len() {
            d[i as usize]
        } else {
            '0'
        }
    };
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals as i64 {
            out.push(digit(dp + i));
        }
    }
    out
}

/// Go's `%.4g`, the format of every humanize function.
pub fn g4(v: f64) -> String {
    format_float(v, 'g', Some(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go() {
        // Expected strings from Go 1.19's fmt.
        assert_eq!(float_v(1.0), "1");
        assert_eq!(float_v(0.5), "0.5");
        assert_eq!(float_v(1e6), "1e+06");
        assert_eq!(float_v(123456.0), "123456");
        assert_eq!(float_v(123456789.0), "1.23456789e+08");
        assert_eq!(float_v(0.0001), "0.0001");
        assert_eq!(float_v(0.00001), "1e-05");
        assert_eq!(float_v(-2.5), "-2.5");
        assert_eq!(float_v(0.0), "0");
        assert_eq!(g4(1234.5), "1234");
        assert_eq!(g4(12345.0), "1.234e+04");
        assert_eq!(g4(1.5), "1.5");
        assert_eq!(g4(0.0), "0");
        assert_eq!(g4(100.0), "100");
        assert_eq!(g4(2.0 / 3.0 * 100.0), "66.67");
        assert_eq!(g4(f64::INFINITY), "+Inf");
        assert_eq!(format_float(12.3456, 'f', Some(2)), "12.35");
        assert_eq!(format_float(1234.5678, 'e', Some(2)), "1.23e+03");
        assert_eq!(format_float(0.0, 'e', None), "0e+00");
        assert_eq!(format_float(1.0, 'e', None), "1e+00");
        assert_eq!(format_float(1.5, 'e', None), "1.5e+00");
    }
}
