//! Configuration errors that say where: `FILE:LINE:COLUMN: KEY: what is wrong`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::env::{EnvError, Expanded};

/// A configuration that cannot be used. Its `Display` is the whole message a person needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The key, dotted (`server.listen`), when the error belongs to one.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    pub(super) fn io(path: &Path, e: std::io::Error) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            position: None,
            key: None,
            message: format!("cannot read: {e}"),
        }
    }

    pub(super) fn env(path: &Path, e: EnvError) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            position: Some((e.line, e.column)),
            key: None,
            message: e.message,
        }
    }

    pub(super) fn value(path: &Path, key: &str, message: String) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            position: None,
            key: Some(key.to_string()),
            message,
        }
    }

    /// Turns yaml_serde's error (`server.listen: invalid type: … at line 3 column 11`) into
    /// ours: position mapped back to the unexpanded text, the key split out (an unknown key
    /// is appended to its parent's path), and expanded secrets redacted.
    pub(super) fn yaml(path: &Path, e: &yaml_serde::Error, expanded: &Expanded) -> Self {
        let position = e
            .location()
            .map(|l| (l.line(), expanded.original_column(l.line(), l.column())));
        let mut text = e.to_string();
        if let Some(at) = text.rfind(" at line ") {
            text.truncate(at);
        }
        // yaml_serde prefixes the dotted path of the value ("server.listen: "), except at the
        // top level.
        let (mut key, mut message) = match text.split_once(": ") {
            Some((p, m)) if !p.contains(' ') && !p.is_empty() => (Some(p.to_string()), m.to_string()),
            _ => (None, text.clone()),
        };
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            key = Some(match key {
                Some(parent) => format!("{parent}.{field}"),
                None => field.to_string(),
            });
            message = message.replacen("unknown field", "unknown key", 1);
        }
        ConfigError {
            path: path.to_path_buf(),
            position,
            key,
            message: expanded.redact(&message),
        }
    }
}
