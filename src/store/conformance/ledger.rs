//! Conformance of the ledger: exactly-once records (replays, conflicts, races), deltas
//! and zeroing, states and sweeps, and the idempotency purge.

use super::*;
use crate::store::{LedgerWrite, Recorded};

pub(super) async fn records(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let first = b
        .ledger
        .record(&org, usage("r1", 10, 1))
        .await
        .expect("record");
    let Recorded::New { body, total } = first else {
        panic!("{name}: first record: {first:?}")
    };
    assert_eq!(total, 10, "{name}");
    assert_eq!(
        &*body, br#"{"periodKey":"2026-03","used":10,"remaining":990}"#,
        "{name}"
    );
    let second = b
        .ledger
        .record(&org, usage("r2", 5, 1))
        .await
        .expect("record");
    assert!(
        matches!(second, Recorded::New { total: 15, .. }),
        "{name}: {second:?}"
    );
    let replay = b
        .ledger
        .record(&org, usage("r1", 10, 1))
        .await
        .expect("record");
    assert_eq!(replay, Recorded::Replayed { body }, "{name}: replay");
    let conflict = b
        .ledger
        .record(&org, usage("r1", 11, 2))
        .await
        .expect("record");
    assert_eq!(
        conflict,
        Recorded::Conflict,
        "{name}: same id, other payload"
    );
    let mut feb = usage("r3", 4, 1);
    feb.period = period("2026-02");
    assert!(matches!(
        b.ledger.record(&org, feb).await,
        Ok(Recorded::New { total: 4, .. })
    ));
    let march = b
        .ledger
        .counters(&org, period("2026-03"))
        .await
        .expect("counters");
    assert_eq!(march.get(&Metric::api_call()), Some(&15), "{name}: March");
    let feb = b
        .ledger
        .counters(&org, period("2026-02"))
        .await
        .expect("counters");
    assert_eq!(feb.get(&Metric::api_call()), Some(&4), "{name}: February");
    // The same request id is another org's own.
    let other = new_org(b).await;
    let theirs = b
        .ledger
        .record(&other, usage("r1", 7, 9))
        .await
        .expect("record");
    assert!(
        matches!(theirs, Recorded::New { total: 7, .. }),
        "{name}: {theirs:?}"
    );
    // Purged entries are forgotten; newer ones are kept.
    let mut late = usage("late", 1, 1);
    late.now_ms = 50_000;
    b.ledger.record(&org, late).await.expect("record");
    let purged = b.ledger.purge_requests(20_000).await.expect("purge");
    assert!(purged.purged >= 3, "{name}: {purged:?}");
    let again = b
        .ledger
        .record(&org, usage("r1", 10, 1))
        .await
        .expect("record");
    assert!(
        matches!(again, Recorded::New { total: 26, .. }),
        "{name}: after purge {again:?}"
    );
    let kept = b.ledger.record(&org, {
        let mut u = usage("late", 1, 1);
        u.now_ms = 50_000;
        u
    });
    assert!(
        matches!(kept.await, Ok(Recorded::Replayed { .. })),
        "{name}: kept entry"
    );
}

pub(super) async fn concurrent_records(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let same = (0..40).map(|_| b.ledger.record(&org, usage("same", 3, 1)));
    let answers = futures_util::future::join_all(same).await;
    let new = answers
        .iter()
        .filter(|a| matches!(a, Ok(Recorded::New { .. })))
        .count();
    assert_eq!(new, 1, "{name}: one of 40 racing duplicates counts");
    let distinct = (0..100).map(|i| b.ledger.record(&org, usage(&format!("d{i}"), 2, 1)));
    for a in futures_util::future::join_all(distinct).await {
        assert!(matches!(a, Ok(Recorded::New { .. })), "{name}: {a:?}");
    }
    let c = b
        .ledger
        .counters(&org, period("2026-03"))
        .await
        .expect("counters");
    assert_eq!(
        c.get(&Metric::api_call()),
        Some(&203),
        "{name}: 3 + 100 × 2"
    );
}

pub(super) async fn commits_and_sweeps(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let p = period("2026-03");
    let seat = Metric::parse("seat").expect("metric");
    let writes = vec![
        usage_write(&seat, 4),
        usage_write(&seat, 6),
        LedgerWrite::State(OrgState {
            plan: PlanCode::new("plan_pro_m"),
            period: period("2026-04"),
        }),
        LedgerWrite::Billing(Box::new(crate::domain::BillingRecord {
            customer_id: Some("cus_c".into()),
            ..Default::default()
        })),
    ];
    b.ledger.commit(&org, writes).await.expect("commit");
    let stored = b.ledger.load(&org, p).await.expect("load");
    assert_eq!(
        stored.counters.get(&seat),
        Some(&10),
        "{name}: deltas add up"
    );
    assert_eq!(
        stored.state.map(|s| s.period),
        Some(period("2026-04")),
        "{name}"
    );
    assert_eq!(
        stored.billing.and_then(|b| b.customer_id).as_deref(),
        Some("cus_c")
    );
    // Units given back: a negative delta, never below zero.
    for (delta, expect) in [(-3, 7), (-100, 0), (2, 2)] {
        let give_back = usage_write(&seat, delta);
        b.ledger
            .commit(&org, vec![give_back])
            .await
            .expect("commit");
        let counters = b.ledger.counters(&org, p).await.expect("counters");
        assert_eq!(counters.get(&seat), Some(&expect), "{name}: {delta:+}");
    }
    b.ledger
        .record(&org, usage("z", 5, 1))
        .await
        .expect("record");
    let zero = LedgerWrite::Zero {
        period: p,
        metric: Metric::api_call(),
    };
    b.ledger.commit(&org, vec![zero]).await.expect("commit");
    let after = b
        .ledger
        .record(&org, usage("z2", 2, 1))
        .await
        .expect("record");
    assert!(
        matches!(after, Recorded::New { total: 2, .. }),
        "{name}: after zero {after:?}"
    );
    // Paging visits every org exactly once, in a stable order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = b.ledger.states_page(after.as_ref(), 3).await.expect("page");
        let Some((last, _)) = page.last().cloned() else {
            break;
        };
        seen.extend(page.into_iter().map(|(o, _)| o));
        after = Some(last);
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{name}: no org twice");
    assert!(seen.contains(&org), "{name}: the org is paged");
}

