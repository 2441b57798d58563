//! The client subcommands: `tidewatch query` (PromQL) and `tidewatch logs` (LogQL).
//!
//! They talk to a running server over its public HTTP API (the same Prometheus and Loki
//! endpoints Grafana uses), so they work against any Tidewatch server — or a Prometheus or Loki.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

/// How `tidewatch query` prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One row per series (instant) or per series and time (range).
    Table,
    /// The API's `data` object as JSON.
    Json,
    /// A line chart drawn in the terminal with braille dots (range queries).
    Chart,
}

/// An HTTP client for one server, with a timeout and readable errors.
struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(base: &str, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// GETs `path` with form parameters and returns the envelope's `data`, or the server's
    /// error message.
    fn get(&self, path: &str, params: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.get(&url);
        for (k, v) in params {
            req = req.query(k, v);
        }
        let mut resp = req
            .call()
            .with_context(|| format!("cannot reach {url}: is the server running? (--server)"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        let json: Value = serde_json::from_str(&body).with_context(|| {
            format!(
                "{url} answered HTTP {status} with a body that is not JSON: {}",
                clip(&body)
            )
        })?;
        if json["status"] != "success" {
            bail!(
                "{url}: HTTP {status}: {}: {}",
                json["errorType"].as_str().unwrap_or("error"),
                json["error"].as_str().unwrap_or("(no message)")
            );
        }
        Ok(json["data"].clone())
    }
}

/// GETs a plain-text page (e.g. `/api/v1/autoscaler/web/explain`) and prints it; a JSON
/// error envelope becomes an error naming the URL.
pub fn print_text(server: &str, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = Client::new(server, timeout);
    let url = format!("{}{}", client.base, path);
    let mut resp = client
        .agent
        .get(&url)
        .call()
        .with_context(|| format!("cannot reach {url}: is the server running? (--server)"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    if status != 200 {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| clip(&body).to_string());
        bail!("{url}: HTTP {status}: {message}");
    }
    std::io::stdout().write_all(body.as_bytes())?;
    Ok(())
}

/// Sends a JSON request to an Alertmanager API v2 path and returns the JSON answer (API v2
/// answers bare JSON, no envelope; errors are a JSON string or text).
fn am_request(
    server: &str,
    timeout: Duration,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let client = Client::new(server, timeout);
    let url = format!("{}{}", client.base, path);
    let sent = match (method, body) {
        ("POST", Some(b)) => client
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(b.to_string()),
        ("DELETE", _) => client.agent.delete(&url).call(),
        _ => client.agent.get(&url).call(),
    };
    let mut resp = sent.with_context(|| format!("cannot reach {url}: is the server running? (--server)"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    if !(200..300).contains(&status) {
        bail!("{method} {url}: HTTP {status}: {}", clip(text.trim()));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `tidewatch alerts list`.
pub fn alerts_list(server: &str, timeout: Duration) -> anyhow::Result<()> {
    let alerts = am_request(server, timeout, "GET", "/api/v2/alerts", None)?;
    let mut out = String::new();
    let rows: Vec<(String, String, String)> = alerts
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["status"]["state"].as_str().unwrap_or("").to_string(),
                a["startsAt"].as_str().unwrap_or("").to_string(),
                series_name(&a["labels"]),
            )
        })
        .collect();
    let _ = writeln!(out, "{:<12} {:<30} LABELS", "STATE", "SINCE");
    for (state, since, labels) in &rows {
        let _ = writeln!(out, "{state:<12} {since:<30} {labels}");
    }
    if rows.is_empty() {
        let _ = writeln!(out, "(no alerts)");
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// Parses `name=value`, `name!=value`, `name=~regex`, `name!~regex` (the value may be quoted)
/// into an API v2 matcher.
fn parse_matcher(text: &str) -> anyhow::Result<Value> {
    let ops = [
        ("!=", false, false),
        ("=~", true, true),
        ("!~", true, false),
        ("=", false, true),
    ];
    let (at, (op, is_regex, is_equal)) = ops
        .iter()
        .filter_map(|o| text.find(o.0).map(|i| (i, *o)))
        .min_by_key(|(i, o)| (*i, std::cmp::Reverse(o.0.len())))
        .ok_or_else(|| {
            anyhow::anyhow!("matcher {text:?}: expected name=value, name!=value, name=~regex or name!~regex")
        })?;
    let name = text[..at].trim();
    let raw = text[at + op.len()..].trim();
    let value = if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        serde_json::from_str::<String>(raw).with_context(|| format!("matcher {text:?}: bad quoted value"))?
    } else {
        raw.to_string()
    };
    if name.is_empty() || tidewatch_model::validate_label_name(name).is_err() {
        bail!("matcher {text:?}: {name:?} is not a label name");
    }
    Ok(serde_json::json!({"name": name, "value": value, "isRegex": is_regex, "isEqual": is_equal}))
}

/// `tidewatch alerts silence add`.
pub fn silence_add(
    server: &str,
    timeout: Duration,
    matchers: &[String],
    duration: Duration,
    comment: &str,
    author: Option<String>,
) -> anyhow::Result<()> {
    let matchers = matchers
        .iter()
        .map(|m| parse_matcher(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = SystemTime::now();
    let body = serde_json::json!({
        "matchers": matchers,
        "startsAt": humantime::format_rfc3339_millis(now).to_string(),
        "endsAt": humantime::format_rfc3339_millis(now + duration).to_string(),
        "createdBy": author.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "tidewatch".into()),
        "comment": comment,
    });
    let answer = am_request(server, timeout, "POST", "/api/v2/silences", Some(&body))?;
    println!("{}", answer["silenceID"].as_str().unwrap_or(""));
    Ok(())
}

/// `tidewatch alerts silence list`.
pub fn silence_list(server: &str, timeout: Duration) -> anyhow::Result<()> {
    let silences = am_request(server, timeout, "GET", "/api/v2/silences", None)?;
    let mut out = String::new();
    let _ = writeln!(out, "{:<38} {:<9} {:<26} {:<12} MATCHERS", "ID", "STATE", "ENDS", "BY");
    for s in silences.as_array().into_iter().flatten() {
        let matchers: Vec<String> = s["matchers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let op = match (
                    m["isRegex"].as_bool().unwrap_or(false),
                    m["isEqual"].as_bool().unwrap_or(true),
                ) {
                    (false, true) => "=",
                    (false, false) => "!=",
                    (true, true) => "=~",
                    (true, false) => "!~",
                };
                format!(
                    "{}{op}{}",
                    m["name"].as_str().unwrap_or(""),
                    serde_json::to_string(&m["value"]).unwrap_or_default()
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<38} {:<9} {:<26} {:<12} {}",
            s["id"].as_str().unwrap_or(""),
            s["status"]["state"].as_str().unwrap_or(""),
            s["endsAt"].as_str().unwrap_or(""),
            s["createdBy"].as_str().unwrap_or(""),
            matchers.join(" ")
        );
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

/// `tidewatch alerts silence expire`.
pub fn silence_expire(server: &str, timeout: Duration, id: &str) -> anyhow::Result<()> {
    am_request(server, timeout, "DELETE", &format!("/api/v2/silence/{id}"), None)?;
    println!("expired {id}");
    Ok(())
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Options of `tidewatch query`.
pub struct QueryArgs {
    pub server: String,
    pub expr: String,
    pub time: Option<String>,
    pub range: Option<Duration>,
    pub step: Option<Duration>,
    pub output: Output,
    pub timeout: Duration,
}

/// Runs `tidewatch query` and writes the answer to stdout.
pub fn query(args: QueryArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server, args.timeout);
    let mut out = String::new();
    match args.range {
        None => {
            let mut params = vec![("query", args.expr.clone())];
            if let Some(t) = &args.time {
                params.push(("time", t.clone()));
            }
            let data = client.get("/api/v1/query", &params)?;
            match args.output {
                Output::Json => out = serde_json::to_string_pretty(&data)? + "\n",
                Output::Table => render_instant_table(&data, &mut out),
                Output::Chart => bail!("--output chart draws a range query: add --range (e.g. --range 1h)"),
            }
        }
        Some(range) => {
            let end = now_secs();
            let start = end - range.as_secs_f64();
            // About 200 points, as Grafana picks a step from the panel width.
            let step = args
                .step
                .map(|s| s.as_secs_f64())
                .unwrap_or_else(|| (range.as_secs_f64() / 200.0).max(1.0));
            let params = vec![
                ("query", args.expr.clone()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{step}")),
            ];
            let data = client.get("/api/v1/query_range", &params)?;
            match args.output {
                Output::Json => out = serde_json::to_string_pretty(&data)? + "\n",
                Output::Table => render_range_table(&data, &mut out),
                Output::Chart => {
                    let width = terminal_width().saturating_sub(12).clamp(20, 200);
                    render_chart(&data, start, end, width, 16, &mut out)
                }
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// `{a="b", c="d"}` with the metric name in front, as Prometheus prints series.
fn series_name(metric: &Value) -> String {
    let Some(map) = metric.as_object() else {
        return "{}".into();
    };
    let name = map.get("__name__").and_then(|v| v.as_str()).unwrap_or("");
    let labels: Vec<String> = map
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
        .collect();
    if labels.is_empty() && !name.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(", "))
    }
}

fn render_instant_table(data: &Value, out: &mut String) {
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") | Some("string") => {
            let _ = writeln!(out, "{}", result[1].as_str().unwrap_or(""));
        }
        Some("vector") => {
            let rows: Vec<(String, String)> = result
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    (
                        series_name(&s["metric"]),
                        s["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(6).max(6);
            let _ = writeln!(out, "{:<w$}  VALUE", "SERIES");
            for (name, v) in &rows {
                let _ = writeln!(out, "{name:<w$}  {v}");
            }
            if rows.is_empty() {
                let _ = writeln!(out, "(no series)");
            }
        }
        Some("matrix") => render_range_table(data, out),
        other => {
            let _ = writeln!(out, "(unknown result type {other:?})");
        }
    }
}

fn render_range_table(data: &Value, out: &mut String) {
    let series = data["result"].as_array().cloned().unwrap_or_default();
    if series.is_empty() {
        let _ = writeln!(out, "(no series)");
    }
    for s in &series {
        let _ = writeln!(out, "{}", series_name(&s["metric"]));
        for p in s["values"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:>14}  {}",
                fmt_ts(p[0].as_f64().unwrap_or(0.0)),
                p[1].as_str().unwrap_or("")
            );
        }
    }
}

fn fmt_ts(secs: f64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0))).to_string()
}

const COLOURS: [u8; 6] = [32, 33, 34, 35, 36, 31];

/// Draws the series of a matrix as a braille line chart `width` × `height` cells (each cell
/// holds 2 × 4 dots), with a y axis, the time range and a coloured legend.
fn render_chart(data: &Value, start: f64, end: f64, width: usize, height: usize, out: &mut String) {
    let series: Vec<(String, Vec<(f64, f64)>)> = data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse::<f64>().ok()?)))
                .filter(|(_, v)| v.is_finite())
                .collect();
            (series_name(&s["metric"]), points)
        })
        .collect();
    let values = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        let _ = writeln!(out, "(no finite values to draw)");
        return;
    }
    if hi == lo {
        hi += 1.0;
        lo -= 1.0;
    }
    let (dots_x, dots_y) = (width * 2, height * 4);
    // Per cell: the braille bits set and the colour of the last series that set one.
    let mut cells = vec![(0u8, 0usize); width * height];
    for (si, (_, points)) in series.iter().enumerate() {
        let mut prev: Option<(usize, usize)> = None;
        for &(t, v) in points {
            let x = (((t - start) / (end - start).max(1e-9)) * (dots_x - 1) as f64)
                .round()
                .clamp(0.0, (dots_x - 1) as f64) as usize;
            let y = (((hi - v) / (hi - lo)) * (dots_y - 1) as f64)
                .round()
                .clamp(0.0, (dots_y - 1) as f64) as usize;
            // Join consecutive points so a line stays a line at any density.
            let (x0, y0) = prev.unwrap_or((x, y));
            let steps = x.abs_diff(x0).max(y.abs_diff(y0)).max(1);
            for k in 0..=steps {
                let xi = (x0 as f64 + (x as f64 - x0 as f64) * k as f64 / steps as f64).round() as usize;
                let yi = (y0 as f64 + (y as f64 - y0 as f64) * k as f64 / steps as f64).round() as usize;
                let cell = &mut cells[(yi / 4) * width + xi / 2];
                cell.0 |= braille_bit(xi % 2, yi % 4);
                cell.1 = si;
            }
            prev = Some((x, y));
        }
    }
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    for row in 0..height {
        let label = if row == 0 {
            fmt_num(hi)
        } else if row == height - 1 {
            fmt_num(lo)
        } else if row == height / 2 {
            let mid = (hi + lo) / 2.0;
            // A midpoint that is zero but for rounding prints as 0.
            fmt_num(if mid.abs() < (hi - lo) * 1e-9 { 0.0 } else { mid })
        } else {
            String::new()
        };
        let _ = write!(out, "{label:>10} ┤");
        for col in 0..width {
            let (bits, si) = cells[row * width + col];
            if bits == 0 {
                out.push(' ');
            } else {
                let ch = char::from_u32(0x2800 + bits as u32).unwrap_or('?');
                if colour {
                    let _ = write!(out, "\x1b[{}m{ch}\x1b[0m", COLOURS[si % COLOURS.len()]);
                } else {
                    out.push(ch);
                }
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{:>10} └{}", "", "─".repeat(width));
    let (a, b) = (fmt_ts(start), fmt_ts(end));
    let _ = writeln!(out, "{:>12}{a}{:>pad$}", "", b, pad = width.saturating_sub(a.len()));
    for (si, (name, _)) in series.iter().enumerate() {
        if colour {
            let _ = writeln!(out, "  \x1b[{}m●\x1b[0m {name}", COLOURS[si % COLOURS.len()]);
        } else {
            let _ = writeln!(out, "  {} {name}", ["●", "○", "◆", "◇", "■", "□"][si % 6]);
        }
    }
}

/// The bit of a braille character for the dot at column `x` (0–1) and row `y` (0–3).
fn braille_bit(x: usize, y: usize) -> u8 {
    const BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
    BITS[x][y]
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Options of `tidewatch logs`.
pub struct LogsArgs {
    pub server: String,
    pub query: String,
    pub since: Duration,
    pub limit: usize,
    pub follow: bool,
    pub timeout: Duration,
}

/// Runs `tidewatch logs`: prints matching lines oldest first, one colour per stream; with
/// `--follow`, keeps polling for new lines until interrupted.
pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server, args.timeout);
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut palette: BTreeMap<String, u8> = BTreeMap::new();
    let now_ns = (now_secs() * 1e9) as i128;
    let mut start_ns = now_ns - args.since.as_nanos() as i128;
    // Lines already printed at the newest timestamp, so a poll that starts there skips them.
    let mut seen_at_start: Vec<(String, String)> = Vec::new();
    loop {
        let end_ns = (now_secs() * 1e9) as i128 + 1;
        let params = vec![
            ("query", args.query.clone()),
            ("start", start_ns.to_string()),
            ("end", end_ns.to_string()),
            ("limit", args.limit.to_string()),
            ("direction", "forward".to_string()),
        ];
        let data = client.get("/loki/api/v1/query_range", &params)?;
        if data["resultType"] != "streams" {
            bail!(
                "`tidewatch logs` prints log lines; {:?} is a metric query (use `tidewatch query` or the API)",
                args.query
            );
        }
        let mut lines: Vec<(i128, String, String)> = Vec::new();
        for stream in data["result"].as_array().into_iter().flatten() {
            let name = series_name(&stream["stream"]);
            for v in stream["values"].as_array().into_iter().flatten() {
                let ts: i128 = v[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
                lines.push((ts, name.clone(), v[1].as_str().unwrap_or("").to_string()));
            }
        }
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let mut stdout = std::io::stdout().lock();
        let newest = lines.last().map(|l| l.0);
        let mut at_newest = Vec::new();
        for (ts, stream, line) in lines {
            if ts == start_ns && seen_at_start.iter().any(|(s, l)| *s == stream && *l == line) {
                continue;
            }
            if Some(ts) == newest {
                at_newest.push((stream.clone(), line.clone()));
            }
            let when = fmt_ts(ts as f64 / 1e9);
            if colour {
                let next = palette.len();
                let c = *palette.entry(stream.clone()).or_insert(COLOURS[next % COLOURS.len()]);
                writeln!(stdout, "\x1b[2m{when}\x1b[0m \x1b[{c}m{stream}\x1b[0m {line}")?;
            } else {
                writeln!(stdout, "{when} {stream} {line}")?;
            }
        }
        stdout.flush()?;
        if !args.follow {
            return Ok(());
        }
        if let Some(ts) = newest {
            if ts != start_ns {
                seen_at_start.clear();
            }
            seen_at_start.extend(at_newest);
            start_ns = ts;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_every_series_inside_its_frame() {
        let data = serde_json::json!({"resultType": "matrix", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "values": [[0, "0"], [50, "5"], [100, "10"]]},
            {"metric": {"job": "b"}, "values": [[0, "10"], [100, "0"]]},
        ]});
        let mut out = String::new();
        render_chart(&data, 0.0, 100.0, 40, 8, &mut out);
        let rows: Vec<&str> = out.lines().collect();
        assert!(rows[0].starts_with("        10 ┤"), "{out}");
        assert!(rows[7].starts_with("         0 ┤"), "{out}");
        // Both diagonals reach both corners.
        assert_ne!(rows[0].chars().nth(12), Some(' '), "{out}");
        assert_ne!(rows[0].chars().last(), Some(' '), "{out}");
        assert!(out.contains("up{job=\"a\"}") && out.contains("{job=\"b\"}"), "{out}");
    }

    #[test]
    fn silence_matchers_parse_in_all_four_forms() {
        let m = |t: &str| parse_matcher(t).unwrap();
        assert_eq!(m("alertname=Down")["isEqual"], true);
        assert_eq!(m("job!=api")["isEqual"], false);
        let re = m(r#"instance=~"web-.*""#);
        assert_eq!(
            (re["isRegex"].as_bool(), re["value"].as_str()),
            (Some(true), Some("web-.*"))
        );
        assert_eq!(m("a!~b=c")["value"], "b=c");
        assert!(parse_matcher("novalue").is_err());
        assert!(parse_matcher("1x=y").is_err());
    }

    #[test]
    fn instant_tables_name_series_as_prometheus_prints_them() {
        let data = serde_json::json!({"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "value": [1, "1"]},
        ]});
        let mut out = String::new();
        render_instant_table(&data, &mut out);
        assert!(out.contains("up{job=\"a\"}  1"), "{out}");
    }
}
