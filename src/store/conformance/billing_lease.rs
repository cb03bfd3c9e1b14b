//! Conformance of an org's billing lease (`OrgDirectory::lease` / `release`) and of the
//! ledger commits fenced with it (`LedgerWrite::Fence`).
//!
//! Every store grants a first asker the lease, lets the holder extend it under its own
//! token, and applies a commit fenced with the token held. A store several nodes share
//! (`StoreHealth::shared`) also grants it to one holder at a time, lets only the holder
//! release it, lets it run out (and then not be extended), and refuses with
//! `StoreError::Fenced` — writing nothing of the commit — a commit fenced with a token
//! that does not hold the lease (never held, released, replaced by the next holder's,
//! run out), in `commit`, `commit_many` and `commit_consumed` alike, per org. A store one
//! process opens may grant the lease to every asker at once and has no token to check
//! (its in-process lock serialises an org), so the refusals are checked on shared
//! stores only.

use super::*;
use crate::store::{LedgerWrite, StoreError, StoreResult};

fn add(delta: i64) -> LedgerWrite {
    usage_write(&Metric::api_call(), delta)
}

/// `writes`, fenced with `token`.
fn fenced(token: &str, writes: Vec<LedgerWrite>) -> Vec<LedgerWrite> {
    let mut all = vec![LedgerWrite::Fence(token.to_owned())];
    all.extend(writes);
    all
}

fn is_fenced(r: &StoreResult<()>) -> bool {
    matches!(r, Err(StoreError::Fenced(_)))
}

async fn used(b: &Backend, org: &OrgId) -> Option<u64> {
    b.ledger
        .counters(org, period("2026-03"))
        .await
        .expect("counters")
        .get(&Metric::api_call())
        .copied()
}

