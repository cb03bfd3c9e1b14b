//! Stigg outages lose nothing and use up nothing (SPEC §6, as for Stripe): a refused key
//! (401 after a rotation), 5xx answers and an unreachable Stigg keep a provisioning job
//! pending with no counted attempt across many retries and most of
//! `stigg.outage_budget_hours` (72) on the service clock; when Stigg is back (the right
//! key, healthy, reachable), the job completes. Past the budget, attempts count.

use super::{stigg_settings, StiggApp};
use crate::billing::{spawn_billing_app_with, BillingApp};
use crate::fake_stigg::{FakeStigg, StiggFailure, STIGG_API_KEY};
use crate::helpers::{assert_error, body, eventually, free_port, spawn_app_in};
use chrono::{DateTime, Utc};
use edgequota::clock::Clock;
use edgequota::store::jobs::{Job, JobState};
use edgequota::store::stigg_jobs::StiggPayload;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

/// The suite's Stigg settings with a low `max_attempts`, so that an outage that did
/// count would park the job within a few attempts.
fn stigg_env<'a>(key: &'a str, url: &'a str) -> Vec<(&'static str, &'a str)> {
    let mut settings = stigg_settings(key, url);
    settings.push(("EDGEQUOTA__STIGG__MAX_ATTEMPTS", "3"));
    settings
}

/// The service talking to Stigg at `url` with `key`, and a fake Stigg (which only
/// accepts `STIGG_API_KEY`).
async fn spawn(key: &str, url: Option<&str>) -> StiggApp {
    let stigg = FakeStigg::start().await;
    let url = url.map_or_else(|| stigg.url(), str::to_owned);
    let t = spawn_billing_app_with(&stigg_env(key, &url)).await;
    StiggApp { t, stigg }
}

/// Restarts the service on its data directory with the right key and the fake Stigg's
/// address (the operator's fix), a minute later on the service clock.
async fn restart_fixed(s: StiggApp) -> StiggApp {
    let StiggApp { t, stigg } = s;
    let BillingApp { app, stripe } = t;
    let later = app.clock.now() + chrono::Duration::minutes(1);
    let dir = app.stop().await;
    let (stripe_url, stigg_url) = (stripe.url(), stigg.url());
    let mut env = stigg_env(STIGG_API_KEY, &stigg_url);
    env.push(("EDGEQUOTA__STRIPE__API_KEY", crate::fake_stripe::API_KEY));
    env.push(("EDGEQUOTA__STRIPE__BASE_URL", stripe_url.as_str()));
    let app = spawn_app_in(dir, later, &env).await;
    StiggApp {
        t: BillingApp { app, stripe },
        stigg,
    }
}

/// The org's job as the outbox stores it (the status endpoint shows no counted attempts).
async fn stored_job(s: &StiggApp, org: &str) -> Job<StiggPayload> {
    let queue = &s.t.app.engine.backend().stigg;
    edgequota::store::JobQueue::get(&**queue, org)
        .await
        .expect("outbox read")
        .expect("a provisioning job")
}

/// Asks for the provisioning while Stigg is out: a 500 saying it is kept, the job pending.
async fn provision_during_outage(s: &StiggApp) -> String {
    let (org, request) = s.trial_request().await;
    let res = s.t.post("/api/stigg/provision", request).await;
    let b = assert_error(res, 500, "INTERNAL").await;
    assert!(b["message"].as_str().unwrap().contains("retried"), "{b}");
    org
}

/// Sets the service clock to `at` and waits for the attempt the outbox then makes (the
/// first one stamped at or after `at`); the job afterwards.
async fn attempt_at(s: &StiggApp, org: &str, at_ms: i64) -> Job<StiggPayload> {
    s.t.app
        .clock
        .set(DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap());
    let what = format!("an outbox attempt at {at_ms} ms");
    eventually(&what, Duration::from_secs(5), || async {
        let job = stored_job(s, org).await;
        (job.payload.updated_ms >= at_ms || job.state != JobState::Queued).then_some(job)
    })
    .await
}

