//! The rollover supervisor of the real binary moves every org at the month boundary by
//! itself: observed through the stored period only (reads of an org elsewhere roll it on
//! the spot, which would hide a supervisor that does nothing).

use super::{client, create_org, entitlements, json_of, post, record, Server};
use crate::helpers::{eventually, ADMIN};
use serde_json::{json, Value};
use std::time::Duration;

async fn usage(c: &reqwest::Client, base: &str, org: &str, period: &str) -> Value {
    let url = format!("{base}/api/admin/usage.read?orgId={org}&periodKey={period}");
    json_of(c.get(url).bearer_auth(ADMIN)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_injected_clock_the_binary_rolls_every_org_over_at_the_month_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let start = "2027-02-28T23:59:50Z";
    let server = Server::start(dir.path(), &[("EDGEQUOTA__CLOCK__START_AT", start)]);
    let (c, base) = (client(), server.base.clone());
    let orgs = [create_org(&c, &base).await, create_org(&c, &base).await];
    for (i, org) in orgs.iter().enumerate() {
        let res = post(
            &c,
            &base,
            "/api/usage/record",
            &record(org, "r", 10 + i as u64, start),
        )
        .await
        .unwrap();
        assert_eq!(res.json::<Value>().await.unwrap()["periodKey"], "2027-02");
        // Created (and stored) in February, before the boundary the test is about.
        let stored = usage(&c, &base, org, "2027-02").await;
        assert_eq!(
            stored["storedPeriodKey"], "2027-02",
            "started too late: {stored}"
        );
    }
    for org in &orgs {
        eventually(
            "the supervisor to move the org into March",
            Duration::from_secs(30),
            || {
                let (c, base) = (c.clone(), base.clone());
                async move {
                    let stored = usage(&c, &base, org, "2027-02").await;
                    (stored["storedPeriodKey"] == "2027-03").then_some(())
                }
            },
        )
        .await;
    }
    for (i, org) in orgs.iter().enumerate() {
        assert_eq!(
            usage(&c, &base, org, "2027-02").await["metrics"]["api_call"]["used"],
            10 + i as u64,
            "February's usage is kept as history"
        );
        let e = entitlements(&c, &base, org).await;
        assert_eq!(
            (e["periodKey"].clone(), e["used"].clone()),
            (json!("2027-03"), json!(0))
        );
    }
    let reset = json!({"periodKey": "2027-03"});
    let answer = json_of(
        c.post(format!("{base}/api/admin/quotas.reset"))
            .bearer_auth(ADMIN)
            .json(&reset),
    )
    .await;
    assert_eq!(answer, json!({"updated": 0, "periodKey": "2027-03"}));
    assert!(server.terminate().success());
}
