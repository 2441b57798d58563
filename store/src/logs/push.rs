//! Decoding Loki push bodies: protobuf (snappy block compressed) and JSON.

use prost::Message;
pub use tidewatch_model::loki_push::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use tidewatch_model::{Labels, validate_label_name};

use super::config::LogsLimitsConfig;

/// One decoded stream: its labels (or why they are refused) and its entries in wire order.
pub struct Stream {
    /// The labels, or why they are refused.
    pub labels: Result<Labels, String>,
    /// `(ns, line)`.
    pub entries: Vec<(i64, String)>,
}

/// Parses `{name="value", ...}` (Loki's stream label syntax, Go-style escapes).
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("labels {text:?} are not {{name=\"value\", ...}}"))?;
    let mut pairs = Vec::new();
    let b = inner.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let name = &inner[start..i];
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(format!("labels {text:?}: expected = after {name:?}"));
        }
        i += 1;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let (value, used) = super::logql::parse::unquote(&inner[i..])
            .map_err(|e| format!("labels {text:?}: value of {name:?}: {e}"))?;
        i += used;
        pairs.push((name.to_string(), value));
    }
    labels_from_pairs(pairs)
}

/// Validates names and builds labels (empty values dropped, duplicates refused).
pub fn labels_from_pairs(pairs: Vec<(String, String)>) -> Result<Labels, String> {
    let mut seen = std::collections::HashSet::new();
    for (n, _) in &pairs {
        validate_label_name(n).map_err(|e| e.to_string())?;
        if !seen.insert(n.clone()) {
            return Err(format!("duplicate label name {n:?}"));
        }
    }
    let labels = Labels::from_pairs(pairs.into_iter().filter(|(_, v)| !v.is_empty()));
    if labels.is_empty() {
        return Err("a stream needs at least one label".into());
    }
    Ok(labels)
}

/// Decodes a protobuf push request (already decompressed).
pub fn decode_protobuf(body: &[u8]) -> Result<Vec<Stream>, String> {
    let req = PushRequest::decode(body).map_err(|e| format!("protobuf: {e}"))?;
    Ok(req
        .streams
        .into_iter()
        .map(|s| Stream {
            labels: parse_labels(&s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| {
                    let t = e.timestamp.unwrap_or_default();
                    (
                        t.seconds.saturating_mul(1_000_000_000).saturating_add(t.nanos as i64),
                        e.line,
                    )
                })
                .collect(),
        })
        .collect())
}

#[derive(serde::Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(serde::Deserialize)]
struct JsonStream {
    stream: std::collections::BTreeMap<String, String>,
    values: Vec<Vec<serde_json::Value>>,
}

/// Decodes a JSON push request: `{"streams":[{"stream":{...},"values":[["<ns>","line"]]}]}`.
pub fn decode_json(body: &[u8]) -> Result<Vec<Stream>, String> {
    let req: JsonPush = serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))?;
    let mut out = Vec::with_capacity(req.streams.len());
    for (si, s) in req.streams.into_iter().enumerate() {
        let mut entries = Vec::with_capacity(s.values.len());
        for (ei, v) in s.values.into_iter().enumerate() {
            let ts = v.first().and_then(|t| t.as_str()).and_then(|t| t.parse::<i64>().ok());
            let line = v.get(1).and_then(|l| l.as_str());
            match (ts, line) {
                (Some(ts), Some(line)) => entries.push((ts, line.to_string())),
                _ => {
                    return Err(format!(
                        "streams[{si}].values[{ei}]: expected [\"<unix ns>\", \"<line>\"(, {{metadata}})]"
                    ));
                }
            }
        }
        out.push(Stream {
            labels: labels_from_pairs(s.stream.into_iter().collect()),
            entries,
        });
    }
    Ok(out)
}

/// Checks a stream's labels against the limits.
pub fn check_labels(labels: &Labels, limits: &LogsLimitsConfig) -> Result<(), String> {
    if labels.len() > limits.max_labels_per_stream {
        return Err(format!(
            "{} labels, more than logs.limits.max_labels_per_stream ({})",
            labels.len(),
            limits.max_labels_per_stream
        ));
    }
    for l in labels.iter() {
        if l.name.len() > limits.max_label_name_length {
            return Err(format!(
                "label name {:?}… is longer than {} bytes",
                &l.name[..32],
                limits.max_label_name_length
            ));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(format!(
                "value of label {:?} is longer than {} bytes (logs.limits.max_label_value_length)",
                l.name, limits.max_label_value_length
            ));
        }
    }
    Ok(())
}
