//! The operator kit against a live scrape: a workload that touches every metric the
//! service registers, then checks that every metric the Grafana dashboard and the alert
//! rules use is really exported (no panel silently empty), and that the dashboard is a
//! well-formed Grafana model for the schema version it declares. The scrape is written
//! to `$EDGEQUOTA_SCRAPE_OUT` when set, for `promtool check metrics` in CI.

use crate::fake_stripe::FailRule;
use crate::helpers::ADMIN;
use crate::stigg::spawn_stigg_app;
use crate::webhooks::subscription_event;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Metric names referenced by PromQL in `text` (ours and the process collector's).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["edgequota_", "process_"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(prefix) {
            let start = from + i;
            let boundary = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| start + n);
            if boundary {
                out.insert(text[start..end].to_owned());
            }
            from = end;
        }
    }
    out
}

/// Sample names in a Prometheus text exposition.
fn exported(scrape: &str) -> HashSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

async fn workload(s: &crate::stigg::StiggApp) {
    let t = &s.t;
    let (org, request) = s.trial_request().await;
    let sub = request["stripeSubscriptionId"].as_str().unwrap().to_owned();
    // Quota: allow and deny, records recorded/duplicate/conflict, seed, entitlements.
    assert_eq!(t.app.check(&org).await.status(), 200);
    assert_eq!(t.app.record(&org, "ops-1", 10).await.status(), 200);
    assert_eq!(t.app.record(&org, "ops-1", 10).await.status(), 200);
    assert_eq!(t.app.record(&org, "ops-1", 11).await.status(), 409);
    assert_eq!(t.app.record(&org, "ops-2", 10_000).await.status(), 200);
    assert_eq!(t.app.check(&org).await.status(), 429);
    t.app.entitlements(&org).await;
    t.app
        .reset(&json!({"periodKey": "2026-03", "force": true}))
        .await;
    // Stripe (with one retry), Stigg, webhooks (processed, duplicate, rejected).
    t.stripe
        .fail(FailRule::server_error("/v1/subscriptions/", 1));
    t.ok(
        "/api/plans/upgrade.now",
        json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
    )
    .await;
    t.ok("/api/stigg/provision", request).await;
    let event = subscription_event(t, "customer.subscription.updated", &sub);
    t.deliver(&event).await;
    t.deliver(&event).await;
    t.deliver_raw(b"{}", Some("t=1,v1=00".into())).await;
    t.wait_for_event(event["id"].as_str().unwrap(), "processed")
        .await;
    // Idle org actors are stopped (1 s idle TTL in this app).
    t.app.wait_for_idle_eviction().await;
}

#[actix_web::test]
async fn every_metric_is_exported_and_the_dashboard_and_alerts_only_use_exported_ones() {
    let s = spawn_stigg_app().await;
    workload(&s).await;
    let res = s.t.app.get("/metrics", ADMIN).await;
    assert_eq!(res.status(), 200);
    let scrape = res.text().await.unwrap();
    if let Ok(path) = std::env::var("EDGEQUOTA_SCRAPE_OUT") {
        std::fs::write(&path, &scrape).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let names = exported(&scrape);

    // The workload reached every registered metric.
    let registered = &s.t.app.engine.context().metrics.names;
    let silent: Vec<_> = registered
        .iter()
        .filter(|n| {
            !names
                .iter()
                .any(|e| e == *n || e.starts_with(&format!("{n}_")))
        })
        .collect();
    assert!(silent.is_empty(), "metrics without samples: {silent:?}");

    // No dashboard panel or alert reads a metric that does not exist.
    for file in ["grafana/dashboard.json", "grafana/alerts.yml"] {
        let used = referenced(&repo_file(file));
        assert!(!used.is_empty(), "{file} uses no metric");
        let missing: Vec<_> = used.iter().filter(|n| !names.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics not exported: {missing:?}"
        );
    }
}

#[test]
fn the_dashboard_is_a_well_formed_grafana_model() {
    let d: Value = serde_json::from_str(&repo_file("grafana/dashboard.json")).expect("JSON");
    assert_eq!(
        d["schemaVersion"], 39,
        "the schema version the checks below follow"
    );
    for key in ["uid", "title"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default())
        .collect();
    assert!(
        vars.contains(&"datasource") && vars.contains(&"instance"),
        "{vars:?}"
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = HashSet::new();
    let mut cells = HashSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("integer panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        let kind = p["type"].as_str().expect("panel type");
        assert!(
            [
                "row",
                "timeseries",
                "stat",
                "gauge",
                "table",
                "bargauge",
                "text"
            ]
            .contains(&kind),
            "panel {id}: type {kind}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().expect("x"),
            g["y"].as_u64().expect("y"),
            g["w"].as_u64().expect("w"),
            g["h"].as_u64().expect("h"),
        );
        assert!(w >= 1 && h >= 1 && x + w <= 24, "panel {id}: gridPos {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {id} overlaps another at {cx},{cy}"
                );
            }
        }
        if kind == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(t["refId"].is_string(), "panel {id}: refId");
            if expr.contains("edgequota_") || expr.contains("process_") || expr.contains("up{") {
                assert!(
                    expr.contains("$instance"),
                    "panel {id} ignores $instance: {expr}"
                );
            }
        }
    }
}

#[test]
fn the_provisioning_files_point_at_the_dashboard_and_the_datasource() {
    let ds = repo_file("grafana/provisioning/datasources/prometheus.yml");
    assert!(ds.contains("type: prometheus") && ds.contains("apiVersion: 1"));
    let provider = repo_file("grafana/provisioning/dashboards/edgequota.yml");
    assert!(provider.contains("type: file") && provider.contains("path:"));
}
