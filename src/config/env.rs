//! `${VAR}` expansion in configuration text, so secrets (SMTP passwords, tokens) can stay in
//! the environment rather than in the file.
//!
//! Forms: `${NAME}` (an error when unset), `${NAME:-default}` (the default when unset or
//! empty) and `$${` for a literal `${`. Nothing else is touched, so `$labels` in a template or
//! `$` at the end of a regex stay as written, and so do comment lines. Expansion is done per line and never adds a line,
//! so YAML errors keep their line numbers; [`Expanded::original_column`] maps columns back
//! and [`Expanded::redact`] keeps expanded values (secrets) out of error messages.

/// The text after expansion, with what is needed to talk about the original.
#[derive(Debug, Default)]
pub struct Expanded {
    /// The expanded text, with the same lines as the original.
    pub text: String,
    edits: Vec<Edit>,
}

/// One `${...}` replaced on one line.
#[derive(Debug)]
struct Edit {
    /// 1-based line.
    line: usize,
    /// 1-based column (in characters) where the value starts in the expanded text.
    column: usize,
    /// Characters of the value.
    value_len: usize,
    /// Characters of the `${...}` it replaced.
    original_len: usize,
    name: String,
    value: String,
}

/// An expansion that could not be done, at a 1-based line and column of the original text.
#[derive(Debug, PartialEq, Eq)]
pub struct EnvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands `text`, looking variables up with `lookup`.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Expanded, EnvError> {
    let mut out = Expanded {
        text: String::with_capacity(text.len()),
        edits: Vec::new(),
    };
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        // Comment lines stay as written, so documentation can show `${VAR}` itself.
        if line.trim_start().starts_with('#') {
            out.text.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut column = 1; // in the expanded text
        let mut original_column = 1;
        while let Some(pos) = rest.find('$') {
            let (before, after) = rest.split_at(pos);
            out.text.push_str(before);
            let before_chars = before.chars().count();
            column += before_chars;
            original_column += before_chars;
            if let Some(tail) = after.strip_prefix("$${") {
                out.text.push_str("${");
                column += 2;
                original_column += 3;
                rest = tail;
                continue;
            }
            let Some(tail) = after.strip_prefix("${") else {
                out.text.push('$');
                column += 1;
                original_column += 1;
                rest = &after[1..];
                continue;
            };
            let err = |message: String| EnvError {
                line: line_no,
                column: original_column,
                message,
            };
            let end = tail.find('}').ok_or_else(|| {
                err("`${` is not closed by `}` on the same line (write `$${` for a literal `${`)".into())
            })?;
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !valid_name(name) {
                return Err(err(format!(
                    "`${{{inner}}}`: {name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
                )));
            }
            let value = match (lookup(name).filter(|v| !(v.is_empty() && default.is_some())), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d.to_string(),
                (None, None) => {
                    return Err(err(format!(
                        "environment variable {name} is not set (use `${{{name}:-default}}` for a default)"
                    )));
                }
            };
            if value.contains('\n') || value.contains('\r') {
                return Err(err(format!(
                    "environment variable {name} holds a line break, which cannot be placed in one line"
                )));
            }
            let value_len = value.chars().count();
            let original_len = inner.chars().count() + 3;
            out.edits.push(Edit {
                line: line_no,
                column,
                value_len,
                original_len,
                name: name.to_string(),
                value: value.clone(),
            });
            out.text.push_str(&value);
            column += value_len;
            original_column += original_len;
            rest = &tail[end + 1..];
        }
        out.text.push_str(rest);
    }
    Ok(out)
}

impl Expanded {
    /// The column in the original text of `column` (1-based) on `line` of the expanded text.
    pub fn original_column(&self, line: usize, column: usize) -> usize {
        let mut shift: isize = 0;
        for e in self.edits.iter().filter(|e| e.line == line) {
            if column >= e.column + e.value_len {
                shift += e.original_len as isize - e.value_len as isize;
            } else if column >= e.column {
                // Inside a value: point at the `${` that produced it.
                return (e.column as isize + shift).max(1) as usize;
            }
        }
        (column as isize + shift).max(1) as usize
    }

    /// `message` with every expanded value replaced by the `${NAME}` it came from, so an error
    /// never prints a secret.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        let mut edits: Vec<&Edit> = self.edits.iter().filter(|e| !e.value.is_empty()).collect();
        // Longest first, so a value that contains another is replaced whole.
        edits.sort_by_key(|e| std::cmp::Reverse(e.value.len()));
        for e in edits {
            out = out.replace(&e.value, &format!("${{{}}}", e.name));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "PASS" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            "LONG" => Some("a-much-longer-value".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        let e = expand(
            "a: ${PASS}\nb: ${NOPE:-x}\nc: ${EMPTY:-d}\nd: $${PASS} $labels $\n  # ${NOPE}\n",
            vars,
        )
        .unwrap();
        assert_eq!(e.text, "a: s3cret\nb: x\nc: d\nd: ${PASS} $labels $\n  # ${NOPE}\n");
    }

    #[test]
    fn unset_and_malformed_references_name_line_and_column() {
        let err = expand("x: 1\ny: \"${NOPE}\"\n", vars).unwrap_err();
        assert_eq!((err.line, err.column), (2, 5));
        assert!(err.message.contains("NOPE is not set"), "{}", err.message);
        assert!(expand("x: ${OPEN\n", vars).unwrap_err().message.contains("not closed"));
        assert!(
            expand("x: ${9X}\n", vars)
                .unwrap_err()
                .message
                .contains("not a variable name")
        );
    }

    #[test]
    fn columns_map_back_and_values_are_redacted() {
        let e = expand("k: ${LONG} ${PASS} tail\n", vars).unwrap();
        assert_eq!(e.text, "k: a-much-longer-value s3cret tail\n");
        // "tail" is at column 31 expanded, and at column 20 in the original.
        assert_eq!(e.original_column(1, 31), 20);
        assert_eq!(e.original_column(1, 1), 1);
        // A column inside a value points at its `${`.
        assert_eq!(e.original_column(1, 25), 12);
        assert_eq!(e.redact("invalid value s3cret here"), "invalid value ${PASS} here");
    }
}
