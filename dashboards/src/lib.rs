//! The browser UI: static files embedded in the binary, and dashboard definitions (YAML) served as
//! JSON. The binary merges [`router`] into its own; every page reads the Prometheus, Loki,
//! Alertmanager and scheduler APIs served on the same port.

mod assets;
mod config;
mod definitions;
mod http;

pub use crate::config::DashboardsConfig;
pub use crate::definitions::{Dashboard, DefinitionError, Panel, PanelKind, Source, Variable, builtin_dashboards};
pub use crate::http::router;
