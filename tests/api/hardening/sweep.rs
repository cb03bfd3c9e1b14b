//! The rollover sweep holds a bounded number of actors: orgs not in memory are started
//! for their roll only and retired right after; orgs that were live stay live.

use crate::helpers::*;
use chrono::{TimeZone, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[actix_web::test]
async fn a_sweep_over_many_stored_orgs_never_holds_an_actor_per_org() {
    let start = Utc.with_ymd_and_hms(2026, 5, 31, 23, 0, 0).unwrap();
    let app = spawn_app_with(start, &[]).await;
    let mut orgs = Vec::new();
    for _ in 0..400 {
        orgs.push(app.create_org().await);
    }
    // Creating an org stores it without starting its actor; one org is in use.
    let live_org = &orgs[0];
    assert_eq!(app.check(live_org).await.status(), 200);
    assert_eq!(app.engine.live_actors(), 1);
    let peak = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (engine, peak, stop) = (app.engine.clone(), peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(engine.live_actors(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 1).unwrap());
    eventually(
        "the sweep to move all 400 orgs",
        Duration::from_secs(30),
        || async {
            let m = app.metrics_scrape().await;
            (m.get("edgequota_rollover_orgs_total") == 400.0).then_some(())
        },
    )
    .await;
    eventually(
        "the sweep's actors to retire",
        Duration::from_secs(5),
        || async { (app.engine.live_actors() == 1).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= 64 + 1, "the sweep held {peak} actors at once");
    // Every stored org is in June now: a reset to June finds nothing older.
    assert_eq!(
        app.reset(&json!({"periodKey": "2026-06"})).await,
        json!({"updated": 0, "periodKey": "2026-06"})
    );
}
