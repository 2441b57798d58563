//! The log store end to end on the real loghub logs: push through the Loki API, query every
//! form, and compare with a plain evaluation over the raw files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use serde_json::{Value, json};
use tidewatch_store::logs::{EntryAdapter, LogStore, PushRequest, StreamAdapter, Timestamp, routes};

mod common;
use common::*;

/// Base time: an hour ago, so every line is inside the default query window.
fn base_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    (now - 3_600_000_000_000) / 1_000_000_000 * 1_000_000_000
}

async fn push_json(app: &axum::Router, job: &str, base: i64, lines: &[String], header: Option<&str>) -> StatusCode {
    let values: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!([ts(base, i).to_string(), l]))
        .collect();
    let body = json!({"streams": [{"stream": {"job": job, "source": "loghub"}, "values": values}]});
    let mut req = Request::post("/loki/api/v1/push").header("content-type", "application/json");
    if let Some(h) = header {
        req = req.header("Tidewatch-Batch", h);
    }
    call(app, req.body(Body::from(body.to_string())).unwrap()).await.0
}

async fn push_proto(app: &axum::Router, job: &str, base: i64, lines: &[String]) -> StatusCode {
    let req = PushRequest {
        streams: vec![StreamAdapter {
            labels: format!("{{job=\"{job}\", source=\"loghub\"}}"),
            entries: lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let t = ts(base, i);
                    EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: t / 1_000_000_000,
                            nanos: (t % 1_000_000_000) as i32,
                        }),
                        line: l.clone(),
                    }
                })
                .collect(),
            hash: 0,
        }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    let req = Request::post("/loki/api/v1/push")
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(Body::from(body))
        .unwrap();
    call(app, req).await.0
}

