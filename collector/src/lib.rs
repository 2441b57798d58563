//! The collector: container, cgroup, file, scrape and host sources, the disk buffer and the shipper.
//!
//! Not built yet: issue #5 builds it. Nothing here is wired into the binary, and nothing
//! pretends to work.
