//! Every series the dashboard and the alert rules query exists in a scrape taken right
//! after start, before any traffic: panels show 0, not "No data", and rates are 0, not
//! absent.

use crate::helpers::*;
use std::path::PathBuf;

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every selector of our metrics in `promql`: the name and its `label="value"` matchers
/// (regex matchers and the scrape's own labels are ignored).
fn selectors(promql: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < promql.len() {
        let rest = &promql[i..];
        let starts = rest.starts_with("edgequota_") || rest.starts_with("process_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if !(starts && boundary) {
            i += 1;
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        let mut matchers = Vec::new();
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for m in rest[end + 1..close].split(',') {
                if let Some((k, v)) = m.split_once("=\"") {
                    let k = k.trim();
                    if !k.ends_with(['=', '!', '~']) && k != "instance" && k != "job" {
                        matchers.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
                    }
                }
            }
        }
        out.push((name, matchers));
        i += end;
    }
    out
}

#[actix_web::test]
async fn a_scrape_right_after_start_has_every_series_the_dashboard_and_alerts_query() {
    let app = spawn_app().await;
    let scrape = app.get("/metrics", ADMIN).await.text().await.unwrap();
    let samples: Vec<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let mut queried = selectors(&repo_file("grafana/alerts.yml"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("grafana/dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() > 20,
        "dashboard expressions found: {}",
        exprs.len()
    );
    for e in &exprs {
        queried.extend(selectors(e));
    }
    assert!(
        queried.iter().any(|(_, m)| !m.is_empty()),
        "a labelled selector exists"
    );
    let mut missing = Vec::new();
    for (name, matchers) in &queried {
        let found = samples.iter().any(|line| {
            let (series, _) = line.split_once(' ').unwrap_or((line, ""));
            let sample_name = series.split('{').next().unwrap_or_default();
            sample_name == name
                && matchers
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        });
        if !found {
            missing.push(format!("{name}{matchers:?}"));
        }
    }
    assert!(missing.is_empty(), "not in a fresh scrape: {missing:?}");
    // And the labelled families the panels break down exist for every fixed label value.
    for series in [
        "edgequota_quota_checks_total{metric=\"api_call\",result=\"deny\"} 0",
        "edgequota_usage_records_total{outcome=\"failed\"} 0",
        "edgequota_webhook_events_total{family=\"customer.subscription\",outcome=\"dead\"} 0",
        "edgequota_stripe_requests_total{operation=\"subscriptions.create\",outcome=\"failed\"} 0",
        "edgequota_stigg_requests_total{operation=\"ProvisionSubscription\",outcome=\"failed\"} 0",
        "edgequota_http_requests_total{method=\"POST\",route=\"/api/quota/check\",status=\"5xx\"} 0",
        "edgequota_rollover_runs_total{trigger=\"admin\"} 0",
    ] {
        assert!(scrape.lines().any(|l| l == series), "{series}");
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
