//! Every real alertmanager.yml in ../shared/conformance/alertmanager loads; bad configs fail with
//! file, line and field; secrets never show.

use std::path::PathBuf;

use tidewatch_alertmanager::notify::{AlertmanagerConfigFile, Runtime};

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/alertmanager")
}

/// The Alertmanager configs (not the rule files, not the case file).
fn real_configs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(conformance_dir())
        .expect("conformance dir")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            (n.ends_with(".yml") || n.ends_with(".yaml"))
                && n.contains("alertmanager")
                && !n.contains("rules")
                && !n.contains("conformance")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn all_real_configs_load() {
    let files = real_configs();
    assert_eq!(files.len(), 6, "{files:?}");
    for f in &files {
        let cfg = AlertmanagerConfigFile::load(f).unwrap_or_else(|e| panic!("{e}"));
        let rt = Runtime::compile(&cfg).unwrap();
        assert!(!rt.receivers.is_empty(), "{}", f.display());
        let masked = cfg.masked();
        for secret in ["mysecret", "multiline\\nmysecret", "password'"] {
            assert!(
                !masked.contains(secret) || !cfg.raw.contains(secret),
                "{}: {secret} leaked",
                f.display()
            );
        }
        assert!(!masked.contains("mysecret"), "{}", f.display());
        let debug = format!("{:?}", cfg.config);
        assert!(
            !debug.contains("mysecret") || cfg.raw.contains("routing_key"),
            "{}",
            f.display()
        );
    }
}

#[test]
fn unsupported_receivers_warn_by_name() {
    let f = conformance_dir().join("alertmanager__config_testdata_conf.good.yml");
    let cfg = AlertmanagerConfigFile::load(&f).unwrap();
    let all = cfg.warnings.join("\n");
    for kind in ["pagerduty", "victorops", "opsgenie", "pushover", "slack"] {
        assert!(
            all.contains(&format!("receiver type {kind} is not supported")),
            "{kind}: {all}"
        );
    }
    let simple =
        AlertmanagerConfigFile::load(&conformance_dir().join("alertmanager__doc_examples_simple.yml")).unwrap();
    assert!(
        simple.warnings.iter().any(|w| w.contains("tracing")),
        "{:?}",
        simple.warnings
    );
}

#[test]
fn secrets_are_masked_in_status_and_debug() {
    let f = conformance_dir().join("alertmanager__config_testdata_conf.good.yml");
    let cfg = AlertmanagerConfigFile::load(&f).unwrap();
    let masked = cfg.masked();
    assert!(masked.contains("<secret>"));
    assert!(!masked.contains("mysecret"), "{masked}");
    assert!(masked.contains("alertmanager@example.org"), "non-secrets stay");
    assert!(!format!("{:?}", cfg.config.global).contains("mysecret"));
    let text = "global:\n  smtp_auth_password: hunter2\nroute:\n  receiver: r\nreceivers:\n  - name: r\n    webhook_configs:\n      - url: http://127.0.0.1:1/\n        http_config:\n          bearer_token: tok3n\n";
    let cfg = AlertmanagerConfigFile::parse("<t>", text).unwrap();
    let masked = cfg.masked();
    assert!(!masked.contains("hunter2") && !masked.contains("tok3n"), "{masked}");
    let debug = format!("{:?}", cfg.config);
    assert!(!debug.contains("hunter2") && !debug.contains("tok3n"), "{debug}");
}

