//! Alertmanager: routing, grouping, inhibition, silences and receivers.
