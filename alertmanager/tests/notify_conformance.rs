//! The cases of ../shared/conformance/alertmanager/am-conformance-cases.yaml (routing, dedup,
//! inhibition, webhook payload) as tests, plus the dispatcher's timers under paused tokio time.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use tidewatch_alertmanager::PostableAlert;
use tidewatch_alertmanager::notify::{
    Alertmanager, AlertmanagerConfigFile, DispatchEvent, Inhibitor, LabelSet, NflogEntry, Notification, NotifyAlert,
    PostableSilence, Route, WebhookMessage, fingerprint, needs_update, parse_matchers,
};
use yaml_serde::Value;

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/alertmanager")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(conformance_dir().join("am-conformance-cases.yaml")).expect("cases file");
    yaml_serde::from_str(&text).expect("cases parse")
}

fn labels(v: &Value) -> LabelSet {
    v.as_mapping()
        .expect("label map")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => yaml_serde::to_string(other).unwrap().trim().to_string(),
            };
            (k.as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Wraps a route snippet into a full config that declares every receiver it names.
fn config_with_route(route_yaml: &str) -> AlertmanagerConfigFile {
    let re = regex::Regex::new(r#"receiver:\s*['"]?([A-Za-z0-9_.-]+)"#).unwrap();
    let mut names: Vec<String> = re.captures_iter(route_yaml).map(|c| c[1].to_string()).collect();
    names.push("default-root".into());
    names.sort();
    names.dedup();
    let indented: String = route_yaml.lines().map(|l| format!("  {l}\n")).collect();
    let root_receiver = if route_yaml.starts_with("receiver:") {
        ""
    } else {
        "  receiver: default-root\n"
    };
    let receivers: String = names.iter().map(|n| format!("  - name: {n}\n")).collect();
    let text = format!("route:\n{root_receiver}{indented}receivers:\n{receivers}");
    AlertmanagerConfigFile::parse("<case>", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn secs(v: &Value) -> Duration {
    let s = v.as_str().unwrap();
    let n: u64 = s[..s.len() - 1].parse().unwrap();
    match &s[s.len() - 1..] {
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("unit {s}"),
    }
}

#[test]
fn routing_cases() {
    let all = cases();
    let mut checked = 0;
    for case in all["routing"].as_sequence().unwrap() {
        let name = case["name"].as_str().unwrap();
        let file = if let Some(cfg) = case["config"].as_str() {
            config_with_route(cfg)
        } else if let Some(f) = case["config_file"].as_str() {
            AlertmanagerConfigFile::load(&conformance_dir().join(f)).unwrap()
        } else {
            continue;
        };
        let root = Route::compile_root(&file).unwrap();
        for c in case["cases"].as_sequence().into_iter().flatten() {
            let lset = labels(&c["labels"]);
            let matched = root.match_labels(&lset);
            if let Some(expect) = c["expect"].as_sequence() {
                assert_eq!(matched.len(), expect.len(), "{name}: {lset:?}");
                for (r, e) in matched.iter().zip(expect) {
                    assert_eq!(r.opts.receiver, e["receiver"].as_str().unwrap(), "{name}: {lset:?}");
                    // Alertmanager keeps group_by as a set: order is not meaningful.
                    let mut want = strs(&e["group_by"]);
                    want.sort();
                    assert_eq!(r.opts.group_by, want, "{name}: {lset:?}");
                    assert_eq!(
                        r.opts.group_by_all,
                        e["group_by_all"].as_bool().unwrap(),
                        "{name}: {lset:?}"
                    );
                    assert_eq!(r.opts.group_wait, secs(&e["group_wait"]), "{name}: {lset:?}");
                    assert_eq!(r.opts.group_interval, secs(&e["group_interval"]), "{name}: {lset:?}");
                    assert_eq!(r.opts.repeat_interval, secs(&e["repeat_interval"]), "{name}: {lset:?}");
                    assert_eq!(r.key, e["key"].as_str().unwrap(), "{name}: {lset:?}");
                    checked += 1;
                }
            }
            if let Some(expect) = c["receivers"].as_sequence() {
                let got: Vec<&str> = matched.iter().map(|r| r.opts.receiver.as_str()).collect();
                let want: Vec<&str> = expect.iter().map(|v| v.as_str().unwrap()).collect();
                assert_eq!(got, want, "{name}: {lset:?}");
                checked += 1;
            }
        }
        if let Some(expect) = case["expect"].as_mapping() {
            // TestInheritParentGroupByAll: parent, child1, child2 in tree order.
            let mut nodes = Vec::new();
            root.walk(&mut nodes);
            let by_name = |n: &str| match n {
                "parent" => nodes[1],
                "child1" => nodes[2],
                _ => nodes[3],
            };
            for (k, v) in expect {
                let node = k.as_str().unwrap().split('.').next().unwrap();
                assert_eq!(by_name(node).opts.group_by_all, v.as_bool().unwrap(), "{name}: {node}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "only {checked} routing expectations checked");
}

/// TestRouteMatchers: the same tree in the new matcher syntax (from the case's notes).
#[test]
fn routing_new_style_matchers_keys() {
    let file = config_with_route(
        r#"receiver: 'notify-def'
routes:
- matchers: ['{owner="team-A"}', '{level!="critical"}']
  receiver: 'notify-A'
  routes:
  - matchers: ['{env="testing"}', '{baz!~".*quux"}']
    receiver: 'notify-testing'
    group_by: [...]
  - matchers: ['{env="production"}']
    receiver: 'notify-productionA'
    group_wait: 1m
    continue: true
  - matchers: [ 'env=~"produ.*"', 'job=~".*"']
    receiver: 'notify-productionB'
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 1h
    group_by: ['job']
- matchers: [owner=~"team-(B|C)"]
  group_by: ['foo', 'bar']
  group_wait: 2m
  receiver: 'notify-BC'
"#,
    );
    let root = Route::compile_root(&file).unwrap();
    let l =
        |pairs: &[(&str, &str)]| -> LabelSet { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
    let m = root.match_labels(&l(&[("owner", "team-C")]));
    assert_eq!(m[0].key, r#"{}/{owner=~"team-(B|C)"}"#);
    assert_eq!(m[0].opts.receiver, "notify-BC");
    let m = root.match_labels(&l(&[("owner", "team-A"), ("env", "testing")]));
    assert_eq!(
        m[0].key,
        r#"{}/{level!="critical",owner="team-A"}/{baz!~".*quux",env="testing"}"#
    );
    assert_eq!(m[0].opts.receiver, "notify-testing");
    let m = root.match_labels(&l(&[("owner", "team-A"), ("env", "production")]));
    let got: Vec<&str> = m.iter().map(|r| r.opts.receiver.as_str()).collect();
    assert_eq!(got, ["notify-productionA", "notify-productionB"]);
    // level=critical fails the negative matcher: the root takes it.
    let m = root.match_labels(&l(&[("owner", "team-A"), ("level", "critical")]));
    assert_eq!(m[0].opts.receiver, "notify-def");
}

fn fp_set(v: &Value) -> HashSet<u64> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn dedup_needs_update_cases() {
    let now = Utc::now();
    let all = cases();
    let list = all["dedup_needs_update"].as_sequence().unwrap();
    for c in list {
        let entry = c["entry"].as_mapping().map(|e| {
            let ts = match e.get("ts").and_then(|v| v.as_str()) {
                Some("zero") => chrono::DateTime::<Utc>::MIN_UTC,
                Some(s) => {
                    let mins: i64 = s.trim_start_matches("now-").trim_end_matches('m').parse().unwrap();
                    now - chrono::Duration::minutes(mins)
                }
                None => now,
            };
            let get = |k: &str| {
                e.get(k)
                    .map(fp_set)
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<Vec<u64>>()
            };
            NflogEntry {
                group_key: "g".into(),
                receiver: "r".into(),
                firing: get("firing"),
                resolved: get("resolved"),
                ts,
                expires_at: now,
            }
        });
        let repeat = match &c["repeat"] {
            Value::Number(_) => Duration::ZERO,
            v => secs(v),
        };
        let got = needs_update(
            entry.as_ref(),
            &fp_set(&c["firing"]),
            &fp_set(&c["resolved"]),
            c["send_resolved"].as_bool().unwrap(),
            repeat,
            now,
        );
        assert_eq!(got, c["notify"].as_bool().unwrap(), "{}", c["reason"].as_str().unwrap());
    }
    assert_eq!(list.len(), 11);
}

#[test]
fn inhibition_cases() {
    let all = cases();
    let inh = &all["inhibition"];
    let mut text = String::from("route:\n  receiver: r\nreceivers:\n  - name: r\ninhibit_rules:\n");
    for r in inh["rules"].as_sequence().unwrap() {
        let side = |k: &str| {
            let m = labels(&r[k]);
            let (n, v) = m.iter().next().unwrap();
            format!("{{{n}: \"{v}\"}}")
        };
        text += &format!(
            "  - source_match: {}\n    target_match: {}\n    equal: {:?}\n",
            side("source_match"),
            side("target_match"),
            strs(&r["equal"])
        );
    }
    let file = AlertmanagerConfigFile::parse("<inhibition>", &text).unwrap();
    let rules = tidewatch_alertmanager::notify::InhibitRule::compile_all(&file).unwrap();
    let mut ih = Inhibitor::new(rules);
    let now = Utc::now();
    for src in inh["active_source_alerts"].as_sequence().unwrap() {
        let l = labels(src);
        ih.observe(fingerprint(&l), &l, now + chrono::Duration::hours(1));
    }
    let list = inh["cases"].as_sequence().unwrap();
    for c in list {
        let target = labels(&c["target"]);
        assert_eq!(
            ih.muted_by(&target, now).is_some(),
            c["muted"].as_bool().unwrap(),
            "{target:?}"
        );
    }
    assert_eq!(list.len(), 8);
    // A resolved source no longer inhibits.
    let mut ih2 = Inhibitor::new(tidewatch_alertmanager::notify::InhibitRule::compile_all(&file).unwrap());
    let src = labels(&inh["active_source_alerts"][0]);
    ih2.observe(fingerprint(&src), &src, now - chrono::Duration::seconds(1));
    let target: LabelSet = [("t1", "1"), ("e", "1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(ih2.muted_by(&target, now).is_none());
}

#[test]
fn webhook_payload_v4_matches_example() {
    let all = cases();
    // The block also carries trailing '#' notes: keep the JSON part.
    let block = all["webhook_payload_v4_example"].as_str().unwrap();
    let json: String = block
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let example: serde_json::Value = serde_json::from_str(&json).unwrap();
    let a = &example["alerts"][0];
    let to_set = |v: &serde_json::Value| -> LabelSet {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    };
    let alert_labels = to_set(&a["labels"]);
    let n = Notification {
        group_key: example["groupKey"].as_str().unwrap().into(),
        receiver: example["receiver"].as_str().unwrap().into(),
        group_labels: to_set(&example["groupLabels"]),
        alerts: vec![NotifyAlert {
            labels: alert_labels.clone(),
            annotations: to_set(&a["annotations"]),
            starts_at: a["startsAt"].as_str().unwrap().parse().unwrap(),
            ends_at: None,
            generator_url: a["generatorURL"].as_str().unwrap().into(),
            fingerprint: fingerprint(&alert_labels),
        }],
        external_url: example["externalURL"].as_str().unwrap().into(),
    };
    // The example shows one alert of a group whose common labels leave out `instance`: add a
    // second alert on another instance, then compare without it.
    let mut n = n;
    let mut second = n.alerts[0].clone();
    second.labels.insert("instance".into(), "db-2:9100".into());
    second.fingerprint = fingerprint(&second.labels);
    n.alerts.push(second);
    let mut got = serde_json::to_value(WebhookMessage::build(&n, 0)).unwrap();
    got["alerts"].as_array_mut().unwrap().truncate(1);
    // The example's fingerprint is illustrative; ours is Alertmanager's FNV-1a of the labels.
    assert_eq!(got["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
    got["alerts"][0]["fingerprint"] = a["fingerprint"].clone();
    assert_eq!(got, example);
    // The group key the dispatcher builds has the same shape.
    let file = AlertmanagerConfigFile::parse(
        "<k>",
        "route:\n  receiver: r\n  routes:\n  - matchers: ['service=\"database\"']\n    group_by: [alertname, cluster, database]\nreceivers:\n  - name: r\n",
    )
    .unwrap();
    let root = Route::compile_root(&file).unwrap();
    let m = root.match_labels(&alert_labels);
    let gl = tidewatch_alertmanager::notify::group_labels(&alert_labels, &m[0].opts);
    let key = format!("{}:{}", m[0].key, tidewatch_alertmanager::notify::labelset_string(&gl));
    assert_eq!(key, example["groupKey"].as_str().unwrap());
    assert_eq!(gl, to_set(&example["groupLabels"]));
}

#[test]
fn known_fingerprint() {
    // prometheus/common model tests: LabelSet{"foo": "bar"} fingerprints to 0x..., check the
    // empty set and stability of the algorithm (FNV-1a 64 offset basis for no labels).
    assert_eq!(fingerprint(&LabelSet::new()), 14695981039346656037);
    let a: LabelSet = [("foo".to_string(), "bar".to_string())].into_iter().collect();
    assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
    assert!(parse_matchers("foo=\"bar\"").is_ok());
}

// ---------- the dispatcher itself, under paused tokio time ----------

fn alert(pairs: &[(&str, &str)]) -> PostableAlert {
    PostableAlert {
        labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        annotations: BTreeMap::new(),
        starts_at: None,
        ends_at: None,
        generator_url: String::new(),
    }
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<DispatchEvent>) -> Vec<(String, String, usize, usize)> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let DispatchEvent::Flush {
            receiver,
            group_key,
            alerts,
        } = ev
        {
            let resolved = alerts.iter().filter(|a| a.1).count();
            out.push((receiver, group_key, alerts.len() - resolved, resolved));
        }
    }
    out
}

/// Receivers without integrations: what reaches them is observed as `Flush` events (no network,
/// so paused time cannot race real I/O).
const DISPATCH_CONFIG: &str = r#"
global:
  resolve_timeout: 5m
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['team="db"']
      receiver: db
      group_by: [alertname, cluster]
      continue: true
    - match_re: {team: "db|web"}
      receiver: oncall
      group_wait: 10s
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname]
receivers:
  - name: default
  - name: db
  - name: oncall
"#;

#[tokio::test(start_paused = true)]
async fn dispatcher_groups_waits_and_routes() {
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::open(
        dir.path(),
        AlertmanagerConfigFile::parse("<t>", DISPATCH_CONFIG).unwrap(),
    )
    .unwrap();
    let mut rx = am.subscribe();
    let until = Some((am.now() + chrono::Duration::hours(1)).to_rfc3339());
    let firing = |pairs: &[(&str, &str)]| PostableAlert {
        ends_at: until.clone(),
        ..alert(pairs)
    };
    am.put_alerts(vec![
        firing(&[
            ("alertname", "Disk"),
            ("team", "db"),
            ("cluster", "a"),
            ("instance", "1"),
        ]),
        firing(&[
            ("alertname", "Disk"),
            ("team", "db"),
            ("cluster", "a"),
            ("instance", "2"),
        ]),
        firing(&[("alertname", "Cpu"), ("instance", "3")]),
    ])
    .unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(drain(&mut rx).is_empty(), "nothing before any group_wait");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = drain(&mut rx);
    assert_eq!(
        got,
        vec![(
            "oncall".into(),
            r#"{}/{team=~"^(?:db|web)$"}:{alertname="Disk"}"#.into(),
            2,
            0
        )]
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut got = drain(&mut rx);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "db".into(),
                r#"{}/{team="db"}:{alertname="Disk", cluster="a"}"#.into(),
                2,
                0
            ),
            ("default".into(), r#"{}:{alertname="Cpu"}"#.into(), 1, 0),
        ]
    );
    // A new alert in an existing group waits for group_interval, not group_wait.
    am.put_alerts(vec![firing(&[("alertname", "Cpu"), ("instance", "4")])])
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(drain(&mut rx).is_empty());
    tokio::time::sleep(Duration::from_secs(240)).await;
    let got = drain(&mut rx);
    assert!(
        got.contains(&("default".into(), r#"{}:{alertname="Cpu"}"#.into(), 2, 0)),
        "{got:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dispatcher_inhibits_silences_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::open(
        dir.path(),
        AlertmanagerConfigFile::parse("<t>", DISPATCH_CONFIG).unwrap(),
    )
    .unwrap();
    let mut rx = am.subscribe();
    am.put_alerts(vec![
        alert(&[("alertname", "Lat"), ("severity", "critical"), ("instance", "a")]),
        alert(&[("alertname", "Lat"), ("severity", "warning"), ("instance", "b")]),
        alert(&[("alertname", "Mem"), ("severity", "warning"), ("instance", "c")]),
        alert(&[("alertname", "Quiet"), ("instance", "d")]),
    ])
    .unwrap();
    let now = am.now();
    let silence: PostableSilence = serde_json::from_value(serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Quiet", "isRegex": false, "isEqual": true}],
        "startsAt": now.to_rfc3339(), "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "test", "comment": "quiet please"
    }))
    .unwrap();
    am.with_silences(|s| s.set(silence, now)).unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    let mut got = drain(&mut rx);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("default".into(), r#"{}:{alertname="Lat"}"#.into(), 1, 0), // the warning is inhibited
            ("default".into(), r#"{}:{alertname="Mem"}"#.into(), 1, 0), // other alertname: not inhibited
        ]
    );
    // Without endsAt, alerts resolve after resolve_timeout (5m); the next flush says so.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let got = drain(&mut rx);
    assert!(got.iter().all(|g| g.2 == 0 && g.3 >= 1), "all resolved: {got:?}");
    assert!(!got.is_empty());
    // Resolved and notified: groups are gone.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(am.groups().is_empty(), "{:?}", am.groups().len());
}

#[tokio::test(start_paused = true)]
async fn time_intervals_mute_and_activate_routes() {
    let config = r#"
route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  routes:
    - matchers: ['when="muted"']
      receiver: muted
      mute_time_intervals: [always]
    - matchers: ['when="inactive"']
      receiver: inactive
      active_time_intervals: [long-ago]
    - matchers: ['when="active"']
      receiver: active
      active_time_intervals: [always]
time_intervals:
  - name: always
    time_intervals:
      - times: [{start_time: "00:00", end_time: "24:00"}]
  - name: long-ago
    time_intervals:
      - years: ['2000:2001']
receivers:
  - name: default
  - name: muted
  - name: inactive
  - name: active
"#;
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::open(dir.path(), AlertmanagerConfigFile::parse("<t>", config).unwrap()).unwrap();
    let mut rx = am.subscribe();
    am.put_alerts(vec![
        alert(&[("alertname", "M"), ("when", "muted")]),
        alert(&[("alertname", "I"), ("when", "inactive")]),
        alert(&[("alertname", "A"), ("when", "active")]),
    ])
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got: Vec<String> = drain(&mut rx).into_iter().map(|g| g.0).collect();
    assert_eq!(got, ["active"]);
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_state_and_rejects_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::open(
        dir.path(),
        AlertmanagerConfigFile::parse("<t>", DISPATCH_CONFIG).unwrap(),
    )
    .unwrap();
    let mut rx = am.subscribe();
    am.put_alerts(vec![alert(&[("alertname", "Cpu")])]).unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(drain(&mut rx).len(), 1);
    // A config that does not compile changes nothing.
    let bad = AlertmanagerConfigFile {
        raw: String::new(),
        ..AlertmanagerConfigFile::parse("<t>", DISPATCH_CONFIG).unwrap()
    };
    let mut bad = bad;
    bad.config.route.as_mut().unwrap().receiver = Some("missing".into());
    assert!(am.reload(bad).is_err());
    assert_eq!(am.config().0.config.receivers.len(), 3);
    // A good one re-creates the groups from the stored alerts (they route to the new receiver).
    let renamed = DISPATCH_CONFIG
        .replace("receiver: default", "receiver: fallback")
        .replace("- name: default", "- name: fallback");
    am.reload(AlertmanagerConfigFile::parse("<t>", &renamed).unwrap())
        .unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    let got = drain(&mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "fallback");
}

#[tokio::test(start_paused = true)]
async fn rule_engine_hands_alerts_over_in_process() {
    use tidewatch_alertmanager::AlertSink;
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::open(
        dir.path(),
        AlertmanagerConfigFile::parse("<t>", DISPATCH_CONFIG).unwrap(),
    )
    .unwrap();
    let mut rx = am.subscribe();
    let sink: std::sync::Arc<dyn AlertSink> = am.clone();
    sink.send(vec![alert(&[("alertname", "FromRules"), ("instance", "x")])])
        .await
        .unwrap();
    let err = sink.send(vec![alert(&[("bad-name", "x")])]).await.unwrap_err();
    assert!(err.contains("invalid label name"), "{err}");
    tokio::time::sleep(Duration::from_secs(31)).await;
    let got = drain(&mut rx);
    assert_eq!(
        got,
        vec![("default".into(), r#"{}:{alertname="FromRules"}"#.into(), 1, 0)]
    );
}
