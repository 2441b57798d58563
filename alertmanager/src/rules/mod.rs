//! Prometheus rule files, their evaluation, the alert state machine and promtool's formats.
//!
//! - [`RuleManager`] owns the groups loaded from rule files and evaluates each every
//!   `interval` through [`tidewatch_model::Query`]; recording results, `ALERTS` and
//!   `ALERTS_FOR_STATE` go back through [`tidewatch_model::Appender`], alerts to an
//!   [`AlertSink`](crate::AlertSink).
//! - [`router`] serves Prometheus' `GET /api/v1/rules` and `GET /api/v1/alerts`.
//! - [`check_rules`] and [`test_rules`] are `promtool check rules` and `promtool test rules`.
//!
//! See README.md beside this file for the semantics kept from Prometheus and the deviations.

mod alerting;
mod api;
mod eval;
mod expr;
mod file;
mod gofmt;
mod group;
mod manager;
mod template;
mod unittest;

pub use self::alerting::{Alert, AlertState, AlertingRule, RESOLVED_RETENTION_MS};
pub use self::api::router;
pub use self::eval::{EvalEnv, QueryRows, Row};
pub use self::expr::{Lang, lang_of};
pub use self::file::{
    CheckReport, CheckedGroup, CheckedRule, FileReport, GroupSpec, RuleFileError, RuleFileSpec, RuleSpec, check_rules,
    load_file, parse_text,
};
pub use self::group::{EvalOutcome, Group, Health, RecordingRule, Rule, RuleKind};
pub use self::manager::{RuleManager, RulesConfig, now_ms};
pub use self::template::{AlertData, expand_alert};
pub use self::unittest::{FileOutcome, MemSeries, TestEngine, TestReport, test_rules};
