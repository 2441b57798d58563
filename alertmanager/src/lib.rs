//! The alert engine: rule groups, alert state, routing, receivers and the Alertmanager API.
//!
//! Not built yet: issue #7 builds it. Nothing here is wired into the binary, and nothing
//! pretends to work.
