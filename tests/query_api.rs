//! The Prometheus HTTP API as Grafana's Prometheus datasource calls it. Grafana cannot run here,
//! so this replays the requests it sends (health check, buildinfo, label and series lookups with
//! `match[]`, POST form queries) and checks the answers' shape and values. `promtool query`
//! (Debian's prometheus package), when installed, must work against Tidewatch too.

use std::time::Duration;

use serde_json::Value;
use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use tidewatch_testkit::TestServer;

use crate::READY_WITHIN;

const T0: i64 = 1_700_000_000_000;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Two jobs × two instances of a counter growing 10/s, one sample every 15 s for 30 minutes.
fn load(server: &TestServer) {
    let mut timeseries = Vec::new();
    for job in ["api", "db"] {
        for instance in ["a:9100", "b:9100"] {
            timeseries.push(TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "http_requests_total".into(),
                    },
                    Label {
                        name: "instance".into(),
                        value: instance.into(),
                    },
                    Label {
                        name: "job".into(),
                        value: job.into(),
                    },
                ],
                samples: (0..=120)
                    .map(|i| Sample {
                        value: i as f64 * 150.0,
                        timestamp: T0 + i * 15_000,
                    })
                    .collect(),
            });
        }
    }
    let body = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
    .to_snappy();
    let res = agent()
        .post(server.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .send(&body[..])
        .unwrap();
    assert_eq!(res.status(), 204);
}

fn json(res: (u16, String)) -> (u16, Value) {
    let v: Value = serde_json::from_str(&res.1).unwrap_or_else(|e| panic!("not JSON ({e}): {}", res.1));
    (res.0, v)
}

fn form(server: &TestServer, path: &str, body: &str) -> (u16, Value) {
    json(server.post(path, body, "application/x-www-form-urlencoded"))
}

#[test]
fn grafana_datasource_requests_get_prometheus_shaped_answers() {
    let server = TestServer::start(&["server"]);
    server.wait_ready(READY_WITHIN).unwrap();
    load(&server);
    let t = (T0 + 20 * 60_000) / 1000;

    // Health check: POST /api/v1/query with query=1+1.
    let (status, v) = form(&server, "/api/v1/query", &format!("query=1%2B1&time={t}"));
    assert_eq!(status, 200);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"][1], "2");
    assert_eq!(v["data"]["result"][0], t);

    let (status, v) = json(server.get("/api/v1/status/buildinfo"));
    assert_eq!(status, 200);
    assert!(v["data"]["version"].is_string());

    // Cardinality, as Prometheus' TSDB status page and Grafana's cardinality views read it.
    let (status, v) = json(server.get("/api/v1/status/tsdb"));
    assert_eq!(status, 200);
    assert_eq!(v["data"]["headStats"]["numSeries"], 4);
    assert_eq!(v["data"]["headStats"]["minTime"], T0);
    assert_eq!(
        v["data"]["seriesCountByMetricName"],
        serde_json::json!([{"name": "http_requests_total", "value": 4}])
    );
    assert_eq!(
        v["data"]["labelValueCountByLabelName"][0],
        serde_json::json!({"name": "instance", "value": 2})
    );

    // Label names and values, with and without match[].
    let (_, v) = json(server.get("/api/v1/labels"));
    assert_eq!(v["data"], serde_json::json!(["__name__", "instance", "job"]));
    let (_, v) = json(server.get("/api/v1/label/__name__/values"));
    assert_eq!(v["data"], serde_json::json!(["http_requests_total"]));
    let (_, v) = json(server.get("/api/v1/label/instance/values?match%5B%5D=http_requests_total%7Bjob%3D%22db%22%7D"));
    assert_eq!(v["data"], serde_json::json!(["a:9100", "b:9100"]));
    let (status, v) = json(server.get("/api/v1/label/bad-name/values"));
    assert_eq!((status, v["errorType"].as_str()), (400, Some("bad_data")));

    // Series lookup (POST form, as Grafana does for long selectors).
    let (_, v) = form(
        &server,
        "/api/v1/series",
        &format!("match%5B%5D=%7Bjob%3D%22api%22%7D&start={}&end={t}", T0 / 1000),
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["__name__"], "http_requests_total");
    let (status, v) = json(server.get("/api/v1/series"));
    assert_eq!((status, v["errorType"].as_str()), (400, Some("bad_data")));

    // An instant vector query.
    let (_, v) = form(
        &server,
        "/api/v1/query",
        &format!("query=sum+by+(job)+(rate(http_requests_total%5B5m%5D))&time={t}"),
    );
    assert_eq!(v["data"]["resultType"], "vector");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    for r in result {
        let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
        assert!((value - 20.0).abs() < 1e-9, "two instances at 10/s: {value}");
        assert!(r["metric"].get("__name__").is_none());
    }

    // A range query with Grafana's parameters.
    let body = format!(
        "query=http_requests_total%7Binstance%3D%22a%3A9100%22%7D&start={}&end={}&step=60",
        T0 / 1000,
        t
    );
    let (_, v) = form(&server, "/api/v1/query_range", &body);
    assert_eq!(v["data"]["resultType"], "matrix");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["values"].as_array().unwrap().len(), 21);
    assert_eq!(series[0]["values"][1], serde_json::json!([T0 / 1000 + 60, "600"]));

    // Errors use Prometheus' envelope and status codes.
    let (status, v) = form(&server, "/api/v1/query", "query=sum(");
    assert_eq!(
        (status, v["status"].as_str(), v["errorType"].as_str()),
        (400, Some("error"), Some("bad_data"))
    );
    let (status, v) = form(
        &server,
        "/api/v1/query_range",
        &format!("query=up&start={t}&end={}&step=15", t - 10),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("end timestamp must not be before start time")
    );
    let (status, _) = form(
        &server,
        "/api/v1/query_range",
        &format!("query=up&start=0&end={t}&step=1"),
    );
    assert_eq!(status, 400, "too many points per series");

    // Metadata and exemplars answer empty, as Grafana expects them to exist.
    assert_eq!(json(server.get("/api/v1/metadata")).1["data"], serde_json::json!({}));
    assert_eq!(
        json(server.get("/api/v1/query_exemplars?query=up&start=0&end=1")).1["data"],
        serde_json::json!([])
    );

    // promtool, the Prometheus project's own client.
    if let Ok(out) = std::process::Command::new("promtool")
        .args([
            "query",
            "instant",
            "--time",
            &t.to_string(),
            &server.url(""),
            "count(http_requests_total)",
        ])
        .output()
    {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "promtool: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("=> 4"), "promtool printed {stdout}");
    } else {
        eprintln!("promtool not installed: skipping the promtool check");
    }
}
