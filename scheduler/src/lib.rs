//! The scheduler: service specs, reconciliation on Docker hosts and Swarm, service endpoints.
//!
//! Not built yet: issue #8 builds it. Nothing here is wired into the binary, and nothing
//! pretends to work.