pub(super) async fn billing_lease_fences_commits(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let lease = |token: Option<String>, ms: u64| b.orgs.lease(&org, token, ms);
    let first = lease(None, 5_000)
        .await
        .expect("lease")
        .unwrap_or_else(|| panic!("{name}: a first asker is granted the lease"));
    b.ledger
        .commit(&org, fenced(&first, vec![add(3)]))
        .await
        .unwrap_or_else(|e| panic!("{name}: a commit fenced with the lease held: {e}"));
    assert_eq!(
        used(b, &org).await,
        Some(3),
        "{name}: the fenced commit applied"
    );
    assert_eq!(
        lease(Some(first.clone()), 5_000).await.expect("lease"),
        Some(first.clone()),
        "{name}: the holder extends it under its token"
    );
    if !b.health.shared() {
        assert!(
            lease(None, 5_000).await.expect("lease").is_some(),
            "{name}: one process: granted at once"
        );
        b.ledger
            .commit(&org, fenced(&first, vec![add(4)]))
            .await
            .unwrap_or_else(|e| panic!("{name}: a commit fenced with the lease held: {e}"));
        assert_eq!(used(b, &org).await, Some(7), "{name}: 3 + 4");
        b.orgs
            .release(&org, first)
            .await
            .unwrap_or_else(|e| panic!("{name}: release: {e}"));
        return;
    }

    // One holder at a time; only it extends or releases the lease.
    assert_eq!(
        lease(None, 5_000).await.expect("lease"),
        None,
        "{name}: held: no second holder"
    );
    assert_eq!(
        lease(Some("not-mine".into()), 5_000).await.expect("lease"),
        None,
        "{name}: a token that does not hold it extends nothing"
    );
    b.orgs
        .release(&org, "not-mine".into())
        .await
        .expect("release");
    assert_eq!(
        lease(None, 5_000).await.expect("lease"),
        None,
        "{name}: a stranger cannot release it"
    );

    // Refused, writing nothing of the commit: a token that never held the lease, the
    // holder's after it released it, and after the next holder took it.
    let other_state = || {
        LedgerWrite::State(OrgState {
            plan: PlanCode::new("plan_pro_m"),
            period: period("2026-04"),
        })
    };
    let never = b
        .ledger
        .commit(&org, fenced("not-mine", vec![add(100), other_state()]))
        .await;
    assert!(is_fenced(&never), "{name}: never held: {never:?}");
    b.orgs.release(&org, first.clone()).await.expect("release");
    let released = b
        .ledger
        .commit(&org, fenced(&first, vec![add(100), other_state()]))
        .await;
    assert!(is_fenced(&released), "{name}: held by no one: {released:?}");
    let second = lease(None, 5_000)
        .await
        .expect("lease")
        .unwrap_or_else(|| panic!("{name}: free once released"));
    assert_ne!(second, first, "{name}: the next holder has its own token");
    let replaced = b
        .ledger
        .commit(&org, fenced(&first, vec![add(100), other_state()]))
        .await;
    assert!(
        is_fenced(&replaced),
        "{name}: held by the next holder: {replaced:?}"
    );
    let stored = b.ledger.load(&org, period("2026-03")).await.expect("load");
    assert_eq!(
        stored.state,
        Some(OrgState {
            plan: PlanCode::free(),
            period: period("2026-03"),
        }),
        "{name}: a refused commit writes no state"
    );
    assert_eq!(
        stored.counters.get(&Metric::api_call()),
        Some(&3),
        "{name}: a refused commit counts nothing"
    );
    b.ledger
        .commit(&org, fenced(&second, vec![add(4)]))
        .await
        .unwrap_or_else(|e| panic!("{name}: the new holder commits: {e}"));
    assert_eq!(used(b, &org).await, Some(7), "{name}: 3 + 4");

    // Many orgs' commits in one hand-over: the fence is judged per entry.
    let other = new_org(b).await;
    let many = b
        .ledger
        .commit_many(vec![
            (org.clone(), fenced(&first, vec![add(100)])),
            (other.clone(), vec![add(2)]),
            (org.clone(), fenced(&second, vec![add(1)])),
        ])
        .await;
    assert_eq!(many.len(), 3, "{name}: one answer per entry");
    assert!(
        is_fenced(&many[0]) && many[1].is_ok() && many[2].is_ok(),
        "{name}: commit_many, per entry: {many:?}"
    );
    let consumed = b
        .ledger
        .commit_consumed(vec![
            (org.clone(), fenced(&second, vec![add(1)])),
            (org.clone(), fenced(&first, vec![add(100)])),
        ])
        .await;
    assert_eq!(consumed.len(), 2, "{name}: one answer per entry");
    assert!(
        consumed[0].is_ok() && is_fenced(&consumed[1]),
        "{name}: commit_consumed, per entry: {consumed:?}"
    );
    assert_eq!(used(b, &org).await, Some(9), "{name}: 7 + 1 + 1");
    assert_eq!(used(b, &other).await, Some(2), "{name}: the other org's");

    // A lease that runs out fences its holder's late commits, and cannot be extended.
    b.orgs.release(&org, second).await.expect("release");
    let short = lease(None, 200)
        .await
        .expect("lease")
        .unwrap_or_else(|| panic!("{name}: free once released"));
    b.ledger
        .commit(&org, fenced(&short, vec![add(1)]))
        .await
        .unwrap_or_else(|e| panic!("{name}: a commit within the lease: {e}"));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let late = b.ledger.commit(&org, fenced(&short, vec![add(100)])).await;
    assert!(is_fenced(&late), "{name}: the lease ran out: {late:?}");
    assert_eq!(
        lease(Some(short.clone()), 5_000).await.expect("lease"),
        None,
        "{name}: a lease that ran out is not extended"
    );
    assert_eq!(used(b, &org).await, Some(10), "{name}: 9 + 1");
    let last = lease(None, 5_000)
        .await
        .expect("lease")
        .unwrap_or_else(|| panic!("{name}: free once run out"));
    assert_ne!(last, short, "{name}: a new token");
    b.orgs.release(&org, last).await.expect("release");
}
