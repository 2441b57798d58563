//! The real rule files in ../shared/conformance/: `check_rules` gives promtool 2.42's verdict on
//! each (live when /usr/bin/promtool exists), errors name file, line and field, and every label
//! and annotation template of every alerting rule renders without an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tidewatch_alertmanager::rules::{AlertData, QueryRows, check_rules, expand_alert, load_file, parse_text};

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// `promtool check rules FILE` with Debian's promtool 2.42.0 (exit 0 = good), recorded on
/// 2026-11-23 for machines without promtool.
const RECORDED: &[(&str, bool)] = &[
    ("alertmanager/kube-prometheus__alertmanager-rules.yaml", true),
    ("alertmanager/kube-prometheus__general-rules.yaml", true),
    (
        "alertmanager/kube-prometheus__kubernetes-apps-resources-slo-rules.yaml",
        true,
    ),
    ("alertmanager/kube-prometheus__node-exporter-rules.yaml", true),
    ("alertmanager/prometheus__cmd_promtool_testdata_rules.yml", true),
    ("alertmanager/prometheus__rules_fixtures_alert_rule.yaml", true),
    ("promtool/prometheus-cmd-promtool/main-d15adb9ad7/at-modifier.yml", true),
    (
        "promtool/prometheus-cmd-promtool/main-d15adb9ad7/bad-rules-error.yml",
        true,
    ),
    (
        "promtool/prometheus-cmd-promtool/main-d15adb9ad7/bad-rules-syntax.yml",
        false,
    ),
    (
        "promtool/prometheus-cmd-promtool/main-d15adb9ad7/negative-offset.yml",
        true,
    ),
    ("promtool/prometheus-cmd-promtool/main-d15adb9ad7/rules.yml", true),
    (
        "promtool/prometheus-cmd-promtool/main-d15adb9ad7/rules_extrafields.yml",
        false,
    ),
    ("promtool/prometheus-cmd-promtool/v2.42.0/at-modifier.yml", true),
    ("promtool/prometheus-cmd-promtool/v2.42.0/bad-rules-error.yml", true),
    ("promtool/prometheus-cmd-promtool/v2.42.0/bad-rules-syntax.yml", false),
    ("promtool/prometheus-cmd-promtool/v2.42.0/negative-offset.yml", true),
    ("promtool/prometheus-cmd-promtool/v2.42.0/rules.yml", true),
    ("promtool/kubernetes-mixin-main-aa38e2bf/prometheus_alerts.yaml", true),
    ("promtool/kubernetes-mixin-main-aa38e2bf/prometheus_rules.yaml", true),
    ("promtool/kubernetes-mixin-version-0.13.0/prometheus_alerts.yaml", true),
    ("promtool/kubernetes-mixin-version-0.13.0/prometheus_rules.yaml", true),
];

fn promtool_check(file: &Path) -> Option<bool> {
    let promtool = Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        return None;
    }
    Command::new(promtool)
        .args(["check", "rules"])
        .arg(file)
        .output()
        .ok()
        .map(|o| o.status.success())
}

