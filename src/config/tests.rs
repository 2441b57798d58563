use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_text(Path::new("tw.yaml"), text)
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn empty_and_comment_only_files_are_the_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(parse("# nothing here\n\n").unwrap(), Config::default());
}

#[test]
fn a_full_file_parses_with_human_units() {
    let c = parse(
        "data_dir: /var/lib/tidewatch\nserver:\n  listen: 127.0.0.1:19700\n  max_request_body: 8MiB\n  shutdown_timeout: 1m30s\nagent:\n  node: edge-1\nlog:\n  level: debug\n  format: json\n",
    )
    .unwrap();
    assert_eq!(c.data_dir, Path::new("/var/lib/tidewatch"));
    assert_eq!(c.server.listen.port(), 19700);
    assert_eq!(c.server.max_request_body.bytes(), 8 << 20);
    assert_eq!(c.server.shutdown_timeout.as_std().as_secs(), 90);
    assert_eq!(c.agent.node.as_deref(), Some("edge-1"));
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn wrong_type_names_file_line_column_and_key() {
    let msg = error("server:\n  listen: 127.0.0.1:9700\n  max_request_body: [1, 2]\n");
    assert!(msg.starts_with("tw.yaml:3:21: server.max_request_body: "), "{msg}");
    assert!(msg.contains("expected a size"), "{msg}");
}

#[test]
fn unknown_key_is_refused_with_its_path() {
    let msg = error("server:\n  lisen: 127.0.0.1:9700\n");
    assert!(
        msg.starts_with("tw.yaml:2:3: server.lisen: unknown key `lisen`"),
        "{msg}"
    );
    assert!(msg.contains("expected one of `listen`"), "{msg}");
    let msg = error("retention: 15d\n");
    assert!(msg.starts_with("tw.yaml:1:1: retention: unknown key"), "{msg}");
}

#[test]
fn bad_duration_names_the_key_and_the_expected_form() {
    let msg = error("server:\n  shutdown_timeout: 30 parsecs\n");
    assert!(
        msg.starts_with("tw.yaml:2:21: server.shutdown_timeout: invalid duration \"30 parsecs\""),
        "{msg}"
    );
    assert!(msg.contains("expected e.g. 500ms, 30s"), "{msg}");
    let msg = error("server:\n  shutdown_timeout: 30\n");
    assert!(msg.contains("a unit is required"), "{msg}");
}

#[test]
fn bad_address_and_enum_values_are_explained() {
    let msg = error("server:\n  listen: localhost\n");
    assert!(msg.starts_with("tw.yaml:2:11: server.listen: "), "{msg}");
    let msg = error("log:\n  format: xml\n");
    assert!(
        msg.starts_with("tw.yaml:2:11: log.format: unknown variant `xml`"),
        "{msg}"
    );
}

#[test]
fn semantic_checks_name_the_key() {
    let msg = error("log:\n  level: debg\n");
    assert!(msg.starts_with("tw.yaml: log.level: \"debg\" is not a level"), "{msg}");
    let msg = error("log:\n  level: info,tidewatch_store=loud\n");
    assert!(msg.contains("\"loud\" is not a level"), "{msg}");
    assert!(parse("log:\n  level: info,tidewatch_store=debug\n").is_ok());
    let msg = error("server:\n  max_request_body: 10\n");
    assert!(msg.contains("server.max_request_body: must be at least 1KiB"), "{msg}");
}

#[test]
fn environment_variables_expand_and_never_leak_into_errors() {
    // SAFETY: set_var is unsafe in edition 2024 because of other threads reading the
    // environment; this variable name is used by this test only.
    unsafe { std::env::set_var("TW_TEST_SECRET_NODE", "hunter2") };
    let c = parse("agent:\n  node: ${TW_TEST_SECRET_NODE}\n").unwrap();
    assert_eq!(c.agent.node.as_deref(), Some("hunter2"));
    let msg = error("server:\n  listen: ${TW_TEST_SECRET_NODE}\n");
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.starts_with("tw.yaml:2:11: server.listen"), "{msg}");
    let msg = error("agent:\n  node: ${TW_TEST_UNSET_VARIABLE}\n");
    assert!(msg.starts_with("tw.yaml:2:9: "), "{msg}");
    assert!(msg.contains("TW_TEST_UNSET_VARIABLE is not set"), "{msg}");
}

#[test]
fn the_example_file_parses_and_covers_every_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tidewatch.example.yaml");
    let c = Config::from_file(&path).unwrap();
    // The example spells out the defaults; a drifted default shows up here.
    assert_eq!(c.server, ServerConfig::default());
    assert_eq!(c.log, LogConfig::default());
    assert_eq!(c.metrics, tidewatch_store::metrics::MetricsConfig::default());
    assert_eq!(c.logs, tidewatch_store::logs::LogsConfig::default());
    assert_eq!(c.collector, tidewatch_collector::agent::AgentConfig::default());
    assert_eq!(c.rules, tidewatch_alertmanager::rules::RulesConfig::default());
    assert_eq!(
        c.alertmanager,
        tidewatch_alertmanager::notify::NotifySettings::default()
    );
    assert_eq!(c.scheduler, tidewatch_scheduler::SchedulerConfig::default());
    assert_eq!(c.dashboards, tidewatch_dashboards::DashboardsConfig::default());
    let text = std::fs::read_to_string(&path).unwrap();
    for section in [
        "data_dir:",
        "server:",
        "agent:",
        "collector:",
        "metrics:",
        "logs:",
        "log:",
        "rules:",
        "alertmanager:",
        "scheduler:",
        "dashboards:",
    ] {
        assert!(text.contains(section), "tidewatch.example.yaml lacks {section}");
    }
}

#[test]
fn overrides_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "log:\n  level: debug\n").unwrap();
    let source = Source {
        path: Some(path),
        overrides: Overrides {
            log_level: Some("warn".into()),
            listen: Some("127.0.0.1:1234".parse().unwrap()),
            ..Default::default()
        },
    };
    let c = source.load().unwrap();
    assert_eq!(c.log.level, "warn");
    assert_eq!(c.server.listen.port(), 1234);
}

#[test]
fn yaml_round_trips() {
    let c = parse("server:\n  shutdown_timeout: 45s\n  max_request_body: 3MiB\n").unwrap();
    assert_eq!(parse(&c.to_yaml()).unwrap(), c);
}

#[test]
fn metrics_section_parses_and_is_checked() {
    let c = parse("metrics:\n  retention: 30d\n  wal:\n    fsync: false\n  limits:\n    max_active_series: 1000\n")
        .unwrap();
    assert_eq!(c.metrics.retention.as_std().as_secs(), 30 * 86_400);
    assert!(!c.metrics.wal.fsync);
    assert_eq!(c.metrics.limits.max_active_series, 1000);
    let msg = error("metrics:\n  wal:\n    fsync: sometimes\n");
    assert!(msg.starts_with("tw.yaml:3:12: metrics.wal.fsync: "), "{msg}");
    let msg = error("metrics:\n  block_range: 90s\n");
    assert!(
        msg.contains("metrics.block_range: must be a whole number of minutes"),
        "{msg}"
    );
}
