//! One-shot subcommands: `config check`, `config show`, `version`, `completions`.

use std::process::{Command, Output};

fn tidewatch(args: &[&str], cwd: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidewatch"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run tidewatch")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_names_file_line_column_and_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.yaml",
            "server:\n  lisen: 127.0.0.1:9700\n",
            "unknown.yaml:2:3: server.lisen: unknown key",
        ),
        (
            "type.yaml",
            "server:\n  listen: [1]\n",
            "type.yaml:2:11: server.listen: invalid type: sequence",
        ),
        (
            "duration.yaml",
            "server:\n  shutdown_timeout: soon\n",
            "duration.yaml:2:21: server.shutdown_timeout: invalid duration \"soon\"",
        ),
        (
            "env.yaml",
            "agent:\n  node: ${TW_SURELY_UNSET_VAR}\n",
            "env.yaml:2:9: environment variable TW_SURELY_UNSET_VAR is not set",
        ),
    ];
    for (name, body, expected) in cases {
        std::fs::write(dir.path().join(name), body).unwrap();
        let out = tidewatch(&["config", "check", name], dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: expected {expected:?} in {stderr:?}");
    }
    std::fs::write(dir.path().join("good.yaml"), "server:\n  listen: 127.0.0.1:9800\n").unwrap();
    let out = tidewatch(&["config", "check", "good.yaml"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "good.yaml: ok\n");
}

#[test]
fn the_example_configuration_passes_config_check() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tidewatch.example.yaml");
    let out = tidewatch(&["config", "check", example], std::path::Path::new("."));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn config_check_without_a_file_reads_tidewatch_yaml_in_the_working_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidewatch(&["config", "check"], dir.path());
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no file to check"), "{}", text(&out.stderr));
    std::fs::write(dir.path().join("tidewatch.yaml"), "log:\n  level: loud\n").unwrap();
    let out = tidewatch(&["config", "check"], dir.path());
    assert!(
        text(&out.stderr).contains("tidewatch.yaml: log.level: \"loud\" is not a level"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_show_prints_defaults_with_overrides_applied() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidewatch(&["--log-level", "debug", "config", "show"], dir.path());
    let yaml = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        yaml.contains("listen: 127.0.0.1:9700") && yaml.contains("level: debug"),
        "{yaml}"
    );
    assert!(
        yaml.contains("shutdown_timeout: 30s") && yaml.contains("max_request_body: 64MiB"),
        "{yaml}"
    );
}

#[test]
fn version_and_completions() {
    let here = std::path::Path::new(".");
    let out = tidewatch(&["version"], here);
    assert!(text(&out.stdout).starts_with(&format!("tidewatch {} (revision ", env!("CARGO_PKG_VERSION"))));
    for shell in ["bash", "zsh", "fish"] {
        let out = tidewatch(&["completions", shell], here);
        let script = text(&out.stdout);
        assert!(
            out.status.success() && script.contains("tidewatch") && script.contains("config"),
            "{shell}"
        );
    }
    let out = tidewatch(&["completions", "tcsh-ish"], here);
    assert_eq!(out.status.code(), Some(2), "clap rejects an unknown shell");
}

#[test]
fn a_broken_config_stops_startup_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tidewatch.yaml"),
        "data_dir: ./d\nserver:\n  listen: nowhere\n",
    )
    .unwrap();
    let out = tidewatch(&["up"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("tidewatch.yaml:3:11: server.listen: invalid socket address"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("d").exists(),
        "nothing is created before the configuration is valid"
    );
}
