//! Browser tests: real headless Chromium (through chromedriver) loads every page of the UI
//! against a real `tidewatch up` holding real data (sent through remote_write and Loki push),
//! checks what each page shows, and that the console logged no error. Screenshots go to
//! `target/ui-screenshots/`.
//!
//! Skipped with a printed reason when chromium or chromedriver is missing, unless
//! `TIDEWATCH_REQUIRE_BROWSER=1` is set (CI sets it), when the test fails instead.
//!
//! The server is `tidewatch up` from `target/debug/tidewatch` (`cargo build` first). The first
//! test serves the UI in-process from this crate's router (so it can point the router at its own
//! dashboards folder) and proxies the APIs to the server (see `support/stack.rs`); the second
//! uses the UI the binary serves, with data from the binary's own collector and a real container.

mod support {
    pub mod stack;
    pub mod webdriver;
}

use std::time::Duration;

use serde_json::{Value, json};
use support::stack::Stack;
use support::webdriver::{Browser, missing_browser, screenshot_dir};

const WAIT: Duration = Duration::from_secs(30);

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// 30 minutes at 15 s of node_exporter and cAdvisor series for two nodes and three containers,
/// and the ALERTS series a rule engine writes for one firing alert.
fn load_metrics(stack: &Stack, now_ms: i64) {
    let times: Vec<i64> = (0..=120).map(|i| now_ms - (120 - i) * 15_000).collect();
    let gauge = |v: f64| times.iter().map(|&t| (t, v)).collect::<Vec<_>>();
    let counter = |rate: f64| {
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, rate * 15.0 * i as f64))
            .collect::<Vec<_>>()
    };
    let mut series = Vec::new();
    for (node, load) in [("node-a", 0.7), ("node-b", 1.9)] {
        let base = [
            ("job", "node"),
            (
                "instance",
                if node == "node-a" {
                    "10.0.0.1:9100"
                } else {
                    "10.0.0.2:9100"
                },
            ),
            ("node", node),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut l = labels(&base);
            l.extend(labels(extra));
            l
        };
        series.push((with(&[("__name__", "up")]), gauge(1.0)));
        series.push((
            with(&[
                ("__name__", "node_uname_info"),
                ("nodename", node),
                ("release", "6.1.0-tidewatch"),
            ]),
            gauge(1.0),
        ));
        series.push((with(&[("__name__", "node_load1")]), gauge(load)));
        series.push((with(&[("__name__", "node_memory_MemAvailable_bytes")]), gauge(3.5e9)));
        series.push((
            with(&[
                ("__name__", "node_filesystem_avail_bytes"),
                ("mountpoint", "/"),
                ("fstype", "ext4"),
                ("device", "/dev/sda1"),
            ]),
            gauge(20e9),
        ));
        series.push((
            with(&[("__name__", "node_network_receive_bytes_total"), ("device", "eth0")]),
            counter(125_000.0),
        ));
        series.push((
            with(&[("__name__", "node_network_transmit_bytes_total"), ("device", "eth0")]),
            counter(50_000.0),
        ));
        for mode in ["idle", "user", "system"] {
            let rate = if mode == "idle" { 0.6 } else { 0.2 };
            series.push((
                with(&[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("mode", mode)]),
                counter(rate),
            ));
        }
    }
    for (name, service, node) in [
        ("web-1", "web", "node-a"),
        ("web-2", "web", "node-b"),
        ("db-1", "db", "node-a"),
    ] {
        let id = format!("/docker/{name}0123456789abcdef");
        let base = [
            ("name", name),
            ("container", name),
            ("service", service),
            ("node", node),
            ("image", "tidewatch-test/busybox"),
        ];
        let with = |metric: &str| {
            let mut l = labels(&base);
            l.push(("id".into(), id.clone()));
            l.push(("__name__".into(), metric.into()));
            l
        };
        series.push((
            with("container_memory_working_set_bytes"),
            gauge(if service == "db" { 300e6 } else { 80e6 }),
        ));
        series.push((with("container_cpu_usage_seconds_total"), counter(0.25)));
        series.push((with("container_network_receive_bytes_total"), counter(10_000.0)));
        series.push((with("container_network_transmit_bytes_total"), counter(20_000.0)));
        series.push((
            with("container_last_seen"),
            times.iter().map(|&t| (t, t as f64 / 1000.0)).collect(),
        ));
    }
    series.push((
        labels(&[
            ("__name__", "ALERTS"),
            ("alertname", "HighLoad"),
            ("alertstate", "firing"),
            ("node", "node-b"),
            ("severity", "warning"),
        ]),
        gauge(1.0),
    ));
    stack.remote_write(series);
}

