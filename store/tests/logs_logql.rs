//! LogQL beyond the basics, on the real loghub logs pushed through the Loki API and checked
//! against a plain evaluation over the raw files: line filters with `or`, `line_format`
//! template functions, and binary operations between metric queries and with scalars
//! (arithmetic, comparisons with and without `bool`, `and`/`or`/`unless`, vector matching).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tidewatch_store::logs::{LogStore, routes};

mod common;
use common::*;

async fn range_lines(app: &axum::Router, q: &str, base: i64, at: i64) -> Vec<(i64, String)> {
    let v = get(
        app,
        "/loki/api/v1/query_range",
        &[
            ("query", q),
            ("start", &base.to_string()),
            ("end", &at.to_string()),
            ("limit", "5000"),
        ],
    )
    .await;
    assert_eq!(v["data"]["resultType"], "streams", "{q}");
    stream_lines(&v)
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn or_filters_template_functions_and_binary_operations_match_the_raw_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(dir.path(), config(), &mut reg).unwrap());
    let app = routes(store.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let base = (now - 3_600_000_000_000) / 1_000_000_000 * 1_000_000_000;
    let data: HashMap<&str, Vec<String>> = FILES.iter().map(|f| (*f, lines(f))).collect();
    for f in FILES {
        let values: Vec<Value> = data[f]
            .iter()
            .enumerate()
            .map(|(i, l)| json!([ts(base, i).to_string(), l]))
            .collect();
        let body = json!({"streams": [{"stream": {"job": f, "source": "loghub"}, "values": values}]});
        let req = Request::post("/loki/api/v1/push")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        assert_eq!(call(&app, req).await.0, StatusCode::NO_CONTENT, "{f}");
    }
    let total: usize = data.values().map(Vec::len).sum();
    let at = base + 3_000_000_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: f64 = instant(&app, r#"sum(count_over_time({source="loghub"}[1h]))"#, at)
            .await
            .values()
            .sum();
        if got == total as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "{got} of {total} lines searchable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = |f: &str, pred: &dyn Fn(&str) -> bool| data[f].iter().filter(|l| pred(l)).count() as f64;

    // Line filters with `or`.
    let want = |f: &str, pred: &dyn Fn(&str) -> bool| -> Vec<(i64, String)> {
        data[f]
            .iter()
            .enumerate()
            .filter(|(_, l)| pred(l))
            .map(|(i, l)| (ts(base, i), l.clone()))
            .collect()
    };
    let q = r#"{job="OpenSSH"} |= "Invalid user" or "Failed password""#;
    assert_eq!(
        range_lines(&app, q, base, at).await,
        want("OpenSSH", &|l| l.contains("Invalid user")
            || l.contains("Failed password")),
        "{q}"
    );
    let q = r#"{job="Apache"} != "error" or "notice""#;
    assert_eq!(
        range_lines(&app, q, base, at).await,
        want("Apache", &|l| !l.contains("error") && !l.contains("notice")),
        "{q}"
    );
    let q = r#"{job="Zookeeper"} |~ "WARN +\[" or "ERROR +\[" |= "ection" or "eader""#;
    let (w, e) = (
        regex::Regex::new(r"WARN +\[").unwrap(),
        regex::Regex::new(r"ERROR +\[").unwrap(),
    );
    assert_eq!(
        range_lines(&app, q, base, at).await,
        want("Zookeeper", &|l| (w.is_match(l) || e.is_match(l))
            && (l.contains("ection") || l.contains("eader"))),
        "{q}"
    );
    let q = r#"sum(count_over_time({source="loghub"} |= "error" or "ERROR" or "Failed" [1h]))"#;
    let want_n: f64 = FILES
        .iter()
        .map(|f| {
            count(f, &|l| {
                l.contains("error") || l.contains("ERROR") || l.contains("Failed")
            })
        })
        .sum();
    assert_eq!(instant(&app, q, at).await[""], want_n, "{q}");

    // line_format with template functions, after a regexp parser.
    let q = r#"{job="OpenSSH"} |= "Failed password" | regexp "sshd\\[(?P<pid>\\d+)\\]: (?P<msg>.*)" | line_format "{{ .pid }}|{{ .msg | ToLower | trunc 20 }}|{{ Replace .msg \"Failed\" \"F\" 1 }}|{{ TrimSpace \"  x \" }}|{{ .msg | replace \"password\" \"pw\" | ToUpper }}|{{ TrimPrefix .msg \"Failed \" }}""#;
    let re = regex::Regex::new(r"sshd\[(?P<pid>\d+)\]: (?P<msg>.*)").unwrap();
    let want_fmt: Vec<(i64, String)> = data["OpenSSH"]
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("Failed password"))
        .map(|(i, l)| {
            let c = re.captures(l).unwrap();
            let (pid, msg) = (&c["pid"], &c["msg"]);
            let lower: String = msg.to_lowercase().chars().take(20).collect();
            let line = format!(
                "{pid}|{lower}|{}|x|{}|{}",
                msg.replacen("Failed", "F", 1),
                msg.replace("password", "pw").to_uppercase(),
                msg.strip_prefix("Failed ").unwrap_or(msg)
            );
            (ts(base, i), line)
        })
        .collect();
    assert!(!want_fmt.is_empty());
    assert_eq!(range_lines(&app, q, base, at).await, want_fmt, "{q}");

    // Binary operations. Per job counts from the raw files:
    let errors: BTreeMap<&str, f64> = FILES
        .iter()
        .map(|f| (*f, count(f, &|l| l.contains("error"))))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    let upper: BTreeMap<&str, f64> = FILES
        .iter()
        .map(|f| (*f, count(f, &|l| l.contains("ERROR"))))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    let key = |f: &str| format!("job={f}");
    let e_by_job = r#"sum by (job) (count_over_time({source="loghub"} |= "error" [1h]))"#;
    let u_by_job = r#"sum by (job) (count_over_time({source="loghub"} |= "ERROR" [1h]))"#;

    // vector / vector (one-to-one, no labels)
    let q = r#"sum(count_over_time({job="OpenSSH"} |= "Failed password" [1h])) / sum(count_over_time({job="OpenSSH"}[1h]))"#;
    let got = instant(&app, q, at).await;
    let want_ratio = count("OpenSSH", &|l| l.contains("Failed password")) / data["OpenSSH"].len() as f64;
    assert!(approx(got[""], want_ratio), "{q}: {got:?} want {want_ratio}");
    // comparison with a scalar filters; with bool it answers 0 or 1
    let got = instant(&app, &format!("{e_by_job} > 100"), at).await;
    let want_gt: BTreeMap<String, f64> = errors
        .iter()
        .filter(|(_, n)| **n > 100.0)
        .map(|(f, n)| (key(f), *n))
        .collect();
    assert_eq!(got, want_gt, "> 100");
    let got = instant(&app, &format!("{e_by_job} > bool 100"), at).await;
    let want_bool: BTreeMap<String, f64> = errors
        .iter()
        .map(|(f, n)| (key(f), if *n > 100.0 { 1.0 } else { 0.0 }))
        .collect();
    assert_eq!(got, want_bool, "> bool 100");
    let got = instant(&app, &format!("100 < {e_by_job}"), at).await;
    assert_eq!(got, want_gt, "scalar on the left keeps the vector's value");
    // arithmetic with scalars, precedence
    let q = r#"count_over_time({source="loghub"}[1h]) * 2 - 1"#;
    let got = instant(&app, q, at).await;
    for f in FILES {
        assert_eq!(
            got[&format!("job={f},source=loghub")],
            data[f].len() as f64 * 2.0 - 1.0,
            "{q}"
        );
    }
    assert_eq!(instant(&app, "2 + 3 * 2 ^ 2", at).await[""], 14.0);
    // vector matching: on (job) keeps only job
    let q = r#"count_over_time({source="loghub"} |= "error" [1h]) / on (job) count_over_time({source="loghub"}[1h])"#;
    let got = instant(&app, q, at).await;
    let want_on: BTreeMap<String, f64> = errors.iter().map(|(f, n)| (key(f), n / data[f].len() as f64)).collect();
    assert_eq!(got.len(), want_on.len(), "{q}: {got:?}");
    for (k, v) in &want_on {
        assert!(approx(got[k], *v), "{q}: {k}");
    }
    // ignoring (source) keeps the rest
    let q = r#"count_over_time({source="loghub"} |= "ERROR" [1h]) + ignoring (source) count_over_time({source="loghub"} |= "error" [1h])"#;
    let got = instant(&app, q, at).await;
    let want_ign: BTreeMap<String, f64> = upper
        .iter()
        .filter(|(f, _)| errors.contains_key(*f))
        .map(|(f, n)| (key(f), n + errors[f]))
        .collect();
    assert_eq!(got, want_ign, "{q}");
    // group_left: each job's share of all error lines
    let q = format!(r#"{e_by_job} / on () group_left sum(count_over_time({{source="loghub"}} |= "error" [1h]))"#);
    let got = instant(&app, &q, at).await;
    let all: f64 = errors.values().sum();
    assert_eq!(got.len(), errors.len(), "{q}");
    for (f, n) in &errors {
        assert!(approx(got[&key(f)], n / all), "{q}: {f}");
    }
    // and, or, unless
    let got = instant(&app, &format!("{e_by_job} and {u_by_job}"), at).await;
    let want_and: BTreeMap<String, f64> = errors
        .iter()
        .filter(|(f, _)| upper.contains_key(*f))
        .map(|(f, n)| (key(f), *n))
        .collect();
    assert_eq!(got, want_and, "and");
    let got = instant(&app, &format!("{e_by_job} unless {u_by_job}"), at).await;
    let want_unless: BTreeMap<String, f64> = errors
        .iter()
        .filter(|(f, _)| !upper.contains_key(*f))
        .map(|(f, n)| (key(f), *n))
        .collect();
    assert_eq!(got, want_unless, "unless");
    let got = instant(&app, &format!("{e_by_job} or {u_by_job}"), at).await;
    let mut want_or: BTreeMap<String, f64> = upper.iter().map(|(f, n)| (key(f), *n)).collect();
    want_or.extend(errors.iter().map(|(f, n)| (key(f), *n)));
    assert_eq!(got, want_or, "or");
    // and the range form: one sample per step
    let v = get(
        &app,
        "/loki/api/v1/query_range",
        &[
            ("query", &format!("{e_by_job} > bool 100")),
            ("start", &at.to_string()),
            ("end", &(at + 60_000_000_000).to_string()),
            ("step", "30"),
        ],
    )
    .await;
    assert_eq!(v["data"]["resultType"], "matrix");
    for s in v["data"]["result"].as_array().unwrap() {
        assert_eq!(s["values"].as_array().unwrap().len(), 3, "{s}");
    }
    // A substring inside a token too long to be indexed (over 100 bytes) is still found.
    let long = format!("key={}needle{} end", "a".repeat(70), "b".repeat(70));
    let body = json!({"streams": [{"stream": {"job": "long"}, "values": [[base.to_string(), long]]}]});
    let req = Request::post("/loki/api/v1/push")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(60);
    while range_lines(&app, r#"{job="long"}"#, base, at).await.is_empty() {
        assert!(Instant::now() < deadline, "the long line never became searchable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for q in [
        r#"{job="long"} |= "aneedleb""#,
        r#"{job="long"} |= "key=aaa""#,
        r#"{job="long"} |= "bbb end""#,
    ] {
        assert_eq!(range_lines(&app, q, base, at).await, vec![(base, long.clone())], "{q}");
    }
    assert!(
        range_lines(&app, r#"{job="long"} |= "aneedlec""#, base, at)
            .await
            .is_empty()
    );

    // many-to-many is an error naming the cause, not a panic or a wrong answer
    let (status, body) = get_raw(
        &app,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"count_over_time({source="loghub"}[1h]) / on () count_over_time({source="loghub"}[1h])"#,
            ),
            ("time", &at.to_string()),
        ],
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(
        body.contains("many-to-many") || body.contains("multiple matches"),
        "{body}"
    );
    store.close();
}

/// The `Query` interface (alert rules, the autoscaler) evaluates LogQL metric queries on a
/// blocking thread, so it works on a current-thread runtime too (`block_in_place` would panic).
#[tokio::test(flavor = "current_thread")]
async fn the_query_interface_works_on_a_current_thread_runtime() {
    use tidewatch_model::{Query, QueryOptions, QueryValue};
    let dir = tempfile::tempdir().unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(dir.path(), config(), &mut reg).unwrap());
    let ssh = lines("OpenSSH");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let base = (now - 600_000_000_000) / 1_000_000 * 1_000_000;
    let records = ssh
        .iter()
        .enumerate()
        .map(|(i, l)| tidewatch_model::LogRecord {
            timestamp_ns: ts(base, i),
            labels: tidewatch_model::Labels::from_pairs([("job", "ssh")]),
            line: l.clone(),
        })
        .collect();
    store.append(records, None).await.unwrap();
    let want = ssh.iter().filter(|l| l.contains("Failed password")).count() as f64;
    let at_ms = (base + 3_000_000_000) / 1_000_000;
    let q = r#"sum(count_over_time({job="ssh"} |= "Failed password" [1h]))"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = store.instant(q, at_ms, &QueryOptions::default()).await.unwrap();
        let QueryValue::Vector(v) = v else {
            panic!("{q}: not a vector")
        };
        if v.first().map(|s| s.sample.value) == Some(want) {
            break;
        }
        assert!(Instant::now() < deadline, "{q}: {v:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = store
        .range(q, at_ms - 1000, at_ms, 500, &QueryOptions::default())
        .await
        .unwrap();
    let QueryValue::Matrix(m) = m else {
        panic!("{q}: not a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].samples.len(), 3);
    assert!(m[0].samples.iter().all(|s| s.value == want), "{m:?}");
    // A log query through the metric interface is bad data, not a panic.
    let e = store
        .instant(r#"{job="ssh"}"#, at_ms, &QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, tidewatch_model::QueryErrorKind::BadData);
    store.close();
}
