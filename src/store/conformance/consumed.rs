//! Conformance of the ledger calls of the usage hot path: the consume flusher's
//! write-behind commits (`commit_consumed`: answered per entry, in order, applied
//! atomically per entry, seen by reads and records, kept by a flush) and the request-id
//! index a store may rebuild at start (`requests_ready`: becomes ready by itself, stays
//! ready, and records answer the same before and after).

use super::*;
use crate::store::Recorded;

/// The consume flusher's write-behind (`commit_consumed`): one answer per hand-over
/// entry, in order; each entry's writes applied atomically and seen by every read and
/// record after the answer; kept by a flush.
pub(super) async fn commit_consumed_answers_per_org(b: &Backend, name: &str) {
    let (a, c) = (new_org(b).await, new_org(b).await);
    let p = period("2026-03");
    let (api, seat) = (Metric::api_call(), Metric::parse("seat").expect("metric"));
    let add = usage_write;
    // The entries of one org commute (none crosses zero), so the check holds whatever
    // order a store applies separate entries in.
    let answers = b
        .ledger
        .commit_consumed(vec![
            (
                a.clone(),
                vec![add(&api, 3), add(&api, 4), add(&seat, 2), add(&seat, -5)],
            ),
            (c.clone(), vec![add(&api, 10)]),
            (a.clone(), vec![add(&api, 1)]),
            (c.clone(), Vec::new()),
        ])
        .await;
    assert_eq!(answers.len(), 4, "{name}: one answer per entry");
    for (i, answer) in answers.iter().enumerate() {
        assert!(answer.is_ok(), "{name}: entry {i}: {answer:?}");
    }
    let expect_a: std::collections::HashMap<Metric, u64> =
        [(api.clone(), 8), (seat.clone(), 0)].into_iter().collect();
    let loaded = b.ledger.load(&a, p).await.expect("load");
    assert_eq!(
        loaded.counters, expect_a,
        "{name}: 3 + 4 + 1; a counter never below zero"
    );
    assert_eq!(
        loaded.state,
        Some(OrgState {
            plan: PlanCode::free(),
            period: p,
        }),
        "{name}: nothing but the counters written"
    );
    // A usage record counts on top of the units consumed.
    let recorded = b
        .ledger
        .record(&c, usage("after_consumed", 1, 1))
        .await
        .expect("record");
    assert_eq!(
        recorded,
        Recorded::New {
            body: crate::store::record_body(p, 11, 1_000),
            total: 11,
        },
        "{name}: 10 consumed + 1 recorded"
    );
    b.health
        .flush()
        .await
        .unwrap_or_else(|e| panic!("{name}: flush: {e}"));
    let kept = b.ledger.counters(&a, p).await.expect("counters");
    assert_eq!(kept, expect_a, "{name}: kept by a flush");
    assert!(
        b.ledger.commit_consumed(Vec::new()).await.is_empty(),
        "{name}: nothing handed over, nothing answered"
    );
}

/// `requests_ready`: an index of request ids a store rebuilds at start (sled's filter)
/// becomes ready by itself and stays ready, and records answer the same before and
/// after: a request recorded before it was ready is still a replay (or a conflict)
/// after. Run first, so the record below may come before the index is ready.
pub(super) async fn requests_ready(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let first = b
        .ledger
        .record(&org, usage("ready1", 4, 1))
        .await
        .expect("record");
    let Recorded::New { body, total: 4 } = first else {
        panic!("{name}: first record: {first:?}")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !b.ledger.requests_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: the request index never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let replay = b
        .ledger
        .record(&org, usage("ready1", 4, 1))
        .await
        .expect("record");
    assert_eq!(
        replay,
        Recorded::Replayed { body },
        "{name}: a request recorded before the index was ready is known after"
    );
    let conflict = b
        .ledger
        .record(&org, usage("ready1", 5, 2))
        .await
        .expect("record");
    assert_eq!(
        conflict,
        Recorded::Conflict,
        "{name}: same id, other payload"
    );
    let next = b
        .ledger
        .record(&org, usage("ready2", 6, 1))
        .await
        .expect("record");
    assert_eq!(
        next,
        Recorded::New {
            body: crate::store::record_body(period("2026-03"), 10, 1_000),
            total: 10,
        },
        "{name}: a new request id counts once: 4 + 6"
    );
    assert!(b.ledger.requests_ready(), "{name}: stays ready");
}
