//! `tidewatch services`, `tidewatch scale SERVICE N` and `tidewatch events`: each calls the
//! server's API at `base_url` (e.g. `http://127.0.0.1:9700`) and prints a table to `out`.

use std::io::Write;

use serde_json::Value;

/// A command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server could not be reached or answered with an error.
    #[error("{url}: {message}")]
    Http {
        /// The request.
        url: String,
        /// Why.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("{url}: unexpected answer: {message}")]
    Answer {
        /// The request.
        url: String,
        /// Why.
        message: String,
    },
    /// Writing the table failed.
    #[error("cannot print: {0}")]
    Io(#[from] std::io::Error),
}

/// Answers larger than this are refused.
const MAX_BODY: u64 = 16 << 20;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

fn read(url: &str, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, CliError> {
    let mut response = response.map_err(|e| CliError::Http {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| CliError::Http {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| CliError::Answer {
        url: url.to_string(),
        message: format!("{e} (HTTP {status})"),
    })?;
    if !status.is_success() {
        let message = value["error"].as_str().unwrap_or("error").to_string();
        return Err(CliError::Http {
            url: url.to_string(),
            message: format!("HTTP {status}: {message}"),
        });
    }
    Ok(value["data"].clone())
}

fn get(url: &str) -> Result<Value, CliError> {
    read(url, agent().get(url).call())
}

/// Prints the services: name, backend, desired, running, ready, rolling, endpoints, image.
pub fn services(base_url: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let url = format!("{}/api/v1/services", base_url.trim_end_matches('/'));
    let data = get(&url)?;
    let services = data.as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "{:<24} {:<7} {:>7} {:>7} {:>5} {:<8} {:<22} IMAGE",
        "SERVICE", "BACKEND", "DESIRED", "RUNNING", "READY", "ROLLING", "ENDPOINTS"
    )?;
    for s in services {
        let endpoints: Vec<String> = s["endpoints"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{}->{}", e["port"], e["container_port"]))
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<7} {:>7} {:>7} {:>5} {:<8} {:<22} {}",
            s["name"].as_str().unwrap_or(""),
            s["backend"].as_str().unwrap_or(""),
            s["desired"],
            s["running"],
            s["ready"],
            if s["rolling"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            if endpoints.is_empty() {
                "-".to_string()
            } else {
                endpoints.join(",")
            },
            s["image"].as_str().unwrap_or(""),
        )?;
    }
    Ok(())
}

/// Sets a service's desired count and prints what was accepted.
pub fn scale(base_url: &str, service: &str, replicas: u32, out: &mut dyn Write) -> Result<(), CliError> {
    let url = format!("{}/api/v1/services/{service}/scale", base_url.trim_end_matches('/'));
    let body = serde_json::json!({ "replicas": replicas }).to_string();
    let data = read(
        &url,
        agent()
            .post(&url)
            .header("content-type", "application/json")
            .send(body.as_str()),
    )?;
    writeln!(out, "{service} scaled to {}", data["replicas"])?;
    Ok(())
}

/// Prints recent events (of one service when given), oldest first.
pub fn events(base_url: &str, service: Option<&str>, out: &mut dyn Write) -> Result<(), CliError> {
    let mut url = format!("{}/api/v1/events?limit=100", base_url.trim_end_matches('/'));
    if let Some(s) = service {
        url.push_str("&service=");
        url.push_str(&s.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', ""));
    }
    let data = get(&url)?;
    writeln!(
        out,
        "{:<24} {:<20} {:<17} {:>7} MESSAGE",
        "TIME", "SERVICE", "EVENT", "REPLICA"
    )?;
    for e in data.as_array().cloned().unwrap_or_default() {
        let ms = e["time_ms"].as_i64().unwrap_or(0).max(0) as u64;
        let time = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        writeln!(
            out,
            "{:<24} {:<20} {:<17} {:>7} {}",
            time.to_string(),
            e["service"].as_str().unwrap_or(""),
            e["kind"].as_str().unwrap_or(""),
            e["replica"].as_u64().map_or("-".into(), |r| r.to_string()),
            e["message"].as_str().unwrap_or(""),
        )?;
    }
    Ok(())
}
