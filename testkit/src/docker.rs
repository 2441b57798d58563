//! Docker gating, serialization and cleanup for tests that use a real engine.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::process::run_with_timeout;

/// Label key put on everything a Docker test creates; the value is the test's name.
pub const LABEL_KEY: &str = "tidewatch.test";

/// The image tests run: busybox-static imported from the host, so nothing is ever pulled.
pub const BUSYBOX_IMAGE: &str = "tidewatch-test/busybox";

/// How long the engine check may take before we call the engine absent.
const ENGINE_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for each docker call made during cleanup, so a hung engine can't hang `Drop`.
const CLEANUP_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long cleanup keeps retrying things that can't be removed yet (e.g. a network whose swarm
/// tasks are still shutting down).
const CLEANUP_DEADLINE: Duration = Duration::from_secs(30);

/// Returns a [`DockerTest`] when a Docker engine answers, or `None` (after printing why) so the test
/// can return early:
///
/// ```no_run
/// let Some(docker) = tidewatch_testkit::require_docker("my_test") else { return };
/// ```
///
/// With `TIDEWATCH_REQUIRE_DOCKER=1` (CI sets it) a missing engine is a failure instead of a skip.
/// Blocks until no other Docker test (in any process) is running.
pub fn require_docker(test_name: &str) -> Option<DockerTest> {
    assert!(
        !test_name.trim().is_empty(),
        "require_docker needs the test's name, to label what the test creates"
    );
    if let Err(reason) = engine_check() {
        if docker_required() {
            panic!(
                "{test_name} needs a Docker engine and TIDEWATCH_REQUIRE_DOCKER is set, but none answers ({reason}); \
                 start dockerd (or fix DOCKER_HOST / the docker context), or unset TIDEWATCH_REQUIRE_DOCKER to skip"
            );
        }
        eprintln!(
            "skipping {test_name}: no Docker engine answers ({reason}); set TIDEWATCH_REQUIRE_DOCKER=1 to fail instead"
        );
        return None;
    }
    Some(DockerTest::new(test_name))
}

/// `TIDEWATCH_REQUIRE_DOCKER=1` turns skips into failures; accept the usual spellings of "yes".
fn docker_required() -> bool {
    std::env::var("TIDEWATCH_REQUIRE_DOCKER")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// Asks the engine for its version, once per process: the answer doesn't change during a test run,
/// and a missing engine would otherwise cost every test the full check.
fn engine_check() -> Result<&'static str, &'static str> {
    static RESULT: OnceLock<Result<String, String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        let output = run_with_timeout(
            Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
            ENGINE_CHECK_TIMEOUT,
        )?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() && !version.is_empty() {
            Ok(version)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no error message");
            Err(format!("`docker info` failed ({}): {first}", output.status))
        }
    });
    result.as_deref().map_err(String::as_str)
}

/// A running Docker test: holds the cross-process Docker test lock and owns everything labelled
/// `tidewatch.test=<test name>`, which it removes when created (leftovers of a killed run) and when
/// dropped (also when the test panics). Images are not removed: the busybox image is shared and
/// cheap to keep.
pub struct DockerTest {
    name: String,
    label: String,
    /// Held for the lifetime of the test; closing the file releases the lock (the kernel also
    /// releases it if the process dies), so a crashed test can't block the others.
    _lock: File,
}

impl DockerTest {
    fn new(test_name: &str) -> DockerTest {
        let lock = acquire_lock(test_name);
        let test = DockerTest {
            name: test_name.to_string(),
            label: format!("{LABEL_KEY}={test_name}"),
            _lock: lock,
        };
        test.cleanup();
        test
    }

    /// The test's name, as given to [`require_docker`].
    pub fn test_name(&self) -> &str {
        &self.name
    }

