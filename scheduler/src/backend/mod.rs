//! Who runs the containers: Docker hosts reconciled by the scheduler, or Docker Swarm.

pub mod docker;
pub mod swarm;