#[test]
fn check_rules_agrees_with_promtool_on_every_conformance_file() {
    let mut failures = Vec::new();
    for (rel, recorded) in RECORDED {
        let file = conformance().join(rel);
        let expected = promtool_check(&file).unwrap_or(*recorded);
        let report = check_rules(std::slice::from_ref(&file));
        if report.success() != expected {
            failures.push(format!("{rel}: promtool says good={expected}, tidewatch:\n{report}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_name_file_line_and_field() {
    let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n      - alert: B\n        expr: sum(\n        for: 5m\n";
    let err = parse_text(Path::new("r.yml"), text).unwrap_err();
    assert_eq!(err.len(), 1);
    let msg = err[0].to_string();
    assert!(
        msg.starts_with("r.yml:7: group \"g\", rule 2, \"B\": could not parse expression"),
        "{msg}"
    );

    let err = parse_text(
        Path::new("r.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        exprr: up\n",
    )
    .unwrap_err();
    let msg = err[0].to_string();
    assert!(
        msg.contains("r.yml:5") && msg.contains("unknown field `exprr`"),
        "{msg}"
    );

    let text = "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: up\n        annotations:\n          x: y\n        for: 1m\n";
    let msgs: Vec<String> = parse_text(Path::new("r.yml"), text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("r.yml:6:") && m.contains("'annotations'")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.starts_with("r.yml:8:") && m.contains("'for'")),
        "{msgs:?}"
    );

    let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          x: \"{{ if }}\"\n";
    let msg = parse_text(Path::new("r.yml"), text).unwrap_err()[0].to_string();
    assert!(msg.starts_with("r.yml:6:") && msg.contains("annotation \"x\""), "{msg}");

    let dup = "groups:\n  - name: g\n  - name: g\n";
    assert!(
        parse_text(Path::new("r.yml"), dup).unwrap_err()[0]
            .to_string()
            .contains("repeated")
    );
}

#[test]
fn log_and_metric_rules_share_a_file() {
    let text = r#"
groups:
  - name: mixed
    rules:
      - alert: ErrorsInLogs
        expr: sum by (service) (count_over_time({service="api"} |= "error" [5m])) > 10
      - alert: Down
        expr: up{job="api"} == 0
"#;
    let groups = parse_text(Path::new("mixed.yml"), text).unwrap();
    let langs: Vec<_> = groups[0].rules.iter().map(|r| r.lang).collect();
    use tidewatch_alertmanager::rules::Lang;
    assert_eq!(langs, vec![Lang::LogQl, Lang::PromQl]);
}

/// Every rule file under conformance/ that loads: alerting rules' templates, rendered for an
/// alert with typical labels, contain no template error.
#[test]
fn every_conformance_template_renders() {
    let labels: BTreeMap<String, String> = [
        ("instance", "node-1:9100"),
        ("job", "node"),
        ("namespace", "monitoring"),
        ("pod", "api-0"),
        ("container", "api"),
        ("cluster", "eu-1"),
        ("node", "node-1"),
        ("device", "sda"),
        ("mountpoint", "/"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let external = BTreeMap::from([("region".to_string(), "eu".to_string())]);
    let query = |_: &str| -> Result<QueryRows, String> { Ok(vec![(BTreeMap::new(), 1.0)]) };
    let mut rendered = 0;
    let mut failures = Vec::new();
    for (rel, good) in RECORDED {
        if !good {
            continue;
        }
        let file = conformance().join(rel);
        let groups = load_file(&file).unwrap_or_else(|e| panic!("{rel}: {e:?}"));
        for g in &groups {
            for r in &g.rules {
                let Some(alert) = &r.spec.alert else { continue };
                for value in [0.0, 0.1234, 42.0, 1.5e9] {
                    let data = AlertData {
                        labels: &labels,
                        external_labels: &external,
                        external_url: "http://127.0.0.1:9700",
                        value,
                    };
                    for (k, t) in r.spec.labels.iter().chain(r.spec.annotations.iter()) {
                        let out = expand_alert(alert, t, &data, Some(&query));
                        rendered += 1;
                        if out.contains("<error expanding template") || out.contains("{{") {
                            failures.push(format!("{rel}: {alert}.{k}: {t:?} -> {out:?}"));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rendered > 1000, "only {rendered} templates rendered");
}

#[test]
fn templates_render_as_prometheus_does() {
    let labels = BTreeMap::from([
        ("instance".to_string(), "localhost:9090".to_string()),
        ("job".to_string(), "prometheus".to_string()),
    ]);
    let none = BTreeMap::new();
    let data = |value| AlertData {
        labels: &labels,
        external_labels: &none,
        external_url: "",
        value,
    };
    let cases: &[(&str, f64, &str)] = &[
        (
            "{{ $labels.instance }} of job {{ $labels.job }}",
            1.0,
            "localhost:9090 of job prometheus",
        ),
        ("{{ $value | humanizePercentage }}", 0.0512, "5.12%"),
        ("{{ printf \"%.2f\" $value }}%", 12.3456, "12.35%"),
        ("{{ printf \"%.4g\" $value }}", 100.0 / 3.0, "33.33"),
        ("{{ $value | humanize }}", 0.000123, "123u"),
        ("{{ $value | humanize1024 }}", 2048.0, "2ki"),
        ("{{ $value | humanizeDuration }}", 3661.0, "1h 1m 1s"),
        ("{{ $value }}", 2.5e6, "2.5e+06"),
        (
            "on {{ with $labels.cluster -}} cluster {{ . }} {{- end }}.",
            1.0,
            "on .",
        ),
        ("{{ if gt $value 1.0 }}big{{ else }}small{{ end }}", 0.5, "small"),
        ("{{ $labels.nosuch }}", 1.0, ""),
    ];
    for (t, v, want) in cases {
        assert_eq!(&expand_alert("A", t, &data(*v), None), want, "{t}");
    }
}