pub(super) async fn commit_many_answers_per_org(b: &Backend, name: &str) {
    let (a, c) = (new_org(b).await, new_org(b).await);
    let p = period("2026-03");
    let api = Metric::api_call();
    let usage = |delta| usage_write(&api, delta);
    let answers = b
        .ledger
        .commit_many(vec![
            (a.clone(), vec![usage(3), usage(4)]),
            (c.clone(), vec![usage(10)]),
            (a.clone(), vec![usage(-2)]),
        ])
        .await;
    assert_eq!(answers.len(), 3, "{name}: one answer per org, in order");
    assert!(answers.iter().all(|r| r.is_ok()), "{name}: {answers:?}");
    let used = |org| async move {
        b.ledger
            .counters(&org, p)
            .await
            .expect("counters")
            .get(&Metric::api_call())
            .copied()
    };
    assert_eq!(used(a).await, Some(5), "{name}: 3 + 4 - 2");
    assert_eq!(used(c).await, Some(10), "{name}");
    assert!(
        b.ledger.commit_many(Vec::new()).await.is_empty(),
        "{name}: nothing to commit, nothing answered"
    );
}

/// Records of several orgs in one call: answered per record in order, each org's
/// records in their order (a request id met again is the first one's replay or
/// conflict), the same request id of another org its own.
pub(super) async fn record_across_answers_per_record(b: &Backend, name: &str) {
    let (a, c) = (new_org(b).await, new_org(b).await);
    let answers = b
        .ledger
        .record_across(vec![
            (a.clone(), usage("x1", 3, 1)),
            (c.clone(), usage("x1", 10, 1)),
            (a.clone(), usage("x2", 4, 1)),
            (a.clone(), usage("x1", 3, 1)),
            (c.clone(), usage("x1", 11, 2)),
        ])
        .await;
    let totals: Vec<_> = answers
        .iter()
        .map(|r| match r {
            Ok(Recorded::New { total, .. }) => Some(*total),
            _ => None,
        })
        .collect();
    assert_eq!(
        totals,
        vec![Some(3), Some(10), Some(7), None, None],
        "{name}: {answers:?}"
    );
    assert!(
        matches!(&answers[3], Ok(Recorded::Replayed { body }) if &**body == br#"{"periodKey":"2026-03","used":3,"remaining":997}"#),
        "{name}: a replay answers the first body: {:?}",
        answers[3]
    );
    assert!(
        matches!(answers[4], Ok(Recorded::Conflict)),
        "{name}: {:?}",
        answers[4]
    );
    assert!(
        b.ledger.record_across(Vec::new()).await.is_empty(),
        "{name}: nothing to record, nothing answered"
    );
}

/// The period sweep's lease: a store several nodes share grants it to one holder at a
/// time, lets it run out, and remembers a finished sweep; a store one process opens
/// always grants it.
pub(super) async fn sweep_lease(b: &Backend, name: &str) {
    use crate::store::SweepLease;
    // A period no other check (or earlier run on a shared store) uses.
    let year = 2100 + ulid::Ulid::new().random() % 900;
    let p = period(&format!("{year}-01"));
    let lease = |token, ms| b.ledger.sweep_lease(p, token, ms);
    let Ok(SweepLease::Held(first)) = lease(None, 200).await else {
        panic!("{name}: the first asker holds the sweep lease");
    };
    if !b.health.shared() {
        assert!(
            matches!(lease(None, 200).await, Ok(SweepLease::Held(_))),
            "{name}: one process: always granted"
        );
        return;
    }
    assert_eq!(
        lease(None, 200).await.ok(),
        Some(SweepLease::Busy),
        "{name}"
    );
    assert!(
        matches!(
            lease(Some(first.clone()), 200).await,
            Ok(SweepLease::Held(_))
        ),
        "{name}: the holder extends it"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let Ok(SweepLease::Held(second)) = lease(None, 5_000).await else {
        panic!("{name}: a lease that ran out goes to the next asker");
    };
    b.ledger
        .sweep_done(p, first)
        .await
        .unwrap_or_else(|e| panic!("{name}: done: {e}"));
    assert_eq!(
        lease(None, 200).await.ok(),
        Some(SweepLease::Busy),
        "{name}: a holder that lost the lease cannot mark the sweep done"
    );
    b.ledger
        .sweep_done(p, second)
        .await
        .unwrap_or_else(|e| panic!("{name}: done: {e}"));
    assert_eq!(
        lease(None, 200).await.ok(),
        Some(SweepLease::Done),
        "{name}"
    );
}
