//! The hostile-request run itself: every endpoint, a few thousand spoiled requests,
//! and what must hold afterwards.

use super::*;

#[actix_web::test]
async fn thousands_of_hostile_requests_get_a_4xx_envelope_and_change_nothing() {
    let seed: u64 = std::env::var("EDGEQUOTA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xf022_2026);
    println!("fuzz seed: {seed} (EDGEQUOTA_TEST_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let s = spawn_stigg_app().await;
    let t = &s.t;
    let (org, customer, sub) = t.org_on_trial().await;
    let other = t.app.create_org().await;
    let res = t
        .app
        .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
        .await;
    let minted = body(res).await;
    let key_id = minted["keyId"].as_str().unwrap().to_owned();
    let key = minted["apiKey"].as_str().unwrap().to_owned();
    let other_key = t.app.mint_key(&other).await;
    assert_eq!(t.app.record(&org, "base", 11).await.status(), 200);
    let before = (
        t.app.entitlements(&org).await,
        t.app.entitlements(&other).await,
    );
    let stripe_writes = t.writes();
    let scrape_before = t.app.get("/metrics", ADMIN).await.text().await.unwrap();
    let now = t.app.clock_now();
    let list = endpoints(&org, &key_id, &customer, &sub, &now);
    let mut cases = 0;
    for round in 0..2_500 {
        let ep = &list[rng.gen_range(0..list.len())];
        let token = if ep.admin { ADMIN } else { SERVICE };
        let (case, token, bytes) = match rng.gen_range(0..10) {
            // One field spoiled.
            0..=5 => {
                let (field, kind) = ep.fields[rng.gen_range(0..ep.fields.len())];
                let mut b = ep.body.clone();
                let (holder, name) = slot(&mut b, field);
                match invalid(kind, &mut rng) {
                    Some(v) => holder[name] = v,
                    None => {
                        holder.as_object_mut().unwrap().remove(name);
                    }
                }
                let shown = holder[name].to_string();
                (
                    format!("{} with {field} = {shown:.80}", ep.path),
                    token,
                    b.to_string().into_bytes(),
                )
            }
            // The whole body spoiled.
            6..=8 => (
                format!("{} with a spoiled body", ep.path),
                token,
                spoiled_body(&ep.body, &mut rng),
            ),
            // Another org's key for this org (endpoints that name the org).
            _ if ep.names_org() && !ep.admin => (
                format!("{} with another org's key", ep.path),
                other_key.as_str(),
                ep.body.to_string().into_bytes(),
            ),
            _ => (
                format!("{} without credentials", ep.path),
                "",
                ep.body.to_string().into_bytes(),
            ),
        };
        let case = format!("seed {seed}, round {round}: {case}");
        let mut req = t
            .app
            .client
            .post(t.app.url(ep.path))
            .header("content-type", "application/json")
            .body(bytes);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{case}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        if ep.path == BATCH {
            assert_batch_refused(status, &text, &case);
        } else {
            assert_envelope(status, &text, &case);
        }
        // A refused consume or record counts nothing, at once (not only by the end).
        if ep.counts() {
            let usage = t.app.entitlements(&org).await;
            assert_eq!(usage, before.0, "{case}: the org's usage changed");
        }
        cases += 1;
    }
    cases += super::intake::hostile_deliveries(t, &sub, &mut rng, seed).await;
    // Bad query strings and tenant headers on the GET endpoints.
    let gets = [
        "/api/admin/usage.read?orgId={org}&periodKey=2026-13",
        "/api/admin/usage.read?orgId=&periodKey=2026-03",
        "/api/admin/usage.read?orgId={org}&orgId={org}&periodKey=2026-03",
        "/api/admin/debug-log?limit=0",
        "/api/admin/debug-log?limit=abc",
        "/api/admin/debug-log?limit=100000",
        "/api/admin/webhooks.list?state=lost",
        "/api/admin/webhooks.list?cursor=-1",
        "/api/admin/webhooks.list?limit=1&limit=2",
        "/api/invoices.list?limit=101",
        "/api/invoices.list?cursor=in%2F..",
        "/api/stigg/provision.status?orgId=%01",
        "/api/orgs/api-keys.list?orgId=",
        "/api/orgs/api-keys.list?orgId={long}",
    ];
    let long = "o".repeat(200);
    for _ in 0..300 {
        let path = gets[rng.gen_range(0..gets.len())]
            .replace("{org}", &org)
            .replace("{long}", &long);
        let res = t.app.get(&path, ADMIN).await;
        let status = res.status().as_u16();
        assert_envelope(
            status,
            &res.text().await.unwrap(),
            &format!("seed {seed}: GET {path}"),
        );
        cases += 1;
    }
    for tenant in ["", " org", "org\u{1}", &long] {
        let res = t
            .app
            .client
            .get(t.app.url("/api/me/entitlements.read"))
            .bearer_auth(SERVICE)
            .header("x-tenant-id", tenant)
            .send()
            .await;
        if let Ok(res) = res {
            let status = res.status().as_u16();
            assert_envelope(
                status,
                &res.text().await.unwrap(),
                &format!("tenant {tenant:.20?}"),
            );
        }
    }
    assert!(cases >= 3_000, "{cases} cases");
    // Nothing the requests targeted changed.
    let after = (
        t.app.entitlements(&org).await,
        t.app.entitlements(&other).await,
    );
    assert_eq!(before, after, "seed {seed}");
    assert_eq!(
        t.writes(),
        stripe_writes,
        "seed {seed}: Stripe was written to"
    );
    assert!(s.stigg.calls().is_empty(), "seed {seed}: Stigg was called");
    for state in ["queued", "processed", "dead", "ignored"] {
        let events = t.events_in(state).await;
        assert!(events.is_empty(), "seed {seed}: {state} events: {events:?}");
    }
    let res = t
        .app
        .post(
            "/api/quota/check",
            &key,
            &json!({"orgId": org, "metric": "api_call"}),
        )
        .await;
    assert_eq!(res.status(), 200, "seed {seed}: the org's key was revoked");
    let res = t
        .app
        .get(&format!("/api/orgs/api-keys.list?orgId={org}"), SERVICE)
        .await;
    assert_eq!(
        body(res).await.as_array().unwrap().len(),
        1,
        "seed {seed}: keys changed"
    );
    let scrape_after = t.app.get("/metrics", ADMIN).await.text().await.unwrap();
    let grown = series(&scrape_after).saturating_sub(series(&scrape_before));
    assert!(grown <= 40, "seed {seed}: {grown} new series");
}

/// A batch is refused as a whole (a 4xx envelope) or event by event: a 200 whose every
/// result is a 4xx with the envelope as its body (nothing accepted).
fn assert_batch_refused(status: u16, text: &str, case: &str) {
    if status != 200 {
        assert_envelope(status, text, case);
        return;
    }
    let b: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {text:.300}"));
    let results = b["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{case}: no results: {text:.300}"));
    assert!(!results.is_empty(), "{case}: {text:.300}");
    for r in results {
        let status = r["status"].as_u64().map_or(0, |s| s as u16);
        assert_envelope(status, &r["body"].to_string(), &format!("{case} (event)"));
    }
}