fn err(text: &str) -> String {
    AlertmanagerConfigFile::parse("am.yml", text).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_field() {
    let e = err("route:\n  receiver: r\n  group_wait: 10x\nreceivers:\n  - name: r\n");
    assert!(e.starts_with("am.yml:3"), "{e}");
    assert!(e.contains("group_wait"), "{e}");

    let e = err("route:\n  receiver: r\n  routes:\n    - receiver: nope\nreceivers:\n  - name: r\n");
    assert!(e.starts_with("am.yml:4: route.routes[0].receiver:"), "{e}");
    assert!(e.contains("undefined receiver \"nope\""), "{e}");

    let e = err("route:\n  receiver: r\n  routes:\n    - matchers: ['a=~\"(\"']\nreceivers:\n  - name: r\n");
    assert!(e.starts_with("am.yml:4: route.routes[0].matchers[0]:"), "{e}");

    let e = err("route:\n  receiver: r\n  bogus: 1\nreceivers:\n  - name: r\n");
    assert!(e.contains("am.yml:3") && e.contains("bogus"), "{e}");

    let e = err("route:\n  receiver: r\n  mute_time_intervals: [night]\nreceivers:\n  - name: r\n");
    assert!(e.contains("undefined time interval \"night\""), "{e}");

    let e = err("route:\n  receiver: r\nreceivers:\n  - name: r\n    email_configs:\n      - to: a@b.c\n");
    assert!(
        e.contains("receivers[0].email_configs[0]") && e.contains("SMTP from"),
        "{e}"
    );

    let e = err(
        "route:\n  receiver: r\ntime_intervals:\n  - name: t\n    time_intervals:\n      - weekdays: ['funday']\nreceivers:\n  - name: r\n",
    );
    assert!(e.contains("time_intervals[0].time_intervals[0].weekdays"), "{e}");
}

#[test]
fn full_feature_config_loads() {
    let text = r#"
global:
  resolve_timeout: 1m
  smtp_smarthost: 127.0.0.1:2525
  smtp_from: am@example.org
  smtp_require_tls: false
templates: ['/nonexistent/*.tmpl']
route:
  receiver: hooks
  group_by: ['...']
  routes:
    - matchers: ['severity="page"']
      receiver: mail
      mute_time_intervals: [weekend]
      active_time_intervals: [always]
time_intervals:
  - name: weekend
    time_intervals:
      - weekdays: ['saturday', 'sunday']
        location: UTC
  - name: always
    time_intervals:
      - times: [{start_time: "00:00", end_time: "24:00"}]
        days_of_month: ['1:31']
        months: ['january:december']
        years: ['2020:2100']
inhibit_rules:
  - source_match: {severity: page}
    target_match_re: {severity: 'warn.*'}
    equal: [alertname]
receivers:
  - name: hooks
    webhook_configs:
      - url: http://127.0.0.1:9/hook
        max_alerts: 10
        send_resolved: false
        http_config:
          basic_auth: {username: u, password: p}
  - name: mail
    email_configs:
      - to: 'ops@example.org'
        text: '{{ .Status }}'
        headers: {Subject: 'custom {{ .Status | toUpper }}'}
"#;
    let cfg = AlertmanagerConfigFile::parse("<t>", text).unwrap();
    let rt = Runtime::compile(&cfg).unwrap();
    assert_eq!(rt.resolve_timeout.as_secs(), 60);
    assert!(rt.route.opts.group_by_all);
    assert_eq!(rt.inhibit_rules.len(), 1);
    assert!(!rt.receivers["hooks"].integrations[0].send_resolved);
    assert_eq!(rt.receivers["mail"].integrations[0].name, "email");
}

#[test]
fn template_files_define_usable_templates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.tmpl"),
        r#"{{ define "team.subject" }}[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} on {{ len .Alerts.Firing }} hosts{{ end }}"#,
    )
    .unwrap();
    let am_yml = dir.path().join("am.yml");
    std::fs::write(
        &am_yml,
        "global:\n  smtp_smarthost: 127.0.0.1:25\n  smtp_from: a@b.c\ntemplates: ['*.tmpl']\nroute:\n  receiver: r\nreceivers:\n  - name: r\n    email_configs:\n      - to: x@y.z\n        headers: {Subject: '{{ template \"team.subject\" . }}'}\n",
    )
    .unwrap();
    let cfg = AlertmanagerConfigFile::load(&am_yml).unwrap();
    Runtime::compile(&cfg).unwrap();
    let templates = tidewatch_alertmanager::notify::Templates::load(&["*.tmpl".to_string()], Some(dir.path())).unwrap();
    let data = tidewatch_alertmanager::notify::TemplateData {
        receiver: "r".into(),
        status: "firing".into(),
        alerts: Vec::new(),
        group_labels: Default::default(),
        common_labels: [("alertname".to_string(), "Disk".to_string())].into_iter().collect(),
        common_annotations: Default::default(),
        external_url: String::new(),
    };
    assert_eq!(
        templates
            .render_text(r#"{{ template "team.subject" . }}"#, &data)
            .unwrap(),
        "[FIRING] Disk on 0 hosts"
    );
    // A template that does not parse is a config error naming the field.
    let e = AlertmanagerConfigFile::parse(
        "am.yml",
        "global:\n  smtp_smarthost: h:25\n  smtp_from: a@b.c\nroute:\n  receiver: r\nreceivers:\n  - name: r\n    email_configs:\n      - to: x@y.z\n        html: '{{ if }'\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("receivers[0].email_configs[0]"), "{e}");
}