async fn wait_count(app: &axum::Router, q: &str, at: i64, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: f64 = instant(app, q, at).await.values().sum();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{q}: {got} lines searchable, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loghub_push_and_every_query_form_match_the_raw_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(dir.path(), config(), &mut reg).unwrap());
    let app = routes(store.clone());
    let base = base_ns();
    let data: HashMap<&str, Vec<String>> = FILES.iter().map(|f| (*f, lines(f))).collect();
    for (i, f) in FILES.iter().enumerate() {
        let status = if i % 2 == 0 {
            push_json(&app, f, base, &data[f], None).await
        } else {
            push_proto(&app, f, base, &data[f]).await
        };
        assert_eq!(status, StatusCode::NO_CONTENT, "{f}");
    }
    let total: usize = data.values().map(Vec::len).sum();
    let at = base + 3_000_000_000; // every line is at most 2 s after base
    let started = Instant::now();
    wait_count(&app, r#"sum(count_over_time({source="loghub"}[1h]))"#, at, total as f64).await;
    eprintln!(
        "all {total} lines searchable {:?} after the last ack",
        started.elapsed()
    );

    // count by job = lines per file
    let by_job = instant(&app, r#"sum by (job) (count_over_time({source="loghub"}[1h]))"#, at).await;
    for f in FILES {
        assert_eq!(by_job[&format!("job={f}")], data[f].len() as f64, "{f}");
    }
    // |= with whole tokens, partial tokens and punctuation
    for (job, needle) in [
        ("HDFS", "blk_"),
        ("HDFS", "10.251.73.220"),
        ("OpenSSH", "Invalid user"),
        ("OpenSSH", "173.234.31.186"),
        ("OpenStack", "req-38101a0b-2096-447d-96ea-a692162415ae"),
        ("Linux", "rhost=218.188.2.4"),
        ("Zookeeper", "ection"),
        ("Apache", "[error]"),
        ("Spark", "/"),
    ] {
        let want = data[job].iter().filter(|l| l.contains(needle)).count() as f64;
        let q = format!(
            "count_over_time({{job=\"{job}\"}} |= {}[1h])",
            serde_json::to_string(needle).unwrap()
        );
        let got: f64 = instant(&app, &q, at).await.values().sum();
        assert_eq!(got, want, "{q}");
        // and the lines themselves, through query_range
        let v = get(
            &app,
            "/loki/api/v1/query_range",
            &[
                ("query", &q[16..q.len() - 5].replace("[1h", "")),
                ("start", &base.to_string()),
                ("end", &at.to_string()),
                ("limit", "5000"),
            ],
        )
        .await;
        assert_eq!(v["data"]["resultType"], "streams");
        let mut want_lines: Vec<(i64, String)> = data[job]
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, l)| (ts(base, i), l.clone()))
            .collect();
        want_lines.sort();
        assert_eq!(stream_lines(&v), want_lines, "{q}");
    }
    // chained filters, regex filters and negations across all streams
    let q = r#"{source="loghub"} |= "error" != "parity" |~ "[0-9]{3}" !~ "(?i)warn""#;
    let re = regex::Regex::new("[0-9]{3}").unwrap();
    let warn = regex::Regex::new("(?i)warn").unwrap();
    let want: usize = data
        .values()
        .flatten()
        .filter(|l| l.contains("error") && !l.contains("parity") && re.is_match(l) && !warn.is_match(l))
        .count();
    let v = get(
        &app,
        "/loki/api/v1/query_range",
        &[
            ("query", q),
            ("start", &base.to_string()),
            ("end", &at.to_string()),
            ("limit", "5000"),
        ],
    )
    .await;
    assert_eq!(stream_lines(&v).len(), want, "{q}");
    // stream selectors: != and regex matchers
    let q = r#"sum(count_over_time({source="loghub", job=~"H.*", job!="Hadoop", job!~"X|Y"}[1h]))"#;
    assert_eq!(
        instant(&app, q, at).await.values().sum::<f64>(),
        data["HDFS"].len() as f64
    );
    // direction and limit: the newest 7 and the oldest 7 of a stream
    for (dir, want) in [
        ("backward", data["Spark"][1993..].to_vec()),
        ("forward", data["Spark"][..7].to_vec()),
    ] {
        let v = get(
            &app,
            "/loki/api/v1/query_range",
            &[
                ("query", r#"{job="Spark"}"#),
                ("start", &base.to_string()),
                ("end", &at.to_string()),
                ("limit", "7"),
                ("direction", dir),
            ],
        )
        .await;
        let got: Vec<String> = v["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[1].as_str().unwrap().to_string())
            .collect();
        let mut want = want.clone();
        if dir == "backward" {
            want.reverse();
        }
        assert_eq!(got, want, "{dir}");
    }
    // pattern parser + label filter + sum by
    let q = r#"sum by (level) (count_over_time({job="Apache"} | pattern "[<_>] [<level>] <_>" [1h]))"#;
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for l in &data["Apache"] {
        if let Some(level) = l.split("] [").nth(1).and_then(|r| r.split(']').next()) {
            *want.entry(format!("level={level}")).or_default() += 1.0;
        }
    }
    assert_eq!(instant(&app, q, at).await, want, "{q}");
    // regexp parser + topk
    let q = r#"topk(3, sum by (user) (count_over_time({job="OpenSSH"} | regexp "Invalid user (?P<user>\\S+) from" | user != "" [1h])))"#;
    let ure = regex::Regex::new(r"Invalid user (\S+) from").unwrap();
    let mut counts: HashMap<String, f64> = HashMap::new();
    for l in &data["OpenSSH"] {
        if let Some(c) = ure.captures(l) {
            *counts.entry(c[1].to_string()).or_default() += 1.0;
        }
    }
    let got = instant(&app, q, at).await;
    let mut want: Vec<f64> = counts.values().copied().collect();
    want.sort_by(|a, b| b.total_cmp(a));
    let mut got_vals: Vec<f64> = got.values().copied().collect();
    got_vals.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(got_vals, want[..3].to_vec(), "{q}");
    for (k, v) in &got {
        assert_eq!(counts[k.trim_start_matches("user=")], *v);
    }
    // unwrap: sum/max/avg/quantile of HDFS block sizes
    let size_re = regex::Regex::new(r"size (\d+)").unwrap();
    let sizes: Vec<f64> = data["HDFS"]
        .iter()
        .filter_map(|l| size_re.captures(l))
        .map(|c| c[1].parse().unwrap())
        .collect();
    let unwrap = r#"{job="HDFS"} | regexp "size (?P<size>\\d+)" | unwrap size [1h]"#;
    let sum = instant(&app, &format!("sum_over_time({unwrap})"), at).await;
    assert_eq!(sum.values().sum::<f64>(), sizes.iter().sum::<f64>());
    let max = instant(&app, &format!("max_over_time({unwrap})"), at).await;
    assert_eq!(
        max.values().copied().fold(0.0, f64::max),
        sizes.iter().copied().fold(0.0, f64::max)
    );
    let avg = instant(&app, &format!("sum(avg_over_time({unwrap}))"), at).await;
    assert!((avg.values().sum::<f64>() - sizes.iter().sum::<f64>() / sizes.len() as f64).abs() < 1e-6);
    let q99 = instant(&app, &format!("quantile_over_time(0.5, {unwrap}) by (job)"), at).await;
    assert_eq!(q99.len(), 1);
    // bytes_over_time, rate
    let bytes = instant(&app, r#"bytes_over_time({job="BGL"}[1h])"#, at).await;
    assert_eq!(
        bytes.values().sum::<f64>(),
        data["BGL"].iter().map(|l| l.len() as f64).sum::<f64>()
    );
    let rate = instant(&app, r#"sum(rate({job="BGL"}[1h]))"#, at).await;
    assert!((rate.values().sum::<f64>() - data["BGL"].len() as f64 / 3600.0).abs() < 1e-9);
    // absent_over_time
    let absent = instant(&app, r#"absent_over_time({job="nope"}[1h])"#, at).await;
    assert_eq!(absent.get("job=nope"), Some(&1.0));
    assert!(
        instant(&app, r#"absent_over_time({job="HDFS"}[1h])"#, at)
            .await
            .is_empty()
    );
    // offset: an hour earlier there was nothing
    assert!(
        instant(&app, r#"count_over_time({job="HDFS"}[1h] offset 2h)"#, at)
            .await
            .is_empty()
    );
    // line_format, label_format, drop, keep through a log query
    let q = r#"{job="Linux"} |= "authentication failure" | logfmt | label_format host=rhost | keep job, host | line_format "{{.host}}""#;
    let v = get(
        &app,
        "/loki/api/v1/query_range",
        &[
            ("query", q),
            ("start", &base.to_string()),
            ("end", &at.to_string()),
            ("limit", "5000"),
        ],
    )
    .await;
    let want: usize = data["Linux"]
        .iter()
        .filter(|l| l.contains("authentication failure"))
        .count();
    let got: usize = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["stream"].as_object().unwrap();
            assert!(labels.keys().all(|k| k == "job" || k == "host"), "{labels:?}");
            for e in s["values"].as_array().unwrap() {
                assert_eq!(
                    e[1].as_str().unwrap(),
                    labels.get("host").and_then(|h| h.as_str()).unwrap_or("")
                );
            }
            s["values"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(got, want);
    // query_range matrix: count per 1 s step sums to the file
    let v = get(
        &app,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"sum(count_over_time({job="Hadoop"}[1s]))"#),
            ("start", &(base + 1_000_000_000).to_string()),
            ("end", &(base + 2_000_000_000).to_string()),
            ("step", "1s"),
        ],
    )
    .await;
    assert_eq!(v["data"]["resultType"], "matrix");
    let steps: f64 = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(
        steps,
        data["Hadoop"].len() as f64 - 1.0,
        "the line at exactly base is outside (base, base+1s]"
    );
    // labels, values, series, stats
    let v = get(&app, "/loki/api/v1/labels", &[]).await;
    assert_eq!(v["data"], json!(["job", "source"]));
    let v = get(&app, "/loki/api/v1/label/job/values", &[]).await;
    assert_eq!(v["data"].as_array().unwrap().len(), FILES.len());
    let v = get(&app, "/loki/api/v1/series", &[("match[]", r#"{job=~"Open.*"}"#)]).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let v = get(&app, "/loki/api/v1/index/stats", &[("query", r#"{job="Android"}"#)]).await;
    assert_eq!(v["entries"], data["Android"].len());
    assert_eq!(v["bytes"], data["Android"].iter().map(|l| l.len()).sum::<usize>());
    // bad input: 400 naming the problem
    let (status, body) = call(
        &app,
        Request::get("/loki/api/v1/query_range?query=%7Bjob%3D%22a%22")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("parse error"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let bad = json!({"streams": [{"stream": {"0bad": "x"}, "values": [["1", "x"]]}]});
    let (status, body) = call(
        &app,
        Request::post("/loki/api/v1/push")
            .header("content-type", "application/json")
            .body(Body::from(bad.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("streams[0]"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_marks_drop_resent_lines_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_ns();
    let lines = lines("OpenSSH");
    let q = r#"count_over_time({job="ssh"}[1h])"#;
    let at = base + 3_000_000_000;
    {
        let mut reg = prometheus_client::registry::Registry::default();
        let store = Arc::new(LogStore::open(dir.path(), config(), &mut reg).unwrap());
        let app = routes(store.clone());
        assert_eq!(
            push_json(&app, "ssh", base, &lines[..1000], Some("agent/ssh=1-1000")).await,
            StatusCode::NO_CONTENT
        );
        // a re-send overlapping the mark: only 1001..=1500 are new
        assert_eq!(
            push_json(&app, "ssh", base, &lines[500..1500], Some("agent/ssh=501-1500")).await,
            StatusCode::NO_CONTENT
        );
        wait_count(&app, q, at, 1500.0).await;
        assert_eq!(store.mark("agent/ssh"), 1500);
        // drop without close: the Drop impl closes; what matters is the marks come back
    }
    let mut reg = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(dir.path(), config(), &mut reg).unwrap());
    assert_eq!(store.mark("agent/ssh"), 1500);
    let app = routes(store.clone());
    assert_eq!(
        push_json(&app, "ssh", base, &lines[..1000], Some("agent/ssh=1-1000")).await,
        StatusCode::NO_CONTENT
    );
    wait_count(&app, q, at, 1500.0).await;
    store.close();
}

/// The child half of the kill test: pushes batches forever, printing each acknowledged range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_child_pushes_until_killed() {
    let Ok(dir) = std::env::var("TIDEWATCH_LOGS_KILL_DIR") else {
        return;
    };
    let mut reg = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(Path::new(&dir), config(), &mut reg).unwrap());
    let app = routes(store.clone());
    let base: i64 = std::env::var("TIDEWATCH_LOGS_KILL_BASE").unwrap().parse().unwrap();
    let lines = lines("HDFS");
    for b in 0..1000usize {
        let chunk: Vec<String> = (0..100).map(|i| lines[(b * 100 + i) % lines.len()].clone()).collect();
        let first = b * 100 + 1;
        let header = format!("hdfs={first}-{}", first + 99);
        let values: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| json!([ts(base, b * 100 + i).to_string(), l]))
            .collect();
        let body = json!({"streams": [{"stream": {"job": "kill"}, "values": values}]});
        let req = Request::post("/loki/api/v1/push")
            .header("content-type", "application/json")
            .header("Tidewatch-Batch", header)
            .body(Body::from(body.to_string()))
            .unwrap();
        assert_eq!(call(&app, req).await.0, StatusCode::NO_CONTENT);
        println!("ACK {}", first + 99);
    }
}

#[test]
fn kill_9_during_ingest_loses_no_acknowledged_line_and_duplicates_none() {
    if std::env::var("TIDEWATCH_LOGS_KILL_DIR").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = base_ns();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child_pushes_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TIDEWATCH_LOGS_KILL_DIR", dir.path())
        .env("TIDEWATCH_LOGS_KILL_BASE", base.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut acked = 0u64;
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if let Some(n) = line.trim().strip_prefix("ACK ") {
            acked = n.parse().unwrap();
            if acked >= 30_000 {
                break;
            }
        }
        line.clear();
    }
    unsafe { libc_kill(child.id() as i32) };
    let _ = child.wait();
    assert!(acked >= 100, "the child acknowledged nothing");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut reg = prometheus_client::registry::Registry::default();
        let store = Arc::new(LogStore::open(dir.path(), config(), &mut reg).unwrap());
        let mark = store.mark("hdfs");
        assert!(mark >= acked, "mark {mark} < acknowledged {acked}");
        let app = routes(store.clone());
        let at = base + 200_000_000_000;
        // every line up to the mark is there exactly once (one line per ms, distinct timestamps)
        wait_count(&app, r#"count_over_time({job="kill"}[1h])"#, at, mark as f64).await;
        // a resend of everything acknowledged adds nothing
        let lines = lines("HDFS");
        let values: Vec<Value> = (0..100).map(|i| json!([ts(base, i).to_string(), lines[i]])).collect();
        let body = json!({"streams": [{"stream": {"job": "kill"}, "values": values}]});
        let req = Request::post("/loki/api/v1/push")
            .header("content-type", "application/json")
            .header("Tidewatch-Batch", "hdfs=1-100")
            .body(Body::from(body.to_string()))
            .unwrap();
        assert_eq!(call(&app, req).await.0, StatusCode::NO_CONTENT);
        tokio::time::sleep(Duration::from_millis(500)).await;
        wait_count(&app, r#"count_over_time({job="kill"}[1h])"#, at, mark as f64).await;
        eprintln!("acknowledged {acked}, recovered {mark}");
        store.close();
    });
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill_raw(pid: i32, sig: i32) -> i32;
}

unsafe fn libc_kill(pid: i32) {
    unsafe { libc_kill_raw(pid, 9) };
}
