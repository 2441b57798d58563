//! `tidewatch up --demo`: a small service with an autoscaling policy and alert rules, so that a
//! newcomer sees every part working within a minute.
//!
//! The service is busybox httpd (imported from the host's `/bin/busybox`, nothing is pulled)
//! whose CGI script burns about 0.1 s of CPU per request, two to four replicas of 0.25 core
//! behind an endpoint on 127.0.0.1:20080. Its spec goes into `<data_dir>/demo/services/` and its
//! rules into `<data_dir>/demo/rules.yml`, both read at start (a reload of the configuration
//! file keeps them).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::config::Config;

/// The image the demo service runs.
const IMAGE: &str = "tidewatch-demo/busybox";
/// Where the demo's endpoint listens.
pub const ENDPOINT: u16 = 20080;

const SERVICE: &str = r#"name: demo-web
image: tidewatch-demo/busybox
command:
  - /busybox
  - sh
  - -c
  - >-
    mkdir -p /www/cgi-bin && echo 'tidewatch demo' > /www/index.html &&
    printf '#!/busybox sh\ni=0\nwhile [ $i -lt 30000 ]; do i=$((i+1)); done\necho Content-Type: text/plain\necho\necho burnt\n'
    > /www/cgi-bin/burn && chmod +x /www/cgi-bin/burn && exec /busybox httpd -f -p 8080 -h /www
labels: {tidewatch.demo: "1"}
ports: [{container: 8080, endpoint: 20080}]
resources: {limits: {cpus: 0.25, memory: 32MiB}}
healthcheck: {http: /, interval: 1s, timeout: 1s, retries: 2}
stop_grace_period: 2s
replicas: 2
autoscale:
  min_replicas: 2
  max_replicas: 4
  metrics: [{cpu: {target_utilization: 50}}]
  behavior:
    scale_down: {stabilization_window: 30s}
"#;

const RULES: &str = r#"groups:
  - name: demo
    interval: 5s
    rules:
      - record: service:container_cpu_usage_seconds:rate30s
        expr: sum by (service) (rate(container_cpu_usage_seconds_total{service="demo-web"}[30s]))
      - alert: DemoWebBusy
        expr: service:container_cpu_usage_seconds:rate30s{service="demo-web"} > 0.4
        for: 10s
        labels: {severity: info}
        annotations:
          summary: "demo-web uses {{ $value | printf \"%.2f\" }} cores"
      - alert: DemoWebDown
        expr: absent(container_cpu_usage_seconds_total{service="demo-web"})
        for: 1m
        labels: {severity: warning}
        annotations:
          summary: "no replica of demo-web reports metrics"
"#;

/// Writes the demo's service and rules under the data folder, points the configuration at
/// them, and makes sure the image exists.
pub fn prepare(config: &mut Config) -> anyhow::Result<()> {
    ensure_image()?;
    let dir = config.data_dir.join("demo");
    let services = dir.join("services");
    std::fs::create_dir_all(&services).with_context(|| format!("cannot create {}", services.display()))?;
    write(&services.join("demo-web.yaml"), SERVICE)?;
    write(&dir.join("rules.yml"), RULES)?;
    if config.scheduler.services_dir.is_some() {
        bail!("--demo puts its service in its own services folder; remove scheduler.services_dir to run it");
    }
    config.scheduler.services_dir = Some(std::path::absolute(&services).unwrap_or(services));
    let rules = std::path::absolute(dir.join("rules.yml")).unwrap_or_else(|_| dir.join("rules.yml"));
    config.rules.files.push(rules.to_string_lossy().into_owned());
    Ok(())
}

/// What to try once the demo runs.
pub fn banner(config: &Config) -> String {
    let server = config.server.listen;
    format!(
        "demo: service demo-web (2-4 replicas, CPU policy 50% of 0.25 core) on http://127.0.0.1:{ENDPOINT}/\n\
         \x20 load it:   for i in $(seq 4); do (while :; do curl -s -o /dev/null http://127.0.0.1:{ENDPOINT}/cgi-bin/burn; done) & done\n\
         \x20 watch it:  tidewatch autoscaler explain demo-web   ·   tidewatch services   ·   http://{server}/\n\
         \x20 stop load: kill %1 %2 %3 %4"
    )
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Imports `/bin/busybox` as the demo image unless it exists: `tar | docker import`.
fn ensure_image() -> anyhow::Result<()> {
    let present = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("--demo needs Docker: the `docker` command is not available")?;
    if present.success() {
        return Ok(());
    }
    let busybox = std::fs::canonicalize("/bin/busybox").context(
        "--demo builds its image from /bin/busybox: install busybox-static (apt-get install busybox-static)",
    )?;
    let (dir, name) = (
        busybox.parent().unwrap_or(Path::new("/")),
        busybox.file_name().unwrap_or_default(),
    );
    if name != "busybox" {
        bail!(
            "--demo needs /bin/busybox to be a file named busybox, found {}",
            busybox.display()
        );
    }
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-c", "busybox"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let import = Command::new("docker")
        .args(["import", "-", IMAGE])
        .stdin(tar.stdout.take().context("tar's output")?)
        .output()
        .context("cannot run docker import")?;
    let tar_ok = tar.wait().is_ok_and(|s| s.success());
    if !tar_ok || !import.status.success() {
        bail!(
            "cannot build the demo image {IMAGE}: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_service_and_its_policy_parse() {
        let specs = tidewatch_scheduler::parse_services(SERVICE, "demo").unwrap();
        assert_eq!(specs[0].name, "demo-web");
        let policy = tidewatch_autoscaler::Policy::from_yaml_value(specs[0].autoscale.clone().unwrap()).unwrap();
        assert_eq!((policy.min_replicas, policy.max_replicas), (2, 4));
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.yml");
        std::fs::write(&rules, RULES).unwrap();
        assert!(crate::rules_cli::check(&[rules]).unwrap());
    }
}
