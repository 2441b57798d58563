//! The routing tree: matchers per node, settings inherited from the parent, `continue`, and the
//! node keys Alertmanager prints in group keys (`{}/{owner="team-A"}`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{AlertmanagerConfigFile, ConfigError, RouteConfig, Scalar};
use super::matchers::{LabelSet, MatchType, Matcher, Matchers, parse_matchers};

/// The settings a route node applies to the alerts it takes.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteOpts {
    /// Receiver name.
    pub receiver: String,
    /// Labels to group by (sorted, without `...`).
    pub group_by: Vec<String>,
    /// `group_by: ['...']`: every label.
    pub group_by_all: bool,
    /// Wait before the first notification of a group.
    pub group_wait: Duration,
    /// Wait between notifications of a group.
    pub group_interval: Duration,
    /// Wait before re-sending an unchanged notification.
    pub repeat_interval: Duration,
    /// Time intervals when this route is muted.
    pub mute_time_intervals: Vec<String>,
    /// Time intervals outside which this route is muted.
    pub active_time_intervals: Vec<String>,
}

/// A compiled route node.
#[derive(Clone, Debug)]
pub struct Route {
    /// Position in the tree (root = ""), unique per node: identifies the node's groups.
    pub id: String,
    /// Alertmanager's `Route.Key()`.
    pub key: String,
    /// The node's own matchers.
    pub matchers: Matchers,
    /// Effective settings.
    pub opts: RouteOpts,
    /// Keep matching siblings after this one.
    pub continue_matching: bool,
    /// Children.
    pub routes: Vec<Route>,
}

const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

impl Route {
    /// Compiles the root route of a config.
    pub fn compile_root(file: &AlertmanagerConfigFile) -> Result<Route, ConfigError> {
        let Some(root) = &file.config.route else {
            return Err(file.error("route", "", "no route provided in config"));
        };
        if root.continue_matching {
            return Err(file.error("route.continue", "continue", "cannot have continue in root route"));
        }
        let has_matchers = root.matchers.as_ref().is_some_and(|m| !m.is_empty())
            || root.match_eq.as_ref().is_some_and(|m| !m.is_empty())
            || root.match_re.as_ref().is_some_and(|m| !m.is_empty());
        if has_matchers {
            return Err(file.error("route", "match", "root route must not have any matchers"));
        }
        let Some(receiver) = root.receiver.clone().filter(|r| !r.is_empty()) else {
            return Err(file.error("route.receiver", "route:", "root route must specify a default receiver"));
        };
        let base = RouteOpts {
            receiver,
            group_by: Vec::new(),
            group_by_all: false,
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        };
        let route = compile(file, root, &base, None, "", "route")?;
        if route.opts.group_interval.is_zero() {
            return Err(file.error(
                "route.group_interval",
                "group_interval",
                "group_interval cannot be zero",
            ));
        }
        if route.opts.repeat_interval.is_zero() {
            return Err(file.error(
                "route.repeat_interval",
                "repeat_interval",
                "repeat_interval cannot be zero",
            ));
        }
        Ok(route)
    }

    /// The nodes that take an alert with these labels, in tree order (Alertmanager's `Match`).
    pub fn match_labels<'a>(&'a self, labels: &LabelSet) -> Vec<&'a Route> {
        if !self.matchers.matches(labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let matches = child.match_labels(labels);
            let matched = !matches.is_empty();
            all.extend(matches);
            if matched && !child.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// Every node, depth first.
    pub fn walk<'a>(&'a self, out: &mut Vec<&'a Route>) {
        out.push(self);
        for c in &self.routes {
            c.walk(out);
        }
    }
}

fn legacy(
    file: &AlertmanagerConfigFile,
    field: &str,
    map: Option<&BTreeMap<String, Scalar>>,
    regex: bool,
) -> Result<Vec<Matcher>, ConfigError> {
    let mut out = Vec::new();
    for (name, Scalar(value)) in map.into_iter().flatten() {
        let (kind, value) = if regex {
            (MatchType::Regex, format!("^(?:{value})$"))
        } else {
            (MatchType::Equal, value.clone())
        };
        out.push(Matcher::new(name, kind, value).map_err(|e| file.error(format!("{field}.{name}"), name, e))?);
    }
    Ok(out)
}

