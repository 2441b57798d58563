//! The real `tidewatch` binary, running as a child process on a loopback port.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Timeout for one HTTP request made by the helpers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A `tidewatch` process started by a test, killed when dropped.
///
/// Its output goes to files in [`dir`](Self::dir) rather than pipes, so a chatty server never blocks
/// on a full pipe and the logs survive for [`logs`](Self::logs) after it exits.
pub struct TestServer {
    /// Locked only to poll for exit from `&self` methods.
    child: Mutex<Child>,
    pid: u32,
    addr: SocketAddr,
    root: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    agent: ureq::Agent,
    /// Kept alive so the folder outlives the process; `None` when the caller owns the folder.
    /// Declared last: fields drop in order, and the child is killed in `Drop` before any of them.
    _tmp: Option<TempDir>,
}

impl TestServer {
    /// Starts `tidewatch --log-format json <args...> --listen 127.0.0.1:<free port> --data-dir <tmp>/data`
    /// on a fresh temporary folder. `args` are global options followed by the subcommand, e.g.
    /// `&["up"]` or `&["--config", path, "server"]`.
    pub fn start(args: &[&str]) -> TestServer {
        let tmp = tempfile::Builder::new()
            .prefix("tidewatch-test-")
            .tempdir()
            .expect("cannot create a temporary folder for the test server");
        let root = tmp.path().to_path_buf();
        Self::spawn(&crate::tidewatch_bin(), &root, args, Some(tmp))
    }

    /// Like [`start`](Self::start), on an existing folder whose `data` subfolder is the data folder:
    /// restart a server on the data of an earlier one with `TestServer::start_in(old.dir(), ...)`.
    /// The caller keeps the folder alive (e.g. keeps the earlier `TestServer` until this one is done).
    pub fn start_in(dir: &Path, args: &[&str]) -> TestServer {
        Self::spawn(&crate::tidewatch_bin(), dir, args, None)
    }