/// Log lines of the last ten minutes from two containers.
fn load_logs(stack: &Stack, now_ms: i64) {
    let mut streams = Vec::new();
    for (container, service, node) in [("web-1", "web", "node-a"), ("db-1", "db", "node-a")] {
        let values: Vec<Value> = (0..60)
            .map(|i| {
                let ns = (now_ms - 600_000 + i * 10_000) as i128 * 1_000_000;
                let line = if service == "web" {
                    format!("GET /checkout 200 request_id={i}")
                } else {
                    format!("query ok rows={i}")
                };
                json!([ns.to_string(), line])
            })
            .collect();
        streams.push(json!({"stream": {"container": container, "service": service, "node": node, "stream": "stdout"}, "values": values}));
    }
    stack.push_logs(json!(streams));
}

/// Console entries that are errors. A missing optional API (404 from the alert, scheduler or
/// autoscaler routes on a server that does not run them) is logged by Chromium as a failed
/// resource load; the pages show an empty state for it, so those are expected, not errors.
fn console_errors(browser: &Browser) -> Vec<String> {
    const OPTIONAL: &[&str] = &[
        "/api/v1/alerts",
        "/api/v1/rules",
        "/api/v2/silences",
        "/api/v1/services",
        "/api/v1/events",
        "/api/v1/autoscaler/",
    ];
    let mut errors: Vec<String> = browser
        .console()
        .unwrap()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, message)| message)
        .filter(|m| !(m.contains("status of 404") && OPTIONAL.iter().any(|p| m.contains(p))))
        // Chromium aborts requests in flight when a network interface comes or goes (other tests
        // on this host start containers); the page retries its GETs, and the test checks that the
        // data is shown all the same.
        .filter(|m| !m.contains("net::ERR_NETWORK_CHANGED"))
        .collect();
    let recorded = browser.eval("return window.__errors || []", json!([])).unwrap();
    errors.extend(
        recorded
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("window.__errors: {e}")),
    );
    errors
}

struct Pages<'a> {
    /// `http://host:port` of the UI.
    base: String,
    browser: &'a Browser,
}

