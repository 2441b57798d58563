//! End-to-end tests of the `tidewatch` binary: each starts the real process on a loopback port
//! with a temporary data folder (see `tidewatch-testkit`).

mod alerts;
mod cli;
mod client;
mod durability;
mod lifecycle;
mod promql_conformance;
mod promql_differential;
mod query_api;
mod reload;
mod services;

/// Generous bounds: these tests check behaviour, not speed (speed is measured in bench/).
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
pub const EXIT_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `check` every 50 ms until it returns true or `within` passes.
pub fn eventually(within: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check()
}
