//! Scraping: the parser on Prometheus' own textparse cases, relabeling, and whole scrapes of
//! real HTTP servers (a tokio listener in the test, and Debian's node_exporter).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tidewatch_collector::ContainerInfo;
use tidewatch_collector::sources::scrape::{
    Format, RelabelConfig, Relabeler, ScrapeSection, ScrapeTargets, parse, relabel,
};
use tidewatch_model::{Labels, Series, is_stale_nan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn lset(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Cases from prometheus/model/textparse/promparse_test.go (TestPromParse).
#[test]
fn text_format_follows_prometheus_cases() {
    let input = "# HELP go_gc_duration_seconds A summary of the GC invocation durations.\n\
# \tTYPE go_gc_duration_seconds summary\n\
go_gc_duration_seconds{quantile=\"0\"} 4.9351e-05\n\
go_gc_duration_seconds{quantile=\"0.25\",} 7.424100000000001e-05\n\
go_gc_duration_seconds{quantile=\"0.5\",a=\"b\"} 8.3835e-05\n\
go_gc_duration_seconds{quantile=\"0.8\", a=\"b\"} 8.3835e-05\n\
go_gc_duration_seconds{ quantile=\"0.9\", a=\"b\"} 8.3835e-05\n\
# Hrandom comment starting with prefix of HELP\n\
#\n\
wind_speed{A=\"2\",c=\"3\"} 12345\n\
# comment with escaped \\n newline\n\
# HELP nohelp1\n\
go_gc_duration_seconds { quantile = \"1.0\", a = \"b\" } 8.3835e-05\n\
go_gc_duration_seconds { quantile = \"2.0\" a = \"b\" } 8.3835e-05\n\
go_gc_duration_seconds_count 99\n\
some:aggregate:rate5m{a_b=\"c\"}\t1\n\
# TYPE go_goroutines gauge\n\
go_goroutines 33  \t123123\n\
_metric_starting_with_underscore 1\n\
testmetric{_label_starting_with_underscore=\"foo\"} 1\n\
testmetric{label=\"\\\"bar\\\"\"} 1\n\
null_byte_metric{a=\"abc\x00\"} 1\n\
escapes{a=\"x\\\\y\\nz\",b=\"p,q=r}\"} 2\n";
    let got = parse(input, Format::Text).unwrap();
    let expect: Vec<(Labels, f64, Option<i64>)> = vec![
        (
            lset(&[("__name__", "go_gc_duration_seconds"), ("quantile", "0")]),
            4.9351e-05,
            None,
        ),
        (
            lset(&[("__name__", "go_gc_duration_seconds"), ("quantile", "0.25")]),
            7.424100000000001e-05,
            None,
        ),
        (
            lset(&[("__name__", "go_gc_duration_seconds"), ("quantile", "0.5"), ("a", "b")]),
            8.3835e-05,
            None,
        ),
        (
            lset(&[("__name__", "go_gc_duration_seconds"), ("quantile", "0.8"), ("a", "b")]),
            8.3835e-05,
            None,
        ),
        (
            lset(&[("__name__", "go_gc_duration_seconds"), ("quantile", "0.9"), ("a", "b")]),
            8.3835e-05,
            None,
        ),
        (
            lset(&[("A", "2"), ("__name__", "wind_speed"), ("c", "3")]),
            12345.0,
            None,
        ),
        (
            lset(&[("__name__", "go_gc_duration_seconds"), ("quantile", "1.0"), ("a", "b")]),
            8.3835e-05,
            None,
        ),
        (
            lset(&[("__name__", "go_gc_duration_seconds"), ("quantile", "2.0"), ("a", "b")]),
            8.3835e-05,
            None,
        ),
        (lset(&[("__name__", "go_gc_duration_seconds_count")]), 99.0, None),
        (lset(&[("__name__", "some:aggregate:rate5m"), ("a_b", "c")]), 1.0, None),
        (lset(&[("__name__", "go_goroutines")]), 33.0, Some(123123)),
        (lset(&[("__name__", "_metric_starting_with_underscore")]), 1.0, None),
        (
            lset(&[("__name__", "testmetric"), ("_label_starting_with_underscore", "foo")]),
            1.0,
            None,
        ),
        (lset(&[("__name__", "testmetric"), ("label", "\"bar\"")]), 1.0, None),
        (lset(&[("__name__", "null_byte_metric"), ("a", "abc\x00")]), 1.0, None),
        (
            lset(&[("__name__", "escapes"), ("a", "x\\y\nz"), ("b", "p,q=r}")]),
            2.0,
            None,
        ),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for (g, (l, v, t)) in got.iter().zip(expect) {
        assert_eq!(g.labels, l);
        assert_eq!(g.value, v);
        assert_eq!(g.timestamp_ms, t);
    }
    let specials = parse("a NaN\nb +Inf\nc -Inf\n", Format::Text).unwrap();
    assert!(specials[0].value.is_nan());
    assert_eq!(specials[1].value, f64::INFINITY);
    assert_eq!(specials[2].value, f64::NEG_INFINITY);
}

/// Error cases from TestPromParseErrors: every one fails the whole body, naming the line.
#[test]
fn text_format_rejects_what_prometheus_rejects() {
    for input in [
        "a",
        "a{b='c'} 1\n",
        "a{b=\n",
        "a{\u{ff}=\"foo\"} 1\n",
        "a true\n",
        "something_weird{problem=\"",
        "empty_label_name{=\"\"} 0",
        "foo 1_2\n",
        "foo 0x1p-3\n",
        "foo 0 1_2\n",
        "{a=\"ok\"} 1",
        "# TYPE #\n",
        "# HELP #\n",
        "a{b=\"c\",b=\"d\"} 1\n",
        "ok 1\nbad{ 2\n",
    ] {
        let err = parse(input, Format::Text).expect_err(input);
        assert!(err.line >= 1, "{input:?}: {err}");
    }
    assert_eq!(parse("ok 1\nbad{ 2\n", Format::Text).unwrap_err().line, 2);
    assert!(
        parse("foo 1_2\n", Format::Text)
            .unwrap_err()
            .message
            .contains("unsupported character in float")
    );
}

/// OpenMetrics: `# EOF` required and final, `_created` skipped, exemplars accepted and
/// dropped, float-second timestamps (openmetricsparse_test.go).
#[test]
fn openmetrics_follows_prometheus_cases() {
    let input = "# HELP foo Counter with exemplars.\n\
# TYPE foo counter\n\
foo_total 17.0 1520879607.789 # {id=\"counter-test\"} 5\n\
foo_created 1520872607.123\n\
# TYPE hh histogram\n\
hh_bucket{le=\"+Inf\"} 1 # {id=\"histogram-count-test\"} 4\n\
hh_created 1520872607.123\n\
# TYPE g gauge\n\
# UNIT g seconds\n\
g_created 3\n\
# EOF\n";
    let got = parse(input, Format::OpenMetrics).unwrap();
    let names: Vec<&str> = got.iter().map(|s| s.labels.metric_name().unwrap()).collect();
    assert_eq!(names, ["foo_total", "hh_bucket", "g_created"]);
    assert_eq!(got[0].timestamp_ms, Some(1_520_879_607_789));
    assert!(parse("a 1\n", Format::OpenMetrics).is_err(), "no # EOF");
    assert!(
        parse("a 1\n# EOF\nb 2\n", Format::OpenMetrics).is_err(),
        "data after # EOF"
    );
    assert!(
        parse("a 1 # {x=\"y\"} 1\n", Format::Text).is_err(),
        "exemplars are OpenMetrics only"
    );
    assert_eq!(
        Format::from_content_type(Some("application/openmetrics-text; version=1.0.0")),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type(Some("text/plain; version=0.0.4")),
        Format::Text
    );
}

fn steps(yaml: &str) -> Vec<Relabeler> {
    let configs: Vec<RelabelConfig> = yaml_serde::from_str(yaml).unwrap();
    Relabeler::compile_all(&configs).unwrap()
}

/// Relabel cases after prometheus/model/relabel/relabel_test.go.
#[test]
fn relabeling_follows_prometheus() {
    let input = lset(&[("a", "foo"), ("b", "bar"), ("c", "baz")]);
    let out = relabel(
        input.clone(),
        &steps("- {source_labels: [a], regex: 'f(.*)', target_label: d, separator: ';', replacement: 'ch${1}-ch${1}'}"),
    )
    .unwrap();
    assert_eq!(out.get("d"), Some("choo-choo"));
    // Anchored: "o" does not match "foo".
    let out = relabel(
        input.clone(),
        &steps("- {source_labels: [a], regex: 'o', target_label: d, replacement: x}"),
    )
    .unwrap();
    assert_eq!(out.get("d"), None);
    // Joined with the separator; an empty replacement deletes the target.
    let out = relabel(
        input.clone(),
        &steps("- {source_labels: [a, b], regex: 'foo;bar', target_label: a, replacement: ''}"),
    )
    .unwrap();
    assert_eq!(out.get("a"), None);
    assert!(
        relabel(
            input.clone(),
            &steps("- {source_labels: [a], regex: 'f.*', action: drop}")
        )
        .is_none()
    );
    assert!(
        relabel(
            input.clone(),
            &steps("- {source_labels: [a], regex: 'b.*', action: keep}")
        )
        .is_none()
    );
    assert!(
        relabel(
            input.clone(),
            &steps("- {source_labels: [a], target_label: a, action: keepequal}")
        )
        .is_some()
    );
    assert!(
        relabel(
            input.clone(),
            &steps("- {source_labels: [b], target_label: a, action: dropequal}")
        )
        .is_some()
    );
    assert!(
        relabel(
            input.clone(),
            &steps("- {source_labels: [b], target_label: a, action: keepequal}")
        )
        .is_none()
    );
    // hashmod: md5 of "baz", last 8 bytes, modulo 1000 (Prometheus' own expected value: 976).
    let out = relabel(
        input.clone(),
        &steps("- {source_labels: [c], target_label: h, modulus: 1000, action: hashmod}"),
    )
    .unwrap();
    assert_eq!(out.get("h"), Some("976"));
    let out = relabel(
        lset(&[("__meta_my_bar", "aaa"), ("__meta_my_baz", "bbb"), ("foo", "x")]),
        &steps("- {regex: '__meta_(my.*)', replacement: '${1}', action: labelmap}"),
    )
    .unwrap();
    assert_eq!(
        (out.get("my_bar"), out.get("my_baz"), out.get("__meta_my_bar")),
        (Some("aaa"), Some("bbb"), Some("aaa"))
    );
    let out = relabel(input.clone(), &steps("- {regex: '(b|c)', action: labeldrop}")).unwrap();
    assert_eq!(out, lset(&[("a", "foo")]));
    let out = relabel(input.clone(), &steps("- {regex: '(b|c)', action: labelkeep}")).unwrap();
    assert_eq!(out, lset(&[("b", "bar"), ("c", "baz")]));
    let out = relabel(lset(&[("a", "FoO")]), &steps("- {source_labels: [a], target_label: l, action: lowercase}\n- {source_labels: [a], target_label: u, action: uppercase}")).unwrap();
    assert_eq!((out.get("l"), out.get("u")), (Some("foo"), Some("FOO")));
    // Invalid steps are refused at load time.
    for bad in [
        "- {action: hashmod, target_label: x}",
        "- {action: replace}",
        "- {action: labeldrop, regex: a, target_label: b}",
        "- {regex: '('}",
    ] {
        let configs: Vec<RelabelConfig> = yaml_serde::from_str(bad).unwrap();
        assert!(Relabeler::compile_all(&configs).is_err(), "{bad}");
    }
    assert!(yaml_serde::from_str::<Vec<RelabelConfig>>("- {action: replace, bogus: 1}").is_err());
}

/// A real HTTP server on loopback whose body the test changes between scrapes.
async fn serve(body: Arc<Mutex<String>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let text = body.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    text.len(),
                    text
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

fn find<'a>(series: &'a [Series], name: &str) -> Vec<&'a Series> {
    series.iter().filter(|s| s.labels.metric_name() == Some(name)).collect()
}

#[tokio::test]
async fn scrapes_label_limit_and_mark_stale() {
    let body = Arc::new(Mutex::new("a{instance=\"inner\"} 1\nb 2\nc 3\ndropme 4\n".to_string()));
    let port = serve(body.clone()).await;
    let yaml = format!(
        "external_labels: {{region: eu}}\nscrape_configs:\n- job_name: app\n  scrape_interval: 5s\n  sample_limit: 3\n  \
         static_configs: [{{targets: ['127.0.0.1:{port}'], labels: {{team: core}}}}]\n  \
         metric_relabel_configs: [{{source_labels: [__name__], regex: dropme, action: drop}}]\n"
    );
    let section: ScrapeSection = yaml_serde::from_str(&yaml).unwrap();
    let mut targets = ScrapeTargets::new(&section).unwrap();
    let mut changes = targets.sync(&[]);
    assert_eq!(changes.added.len(), 1);
    let mut target = changes.added.pop().unwrap();
    let instance = format!("127.0.0.1:{port}");
    assert_eq!(target.spec().id, format!("scrape:app:{instance}"));

    let out = target.scrape(1_000).await;
    assert_eq!(find(&out, "up")[0].samples[0].value, 1.0, "{:?}", target.last_error());
    let a = find(&out, "a")[0];
    assert_eq!(a.labels.get("instance"), Some(instance.as_str()));
    assert_eq!(a.labels.get("exported_instance"), Some("inner"));
    assert_eq!(
        (a.labels.get("job"), a.labels.get("team"), a.labels.get("region")),
        (Some("app"), Some("core"), Some("eu"))
    );
    assert!(find(&out, "dropme").is_empty());
    assert_eq!(find(&out, "scrape_samples_scraped")[0].samples[0].value, 4.0);
    assert_eq!(
        find(&out, "scrape_samples_post_metric_relabeling")[0].samples[0].value,
        3.0
    );
    assert_eq!(find(&out, "scrape_series_added")[0].samples[0].value, 3.0);

    // `c` disappears: it gets a staleness marker.
    *body.lock().unwrap() = "a{instance=\"inner\"} 1\nb 5\n".into();
    let out = target.scrape(2_000).await;
    let c = find(&out, "c");
    assert!(c.len() == 1 && is_stale_nan(c[0].samples[0].value) && c[0].samples[0].timestamp_ms == 2_000);
    assert_eq!(find(&out, "b")[0].samples[0].value, 5.0);
    assert_eq!(find(&out, "scrape_series_added")[0].samples[0].value, 0.0);

    // Over sample_limit: the whole scrape fails, up=0, everything from before goes stale.
    *body.lock().unwrap() = "a 1\nb 2\nc 3\nd 4\n".into();
    let out = target.scrape(3_000).await;
    assert_eq!(find(&out, "up")[0].samples[0].value, 0.0);
    assert!(target.last_error().unwrap().contains("sample limit"));
    assert!(is_stale_nan(find(&out, "a")[0].samples[0].value) && is_stale_nan(find(&out, "b")[0].samples[0].value));
    assert!(find(&out, "d").is_empty());

    // A malformed body fails the scrape too.
    *body.lock().unwrap() = "a{ 1\n".into();
    let out = target.scrape(4_000).await;
    assert_eq!(find(&out, "up")[0].samples[0].value, 0.0);

    // The target goes away: its report series end.
    *body.lock().unwrap() = "a 1\n".into();
    target.scrape(5_000).await;
    let gone = target.finish(6_000);
    assert!(gone.iter().all(|s| is_stale_nan(s.samples[0].value)));
    assert!(!find(&gone, "up").is_empty() && !find(&gone, "a").is_empty());
}

#[tokio::test]
async fn honor_labels_keeps_scraped_values_and_dead_targets_report_down() {
    let body = Arc::new(Mutex::new("a{job=\"mine\"} 1 1234\n".to_string()));
    let port = serve(body).await;
    let dead = tidewatch_testkit::free_port();
    let yaml = format!(
        "scrape_configs:\n- job_name: hl\n  honor_labels: true\n  \
         static_configs: [{{targets: ['127.0.0.1:{port}', '127.0.0.1:{dead}']}}]\n  \
         relabel_configs: [{{source_labels: [__address__], regex: '.*:(\\d+)', target_label: port}}]\n"
    );
    let section: ScrapeSection = yaml_serde::from_str(&yaml).unwrap();
    let targets = ScrapeTargets::new(&section).unwrap();
    let specs = targets.targets(&[]);
    assert_eq!(specs.len(), 2);
    let mut live = targets.start(specs[0].clone());
    let out = live.scrape(10_000).await;
    let a = find(&out, "a")[0];
    assert_eq!(a.labels.get("job"), Some("mine"));
    assert_eq!(a.labels.get("port"), Some(port.to_string().as_str()));
    assert_eq!(a.samples[0].timestamp_ms, 1234, "honor_timestamps defaults to true");
    let mut down = targets.start(specs[1].clone());
    let out = down.scrape(10_000).await;
    assert_eq!(find(&out, "up")[0].samples[0].value, 0.0);
    assert_eq!(find(&out, "up")[0].labels.get("job"), Some("hl"));
}

/// Container targets: a container labelled `tidewatch.scrape.port` is scraped on the port it
/// published on 127.0.0.1. The ContainerInfo is built by hand here and points at a real server
/// in the test (Docker discovery is the Docker source's; its tests cover inspect).
#[tokio::test]
async fn containers_labelled_for_scraping_become_targets() {
    let body = Arc::new(Mutex::new("hits_total 7\n".to_string()));
    let port = serve(body).await;
    let mut labels = BTreeMap::new();
    labels.insert("tidewatch.scrape.port".to_string(), "8080".to_string());
    labels.insert("tidewatch.scrape.path".to_string(), "/custom".to_string());
    labels.insert("com.example.team".to_string(), "blue".to_string());
    let container = ContainerInfo {
        id: "f".repeat(64),
        name: "web-1".into(),
        labels,
        published_ports: BTreeMap::from([(8080, port)]),
        ..ContainerInfo::default()
    };
    let unlabelled = ContainerInfo {
        id: "e".repeat(64),
        name: "quiet".into(),
        ..ContainerInfo::default()
    };
    let section: ScrapeSection = yaml_serde::from_str(
        "containers:\n  job_name: containers\n  relabel_configs:\n  - {source_labels: [__meta_docker_container_label_com_example_team], target_label: team}\n  - {source_labels: [__meta_docker_container_name], regex: '/(.*)', target_label: container}\n",
    )
    .unwrap();
    let mut targets = ScrapeTargets::new(&section).unwrap();
    let mut changes = targets.sync(&[container.clone(), unlabelled.clone()]);
    assert_eq!(changes.added.len(), 1);
    let mut t = changes.added.pop().unwrap();
    assert_eq!(t.spec().url, format!("http://127.0.0.1:{port}/custom"));
    let out = t.scrape(1).await;
    let hits = find(&out, "hits_total")[0];
    assert_eq!(hits.labels.get("team"), Some("blue"));
    assert_eq!(hits.labels.get("container"), Some("web-1"));
    assert!(hits.labels.iter().all(|l| !l.name.starts_with("__meta")));
    // The container stops: the sync reports its target gone.
    let changes = targets.sync(&[unlabelled]);
    assert_eq!(changes.removed, vec![t.spec().id.clone()]);
    assert!(changes.added.is_empty());
}

#[tokio::test]
async fn bad_scrape_configs_are_refused() {
    for yaml in [
        "scrape_configs: [{job_name: a, scheme: https}]",
        "scrape_configs: [{job_name: a}, {job_name: a}]",
        "scrape_configs: [{job_name: a, scrape_interval: 5s, scrape_timeout: 10s}]",
        "containers: {job_name: c, static_configs: [{targets: ['x:1']}]}",
        "scrape_configs: [{job_name: a, metric_relabel_configs: [{action: hashmod, target_label: x}]}]",
    ] {
        let section: ScrapeSection = yaml_serde::from_str(yaml).unwrap();
        assert!(ScrapeTargets::new(&section).is_err(), "{yaml}");
    }
    assert!(yaml_serde::from_str::<ScrapeSection>("scrape_configs: [{job_name: a, unknown: 1}]").is_err());
}

/// A real exporter as target: Debian's node_exporter.
#[tokio::test]
async fn scrapes_a_real_node_exporter() {
    const BIN: &str = "/usr/bin/prometheus-node-exporter";
    if !std::path::Path::new(BIN).exists() {
        eprintln!("skipping scrapes_a_real_node_exporter: {BIN} is absent");
        return;
    }
    let port = tidewatch_testkit::free_port();
    let mut child = std::process::Command::new(BIN)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let yaml = format!("scrape_configs: [{{job_name: node, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]");
    let targets = ScrapeTargets::new(&yaml_serde::from_str(&yaml).unwrap()).unwrap();
    let mut t = targets.start(targets.targets(&[]).remove(0));
    let mut out = Vec::new();
    for _ in 0..100 {
        out = t.scrape(1).await;
        if find(&out, "up")[0].samples[0].value == 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(find(&out, "up")[0].samples[0].value, 1.0, "{:?}", t.last_error());
    assert!(!find(&out, "node_cpu_seconds_total").is_empty());
    assert!(find(&out, "scrape_samples_scraped")[0].samples[0].value > 100.0);
}

/// A body over `body_size_limit` fails the scrape instead of growing the agent's memory.
#[tokio::test]
async fn bodies_over_the_limit_fail_the_scrape() {
    let body = Arc::new(Mutex::new(format!("big_total{{pad=\"{}\"}} 1\n", "x".repeat(4096))));
    let port = serve(body.clone()).await;
    let yaml = format!(
        "scrape_configs: [{{job_name: big, body_size_limit: 1KiB, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]"
    );
    let targets = ScrapeTargets::new(&yaml_serde::from_str(&yaml).unwrap()).unwrap();
    let mut t = targets.start(targets.targets(&[]).remove(0));
    let out = t.scrape(1).await;
    assert_eq!(find(&out, "up")[0].samples[0].value, 0.0);
    assert!(find(&out, "big_total").is_empty());
    assert!(t.last_error().unwrap().contains("limit"), "{:?}", t.last_error());
    *body.lock().unwrap() = "small 1\n".into();
    assert_eq!(find(&t.scrape(2).await, "up")[0].samples[0].value, 1.0);
}

/// `label_limit` counts the series' labels after target labels are attached (as Prometheus):
/// a series over it fails the whole scrape.
#[tokio::test]
async fn label_limits_fail_the_scrape() {
    let body = Arc::new(Mutex::new("m{a=\"1\",b=\"2\"} 1\n".to_string()));
    let port = serve(body.clone()).await;
    let yaml = format!(
        "scrape_configs: [{{job_name: ll, label_limit: 4, label_value_length_limit: 20, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]"
    );
    let targets = ScrapeTargets::new(&yaml_serde::from_str(&yaml).unwrap()).unwrap();
    let mut t = targets.start(targets.targets(&[]).remove(0));
    // __name__, a, b, job, instance: five labels.
    assert_eq!(find(&t.scrape(1).await, "up")[0].samples[0].value, 0.0);
    assert!(t.last_error().unwrap().contains("label_limit"), "{:?}", t.last_error());
    *body.lock().unwrap() = "m{a=\"1\"} 1\n".into();
    assert_eq!(
        find(&t.scrape(2).await, "up")[0].samples[0].value,
        1.0,
        "{:?}",
        t.last_error()
    );
    *body.lock().unwrap() = "m{a=\"123456789012345678901\"} 1\n".into();
    assert_eq!(find(&t.scrape(3).await, "up")[0].samples[0].value, 0.0);
    assert!(t.last_error().unwrap().contains("label_value_length_limit"));
}

/// No input panics the parser: every prefix of a body full of escapes, multi-byte characters
/// and exemplars gives samples or an error, in both dialects.
#[test]
fn parser_never_panics_on_truncated_input() {
    let body = "# HELP é h\\n\n# TYPE x counter\nx_total{a=\"\\\\é\\\"\\n\",b=\"ü}\"} 1.5e3 1700000000 # {t=\"ø\"} 2 3\nx_created 1\n\
                y { q = \"r\" s=\"t\" } -Inf\n# EOF\n";
    for (i, _) in body.char_indices() {
        let prefix = &body[..i];
        let _ = parse(prefix, Format::Text);
        let _ = parse(prefix, Format::OpenMetrics);
    }
    for s in [
        "\\",
        "a{b=\"\\",
        "a{b=\"\\é",
        "#",
        "# TYPE",
        "a{",
        "a{b",
        "a{b=",
        "{",
        "a 1 #",
        "a 1 # {",
    ] {
        let _ = parse(s, Format::Text);
        let _ = parse(s, Format::OpenMetrics);
    }
}