    /// `tidewatch.test=<test name>`: pass it to `--label` on anything the test creates so cleanup finds it.
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// Runs the docker CLI with `args` and returns its output, whatever the exit status.
    /// No timeout: callers may legitimately wait (`docker wait`, `docker logs -f`).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `docker {}`: {e}; is the docker CLI on PATH?",
                    args.join(" ")
                )
            })
    }

    /// Runs the docker CLI and returns its trimmed stdout; panics with its stderr when it fails.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let output = self.docker(args);
        if !output.status.success() {
            panic!(
                "`docker {}` failed ({}) in test {}:\n{}",
                args.join(" "),
                output.status,
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// A container name unique to this test: `tw-test-<test>-<suffix>`, with characters Docker
    /// doesn't accept in names (like the `::` of test paths) replaced by `-`.
    pub fn container_name(&self, suffix: &str) -> String {
        format!("tw-test-{}-{}", sanitize(&self.name), sanitize(suffix))
    }

    /// Returns `tidewatch-test/busybox`, importing it from the host's busybox-static first if the
    /// engine doesn't have it. The image holds one file, `/busybox`.
    pub fn busybox_image(&self) -> String {
        if self
            .docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX_IMAGE])
            .status
            .success()
        {
            return BUSYBOX_IMAGE.to_string();
        }
        let busybox = find_static_busybox();
        // tar stores the file under its own name and the image must have it as `/busybox`; when the
        // binary is called something else (e.g. `busybox.static`), stage a copy under the right name.
        let staging;
        let dir = if busybox.file_name().is_some_and(|n| n == "busybox") {
            busybox
                .parent()
                .expect("a canonical file path has a parent")
                .to_path_buf()
        } else {
            staging = tempfile::tempdir().expect("cannot create a temporary folder to stage busybox");
            fs::copy(&busybox, staging.path().join("busybox"))
                .unwrap_or_else(|e| panic!("cannot copy {} to stage it: {e}", busybox.display()));
            staging.path().to_path_buf()
        };
        // `tar -C <dir> -c busybox | docker import - tidewatch-test/busybox`, without a shell.
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-c", "busybox"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `tar` to build {BUSYBOX_IMAGE}: {e}; install tar"));
        let import = Command::new("docker")
            .args(["import", "-", BUSYBOX_IMAGE])
            .stdin(tar.stdout.take().expect("tar stdout is piped"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run `docker import`: {e}"));
        let tar_status = tar.wait().expect("cannot wait for tar");
        if !tar_status.success() || !import.status.success() {
            panic!(
                "building {BUSYBOX_IMAGE} from {} failed (tar: {tar_status}, docker import: {}): {}",
                busybox.display(),
                import.status,
                String::from_utf8_lossy(&import.stderr).trim()
            );
        }
        BUSYBOX_IMAGE.to_string()
    }

    /// Starts a labelled busybox container named [`container_name(name_suffix)`](Self::container_name)
    /// running `/busybox sh -c <script>`, detached; returns the container id. `extra_args` go
    /// before the image (e.g. `["-p", "127.0.0.1::8080"]`).
    pub fn run_busybox(&self, name_suffix: &str, extra_args: &[&str], script: &str) -> String {
        let image = self.busybox_image();
        let name = self.container_name(name_suffix);
        let mut args = vec!["run", "-d", "--label", &self.label, "--name", &name];
        args.extend_from_slice(extra_args);
        args.extend_from_slice(&[&image, "/busybox", "sh", "-c", script]);
        self.docker_ok(&args)
    }

    /// Removes everything carrying this test's label. Errors are ignored (the thing may already be
    /// gone, or not removable yet), but we retry until nothing is listed, then warn about leftovers:
    /// this runs in `Drop`, where a panic during unwinding would abort the whole test binary.
    fn cleanup(&self) {
        let filter = format!("label={}", self.label);
        let deadline = Instant::now() + CLEANUP_DEADLINE;
        // Names of services removed so far: their task containers don't carry our label, only the service's.
        let mut services: Vec<String> = Vec::new();
        loop {
            let swarm = swarm_active();
            if swarm {
                // By name: `-q` prints shortened ids, but task containers are labelled with the name.
                let found = list(&["service", "ls", "--filter", &filter, "--format", "{{.Name}}"]);
                remove_all(&["service", "rm"], &found);
                services.extend(
                    found
                        .into_iter()
                        .filter(|id| !services.contains(id))
                        .collect::<Vec<_>>(),
                );
                for kind in ["secret", "config"] {
                    remove_all(&[kind, "rm"], &list(&[kind, "ls", "-q", "--filter", &filter]));
                }
            }
            let containers = self.containers(&filter, &services);
            remove_all(&["rm", "-f", "-v"], &containers);
            remove_all(&["network", "rm"], &list(&["network", "ls", "-q", "--filter", &filter]));
            remove_all(
                &["volume", "rm", "-f"],
                &list(&["volume", "ls", "-q", "--filter", &filter]),
            );

            let left = self.leftovers(&filter, swarm, &services);
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: Docker test {} could not remove: {}",
                    self.name,
                    left.join(", ")
                );
                return;
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Containers with our label, plus the task containers of the given (removed) services, which
    /// would otherwise take their stop timeout to go away and keep their networks busy meanwhile.
    fn containers(&self, filter: &str, services: &[String]) -> Vec<String> {
        let mut ids = list(&["ps", "-aq", "--filter", filter]);
        for service in services {
            ids.extend(list(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
            ]));
        }
        // A container can match both filters; removing it twice would only log an error.
        ids.sort();
        ids.dedup();
        ids
    }

    /// What is still there for this test, as "kind id" strings.
    fn leftovers(&self, filter: &str, swarm: bool, services: &[String]) -> Vec<String> {
        let mut left: Vec<String> = self
            .containers(filter, services)
            .into_iter()
            .map(|id| format!("container {id}"))
            .collect();
        let mut kinds = vec!["network", "volume"];
        if swarm {
            kinds.extend(["service", "secret", "config"]);
        }
        for kind in kinds {
            left.extend(
                list(&[kind, "ls", "-q", "--filter", filter])
                    .into_iter()
                    .map(|id| format!("{kind} {id}")),
            );
        }
        left
    }
}

