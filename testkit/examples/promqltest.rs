//! Replays Prometheus' PromQL test scripts against a server through its HTTP API.
//!
//! ```text
//! cargo run -p tidewatch-testkit --example promqltest -- \
//!     --target prometheus --scripts ../shared/conformance/promql/v2.42.0 [--filter functions.test[:123]] \
//!     [--extra-checks] [--json report.json] [--max-diffs 5]
//! ```
//!
//! Targets: `prometheus` (starts `/usr/bin/prometheus`, or `--prometheus-bin PATH`, restarted on
//! a fresh folder for every reset), `tidewatch` (the built `tidewatch server`, via `TestServer`),
//! or a base URL such as `http://127.0.0.1:9090` with `--reset-cmd 'CMD'`: a shell command that
//! (re)starts the server on empty storage and prints its base URL as its last line of output
//! (without it the server is used as is, and a reset is an error).
//!
//! Exit status: 0 when every case that ran passed, 1 when some failed, 2 on a usage or harness error.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use tidewatch_testkit::promqltest::{HttpTarget, Options, PrometheusTarget, Target, run_dir, scripts_root};

const USAGE: &str = "usage: promqltest [--target prometheus|tidewatch|URL] [--scripts DIR|FILE] [--filter FILE[:LINE]]
                  [--extra-checks] [--json PATH|-] [--max-diffs N] [--prometheus-bin PATH]
                  [--reset-cmd CMD] [--samples-per-write N] [--quiet]";

struct Args {
    target: String,
    scripts: PathBuf,
    opts: Options,
    json: Option<String>,
    prometheus_bin: Option<PathBuf>,
    reset_cmd: Option<String>,
    samples_per_write: Option<usize>,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        target: "prometheus".to_string(),
        scripts: scripts_root().join("v2.42.0"),
        opts: Options::default(),
        json: None,
        prometheus_bin: None,
        reset_cmd: None,
        samples_per_write: None,
        quiet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--target" => args.target = value("--target")?,
            "--scripts" => args.scripts = value("--scripts")?.into(),
            "--filter" => args.opts.filter = Some(value("--filter")?),
            "--extra-checks" => args.opts.extra_checks = true,
            "--json" => args.json = Some(value("--json")?),
            "--max-diffs" => {
                args.opts.max_diffs = value("--max-diffs")?.parse().map_err(|e| format!("--max-diffs: {e}"))?
            }
            "--prometheus-bin" => args.prometheus_bin = Some(value("--prometheus-bin")?.into()),
            "--reset-cmd" => args.reset_cmd = Some(value("--reset-cmd")?),
            "--samples-per-write" => {
                args.samples_per_write = Some(
                    value("--samples-per-write")?
                        .parse()
                        .map_err(|e| format!("--samples-per-write: {e}"))?,
                )
            }
            "--quiet" => args.quiet = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn run_reset_cmd(cmd: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map_err(|e| format!("cannot run reset command: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "reset command failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .ok_or_else(|| "reset command printed no URL".to_string())
}

fn make_target(args: &Args) -> Result<Box<dyn Target>, String> {
    match args.target.as_str() {
        "prometheus" => {
            let bin = match &args.prometheus_bin {
                Some(b) => b.clone(),
                None => PrometheusTarget::find_binary().ok_or(
                    "no Prometheus binary: install the Debian package (/usr/bin/prometheus) or pass --prometheus-bin",
                )?,
            };
            let mut t = PrometheusTarget::start(&bin)?;
            if let Some(n) = args.samples_per_write {
                t.set_samples_per_write(n);
            }
            Ok(Box::new(t))
        }
        "tidewatch" => {
            // testkit's `tidewatch_bin()` looks next to a test executable (`target/<profile>/deps/`);
            // this example lives in `target/<profile>/examples/`, so point it at the binary beside.
            if std::env::var_os("TIDEWATCH_BIN").is_none()
                && let Some(bin) = std::env::current_exe()
                    .ok()
                    .and_then(|exe| Some(exe.parent()?.parent()?.join("tidewatch")))
                    .filter(|bin| bin.is_file())
            {
                // SAFETY: single-threaded here; no other thread reads the environment yet.
                unsafe { std::env::set_var("TIDEWATCH_BIN", bin) };
            }
            let mut t = HttpTarget::tidewatch(&[])?;
            if let Some(n) = args.samples_per_write {
                t.set_samples_per_write(n);
            }
            Ok(Box::new(t))
        }
        url if url.starts_with("http://") => {
            let url = url.to_string();
            let mut t = match args.reset_cmd.clone() {
                Some(cmd) => HttpTarget::new(&url, move || run_reset_cmd(&cmd))?,
                None => {
                    let mut first = true;
                    HttpTarget::new(&url.clone(), move || {
                        if std::mem::take(&mut first) {
                            Ok(url.clone())
                        } else {
                            Err("this target cannot be reset: pass --reset-cmd".to_string())
                        }
                    })?
                }
            };
            if let Some(n) = args.samples_per_write {
                t.set_samples_per_write(n);
            }
            Ok(Box::new(t))
        }
        other => Err(format!("unknown target {other:?}\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut target = match make_target(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("promqltest: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match run_dir(target.as_mut(), &args.scripts, &args.opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("promqltest: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.quiet {
        print!("{}", report.text(args.opts.max_diffs));
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        if path == "-" {
            println!("{text}");
        } else if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("promqltest: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if report.failed() > 0 || report.file_errors() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
