//! The autoscaler: policies, the HPA v2 algorithm, its control loop and decision log.
//!
//! Not built yet: issue #9 builds it. Nothing here is wired into the binary, and nothing
//! pretends to work.