impl Drop for DockerTest {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Takes the exclusive lock shared by all Docker tests on this machine (all test binaries, nextest
/// processes and threads: `flock` conflicts between separate opens, even in one process).
fn acquire_lock(test_name: &str) -> File {
    let path = std::env::temp_dir().join("tidewatch-docker-tests.lock");
    // A lock file created by another user may not be writable; a read-only handle locks just as well.
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .or_else(|_| File::open(&path))
        .unwrap_or_else(|e| panic!("cannot open the Docker test lock {}: {e}", path.display()));
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            // Only shown for failing tests or with --nocapture; helps spot a stuck holder.
            eprintln!(
                "{test_name}: waiting for the Docker test lock {} (one Docker test at a time)",
                path.display()
            );
            file.lock()
                .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        }
        Err(TryLockError::Error(e)) => panic!("cannot lock {}: {e}", path.display()),
    }
    file
}

/// Whether this engine is a swarm node; services, secrets and configs only exist then.
fn swarm_active() -> bool {
    run_with_timeout(
        Command::new("docker").args(["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        CLEANUP_CALL_TIMEOUT,
    )
    .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "active")
}

/// Ids printed by a `docker ... ls -q` style command; empty when it fails.
fn list(args: &[&str]) -> Vec<String> {
    match run_with_timeout(Command::new("docker").args(args), CLEANUP_CALL_TIMEOUT) {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// `docker <cmd...> <ids...>`, ignoring the outcome (the caller checks what is left).
fn remove_all(cmd: &[&str], ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let _ = run_with_timeout(Command::new("docker").args(cmd).args(ids), CLEANUP_CALL_TIMEOUT);
}

/// Replaces characters Docker rejects in object names (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) with `-`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The first statically linked busybox on PATH or at /bin/busybox, canonicalized. It must be static:
/// the image holds nothing else, so a dynamically linked one would fail with "no such file".
fn find_static_busybox() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("busybox")).collect())
        .unwrap_or_default();
    candidates.push(PathBuf::from("/bin/busybox"));
    let mut seen = Vec::new();
    for candidate in candidates {
        let Ok(path) = fs::canonicalize(&candidate) else {
            continue;
        };
        if seen.contains(&path) || !path.is_file() {
            continue;
        }
        if is_static_elf(&path) {
            return path;
        }
        seen.push(path);
    }
    let found = if seen.is_empty() {
        "no busybox found".to_string()
    } else {
        format!(
            "only dynamically linked ones: {}",
            seen.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    panic!(
        "Docker tests need a statically linked busybox on PATH or at /bin/busybox ({found}); install busybox-static (apt-get install busybox-static)"
    );
}

/// True when `path` is an ELF file without a PT_INTERP program header (i.e. no dynamic loader).
/// Unknown formats (big-endian, not ELF) count as static: we'd rather try than refuse.
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else { return false };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        return true;
    }
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
    };
    // ELF32 and ELF64 keep the program header table fields at different offsets.
    let (phoff, phentsize, phnum) = match bytes[4] {
        1 => (u32_at(0x1C), u16_at(0x2A), u16_at(0x2C)),
        2 => (u64_at(0x20), u16_at(0x36), u16_at(0x38)),
        _ => return true,
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return true;
    };
    const PT_INTERP: usize = 3;
    !(0..phnum).any(|i| u32_at(phoff + i * phentsize) == Some(PT_INTERP))
}
