//! The sources: each module reads one kind of input.
pub mod cgroup;
pub mod docker;
pub mod files;
pub mod host;
pub mod scrape;
