//! File tailing end to end against a real `tidewatch server`: every line exactly once through
//! rotation by rename, copytruncate, an agent crash (tasks aborted, reopened from disk) and a
//! line longer than the maximum.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidewatch_collector::agent::{Agent, AgentConfig, AgentHandle};
use tidewatch_collector::sources::docker::LINE_CONTINUES;
use tidewatch_testkit::TestServer;
use tokio_util::sync::CancellationToken;

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn fetch(server: &TestServer, selector: &str) -> Vec<String> {
    let (status, body) = server.get(&format!(
        "/loki/api/v1/query_range?query={}&start=0&end=4000000000000000000&limit=5000&direction=forward",
        encode(selector)
    ));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(i64, String)> = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for e in s["values"].as_array().unwrap() {
            out.push((
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out.into_iter().map(|(_, l)| l).collect()
}

async fn wait_for(server: &TestServer, selector: &str, want: usize) -> Vec<String> {
    // Generous: the machine running the tests may be busy; a passing run takes seconds.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = fetch(server, selector);
        if got.len() >= want {
            return got;
        }
        if Instant::now() > deadline {
            eprintln!(
                "gave up waiting for {want} lines (have {}); server logs:\n{}",
                got.len(),
                server.logs()
            );
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_agent(url: &str, dir: &Path, data: &Path) -> AgentHandle {
    let yaml = format!(
        r#"
shipper:
  urls: ["{url}"]
  batch_max_age: 100ms
  retry_min: 50ms
  retry_max: 1s
docker:
  enabled: false
files:
  - paths: ["{}/*.log"]
    labels: {{job: app}}
    max_line_size: 1KiB
    poll_interval: 100ms
    rotate_wait: 1s
"#,
        dir.display()
    );
    let config: AgentConfig = yaml_serde::from_str(&yaml).unwrap();
    Agent::start(config, data, "node-1".into(), Vec::new(), CancellationToken::new())
        .await
        .unwrap()
}

/// What the agent's files are labelled.
const APP: &str = r#"{job="app"}"#;

/// A running server and one test's folders: `logs/`, which the agent's glob watches (`app.log`
/// in it), and the agent's data folder.
struct Scene {
    server: TestServer,
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Scene {
    async fn start_agent(&self) -> AgentHandle {
        start_agent(&self.server.url(""), &self.dir, &self.data).await
    }

    fn new() -> Scene {
        let server = TestServer::start(&["server"]);
        server.wait_ready(Duration::from_secs(60)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        fs::create_dir_all(&dir).unwrap();
        Scene {
            server,
            log: dir.join("app.log"),
            dir,
            data: tmp.path().join("agent"),
            _tmp: tmp,
        }
    }
}

fn write_lines(f: &mut File, range: std::ops::RangeInclusive<usize>) {
    let mut s = String::new();
    for i in range {
        s.push_str(&format!("line {i}\n"));
    }
    f.write_all(s.as_bytes()).unwrap();
    f.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_arrive_once_through_rename_copytruncate_and_a_crash() {
    let s = Scene::new();

    let mut f = OpenOptions::new().create(true).append(true).open(&s.log).unwrap();
    write_lines(&mut f, 1..=1000);
    let agent = s.start_agent().await;
    assert_eq!(wait_for(&s.server, APP, 1000).await.len(), 1000);

    // Crash, write while the agent is down, start again: nothing lost, nothing repeated.
    agent.abort().await;
    write_lines(&mut f, 1001..=1500);
    let agent = s.start_agent().await;
    assert_eq!(wait_for(&s.server, APP, 1500).await.len(), 1500);

    // Rotation by rename: the writer goes on in the renamed file a little, then a new file.
    fs::rename(&s.log, s.dir.join("app.log.1")).unwrap();
    write_lines(&mut f, 1501..=1600);
    let mut g = OpenOptions::new().create(true).append(true).open(&s.log).unwrap();
    write_lines(&mut g, 1601..=2000);
    // A line longer than max_line_size (1 KiB): split in pieces, each marked but the last.
    g.write_all(format!("{}\n", "y".repeat(2500)).as_bytes()).unwrap();
    assert_eq!(wait_for(&s.server, APP, 2003).await.len(), 2003);

    // copytruncate: copy away (not matched by the glob), truncate, go on writing.
    fs::copy(&s.log, s.dir.join("app.log.2-copy")).unwrap();
    g.set_len(0).unwrap();
    write_lines(&mut g, 2001..=2500);
    let got = wait_for(&s.server, APP, 2503).await;
    // Give a duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got2 = fetch(&s.server, APP);
    assert_eq!(got.len(), got2.len());

    let mut numbered: Vec<usize> = got2
        .iter()
        .filter_map(|l| l.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect();
    numbered.sort_unstable();
    assert_eq!(
        numbered,
        (1..=2500).collect::<Vec<_>>(),
        "every numbered line exactly once"
    );
    let pieces: Vec<&String> = got2.iter().filter(|l| l.starts_with('y')).collect();
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces[0], &format!("{}{LINE_CONTINUES}", "y".repeat(1024)));
    assert_eq!(pieces[1], &format!("{}{LINE_CONTINUES}", "y".repeat(1024)));
    assert_eq!(pieces[2], &"y".repeat(452));
    agent.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_inode_is_read_from_its_start() {
    let s = Scene::new();
    write_lines(&mut File::create(&s.log).unwrap(), 1..=300);
    let agent = s.start_agent().await;
    assert_eq!(wait_for(&s.server, APP, 300).await.len(), 300);
    agent.abort().await;

    // While the agent is down the same inode gets new, longer content (what a reused inode
    // looks like): only the fingerprint of its first bytes tells it is not the file read before.
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let before = ino(&s.log);
    let mut f = File::create(&s.log).unwrap();
    write_lines(&mut f, 301..=700);
    assert_eq!(ino(&s.log), before);
    let agent = s.start_agent().await;
    let got = wait_for(&s.server, APP, 700).await;
    let mut numbered: Vec<usize> = got
        .iter()
        .filter_map(|l| l.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect();
    numbered.sort_unstable();
    assert_eq!(numbered, (1..=700).collect::<Vec<_>>());

    let mut registry = prometheus_client::registry::Registry::default();
    agent.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"tidewatch_agent_records_read_total{source="file"} 400"#),
        "{text}"
    );
    assert!(
        text.contains("tidewatch_agent_records_sent_total{stream=\"logs\""),
        "{text}"
    );
    agent.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_server_refuses_is_counted_and_skipped() {
    let s = Scene::new();
    let yaml = format!(
        r#"
shipper: {{urls: ["{}"], batch_max_age: 100ms}}
docker: {{enabled: false}}
files: [{{paths: ["{}/*.log"], labels: {{job: app}}, max_line_size: 1MiB, poll_interval: 100ms}}]
"#,
        s.server.url(""),
        s.dir.display()
    );
    let config: AgentConfig = yaml_serde::from_str(&yaml).unwrap();
    let agent = Agent::start(config, &s.data, "node-1".into(), Vec::new(), CancellationToken::new())
        .await
        .unwrap();
    // The server refuses lines over 256 KiB (logs.limits.max_line_size) with a 400: not worth
    // retrying, so the batch is counted as rejected and the lines after it still arrive.
    let mut f = File::create(s.dir.join("app.log")).unwrap();
    f.write_all(format!("{}\n", "z".repeat(300 * 1024)).as_bytes()).unwrap();
    f.flush().unwrap();
    let metrics = agent.metrics();
    let labels = vec![
        ("stream".to_string(), "logs".to_string()),
        ("url".to_string(), s.server.url("")),
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    while metrics.records_rejected.get_or_create(&labels).get() == 0 {
        assert!(Instant::now() < deadline, "the refused batch was never counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    write_lines(&mut f, 1..=10);
    let got = wait_for(&s.server, r#"{job="app"}"#, 10).await;
    assert_eq!(got, (1..=10).map(|i| format!("line {i}")).collect::<Vec<_>>());
    agent.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rotated_while_the_agent_was_down_is_drained() {
    let s = Scene::new();
    let mut f = File::create(&s.log).unwrap();
    write_lines(&mut f, 1..=100);
    let agent = s.start_agent().await;
    assert_eq!(wait_for(&s.server, APP, 100).await.len(), 100);
    agent.abort().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Down: more lines, then rotation by rename to a name the glob does not match.
    write_lines(&mut f, 101..=150);
    fs::rename(&s.log, s.dir.join("app.log.1")).unwrap();
    write_lines(&mut File::create(&s.log).unwrap(), 151..=200);
    let agent = s.start_agent().await;
    let got = wait_for(&s.server, APP, 200).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut numbered: Vec<usize> = fetch(&s.server, APP)
        .iter()
        .filter_map(|l| l.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect();
    numbered.sort_unstable();
    assert_eq!(got.len(), 200);
    assert_eq!(numbered, (1..=200).collect::<Vec<_>>());
    agent.abort().await;
}