impl Pages<'_> {
    /// Opens `#<hash>`, waits until the page marks itself loaded, saves a screenshot, checks the
    /// console, and returns the page's text.
    fn open(&self, name: &str, hash: &str) -> String {
        // A fresh document per page: errors and timings of one page never leak into the next.
        self.browser.goto("about:blank").unwrap();
        self.browser.goto(&format!("{}/#{hash}", self.base)).unwrap();
        self.loaded(name)
    }

    fn loaded(&self, name: &str) -> String {
        self.browser
            .wait_for(
                &format!("page {name} to load"),
                "return document.getElementById('page')?.dataset.loaded === '1'",
                WAIT,
            )
            .unwrap();
        self.shot(name)
    }

    fn shot(&self, name: &str) -> String {
        self.browser
            .screenshot(&screenshot_dir().join(format!("{name}.png")))
            .unwrap();
        let errors = console_errors(self.browser);
        assert!(errors.is_empty(), "page {name} logged errors: {errors:#?}");
        self.text("#page")
    }

    fn text(&self, css: &str) -> String {
        let v = self
            .browser
            .eval(
                "return document.querySelector(arguments[0])?.innerText ?? ''",
                json!([css]),
            )
            .unwrap();
        v.as_str().unwrap_or_default().to_string()
    }

    /// Opens dashboard `name` over `range` and checks that every panel was drawn without an
    /// error, none is empty, and the page shows each of `expected`.
    fn dashboard(&self, shot: &str, name: &str, range: &str, expected: &[&str]) {
        let text = self.open(shot, &format!("/dashboards/{name}?range={range}"));
        let timing = self
            .browser
            .eval("return window.__tidewatch.dashboard", json!([]))
            .unwrap();
        assert_eq!(timing["errors"], 0, "{name}: {timing} {text}");
        assert_eq!(timing["drawn"], timing["panels"], "{name}: {timing}");
        assert!(!text.contains("No data"), "{name} has an empty panel: {text}");
        for e in expected {
            assert!(text.contains(e), "dashboard {name} lacks {e}: {text}");
        }
    }

    /// Waits until the element matching `css` contains `needle`; returns its text.
    fn wait_text(&self, what: &str, css: &str, needle: &str) -> String {
        let script = format!(
            "const t = document.querySelector({})?.innerText ?? ''; return t.includes({}) ? t : null",
            json!(css),
            json!(needle)
        );
        self.browser
            .wait_for(what, &script, WAIT)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// False (with the reason printed) when no browser can run, unless TIDEWATCH_REQUIRE_BROWSER=1.
fn browser_available() -> bool {
    if let Some(reason) = missing_browser() {
        assert!(
            std::env::var("TIDEWATCH_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "TIDEWATCH_REQUIRE_BROWSER=1 but {reason}"
        );
        eprintln!("skipping the browser tests: {reason}");
        return false;
    }
    true
}

#[test]
fn every_page_shows_real_data_without_console_errors() {
    if !browser_available() {
        return;
    }
    let dashboards = tempfile::tempdir().unwrap();
    let stack = Stack::start(Some(dashboards.path().to_path_buf()));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    load_metrics(&stack, now_ms);
    load_logs(&stack, now_ms);
    let alerts_api = stack.server.get("/api/v1/alerts").0 != 404;
    let silences_api = stack.server.get("/api/v2/silences").0 != 404;
    // With the scheduler wired in, services come from its API; else from container metrics.
    let (services_status, services_body) = stack.server.get("/api/v1/services");
    let expected_services: Vec<String> = if services_status == 404 {
        vec!["web".into(), "db".into()]
    } else {
        let v: Value = serde_json::from_str(&services_body).unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };

    let browser = Browser::start(1400, 1000).unwrap();
    let pages = Pages {
        base: stack.url(""),
        browser: &browser,
    };

    // Overview.
    let text = pages.open("overview", "/");
    for expected in [
        "node-a",
        "node-b",
        "6.1.0-tidewatch",
        "web-1",
        "web-2",
        "db-1",
        "tidewatch-test/busybox",
    ] {
        assert!(text.contains(expected), "overview lacks {expected}: {text}");
    }
    let services = pages.text("#overview-services");
    for name in &expected_services {
        assert!(services.contains(name.as_str()), "{services}");
    }
    if expected_services.is_empty() {
        assert!(services.contains("No services"), "{services}");
    }
    if !alerts_api {
        let alerts = pages.text("#overview-alerts");
        assert!(alerts.contains("HighLoad"), "firing alerts: {alerts}");
    }

    // The chart's decimation: 10,000 points into 500 pixel columns, and a one-sample spike kept.
    let decimated = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             import('/ui/js/chart.js').then((m) => {
               const n = 10000, ts = new Float64Array(n), values = new Float64Array(n);
               for (let i = 0; i < n; i++) { ts[i] = i * 1000; values[i] = Math.sin(i / 50); }
               values[7777] = 42;
               const c = m.decimate({ ts, values }, 0, (n - 1) * 1000, 500, Infinity);
               done({ columns: c.max.length, filled: c.first.filter((v) => !Number.isNaN(v)).length,
                      max: Math.max(...c.max), min: Math.min(...c.min) });
             }, (e) => done({ error: String(e) }));",
        )
        .unwrap();
    assert_eq!(decimated["columns"], 500, "{decimated}");
    assert_eq!(decimated["filled"], 500, "{decimated}");
    assert_eq!(decimated["max"], 42.0, "the spike survives: {decimated}");
    assert!(decimated["min"].as_f64().unwrap() < -0.99, "{decimated}");

    // Metrics explorer: completion of metric names, the chart and the table.
    pages.open("metrics-empty", "/metrics");
    browser.type_into("#promql", "node_lo").unwrap();
    let completions = pages.wait_text("completion of node_lo", ".completions", "node_load1");
    assert!(!completions.contains("node_memory"), "{completions}");
    browser.type_into("#promql", "\u{E004}").unwrap(); // Tab accepts the first completion.
    let value = browser
        .eval("return document.getElementById('promql').value", json!([]))
        .unwrap();
    assert_eq!(value, "node_load1");
    browser.type_into("#promql", "{node=\"").unwrap();
    pages.wait_text("completion of node values", ".completions", "node-b");
    browser.type_into("#promql", "\u{E00C}").unwrap(); // Escape closes the completions.
    browser
        .eval("document.getElementById('promql').value = 'node_load1'", json!([]))
        .unwrap();
    browser.click("#run").unwrap();
    pages.wait_text("the legend", "#metrics-result", "node_load1{");
    let url = browser.eval("return location.hash", json!([])).unwrap();
    assert!(
        url.as_str().unwrap().contains("query=node_load1"),
        "the query is in the URL: {url}"
    );
    let legend = pages.text(".legend");
    assert!(
        legend.contains("node=\"node-a\"") && legend.contains("node=\"node-b\""),
        "{legend}"
    );
    let drawn = browser
        .eval(
            "return document.querySelector('#metrics-result .chart').dataset.drawn",
            json!([]),
        )
        .unwrap();
    assert!(drawn.as_str().is_some_and(|d| d != "0"), "chart drawn: {drawn}");
    // Hovering the chart shows both series' values at that time.
    let tooltip = browser
        .eval(
            "const o = document.querySelectorAll('#metrics-result .chart canvas')[1];
             const r = o.getBoundingClientRect();
             o.dispatchEvent(new MouseEvent('mousemove', { clientX: r.right - 20, clientY: r.top + 50, bubbles: true }));
             const t = document.querySelector('#metrics-result .tooltip');
             return t.hidden ? null : t.innerText;",
            json!([]),
        )
        .unwrap();
    let tooltip = tooltip.as_str().unwrap_or_default();
    assert!(
        tooltip.contains("1.90") && tooltip.contains("0.70") && tooltip.contains("node-b"),
        "{tooltip}"
    );
    pages.shot("metrics-chart");
    let text = pages.open(
        "metrics-table",
        "/metrics?query=sum%20by%20(node)%20(node_load1)&range=1h&tab=table",
    );
    assert!(text.contains("{node=\"node-b\"}") && text.contains("1.90"), "{text}");

    // Log explorer: lines, histogram, context, live tail.
    let text = pages.open("logs", "/logs?query=%7Bservice%3D%22web%22%7D&range=1h");
    assert!(text.contains("GET /checkout 200 request_id=59"), "{text}");
    assert!(!text.contains("query ok"), "only the web stream: {text}");
    assert!(text.contains("60 lines"), "{text}");
    browser
        .wait_for(
            "the histogram",
            "return document.querySelector('#logs-histogram .chart')?.dataset.drawn",
            WAIT,
        )
        .unwrap();
    // Context: the line with request_id=30, and its neighbours from the same stream.
    browser
        .eval(
            "[...document.querySelectorAll('.logline')].find(e => e.innerText.endsWith('request_id=30')).click()",
            json!([]),
        )
        .unwrap();
    browser
        .wait_for(
            "context lines",
            "return document.querySelectorAll('.logline.context').length >= 20",
            WAIT,
        )
        .unwrap();
    let context = browser
        .eval(
            "return [...document.querySelectorAll('.logline.context .text')].map(e => e.innerText)",
            json!([]),
        )
        .unwrap();
    let context: Vec<&str> = context.as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        context.contains(&"GET /checkout 200 request_id=29") && context.contains(&"GET /checkout 200 request_id=31"),
        "{context:?}"
    );
    pages.shot("logs-context");
    pages.open("logs-live", "/logs?query=%7Bservice%3D%22web%22%7D&range=1h&live=1");
    let fresh_ns = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos())
    .to_string();
    stack.push_logs(
        json!([{"stream": {"container": "web-1", "service": "web", "node": "node-a", "stream": "stdout"},
                            "values": [[fresh_ns, "LIVE TAIL MARKER"]]}]),
    );
    pages.wait_text("the live-tailed line", "#logs-lines", "LIVE TAIL MARKER");
    pages.shot("logs-live");

    // Alerts and silences.
    let text = pages.open("alerts", "/alerts");
    if alerts_api {
        assert!(!text.contains("No alerting configured"), "{text}");
    } else {
        assert!(
            text.contains("HighLoad") && text.contains("firing") && text.contains("node=node-b"),
            "{text}"
        );
    }
    if silences_api {
        browser
            .eval(
                "document.getElementById('silence-matchers').value = 'alertname=\"HighLoad\"'",
                json!([]),
            )
            .unwrap();
        browser.click("#silence-create").unwrap();
        pages.wait_text("the new silence", "#silences-list", "alertname=\"HighLoad\"");
        pages.shot("alerts-silenced");
        browser.click("#silences-list button[data-silence]").unwrap();
        pages.wait_text("the silence to expire", "#silences-list", "No active silences");
    } else {
        assert!(text.contains("No alerting configured"), "{text}");
        let form_shown = browser
            .eval(
                "return document.getElementById('silence-form').offsetParent !== null",
                json!([]),
            )
            .unwrap();
        assert_eq!(form_shown, false, "no silence form without a silences API");
    }

    // Services: the list and one service's replicas over time.
    let text = pages.open("services", "/services");
    for name in &expected_services {
        assert!(text.contains(name.as_str()), "{text}");
    }
    pages.open("service-web", "/services/web?range=1h");
    let legend = pages.text("#service-replicas .legend");
    assert!(legend.contains("running containers"), "{legend}");

    // Dashboards: the list, then each built-in one with all its panels drawn.
    let text = pages.open("dashboards", "/dashboards");
    for title in ["Hosts", "Containers", "Services"] {
        assert!(text.contains(title), "{text}");
    }
    for (name, expected) in [
        ("hosts", vec!["node-a", "node-b", "6.1.0-tidewatch", "CPU busy"]),
        ("containers", vec!["web-1", "db-1", "GET /checkout 200"]),
        ("services", vec!["web", "db", "Replicas"]),
    ] {
        pages.dashboard(&format!("dashboard-{name}"), name, "1h", &expected);
    }
    // A variable narrows the panels.
    let text = pages.open("dashboard-hosts-node-b", "/dashboards/hosts?range=1h&var-node=node-b");
    let table = pages.text("[data-panel='10']");
    assert!(
        table.contains("node-b") && !table.contains("node-a"),
        "{table} / {text}"
    );

    // A dashboard from the user folder, and the dark theme.
    std::fs::write(
        dashboards.path().join("mine.yaml"),
        "title: My board\npanels:\n  - {title: Load of node-b, type: stat, query: 'node_load1{node=\"node-b\"}'}\n",
    )
    .unwrap();
    let text = pages.open("dashboard-mine", "/dashboards/mine");
    assert!(text.contains("My board") && text.contains("1.90"), "{text}");
    browser.click("#theme").unwrap(); // auto -> light
    browser.click("#theme").unwrap(); // light -> dark
    let theme = browser
        .eval("return document.documentElement.dataset.theme", json!([]))
        .unwrap();
    assert_eq!(theme, "dark");
    let bg = browser
        .eval("return getComputedStyle(document.body).backgroundColor", json!([]))
        .unwrap();
    assert_eq!(bg, "rgb(13, 17, 23)");
    pages.open("dashboard-hosts-dark", "/dashboards/hosts?range=1h");
}