/// Drives the outbox through an outage: retries in 40 s steps (past the capped 30 s
/// backoff) until well past `max_attempts`, then one attempt at 10, 40, 70 and 71 h 50
/// into it. After each, the job is pending with no counted attempt. Returns the outage's
/// start (ms).
async fn ride_out(s: &StiggApp, org: &str, error: &str) -> i64 {
    let job = eventually("ten outage attempts", Duration::from_secs(20), || async {
        s.t.app.clock.advance(chrono::Duration::seconds(40));
        let job = stored_job(s, org).await;
        assert_eq!(job.state, JobState::Queued, "{job:?}");
        assert_eq!(job.failures, 0, "{job:?}");
        (job.attempts >= 10).then_some(job)
    })
    .await;
    let since = job.outage_since_ms.expect("the outage's start is recorded");
    for at in [
        10 * HOUR_MS,
        40 * HOUR_MS,
        70 * HOUR_MS,
        71 * HOUR_MS + 50 * 60_000,
    ] {
        let job = attempt_at(s, org, since + at).await;
        let h = at / HOUR_MS;
        assert_eq!(job.state, JobState::Queued, "{h} h: {job:?}");
        assert_eq!(job.failures, 0, "{h} h into the outage: {job:?}");
        assert_eq!(job.outage_since_ms, Some(since), "{job:?}");
        assert!(
            job.last_error.as_deref().is_some_and(|e| e.contains(error)),
            "{job:?}"
        );
        let status = body(s.status(org).await).await;
        assert_eq!(status["state"], "pending", "{status}");
        // (An attempt still in flight when the clock jumped may add one more.)
        let shown = status["attempts"].as_u64().expect("attempts");
        assert!(shown >= u64::from(job.attempts), "{status}");
    }
    since
}

#[actix_web::test]
async fn a_rotated_stigg_key_keeps_provisioning_pending_until_the_right_key_is_set() {
    let s = spawn("stigg_key_rotated_away", None).await;
    let org = provision_during_outage(&s).await;
    let job = stored_job(&s, &org).await;
    assert_eq!((job.state, job.failures), (JobState::Queued, 0), "{job:?}");
    ride_out(&s, &org, "401").await;
    // Every call carried the old key and was refused; nothing reached Stigg's state.
    let calls = s.stigg.calls();
    assert!(calls.len() >= 14, "{} calls", calls.len());
    assert!(calls
        .iter()
        .all(|c| c.header("x-api-key") == Some("stigg_key_rotated_away")));
    assert!(s.stigg.customer(&org).is_none());

    let s = restart_fixed(s).await;
    let status = s.wait_for_state(&org, "provisioned").await;
    assert!(status["lastError"].is_null(), "{status}");
    assert_eq!(
        s.stigg.subscription_of(&org).unwrap()["planId"],
        "plan-edgequota-starter"
    );
}

#[actix_web::test]
async fn stigg_answering_5xx_for_days_keeps_provisioning_pending_and_it_completes_after() {
    let s = spawn(STIGG_API_KEY, None).await;
    s.stigg.fail(StiggFailure::ServerError, None);
    let org = provision_during_outage(&s).await;
    let since = ride_out(&s, &org, "500").await;
    // Past the 72-hour budget the outage counts like any failure (max_attempts is 3).
    // (One in flight when the clock jumped may count too: at most 2, never parked.)
    let job = attempt_at(&s, &org, since + 72 * HOUR_MS + 60_000).await;
    assert_eq!(job.state, JobState::Queued, "{job:?}");
    assert!((1..=2).contains(&job.failures), "{job:?}");

    s.stigg.clear_failures();
    s.t.app.clock.advance(chrono::Duration::minutes(1));
    let status = s.wait_for_state(&org, "provisioned").await;
    assert!(status["lastError"].is_null(), "{status}");
    assert!(s.stigg.subscription_of(&org).is_some());
}

#[actix_web::test]
async fn an_unreachable_stigg_keeps_provisioning_pending_until_it_is_reachable() {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let s = spawn(STIGG_API_KEY, Some(&nowhere)).await;
    let org = provision_during_outage(&s).await;
    ride_out(&s, &org, "reach Stigg").await;
    assert!(s.stigg.calls().is_empty());

    let s = restart_fixed(s).await;
    s.wait_for_state(&org, "provisioned").await;
    assert!(s.stigg.subscription_of(&org).is_some());
}
