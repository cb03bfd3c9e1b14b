//! Every Prometheus metric the service exports, described once, all prefixed
//! `edgequota_`. No metric carries an org label: orgs are unbounded, and a label per org
//! would explode the time-series count. Every label value comes from a fixed set
//! (`labels.rs`), and every series exists from the start.

pub mod labels;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};
use std::sync::Arc;

#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

pub struct Inner {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub quota_checks: IntCounterVec,
    pub quota_consumes: IntCounterVec,
    pub consume_persist_failures: IntCounter,
    pub decision_duration: Histogram,
    pub rls_requests: IntCounterVec,
    pub rls_duration: Histogram,
    pub usage_records: IntCounterVec,
    pub usage_units: IntCounterVec,
    pub actors_live: IntGauge,
    pub actor_starts: IntCounter,
    pub actor_idle_stops: IntCounter,
    pub org_loads: IntCounterVec,
    pub commit_batch_size: Histogram,
    pub commit_duration: Histogram,
    pub checkpoint_duration: Histogram,
    pub commit_errors: IntCounter,
    pub store_size_bytes: IntGauge,
    pub store_degraded: IntGauge,
    pub store_sync_interval_max: Gauge,
    pub rollover_runs: IntCounterVec,
    pub rollover_orgs: IntCounter,
    pub rollover_elsewhere: IntCounter,
    pub current_period: IntGauge,
    pub idempotency_purged: IntCounter,
    pub idempotency_purge_runs: IntCounter,
    pub idempotency_entries: IntGauge,
    pub debug_log_dropped: IntCounter,
    pub stripe_requests: IntCounterVec,
    pub stripe_duration: HistogramVec,
    pub webhook_events: IntCounterVec,
    pub webhook_queue_depth: IntGauge,
    pub webhook_oldest_queued_age: IntGauge,
    pub webhook_dead_letters: IntGauge,
    pub webhook_processing_duration: Histogram,
    pub queue_drain_runs: IntCounterVec,
    pub stigg_requests: IntCounterVec,
    pub stigg_duration: HistogramVec,
    pub stigg_outbox_depth: IntGauge,
    pub stigg_outbox_oldest_age: IntGauge,
    pub build_info: IntGauge,
    /// Every metric family the service exports (not counting the process collector).
    pub names: Vec<String>,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn name(n: &str) -> String {
    format!("edgequota_{n}")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let names = std::cell::RefCell::new(Vec::new());
        let counter_vec = |n: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name(n), help), labels)
                .unwrap_or_else(|e| panic!("metric {n}: {e}"));
            register(&registry, &names, c)
        };
        let counter = |n: &str, help: &str| {
            let c = IntCounter::new(name(n), help).unwrap_or_else(|e| panic!("metric {n}: {e}"));
            register(&registry, &names, c)
        };
        let gauge = |n: &str, help: &str| {
            let g = IntGauge::new(name(n), help).unwrap_or_else(|e| panic!("metric {n}: {e}"));
            register(&registry, &names, g)
        };
        let histogram = |n: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name(n), help).buckets(buckets))
                .unwrap_or_else(|e| panic!("metric {n}: {e}"));
            register(&registry, &names, h)
        };
        let http_duration = register(
            &registry,
            &names,
            HistogramVec::new(
                HistogramOpts::new(
                    name("http_request_duration_seconds"),
                    "HTTP request latency by route, from first byte of the handler to response",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
                &["route"],
            )
            .unwrap_or_else(|e| panic!("metric http duration: {e}")),
        );
        let stripe_duration = register(
            &registry,
            &names,
            HistogramVec::new(
                HistogramOpts::new(
                    name("stripe_request_duration_seconds"),
                    "Stripe API call latency by operation, over all attempts",
                )
                .buckets(vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["operation"],
            )
            .unwrap_or_else(|e| panic!("metric stripe duration: {e}")),
        );
        let stigg_duration = register(
            &registry,
            &names,
            HistogramVec::new(
                HistogramOpts::new(
                    name("stigg_request_duration_seconds"),
                    "Stigg GraphQL call latency by operation",
                )
                .buckets(vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["operation"],
            )
            .unwrap_or_else(|e| panic!("metric stigg duration: {e}")),
        );
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(pc));
        }
        let inner = Inner {
            http_requests: counter_vec(
                "http_requests_total",
                "HTTP requests by route, method and status class",
                &["route", "method", "status"],
            ),
            http_duration,
            quota_checks: counter_vec(
                "quota_checks_total",
                "Quota checks by metric and result (allow or deny)",
                &["metric", "result"],
            ),
            quota_consumes: counter_vec(
                "quota_consumes_total",
                "Quota consumes (decide and count) by metric and result (allow or deny)",
                &["metric", "result"],
            ),
            consume_persist_failures: counter(
                "consume_persist_failures_total",
                "Writes of consumed units to the store that failed (units kept in memory)",
            ),
            rls_requests: counter_vec(
                "rls_requests_total",
                "Envoy rate limit service requests by answer (ok, over_limit, or the gRPC error code)",
                &["code"],
            ),
            rls_duration: histogram(
                "rls_decision_duration_seconds",
                "Envoy rate limit service: request received to answer",
                vec![
                    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
                ],
            ),
            decision_duration: histogram(
                "quota_decision_duration_seconds",
                "In-process quota decision time: registry lookup to answer",
                vec![
                    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
                ],
            ),
            usage_records: counter_vec(
                "usage_records_total",
                "Usage records by outcome (recorded, duplicate, conflict, failed)",
                &["outcome"],
            ),
            usage_units: counter_vec(
                "usage_units_total",
                "Units of usage recorded, by metric",
                &["metric"],
            ),
            actors_live: gauge("org_actors", "Org actors currently running"),
            actor_starts: counter(
                "org_actor_starts_total",
                "Org actors started from the store",
            ),
            actor_idle_stops: counter(
                "org_actor_idle_stops_total",
                "Org actors stopped after being idle",
            ),
            org_loads: counter_vec(
                "org_loads_total",
                "Org look-ups that missed the live actors, by outcome (loaded from the store, unknown, unknown answered from the negative cache)",
                &["outcome"],
            ),
            commit_batch_size: histogram(
                "store_commit_batch_size",
                "Writes applied by one group commit",
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                ],
            ),
            commit_duration: histogram(
                "store_commit_duration_seconds",
                "Time to apply one group commit and make it durable",
                vec![
                    0.000_1, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            ),
            checkpoint_duration: histogram(
                "store_checkpoint_duration_seconds",
                "One pass of folding the ledger's write-ahead log into sled: a chunk of dirty counters, or the last chunk with the flush, sync and emptied log",
                vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            ),
            commit_errors: counter("store_commit_errors_total", "Group commits that failed"),
            store_size_bytes: gauge("store_size_bytes", "Size of the sled database on disk"),
            store_sync_interval_max: register(
                &registry,
                &names,
                Gauge::new(
                    name("store_sync_interval_max_seconds"),
                    "Longest time between two passes of the shared-store sync since start (drift window)",
                )
                .unwrap_or_else(|e| panic!("metric store_sync_interval_max_seconds: {e}")),
            ),
            store_degraded: gauge(
                "store_degraded",
                "1 while decisions are made from memory alone (the shared store is unreachable)",
            ),
            rollover_runs: counter_vec(
                "rollover_runs_total",
                "Period rollovers run, by trigger (supervisor or admin)",
                &["trigger"],
            ),
            rollover_orgs: counter("rollover_orgs_total", "Orgs moved into a new period"),
            rollover_elsewhere: counter(
                "rollover_sweeps_elsewhere_total",
                "Period sweeps this node left to another node sharing the store, which made them",
            ),
            current_period: gauge(
                "current_period",
                "The current period as YYYYMM, from the service clock",
            ),
            idempotency_purged: counter(
                "idempotency_purged_total",
                "Usage idempotency entries removed after the retention period",
            ),
            idempotency_purge_runs: counter(
                "idempotency_purge_runs_total",
                "Purges of expired usage idempotency entries that finished",
            ),
            idempotency_entries: gauge(
                "idempotency_entries",
                "Usage idempotency entries kept (recounted at each purge)",
            ),
            debug_log_dropped: counter(
                "debug_log_dropped_total",
                "DebugLog entries dropped because the writer fell behind",
            ),
            stripe_requests: counter_vec(
                "stripe_requests_total",
                "Stripe API calls by operation and outcome (ok, rejected, retried, failed)",
                &["operation", "outcome"],
            ),
            stripe_duration,
            webhook_events: counter_vec(
                "webhook_events_total",
                "Stripe webhook events by type family and outcome (queued, duplicate, ignored, rejected, processed, failed, outage, dead)",
                &["family", "outcome"],
            ),
            webhook_queue_depth: gauge(
                "webhook_queue_depth",
                "Stripe events stored and waiting to be processed",
            ),
            webhook_oldest_queued_age: gauge(
                "webhook_oldest_queued_age_seconds",
                "Age of the oldest Stripe event waiting to be processed (0 when none)",
            ),
            webhook_dead_letters: gauge(
                "webhook_dead_letters",
                "Stripe events parked after their last attempt failed (replayable)",
            ),
            webhook_processing_duration: histogram(
                "webhook_processing_duration_seconds",
                "Time to process one Stripe event (re-read from Stripe and store)",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            queue_drain_runs: counter_vec(
                "queue_drain_runs_total",
                "Finished drains of a durable queue by its supervisor (each tries every due job), by queue",
                &["queue"],
            ),
            stigg_requests: counter_vec(
                "stigg_requests_total",
                "Stigg GraphQL calls by operation and outcome (ok, graphql_error, rejected, failed)",
                &["operation", "outcome"],
            ),
            stigg_duration,
            stigg_outbox_depth: gauge(
                "stigg_outbox_depth",
                "Stigg provisioning jobs waiting in the outbox",
            ),
            stigg_outbox_oldest_age: gauge(
                "stigg_outbox_oldest_pending_age_seconds",
                "Age of the oldest pending Stigg provisioning job (0 when none)",
            ),
            build_info: {
                let g = IntGauge::with_opts(
                    Opts::new(name("build_info"), "Build information")
                        .const_label("version", env!("CARGO_PKG_VERSION")),
                )
                .unwrap_or_else(|e| panic!("metric build_info: {e}"));
                g.set(1);
                register(&registry, &names, g)
            },
            registry,
            names: names.into_inner(),
        };
        Metrics(Arc::new(inner))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    names: &std::cell::RefCell<Vec<String>>,
    c: C,
) -> C {
    names
        .borrow_mut()
        .extend(c.desc().iter().map(|d| d.fq_name.clone()));
    // Registration only fails on duplicate names, a programming error caught by tests.
    if let Err(e) = registry.register(Box::new(c.clone())) {
        panic!("metric registration: {e}");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_renders() {
        let m = Metrics::new();
        m.quota_checks
            .with_label_values(&["api_call", "allow"])
            .inc();
        m.http_requests
            .with_label_values(&["/x", "GET", "2xx"])
            .inc();
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# HELP")) {
            let metric = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(
                metric.starts_with("edgequota_") || metric.starts_with("process_"),
                "{metric}"
            );
        }
        assert!(
            text.contains("edgequota_quota_checks_total{metric=\"api_call\",result=\"allow\"} 1")
        );
    }
}
