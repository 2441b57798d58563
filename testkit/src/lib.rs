//! Test support shared by every Tidewatch crate (used as a dev-dependency).
//!
//! - [`require_docker`] gates a test on a Docker engine, serializes Docker tests across processes and
//!   removes everything the test labelled, before and after it runs (also when it panics).
//! - [`TestServer`] runs the real `tidewatch` binary on a loopback port and a throw-away data folder.
//! - [`tidewatch_bin`] and [`free_port`] are the small pieces both of those need.
//!
//! Everything here is synchronous std code: tests need no async runtime to drive Docker (through its
//! CLI) or HTTP (through `ureq`). Helpers panic only on test-setup failures, with a message that says
//! what to do.

mod docker;
mod process;
pub mod promqltest;
mod server;

pub use docker::{BUSYBOX_IMAGE, DockerTest, LABEL_KEY, require_docker};
pub use server::TestServer;

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

/// Path of the built `tidewatch` binary.
///
/// Cargo only sets `CARGO_BIN_EXE_tidewatch` for tests of the package that owns the binary, so other
/// crates find it next to their own test executable: tests live in `target/<profile>/deps/`, the
/// binary in `target/<profile>/`. `TIDEWATCH_BIN` overrides the search (e.g. for an installed build).
pub fn tidewatch_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TIDEWATCH_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TIDEWATCH_BIN is set to {} but no file is there; unset it or point it at a built tidewatch binary",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("cannot find the path of the running test executable");
    let name = format!("tidewatch{}", std::env::consts::EXE_SUFFIX);
    // Usually `<profile>/deps/<test>-<hash>`; also accept an executable sitting directly in `<profile>/`.
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(profile_dir) = dir.parent()
        {
            candidates.push(profile_dir.join(&name));
        }
        candidates.push(dir.join(&name));
    }
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => found.clone(),
        None => panic!(
            "the tidewatch binary was not found (looked at {}); build it with `cargo build` \
             (same profile as the tests), or set TIDEWATCH_BIN to its path",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The listener is closed before returning, so another process could take the port in between; that
/// race is rare enough for tests, and the server under test reports a clear bind error if it happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("bound listener has no local address")
        .port()
}