/// The built-in dashboards drawn from what the collector of `tidewatch up` read itself: a real
/// busybox container's cgroup counters and log lines, and the host's /proc, no data sent by the
/// test. The binary serves the UI here, not the test's proxy.
#[test]
fn default_dashboards_draw_what_the_collector_read_from_a_real_container() {
    if !browser_available() {
        return;
    }
    let Some(docker) = tidewatch_testkit::require_docker("dashboards_collector") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidewatch.yaml");
    std::fs::write(
        &config,
        format!(
            "collector:\n  docker: {{include: {{labels: [\"{}\"]}}}}\n  cgroup: {{interval: 1s}}\n  host: {{interval: 1s}}\n  shipper: {{batch_max_age: 200ms}}\n",
            docker.label()
        ),
    )
    .unwrap();
    let server = tidewatch_testkit::TestServer::start(&["--config", config.to_str().unwrap(), "up"]);
    server.wait_ready(Duration::from_secs(60)).unwrap();
    docker.run_busybox(
        "probe",
        &[],
        "i=0; while :; do i=$((i+1)); echo \"ui-probe line $i\"; sleep 0.2; done",
    );
    let name = docker.container_name("probe");

    // Wait until the server holds two CPU samples (a rate) and log lines of the container.
    let ask = |path: &str| -> Value {
        let (status, body) = server.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let cpu =
        format!("/api/v1/query?query=count(rate(container_cpu_usage_seconds_total%7Bname%3D%22{name}%22%7D%5B1m%5D))");
    let logs = format!("/loki/api/v1/query?query=sum(count_over_time(%7Bcontainer%3D%22{name}%22%7D%5B5m%5D))");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let has = |v: Value| !v["data"]["result"].as_array().unwrap().is_empty();
        if has(ask(&cpu)) && has(ask(&logs)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no collector data for {name} within 60 s: {}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let node = ask("/api/v1/query?query=node_uname_info")["data"]["result"][0]["metric"]["node"]
        .as_str()
        .expect("host metrics from the collector")
        .to_string();

    let browser = Browser::start(1400, 1000).unwrap();
    let pages = Pages {
        base: server.url(""),
        browser: &browser,
    };
    for (dashboard, expected) in [
        (
            "containers",
            vec![name.as_str(), "tidewatch-test/busybox", "ui-probe line"],
        ),
        ("hosts", vec![node.as_str(), "CPU busy"]),
    ] {
        pages.dashboard(&format!("collector-{dashboard}"), dashboard, "5m", &expected);
    }
}
