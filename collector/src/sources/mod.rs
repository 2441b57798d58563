//! The sources: each module reads one kind of input.
pub mod cgroup;
pub mod host;
pub mod scrape;
pub mod docker;
pub mod files;