/// The matchers of a node or an inhibition side, from the three ways of writing them.
pub fn matchers_of(
    file: &AlertmanagerConfigFile,
    field: &str,
    eq: Option<&BTreeMap<String, Scalar>>,
    re: Option<&BTreeMap<String, Scalar>>,
    strings: Option<&Vec<String>>,
) -> Result<Matchers, ConfigError> {
    let mut all = legacy(file, field, eq, false)?;
    all.extend(legacy(file, field, re, true)?);
    for (i, s) in strings.into_iter().flatten().enumerate() {
        let parsed = parse_matchers(s).map_err(|e| file.error(format!("{field}.matchers[{i}]"), s, e))?;
        all.extend(parsed);
    }
    let mut m = Matchers(all);
    m.sort();
    Ok(m)
}

fn compile(
    file: &AlertmanagerConfigFile,
    cfg: &RouteConfig,
    parent: &RouteOpts,
    parent_key: Option<&str>,
    id: &str,
    field: &str,
) -> Result<Route, ConfigError> {
    let matchers = matchers_of(
        file,
        field,
        cfg.match_eq.as_ref(),
        cfg.match_re.as_ref(),
        cfg.matchers.as_ref(),
    )?;
    let mut opts = parent.clone();
    opts.mute_time_intervals = cfg.mute_time_intervals.clone();
    opts.active_time_intervals = cfg.active_time_intervals.clone();
    if let Some(r) = cfg.receiver.as_ref().filter(|r| !r.is_empty()) {
        opts.receiver = r.clone();
    }
    if let Some(group_by) = &cfg.group_by {
        let all = group_by.iter().any(|l| l == "...");
        if all && group_by.len() > 1 {
            return Err(file.error(
                format!("{field}.group_by"),
                "...",
                "cannot have wildcard group_by (`...`) and other labels at the same time",
            ));
        }
        for l in group_by.iter().filter(|l| *l != "...") {
            if !super::matchers::valid_label_name(l) {
                return Err(file.error(format!("{field}.group_by"), l, format!("invalid label name {l:?}")));
            }
        }
        opts.group_by_all = all;
        let mut labels: Vec<String> = group_by.iter().filter(|l| *l != "...").cloned().collect();
        labels.sort();
        labels.dedup();
        opts.group_by = labels;
    }
    if let Some(d) = cfg.group_wait {
        opts.group_wait = d.as_std();
    }
    if let Some(d) = cfg.group_interval {
        if d.as_std().is_zero() {
            return Err(file.error(format!("{field}.group_interval"), "group_interval", "cannot be zero"));
        }
        opts.group_interval = d.as_std();
    }
    if let Some(d) = cfg.repeat_interval {
        if d.as_std().is_zero() {
            return Err(file.error(format!("{field}.repeat_interval"), "repeat_interval", "cannot be zero"));
        }
        opts.repeat_interval = d.as_std();
    }
    if !file.config.receivers.iter().any(|r| r.name == opts.receiver) {
        return Err(file.error(
            format!("{field}.receiver"),
            &format!("receiver: {}", opts.receiver),
            format!("undefined receiver {:?} used in route", opts.receiver),
        ));
    }
    let key = match parent_key {
        None => matchers.to_string(),
        Some(p) => format!("{p}/{matchers}"),
    };
    let mut routes = Vec::with_capacity(cfg.routes.len());
    for (i, child) in cfg.routes.iter().enumerate() {
        routes.push(compile(
            file,
            child,
            &opts,
            Some(&key),
            &format!("{id}/{i}"),
            &format!("{field}.routes[{i}]"),
        )?);
    }
    Ok(Route {
        id: id.to_string(),
        key,
        matchers,
        opts,
        continue_matching: cfg.continue_matching,
        routes,
    })
}

/// The labels an alert is grouped by on a route.
pub fn group_labels(labels: &LabelSet, opts: &RouteOpts) -> LabelSet {
    if opts.group_by_all {
        return labels.clone();
    }
    opts.group_by
        .iter()
        .filter_map(|l| labels.get(l).map(|v| (l.clone(), v.clone())))
        .collect()
}
