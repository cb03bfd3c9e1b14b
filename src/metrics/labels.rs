//! The fixed label sets of every labelled metric, and the series created from them at
//! start: a fresh dashboard then shows 0 rather than "No data", a rate over a series
//! that has not yet been touched is 0 rather than absent, and no label value can come
//! from a client (anything else is refused or folded into `other` before it gets here).

use super::Metrics;
use crate::domain::Metric;

/// Every value of the `method` label (as `http::context::method_label` folds them).
pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
];
pub const CHECK_RESULTS: [&str; 2] = ["allow", "deny"];
pub const RECORD_OUTCOMES: [&str; 4] = ["recorded", "duplicate", "conflict", "failed"];
pub const ROLLOVER_TRIGGERS: &[&str] = &["supervisor", "admin"];
pub const STATUS_CLASSES: &[&str] = &["2xx", "4xx", "5xx"];
pub const STRIPE_OUTCOMES: &[&str] = &["ok", "rejected", "retried", "failed"];
pub const STIGG_OPERATIONS: &[&str] = &["ProvisionCustomer", "ProvisionSubscription"];
pub const STIGG_OUTCOMES: &[&str] = &["ok", "graphql_error", "rejected", "failed"];
pub const WEBHOOK_FAMILIES: &[&str] = &[
    "customer.subscription",
    "subscription_schedule",
    "invoice",
    "customer",
    "other",
    "unknown",
];
pub const WEBHOOK_OUTCOMES: &[&str] = &[
    "queued",
    "duplicate",
    "ignored",
    "rejected",
    "processed",
    "failed",
    "outage",
    "dead",
];
pub const ORG_LOAD_OUTCOMES: &[&str] = &["loaded", "unknown", "unknown_cached"];
pub const QUEUES: &[&str] = &["webhooks", "stigg"];
/// Answers of the Envoy rate limit service.
pub const RLS_CODES: &[&str] = &[
    "ok",
    "over_limit",
    "unauthenticated",
    "invalid_argument",
    "unavailable",
    "internal",
];

/// What the series are made from besides the fixed sets above.
pub struct Known<'a> {
    /// The catalogue's metrics.
    pub metrics: &'a [Metric],
    /// Every route pattern with the method it answers.
    pub routes: &'a [(&'a str, &'a str)],
    /// Every Stripe operation name.
    pub stripe_operations: &'a [&'a str],
}

impl Metrics {
    /// Creates every labelled series the service can ever export, at 0.
    pub fn init_series(&self, known: &Known<'_>) {
        for metric in known.metrics {
            for result in CHECK_RESULTS {
                self.quota_checks
                    .with_label_values(&[metric.as_str(), result]);
                self.quota_consumes
                    .with_label_values(&[metric.as_str(), result]);
            }
            self.usage_units.with_label_values(&[metric.as_str()]);
        }
        for code in RLS_CODES {
            self.rls_requests.with_label_values(&[code]);
        }
        for outcome in RECORD_OUTCOMES {
            self.usage_records.with_label_values(&[outcome]);
        }
        for trigger in ROLLOVER_TRIGGERS {
            self.rollover_runs.with_label_values(&[trigger]);
        }
        for (route, method) in known.routes {
            let methods: &[&str] = if *method == "ANY" { METHODS } else { &[method] };
            for method in methods {
                for class in STATUS_CLASSES {
                    self.http_requests
                        .with_label_values(&[route, method, class]);
                }
            }
            self.http_duration.with_label_values(&[route]);
        }
        for op in known.stripe_operations {
            for outcome in STRIPE_OUTCOMES {
                self.stripe_requests.with_label_values(&[op, outcome]);
            }
            self.stripe_duration.with_label_values(&[op]);
        }
        for op in STIGG_OPERATIONS {
            for outcome in STIGG_OUTCOMES {
                self.stigg_requests.with_label_values(&[op, outcome]);
            }
            self.stigg_duration.with_label_values(&[op]);
        }
        for family in WEBHOOK_FAMILIES {
            for outcome in WEBHOOK_OUTCOMES {
                self.webhook_events.with_label_values(&[family, outcome]);
            }
        }
        for outcome in ORG_LOAD_OUTCOMES {
            self.org_loads.with_label_values(&[outcome]);
        }
        for queue in QUEUES {
            self.queue_drain_runs.with_label_values(&[queue]);
        }
    }
}
