//! The `dashboards:` section of the configuration file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// ```yaml
/// dashboards:
///   dir: /etc/tidewatch/dashboards   # *.yaml dashboards shown next to the built-in ones
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardsConfig {
    /// A folder of YAML dashboards, read at each request (default: none, only the built-in
    /// dashboards). A relative path is taken from the process' working directory.
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_fields() {
        let c: DashboardsConfig = yaml_serde::from_str("dir: /srv/boards\n").unwrap();
        assert_eq!(c.dir, Some(PathBuf::from("/srv/boards")));
        assert_eq!(
            yaml_serde::from_str::<DashboardsConfig>("{}").unwrap(),
            DashboardsConfig::default()
        );
        let e = yaml_serde::from_str::<DashboardsConfig>("folder: x\n").unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
    }
}
