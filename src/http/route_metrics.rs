//! The HTTP metric series of every route, resolved once at start: the middleware finds
//! a request's counters by its path in one map lookup, instead of matching the route
//! table a second time and hashing the label values on every request. Every route is a
//! static path, so the path is the route. Anything else (an unknown path, a method the
//! route does not answer, a 1xx/3xx) takes the general labelled path.

use crate::metrics::Metrics;
use foldhash::HashMap;
use prometheus::{Histogram, IntCounter};

/// Status classes with pre-resolved counters, in this order.
const CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

struct Series {
    method: &'static str,
    by_class: [IntCounter; 3],
    duration: Histogram,
}

pub struct RouteMetrics {
    metrics: Metrics,
    /// Path → the series of each method the route answers (`ANY`: GET and POST).
    routes: HashMap<&'static str, Vec<Series>>,
}

fn class_index(status: u16) -> Option<usize> {
    match status {
        200..=299 => Some(0),
        400..=499 => Some(1),
        500..=599 => Some(2),
        _ => None,
    }
}

pub fn class_label(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl RouteMetrics {
    pub fn new(metrics: &Metrics, routes: &[(&'static str, &'static str)]) -> Self {
        let mut map: HashMap<&'static str, Vec<Series>> = HashMap::default();
        for &(path, method) in routes {
            let methods = if method == "ANY" {
                vec!["GET", "POST"]
            } else {
                vec![method]
            };
            for m in methods {
                let by_class =
                    CLASSES.map(|c| metrics.http_requests.with_label_values(&[path, m, c]));
                map.entry(path).or_default().push(Series {
                    method: m,
                    by_class,
                    duration: metrics.http_duration.with_label_values(&[path]),
                });
            }
        }
        Self {
            metrics: metrics.clone(),
            routes: map,
        }
    }

    /// Counts one request; returns its route label (the path if it is a route).
    pub fn observe<'p>(
        &self,
        path: &'p str,
        method: &'static str,
        status: u16,
        secs: f64,
    ) -> &'p str {
        let Some(all) = self.routes.get(path) else {
            self.fallback("unmatched", method, status, secs);
            return "unmatched";
        };
        let series = all.iter().find(|s| s.method == method);
        match (series, class_index(status)) {
            (Some(s), Some(class)) => {
                s.by_class[class].inc();
                s.duration.observe(secs);
            }
            _ => self.fallback(path, method, status, secs),
        }
        path
    }

    /// The labelled path, for what has no pre-resolved series.
    fn fallback(&self, route: &str, method: &str, status: u16, secs: f64) {
        self.metrics
            .http_requests
            .with_label_values(&[route, method, class_label(status)])
            .inc();
        self.metrics
            .http_duration
            .with_label_values(&[route])
            .observe(secs);
    }
}
