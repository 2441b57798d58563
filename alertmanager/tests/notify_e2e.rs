//! End to end over real sockets: the API on a loopback port, real webhook receivers (axum
//! servers in the test), a real SMTP server (Debian's python3-aiosmtpd), Debian's amtool and
//! Debian's Prometheus. Waits poll for an event with a generous failure deadline; "no more
//! notifications" is checked after the dispatcher has flushed the groups again (observed through
//! its events), not after a sleep.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use tidewatch_alertmanager::PostableAlert;
use tidewatch_alertmanager::notify::{Alertmanager, AlertmanagerConfigFile, DispatchEvent, router};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(90);

/// Polls `probe` every 50 ms until it is `Ok`; after PATIENCE, fails naming what was awaited
/// and the probe's last word on the state.
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(state) => assert!(tokio::time::Instant::now() < deadline, "waited for {what}: {state}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `items` once there are `n` of them, for [`eventually`].
fn at_least<T: std::fmt::Debug>(n: usize, items: Vec<T>) -> Result<Vec<T>, String> {
    if items.len() >= n {
        Ok(items)
    } else {
        Err(format!("have {}: {items:?}", items.len()))
    }
}

/// Once notified, resolved groups are deleted.
async fn groups_deleted(am: &Alertmanager) {
    eventually("every group to be deleted", || match am.groups().len() {
        0 => Ok(()),
        n => Err(format!("{n} left")),
    })
    .await
}

/// A webhook receiver; with `flaky`, every odd request gets a 500 before anything is recorded.
#[derive(Default)]
struct Recorder {
    flaky: bool,
    requests: Mutex<u64>,
    got: Mutex<Vec<Value>>,
}

async fn record(State(r): State<Arc<Recorder>>, body: axum::body::Bytes) -> StatusCode {
    {
        let mut n = r.requests.lock().unwrap();
        *n += 1;
        if r.flaky && *n % 2 == 1 {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let v: Value = serde_json::from_slice(&body).expect("webhook body is JSON");
    r.got.lock().unwrap().push(v);
    StatusCode::OK
}

async fn start_recorder(flaky: bool) -> (Arc<Recorder>, SocketAddr) {
    let rec = Arc::new(Recorder {
        flaky,
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(record))
        .with_state(rec.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (rec, addr)
}

impl Recorder {
    fn all(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        eventually(&format!("{n} notifications"), || at_least(n, self.all())).await
    }
}

/// The Alertmanager served on a loopback port.
struct Served {
    am: Arc<Alertmanager>,
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(dir: &Path, config: &str) -> Served {
    let file = AlertmanagerConfigFile::parse("<test>", config).unwrap();
    let am = Alertmanager::open(dir, file).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let stop = CancellationToken::new();
    let app = router(am.clone());
    let s = stop.clone();
    let task = tokio::spawn(async move {
        axum::serve(l, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
            .unwrap();
    });
    Served { am, url, stop, task }
}

impl Served {
    async fn shutdown(self) -> Arc<Alertmanager> {
        self.stop.cancel();
        self.task.await.unwrap();
        self.am
    }
}

fn client() -> reqwest::Client {
    // No idle connections: the server's graceful shutdown must not wait on them.
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

async fn post_alerts(url: &str, alerts: &[PostableAlert]) {
    let r = client()
        .post(format!("{url}/api/v2/alerts"))
        .json(alerts)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn alert(pairs: &[(&str, &str)], ends_at: Option<chrono::DateTime<chrono::Utc>>) -> PostableAlert {
    PostableAlert {
        labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        annotations: [("summary".to_string(), format!("{pairs:?}"))].into_iter().collect(),
        starts_at: None,
        ends_at: ends_at.map(|t| t.to_rfc3339()),
        generator_url: "http://prometheus.local/graph".into(),
    }
}

/// Waits until every group key in `keys` was flushed `times` more times.
async fn flushes(rx: &mut broadcast::Receiver<DispatchEvent>, keys: &[String], times: usize) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while keys.iter().any(|k| seen.get(k).copied().unwrap_or(0) < times) {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("flush events")
            .expect("event channel");
        if let DispatchEvent::Flush { group_key, .. } = ev {
            *seen.entry(group_key).or_default() += 1;
        }
    }
}

fn webhook_config(addr: SocketAddr) -> String {
    format!(
        r#"
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://{addr}/hook
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_once_per_group_then_resolution_across_restart() {
    let (rec, addr) = start_recorder(false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = webhook_config(addr);
    let served = serve(dir.path(), &config).await;
    let mut rx = served.am.subscribe();
    let firing = vec![
        alert(&[("alertname", "A"), ("instance", "1")], None),
        alert(&[("alertname", "A"), ("instance", "2")], None),
        alert(&[("alertname", "B"), ("instance", "1")], None),
    ];
    post_alerts(&served.url, &firing).await;
    let got = rec.wait_for(2).await;
    let keys: Vec<String> = vec![r#"{}:{alertname="A"}"#.into(), r#"{}:{alertname="B"}"#.into()];
    let mut got_keys: Vec<&str> = got.iter().map(|v| v["groupKey"].as_str().unwrap()).collect();
    got_keys.sort();
    assert_eq!(got_keys, keys);
    let a = got.iter().find(|v| v["groupLabels"]["alertname"] == "A").unwrap();
    assert_eq!(a["version"], "4");
    assert_eq!(a["status"], "firing");
    assert_eq!(a["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(a["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["receiver"], "hook");
    // Two more flushes of each group: nothing new to say, so nothing sent.
    flushes(&mut rx, &keys, 2).await;
    assert_eq!(rec.all().len(), 2);

    // Restart on the same data folder; the sender re-sends its firing alerts, as Prometheus does.
    drop(rx);
    let am = served.shutdown().await;
    drop(am);
    let served = serve(dir.path(), &config).await;
    let mut rx = served.am.subscribe();
    post_alerts(&served.url, &firing).await;
    flushes(&mut rx, &keys, 2).await;
    assert_eq!(rec.all().len(), 2, "the restart must not re-notify: {:?}", rec.all());

    // Resolve: one resolution per group.
    let now = chrono::Utc::now();
    let resolved: Vec<PostableAlert> = firing
        .iter()
        .map(|a| PostableAlert {
            ends_at: Some(now.to_rfc3339()),
            ..a.clone()
        })
        .collect();
    post_alerts(&served.url, &resolved).await;
    let got = rec.wait_for(4).await;
    for v in &got[2..] {
        assert_eq!(v["status"], "resolved", "{v}");
        assert!(
            v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["status"] == "resolved")
        );
    }
    // Once notified, resolved groups are deleted: nothing can follow.
    groups_deleted(&served.am).await;
    assert_eq!(rec.all().len(), 4);
    assert_eq!(
        served.am.metrics().sent("webhook"),
        2,
        "this instance sent the two resolutions"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_rejecting_half_still_gets_each_notification_once() {
    let (rec, addr) = start_recorder(true).await;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path(), &webhook_config(addr)).await;
    let mut rx = served.am.subscribe();
    let names: Vec<String> = (0..5).map(|i| format!("G{i}")).collect();
    let firing: Vec<PostableAlert> = names.iter().map(|n| alert(&[("alertname", n)], None)).collect();
    post_alerts(&served.url, &firing).await;
    rec.wait_for(5).await;
    let keys: Vec<String> = names.iter().map(|n| format!("{{}}:{{alertname=\"{n}\"}}")).collect();
    flushes(&mut rx, &keys, 2).await;
    let now = chrono::Utc::now();
    let resolved: Vec<PostableAlert> = firing
        .iter()
        .map(|a| PostableAlert {
            ends_at: Some(now.to_rfc3339()),
            ..a.clone()
        })
        .collect();
    post_alerts(&served.url, &resolved).await;
    rec.wait_for(10).await;
    groups_deleted(&served.am).await;
    let all = rec.all();
    assert_eq!(all.len(), 10, "{all:?}");
    for k in &keys {
        let statuses: Vec<&str> = all
            .iter()
            .filter(|v| v["groupKey"] == k.as_str())
            .map(|v| v["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["firing", "resolved"], "{k}");
    }
    assert!(
        *rec.requests.lock().unwrap() >= 20,
        "half of the requests were rejected and retried"
    );
    // A notification whose retries all met a 500 within one group interval is counted as failed
    // and retried at the next flush: still recorded exactly once (checked above).
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_unsupported_receivers_count_failures() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback is closed here: connection refused, retried, then failed.
    let config = r#"
route:
  receiver: dead
  group_wait: 0s
  group_interval: 2s
  routes:
    - matchers: ['kind="pager"']
      receiver: pager
receivers:
  - name: dead
    webhook_configs:
      - url: http://127.0.0.1:9/hook
  - name: pager
    pagerduty_configs:
      - routing_key: secret-key
"#;
    let served = serve(dir.path(), config).await;
    let mut rx = served.am.subscribe();
    post_alerts(
        &served.url,
        &[
            alert(&[("alertname", "X")], None),
            alert(&[("alertname", "Y"), ("kind", "pager")], None),
        ],
    )
    .await;
    let mut failed = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while failed.len() < 2 {
        match tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("failure events")
            .unwrap()
        {
            DispatchEvent::Failed { integration, error, .. } => {
                assert!(!error.contains("secret-key"));
                failed.push(integration)
            }
            _ => continue,
        }
        failed.sort();
        failed.dedup();
    }
    assert_eq!(failed, ["pagerduty", "webhook"]);
    assert!(served.am.metrics().failed("webhook") >= 1);
    assert!(served.am.metrics().failed("pagerduty") >= 1);
    let mut reg = prometheus_client::registry::Registry::default();
    served.am.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("alertmanager_notifications_failed_total{integration=\"pagerduty\"}"),
        "{text}"
    );
    served.shutdown().await;
}

// ---------- email through a real SMTP server ----------

const PYTHON: &str = "/usr/bin/python3";

fn aiosmtpd_available() -> bool {
    std::process::Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Smtp {
    child: tokio::process::Child,
    out: Arc<Mutex<String>>,
    port: u16,
}

async fn start_smtp() -> Smtp {
    start_smtp_with(&["-u", "-m", "aiosmtpd", "-n", "-l"]).await
}

/// Runs `python3 ARGS... 127.0.0.1:PORT` (or `... PORT` for a script) and captures stdout.
async fn start_smtp_with(args: &[&str]) -> Smtp {
    use tokio::io::AsyncReadExt;
    let port = free_port();
    let listen = if args.contains(&"-m") {
        format!("127.0.0.1:{port}")
    } else {
        port.to_string()
    };
    let mut child = tokio::process::Command::new(PYTHON)
        .args(args)
        .arg(listen)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start aiosmtpd");
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let o = out.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            o.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "aiosmtpd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Smtp { child, out, port }
}

impl Smtp {
    fn messages(&self) -> Vec<String> {
        let all = self.out.lock().unwrap().clone();
        all.split("---------- MESSAGE FOLLOWS ----------")
            .skip(1)
            .filter(|m| m.contains("------------ END MESSAGE ------------"))
            .map(|m| m.to_string())
            .collect()
    }
    async fn wait_for(&self, n: usize) -> Vec<String> {
        eventually(&format!("{n} mails"), || at_least(n, self.messages())).await
    }
}

fn subject(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_once_per_group_then_resolution() {
    if !aiosmtpd_available() {
        eprintln!(
            "SKIP email_once_per_group_then_resolution: {PYTHON} has no aiosmtpd (apt-get install python3-aiosmtpd)"
        );
        return;
    }
    let mut smtp = start_smtp().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
global:
  smtp_smarthost: 127.0.0.1:{port}
  smtp_from: alertmanager@example.org
  smtp_require_tls: false
route:
  receiver: mail
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
  routes:
    - matchers: ['tls="required"']
      receiver: strict
receivers:
  - name: mail
    email_configs:
      - to: oncall@example.org
        send_resolved: true
        text: 'text body: {{{{ .Alerts | len }}}} alerts, status {{{{ .Status }}}}'
  - name: strict
    email_configs:
      - to: oncall@example.org
        require_tls: true
"#,
        port = smtp.port
    );
    let served = serve(dir.path(), &config).await;
    let mut rx = served.am.subscribe();
    let firing = vec![
        alert(
            &[("alertname", "DiskFull"), ("instance", "1"), ("cluster", "eu1")],
            None,
        ),
        alert(
            &[("alertname", "DiskFull"), ("instance", "2"), ("cluster", "eu1")],
            None,
        ),
        alert(&[("alertname", "CpuHigh"), ("instance", "1")], None),
    ];
    post_alerts(&served.url, &firing).await;
    let mails = smtp.wait_for(2).await;
    let mut subjects: Vec<String> = mails.iter().map(|m| subject(m)).collect();
    subjects.sort();
    assert_eq!(subjects, ["[FIRING:1] CpuHigh (1)", "[FIRING:2] DiskFull (eu1)"]);
    let disk = mails.iter().find(|m| subject(m).contains("DiskFull")).unwrap();
    assert!(disk.contains("text body: 2 alerts, status firing"), "{disk}");
    assert!(disk.contains("text/html"), "multipart with an HTML part: {disk}");
    assert!(disk.contains("To: oncall@example.org"));
    let keys: Vec<String> = vec![
        r#"{}:{alertname="CpuHigh"}"#.into(),
        r#"{}:{alertname="DiskFull"}"#.into(),
    ];
    flushes(&mut rx, &keys, 2).await;
    assert_eq!(smtp.messages().len(), 2);

    let now = chrono::Utc::now();
    let resolved: Vec<PostableAlert> = firing
        .iter()
        .map(|a| PostableAlert {
            ends_at: Some(now.to_rfc3339()),
            ..a.clone()
        })
        .collect();
    post_alerts(&served.url, &resolved).await;
    let mails = smtp.wait_for(4).await;
    let mut subjects: Vec<String> = mails[2..].iter().map(|m| subject(m)).collect();
    subjects.sort();
    assert_eq!(subjects, ["[RESOLVED] CpuHigh (1)", "[RESOLVED] DiskFull (eu1)"]);

    // require_tls against a server without STARTTLS: fails, and is counted, not dropped.
    post_alerts(
        &served.url,
        &[alert(&[("alertname", "Strict"), ("tls", "required")], None)],
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("failure event")
        {
            Ok(DispatchEvent::Failed {
                receiver, integration, ..
            }) if receiver == "strict" => {
                assert_eq!(integration, "email");
                break;
            }
            _ => continue,
        }
    }
    assert!(served.am.metrics().failed("email") >= 1);
    assert_eq!(smtp.messages().len(), 4);
    served.shutdown().await;
    smtp.child.kill().await.ok();
}

/// aiosmtpd with an authenticator (user `am`, password `pw`) that accepts AUTH without TLS.
const AUTH_SMTPD: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
class Handler:
    async def handle_DATA(self, server, session, envelope):
        user = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else "-"
        print("AUTH-USER " + user)
        print("---------- MESSAGE FOLLOWS ----------")
        print(envelope.content.decode("utf8", "replace"))
        print("------------ END MESSAGE ------------", flush=True)
        return "250 OK"
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"am" and data.password == b"pw"
    return AuthResult(success=ok, auth_data=data)
c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]), authenticator=check,
               auth_require_tls=False, auth_required=True)
c.start()
while True:
    time.sleep(3600)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_with_smtp_auth() {
    if !aiosmtpd_available() {
        eprintln!("SKIP email_with_smtp_auth: {PYTHON} has no aiosmtpd (apt-get install python3-aiosmtpd)");
        return;
    }
    let mut smtp = start_smtp_with(&["-u", "-c", AUTH_SMTPD]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
global:
  smtp_smarthost: 127.0.0.1:{port}
  smtp_from: alertmanager@example.org
  smtp_require_tls: false
  smtp_auth_username: am
  smtp_auth_password: pw
route:
  receiver: mail
  group_wait: 0s
  group_interval: 2s
  routes:
    - matchers: ['creds="bad"']
      receiver: wrong
receivers:
  - name: mail
    email_configs:
      - to: oncall@example.org
  - name: wrong
    email_configs:
      - to: oncall@example.org
        auth_password: not-the-password
"#,
        port = smtp.port
    );
    let served = serve(dir.path(), &config).await;
    let mut rx = served.am.subscribe();
    post_alerts(&served.url, &[alert(&[("alertname", "Authed")], None)]).await;
    let mails = smtp.wait_for(1).await;
    // No group_by: empty group labels, the common labels in parentheses (as Alertmanager).
    assert_eq!(subject(&mails[0]), "[FIRING:1]  (Authed)");
    assert!(smtp.out.lock().unwrap().contains("AUTH-USER am"), "authenticated as am");
    post_alerts(
        &served.url,
        &[alert(&[("alertname", "Denied"), ("creds", "bad")], None)],
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("failure event")
        {
            Ok(DispatchEvent::Failed { receiver, error, .. }) if receiver == "wrong" => {
                assert!(!error.contains("not-the-password"), "{error}");
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(smtp.messages().len(), 1);
    served.shutdown().await;
    smtp.child.kill().await.ok();
}

// ---------- Debian's amtool against the API ----------

const AMTOOL: &str = "/usr/bin/amtool";

async fn amtool(url: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(AMTOOL)
        .arg(format!("--alertmanager.url={url}"))
        .args(args)
        .output()
        .await
        .expect("run amtool");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_silences_and_alerts() {
    if !Path::new(AMTOOL).exists() {
        eprintln!("SKIP amtool_silences_and_alerts: {AMTOOL} not installed (apt-get install prometheus-alertmanager)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let served = serve(
        dir.path(),
        "route:\n  receiver: r\n  group_wait: 1h\nreceivers:\n  - name: r\n",
    )
    .await;
    let url = served.url.clone();
    post_alerts(&url, &[alert(&[("alertname", "Disk"), ("instance", "a")], None)]).await;

    let (ok, out) = amtool(&url, &["alert", "query"]).await;
    assert!(ok && out.contains("Disk"), "{out}");
    let (ok, out) = amtool(
        &url,
        &[
            "alert",
            "add",
            "alertname=Manual",
            "severity=info",
            "--annotation=summary=by hand",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = amtool(&url, &["alert", "query", "alertname=Manual"]).await;
    assert!(ok && out.contains("Manual") && !out.contains("Disk"), "{out}");

    let (ok, out) = amtool(
        &url,
        &[
            "silence",
            "add",
            "alertname=Disk",
            "--comment=maintenance",
            "--author=tester",
            "--duration=1h",
        ],
    )
    .await;
    assert!(ok, "{out}");
    // amtool warns on stderr that the versions differ; the id is the first line of stdout.
    let id = out.lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(id.len(), 36, "silence id: {out}");
    let (ok, out) = amtool(&url, &["silence", "query"]).await;
    assert!(ok && out.contains(&id) && out.contains("maintenance"), "{out}");
    // The silenced alert is now suppressed: hidden from the default (active) query.
    let (ok, out) = amtool(&url, &["alert", "query", "--silenced"]).await;
    assert!(ok && out.contains("Disk"), "{out}");
    let (ok, out) = amtool(&url, &["-o", "json", "alert", "query"]).await;
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.lines().next().unwrap_or_default()).expect("amtool -o json prints JSON");
    let disk = v
        .as_array()
        .and_then(|a| a.iter().find(|x| x["labels"]["alertname"] == "Disk").cloned());
    assert!(disk.is_none(), "a silenced alert is not listed as active: {out}");
    let (ok, out) = amtool(&url, &["silence", "expire", &id]).await;
    assert!(ok, "{out}");
    let (ok, out) = amtool(&url, &["silence", "query"]).await;
    assert!(
        ok && !out.contains(&id),
        "expired silences are not listed by default: {out}"
    );
    let (ok, out) = amtool(&url, &["silence", "query", "--expired"]).await;
    assert!(ok && out.contains(&id), "{out}");
    let (ok, out) = amtool(&url, &["config", "show"]).await;
    assert!(ok && out.contains("receiver"), "{out}");
    served.shutdown().await;
}

// ---------- Debian's Prometheus sends its alerts here ----------

const PROMETHEUS: &str = "/usr/bin/prometheus";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_delivers_to_webhook() {
    if !Path::new(PROMETHEUS).exists() {
        eprintln!("SKIP real_prometheus_delivers_to_webhook: {PROMETHEUS} not installed (apt-get install prometheus)");
        return;
    }
    let (rec, addr) = start_recorder(false).await;
    let dir = tempfile::tempdir().unwrap();
    let am_dir = dir.path().join("am");
    let served = serve(
        &am_dir,
        &format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 2s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{addr}/hook\n"
        ),
    )
    .await;
    let am_addr = served.url.trim_start_matches("http://").to_string();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: AlwaysOn\n        expr: vector(1)\n        for: 0s\n        labels: {severity: page}\n        annotations: {summary: 'value {{ $value }}'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs:\n        - targets: ['{am_addr}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prom = tokio::process::Command::new(PROMETHEUS)
        .current_dir(dir.path())
        .args([
            "--config.file=prometheus.yml".to_string(),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // Prometheus drops alerts fired before its Alertmanager discovery has run and
            // re-sends after the resend delay (1m by default): shorten it.
            "--rules.alert.resend-delay=1s".to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    let got = rec.wait_for(1).await;
    prom.kill().await.ok();
    let n = &got[0];
    assert_eq!(n["groupLabels"]["alertname"], "AlwaysOn", "{n}");
    assert_eq!(n["alerts"][0]["labels"]["severity"], "page");
    assert_eq!(n["alerts"][0]["annotations"]["summary"], "value 1");
    assert!(
        n["alerts"][0]["generatorURL"].as_str().unwrap().contains("vector"),
        "{n}"
    );
    served.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rejects_bad_input_without_losing_good_input() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(
        dir.path(),
        "route:\n  receiver: r\n  group_wait: 1h\nreceivers:\n  - name: r\n",
    )
    .await;
    let url = &served.url;
    let c = client();
    let r = c
        .post(format!("{url}/api/v2/alerts"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("request body"));
    // One bad alert (no labels) next to a good one: 400 naming it, the good one is kept.
    let body = serde_json::json!([{"labels": {}}, {"labels": {"alertname": "Good"}}]);
    let r = c.post(format!("{url}/api/v2/alerts")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("alert 0"));
    let alerts: Value = c
        .get(format!("{url}/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    assert_eq!(alerts[0]["labels"]["alertname"], "Good");
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert_eq!(alerts[0]["receivers"][0]["name"], "r");
    let r = c
        .get(format!("{url}/api/v2/alerts?filter=%3D%3D"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("parameter filter"));
    let r = c.get(format!("{url}/api/v2/alerts?active=maybe")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Bodies are limited.
    let big = vec![b' '; tidewatch_alertmanager::notify::MAX_BODY + 1];
    let r = c.post(format!("{url}/api/v2/alerts")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Silences: far-future end is fine; bad ids are 404; invalid silences are 400.
    let sil = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Good", "isRegex": false}],
        "startsAt": "2020-01-01T00:00:00Z", "endsAt": "9999-12-31T23:59:59Z",
        "createdBy": "t", "comment": "forever"
    });
    let r = c
        .post(format!("{url}/api/v2/silences"))
        .json(&sil)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    let got: Value = c
        .get(format!("{url}/api/v2/silence/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"]["state"], "active");
    let alerts: Value = c
        .get(format!("{url}/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts[0]["status"]["silencedBy"][0], id.as_str());
    assert_eq!(
        c.get(format!("{url}/api/v2/silence/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.delete(format!("{url}/api/v2/silence/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let bad = serde_json::json!({"matchers": [{"name": "a", "value": ".*", "isRegex": true}],
        "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2999-01-01T00:00:00Z", "createdBy": "t", "comment": "c"});
    let r = c
        .post(format!("{url}/api/v2/silences"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("empty string"));
    let status: Value = c
        .get(format!("{url}/api/v2/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["cluster"]["status"], "disabled");
    assert!(status["config"]["original"].as_str().unwrap().contains("receiver"));
    let receivers: Value = c
        .get(format!("{url}/api/v2/receivers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(receivers, serde_json::json!([{"name": "r"}]));
    // The silence survives a restart.
    let am = served.shutdown().await;
    drop(am);
    let served = serve(dir.path(), "route:\n  receiver: r\nreceivers:\n  - name: r\n").await;
    let got: Value = client()
        .get(format!("{}/api/v2/silence/{id}", served.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["comment"], "forever");
    served.shutdown().await;
}