    fn spawn(bin: &Path, root: &Path, args: &[&str], tmp: Option<TempDir>) -> TestServer {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, crate::free_port()));
        let data_dir = root.join("data");
        // A restart in the same folder gets new log files, so the earlier server's logs stay readable.
        let (stdout_path, stderr_path) = (1..)
            .map(|n| {
                (
                    root.join(format!("tidewatch-{n}.stdout.log")),
                    root.join(format!("tidewatch-{n}.stderr.log")),
                )
            })
            .find(|(out, err)| !out.exists() && !err.exists())
            .expect("an unused log file name");
        let create =
            |p: &Path| File::create(p).unwrap_or_else(|e| panic!("cannot create log file {}: {e}", p.display()));
        let child = Command::new(bin)
            .args(["--log-format", "json"])
            .args(args)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; build it with `cargo build`", bin.display()));
        // Loopback only: never go through a proxy from the environment.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .proxy(None)
            .build()
            .into();
        TestServer {
            pid: child.id(),
            child: Mutex::new(child),
            addr,
            root: root.to_path_buf(),
            stdout_path,
            stderr_path,
            agent,
            _tmp: tmp,
        }
    }

    /// The folder holding the data folder and the log files; tests can write config files here.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The data folder passed as `--data-dir` (`<dir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The address passed as `--listen`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Polls `GET /-/ready` until it answers 200 and returns how long that took. Fails early, with
    /// the logs, if the process exits; fails with the last answer and the logs after `within`.
    pub fn wait_ready(&self, within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let url = self.url("/-/ready");
        loop {
            if let Some(status) = self.exit_status() {
                return Err(format!(
                    "tidewatch exited ({status}) before it was ready; logs:\n{}",
                    self.logs()
                ));
            }
            // A short per-request timeout: a hung server must not eat the whole budget in one try.
            let answer = self
                .agent
                .get(&url)
                .config()
                .timeout_global(Some(Duration::from_secs(1)))
                .build()
                .call();
            let last = match answer {
                Ok(response) if response.status() == 200 => return Ok(start.elapsed()),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= within {
                return Err(format!(
                    "tidewatch was not ready within {within:?} (last answer from {url}: {last}); logs:\n{}",
                    self.logs()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET <path>`: returns the status and body, whatever the status. Panics (with the server logs)
    /// only when no HTTP answer comes at all.
    pub fn get(&self, path: &str) -> (u16, String) {
        let answer = self.agent.get(self.url(path)).call();
        self.read_answer("GET", path, answer)
    }

    /// `POST <path>` with `body` and `Content-Type: content_type`; like [`get`](Self::get).
    pub fn post(&self, path: &str, body: &str, content_type: &str) -> (u16, String) {
        let answer = self.agent.post(self.url(path)).content_type(content_type).send(body);
        self.read_answer("POST", path, answer)
    }

    fn read_answer(
        &self,
        method: &str,
        path: &str,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> (u16, String) {
        let fail =
            |e: ureq::Error| -> ! { panic!("{method} {} failed: {e}; server logs:\n{}", self.url(path), self.logs()) };
        let mut response = answer.unwrap_or_else(|e| fail(e));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_else(|e| fail(e));
        (status, body)
    }

    /// Sends a signal by name ("TERM", "HUP", "KILL", ...) with `kill -s`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill`: {e}"));
        assert!(
            status.success(),
            "`kill -s {sig} {}` failed ({status}); has the server already been reaped?",
            self.pid
        );
    }

    /// Waits up to `within` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process wrote so far: stderr, then stdout.
    pub fn logs(&self) -> String {
        let mut logs = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let stdout = fs::read_to_string(&self.stdout_path).unwrap_or_default();
        if !logs.is_empty() && !logs.ends_with('\n') && !stdout.is_empty() {
            logs.push('\n');
        }
        logs + &stdout
    }

    /// The exit status if the process has exited (std caches it once reaped, so asking again is fine).
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        child.try_wait().ok().flatten()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Ok(None) = child.try_wait() {
            // SIGKILL: a test that wanted a graceful stop has already asked for one.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// These tests drive `TestServer` against a stand-in shell script (busybox httpd serving `/-/ready`),
/// so the helper is checked independently of the real binary, which other crates build.
#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Writes the stand-in: it logs its arguments, fails on request, else serves `<data>/www`.
    fn stand_in(dir: &Path) -> PathBuf {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("these tests need busybox (apt-get install busybox-static)");
        let script = format!(
            r#"#!/bin/sh
echo "args: $*" >&2
listen= data=
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift ;;
    --data-dir) data=$2; shift ;;
    fail) echo "refusing to start: asked to fail" >&2; exit 3 ;;
  esac
  shift
done
mkdir -p "$data/www/-"
echo ready > "$data/www/-/ready"
echo '{{"level":"INFO","fields":{{"message":"listening"}}}}'
exec {busybox} httpd -f -p "$listen" -h "$data/www"
"#
        );
        let path = dir.join("stand-in.sh");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn starts_answers_and_stops() {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = stand_in(bin_dir.path());
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let mut server = TestServer::spawn(&bin, &root, &["--config", "x.yaml", "up"], Some(tmp));

        let took = server.wait_ready(Duration::from_secs(10)).unwrap();
        assert!(took < Duration::from_secs(10));
        assert_eq!(server.get("/-/ready"), (200, "ready\n".to_string()));
        assert_eq!(server.get("/missing").0, 404);
        assert_eq!(server.post("/-/ready", "{}", "application/json").0, 501); // busybox httpd: no POST
        assert_eq!(server.url("/x"), format!("http://{}/x", server.addr()));
        assert!(server.data_dir().join("www").is_dir());

        let expected = format!(
            "args: --log-format json --config x.yaml up --listen {} --data-dir {}",
            server.addr(),
            server.data_dir().display()
        );
        let logs = server.logs();
        assert!(logs.contains(&expected), "{logs}");
        assert!(
            logs.contains(r#""message":"listening""#),
            "stdout is in the logs too: {logs}"
        );

        server.signal("TERM");
        let status = server.wait_exit(Duration::from_secs(5)).expect("exits on TERM");
        assert!(!status.success());
        drop(server);
        assert!(!root.exists(), "the temporary folder goes with the server");
    }

    #[test]
    fn early_exit_is_reported_with_logs() {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = stand_in(bin_dir.path());
        let server = TestServer::spawn(&bin, bin_dir.path(), &["fail"], None);
        let err = server.wait_ready(Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("exited") && err.contains("refusing to start"), "{err}");
    }

    #[test]
    fn restart_on_same_folder_keeps_data_and_old_logs() {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = stand_in(bin_dir.path());
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let first = TestServer::spawn(&bin, &root, &["up"], Some(tmp));
        first.wait_ready(Duration::from_secs(10)).unwrap();
        fs::write(first.data_dir().join("marker"), "kept").unwrap();
        first.signal("KILL");

        let second = TestServer::spawn(&bin, first.dir(), &["server"], None);
        second.wait_ready(Duration::from_secs(10)).unwrap();
        assert_eq!(fs::read_to_string(second.data_dir().join("marker")).unwrap(), "kept");
        assert_ne!(first.addr(), second.addr());
        assert!(first.logs().contains(" up "), "{}", first.logs());
        assert!(second.logs().contains(" server "), "{}", second.logs());
        assert!(!second.logs().contains(" up "), "each start has its own log files");
    }

    #[test]
    fn drop_kills_a_running_server() {
        let bin_dir = tempfile::tempdir().unwrap();
        let bin = stand_in(bin_dir.path());
        let server = TestServer::spawn(&bin, bin_dir.path(), &["up"], None);
        server.wait_ready(Duration::from_secs(10)).unwrap();
        let pid = server.pid();
        drop(server);
        // Reaped, so the pid no longer names our child (kill -0 fails).
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!alive.success());
    }
}
