//! Which language a rule's expression is in, and its syntax check.
//!
//! Loki's ruler puts LogQL in Prometheus-format rule files; Tidewatch allows both languages in
//! the same file and decides per expression by one simple check: **an expression is LogQL when
//! it has at least one selector and none of its selectors names a metric** (every `{` is
//! preceded by something other than a metric name, as in `{app="x"} |= "error"`,
//! `count_over_time({app="x"}[5m])` or `sum(rate({app="x"} |= "err" [1m]))`). PromQL rules name
//! their metrics (`up{job="x"}`); a name-less PromQL selector such as `{__name__="up"}` is
//! recognised by its `__name__` matcher. PromQL is checked with promql-parser; LogQL is passed
//! to the log store's query engine as written (only its braces are checked here).

use std::sync::Once;

/// The language of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Prometheus' query language, run against the metrics store.
    PromQl,
    /// Loki's query language (metric queries), run against the log store.
    LogQl,
}

/// Removes string literals and comments, so braces inside them do not count.
fn code_only(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let q = c;
                out.push_str("\"\"");
                while let Some(d) = chars.next() {
                    if d == '\\' && q != '`' {
                        chars.next();
                    } else if d == q {
                        break;
                    }
                }
            }
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            c => out.push(c),
        }
    }
    out
}

/// The language of `expr` (see the module comment for the rule).
pub fn lang_of(expr: &str) -> Lang {
    let code = code_only(expr);
    if code.contains("__name__") {
        return Lang::PromQl;
    }
    let bytes = code.as_bytes();
    let mut selectors = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'{' {
            continue;
        }
        selectors += 1;
        let before = code[..i].trim_end();
        let named = before
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if named {
            return Lang::PromQl;
        }
    }
    if selectors > 0 { Lang::LogQl } else { Lang::PromQl }
}

fn register_functions() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::value::ValueType;
        // Prometheus 2.x's name for double_exponential_smoothing, which rule files still use.
        let holt_winters = promql_parser::parser::Function {
            name: "holt_winters",
            arg_types: vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            variadic: 0,
            return_type: ValueType::Vector,
            experimental: false,
        };
        // Registration fails only when another crate (the store) registered it first.
        let _ = promql_parser::parser::register_extra_functions(vec![holt_winters]);
    });
}

/// Checks `expr`'s syntax and returns its language.
pub fn check(expr: &str) -> Result<Lang, String> {
    match lang_of(expr) {
        Lang::PromQl => {
            register_functions();
            let ast = promql_parser::parser::parse(expr)?;
            use promql_parser::parser::value::ValueType;
            match ast.value_type() {
                ValueType::Vector | ValueType::Scalar => Ok(Lang::PromQl),
                other => Err(format!(
                    "invalid expression type {other:?} for a rule: must be an instant vector or a scalar"
                )),
            }
        }
        Lang::LogQl => {
            let code = code_only(expr);
            let mut depth: i64 = 0;
            for c in code.chars() {
                match c {
                    '{' | '(' | '[' => depth += 1,
                    '}' | ')' | ']' => depth -= 1,
                    _ => {}
                }
                if depth < 0 {
                    return Err("unbalanced brackets in LogQL expression".into());
                }
            }
            if depth != 0 {
                return Err("unbalanced brackets in LogQL expression".into());
            }
            Ok(Lang::LogQl)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_the_language() {
        assert_eq!(lang_of(r#"up{job="x"} == 0"#), Lang::PromQl);
        assert_eq!(lang_of("sum(rate(http_requests_total[5m])) > 1"), Lang::PromQl);
        assert_eq!(lang_of(r#"{__name__="up"} == 0"#), Lang::PromQl);
        assert_eq!(lang_of("1"), Lang::PromQl);
        assert_eq!(lang_of(r#"count_over_time({app="x"}[5m]) > 3"#), Lang::LogQl);
        assert_eq!(
            lang_of(r#"sum by (app) (rate({app="x"} |= "error {" [1m])) > 0"#),
            Lang::LogQl
        );
        assert_eq!(lang_of("max_over_time(x{a=\"{\"}[5m]) # {comment\n"), Lang::PromQl);
        assert!(check("up ==").is_err());
        assert!(check("up[5m]").is_err());
        assert_eq!(check(r#"count_over_time({app="x"}[5m])"#), Ok(Lang::LogQl));
        assert!(check(r#"count_over_time({app="x"[5m])"#).is_err());
    }
}
