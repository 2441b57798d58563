//! The Alertmanager's own counters, under Alertmanager's metric names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `integration="webhook"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabel {
    /// Integration type.
    pub integration: String,
}

/// `status="firing"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// Alert status.
    pub status: String,
}

/// Every metric the notifier exports (cheap to clone: shared counters).
#[derive(Clone, Default)]
pub struct Metrics {
    /// Notifications attempted (once per notification, not per retry).
    pub notifications: Family<IntegrationLabel, Counter>,
    /// Notifications that finally failed.
    pub notifications_failed: Family<IntegrationLabel, Counter>,
    /// Individual delivery attempts.
    pub requests: Family<IntegrationLabel, Counter>,
    /// Individual failed delivery attempts.
    pub requests_failed: Family<IntegrationLabel, Counter>,
    /// Alerts received, by status.
    pub alerts_received: Family<StatusLabel, Counter>,
    /// Alerts rejected as invalid.
    pub alerts_invalid: Counter,
    /// Aggregation groups alive.
    pub aggregation_groups: Gauge,
}

impl Metrics {
    /// Registers every metric under Alertmanager's names.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "alertmanager_notifications",
            "The total number of attempted notifications.",
            self.notifications.clone(),
        );
        r.register(
            "alertmanager_notifications_failed",
            "The total number of failed notifications.",
            self.notifications_failed.clone(),
        );
        r.register(
            "alertmanager_notification_requests",
            "The total number of attempted notification requests.",
            self.requests.clone(),
        );
        r.register(
            "alertmanager_notification_requests_failed",
            "The total number of failed notification requests.",
            self.requests_failed.clone(),
        );
        r.register(
            "alertmanager_alerts_received",
            "The total number of received alerts.",
            self.alerts_received.clone(),
        );
        r.register(
            "alertmanager_alerts_invalid",
            "The total number of received alerts that were invalid.",
            self.alerts_invalid.clone(),
        );
        r.register(
            "alertmanager_dispatcher_aggregation_groups",
            "Number of active aggregation groups",
            self.aggregation_groups.clone(),
        );
    }

    /// The counter value for an integration (tests and benches read it).
    pub fn sent(&self, integration: &str) -> u64 {
        self.notifications
            .get_or_create(&IntegrationLabel {
                integration: integration.into(),
            })
            .get()
    }

    /// Failed notifications for an integration.
    pub fn failed(&self, integration: &str) -> u64 {
        self.notifications_failed
            .get_or_create(&IntegrationLabel {
                integration: integration.into(),
            })
            .get()
    }
}
