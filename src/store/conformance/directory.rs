//! Conformance of everything but the ledger: orgs and their idempotent create, API
//! keys, the job queues (one job per id, due order, leases, conditional replace, purge,
//! the oldest job of a state) and the DebugLog.

use super::*;
use crate::store::jobs::{Inserted, Job, JobState};
use crate::store::webhook_jobs::WebhookPayload;
use crate::store::{CreateReplay, DebugEntry};

pub(super) async fn orgs(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let got = b.orgs.get(&org).await.expect("get");
    assert_eq!(got.map(|r| r.org_id), Some(org.clone()), "{name}: get");
    let stored = b.ledger.load(&org, period("2026-03")).await.expect("load");
    assert_eq!(
        stored.state.map(|s| s.plan),
        Some(PlanCode::free()),
        "{name}: initial state"
    );
    let missing = OrgId::parse(&fresh("org")).expect("id");
    assert!(
        b.orgs.get(&missing).await.expect("get").is_none(),
        "{name}: unknown org"
    );
    // One idempotency key, two creates: one org, the first answer replayed.
    let key = fresh("idem");
    let replay = CreateReplay {
        fingerprint: [3; 32],
        body: b"{\"first\":true}".to_vec(),
    };
    let mut made = Vec::new();
    for _ in 0..2 {
        let org = OrgId::parse(&fresh("org")).expect("id");
        let record = OrgRecord {
            org_id: org.clone(),
            name: "I".into(),
            owner_user_id: "u".into(),
            created_ms: 2,
        };
        let state = OrgState {
            plan: PlanCode::free(),
            period: period("2026-03"),
        };
        let out = b
            .orgs
            .create(record, Some((key.clone(), replay.clone())), state)
            .await
            .expect("create");
        made.push((org, out));
    }
    assert!(
        matches!(made[0].1, CreateOutcome::Created),
        "{name}: first create"
    );
    assert!(
        matches!(&made[1].1, CreateOutcome::Replayed(r) if *r == replay),
        "{name}: second create replays"
    );
    assert!(
        b.orgs.get(&made[1].0).await.expect("get").is_none(),
        "{name}: one org"
    );
    let customer = fresh("cus");
    b.orgs.link_customer(&customer, &org).await.expect("link");
    assert_eq!(
        b.orgs.org_of_customer(&customer).await.expect("of"),
        Some(org)
    );
    assert!(b
        .orgs
        .org_of_customer("cus_nobody")
        .await
        .expect("of")
        .is_none());
}

pub(super) async fn keys(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let key = |n: u8| key_of(&org, n);
    let (k1, k2) = (key(1), key(2));
    b.keys.put(vec![k1.clone(), k2.clone()]).await.expect("put");
    assert_eq!(
        b.keys.get(&k1.key_id).await.expect("get"),
        Some(k1.clone()),
        "{name}"
    );
    let mut revoked = k2.clone();
    revoked.revoked_ms = Some(9);
    b.keys.put(vec![revoked.clone()]).await.expect("put");
    let mut of_org = b.keys.of_org(&org).await.expect("of_org");
    of_org.sort_by_key(|k| k.created_ms);
    assert_eq!(of_org, vec![k1.clone(), revoked], "{name}: of_org");
    let all = b.keys.all().await.expect("all");
    assert!(all.iter().any(|k| k.key_id == k1.key_id), "{name}: all");
}

fn job(id: &str, seq: u64, due: i64) -> Job<WebhookPayload> {
    let payload = WebhookPayload {
        event_type: "customer.subscription.updated".into(),
        raw: b"{}".to_vec(),
    };
    let mut j = Job::queued(id.into(), seq, payload, 0);
    j.next_attempt_ms = due;
    j
}

pub(super) async fn jobs(b: &Backend, name: &str) {
    let q = &b.webhooks;
    let (s1, s2) = (
        q.next_seq().await.expect("seq"),
        q.next_seq().await.expect("seq"),
    );
    assert!(s2 > s1, "{name}: sequences grow");
    let queued_before = q.count(JobState::Queued).await.expect("count");
    let (a, later) = (fresh("evt"), fresh("evt"));
    // Due long ago, so no other job of a shared store comes before it.
    let first = job(&a, s1, -1_000_000);
    assert!(
        matches!(q.insert_new(first.clone()).await, Ok(Inserted::New)),
        "{name}"
    );
    let dup = q.insert_new(job(&a, s2, 0)).await.expect("insert");
    assert!(
        matches!(dup, Inserted::Existing(e) if e.seq == s1),
        "{name}: one job per id"
    );
    q.insert_new(job(&later, s2, i64::MAX / 2))
        .await
        .expect("insert");
    assert_eq!(
        q.count(JobState::Queued).await.expect("count"),
        queued_before + 2
    );
    // A short lease, waited out for real: a shared store judges leases by its own clock
    // (one clock for every node), a store one process opens by the caller's `now_ms`.
    let lease_ms = 300;
    let claimed = q.claim_due(5_000, 100, lease_ms).await.expect("claim");
    let mine: Vec<_> = claimed
        .iter()
        .filter(|j| j.id == a || j.id == later)
        .collect();
    assert_eq!(mine.len(), 1, "{name}: only the due job is claimed");
    assert_eq!(mine[0].id, a, "{name}: the due one");
    let again = q.claim_due(5_000, 100, lease_ms).await.expect("claim");
    assert!(
        again.iter().all(|j| j.id != a),
        "{name}: a leased job is not claimed twice"
    );
    assert!(
        q.claim_due(5_000, 0, lease_ms)
            .await
            .expect("claim")
            .is_empty(),
        "{name}: a limit of 0 claims nothing"
    );
    tokio::time::sleep(std::time::Duration::from_millis(lease_ms as u64 + 100)).await;
    let lapsed = q
        .claim_due(5_000 + lease_ms + 1, 100, lease_ms)
        .await
        .expect("claim");
    assert!(
        lapsed.iter().any(|j| j.id == a),
        "{name}: claimable once the lease ran out"
    );
    // Its worker puts it back for later (a retry): not claimable before then, and then
    // once.
    let held = q.get(&a).await.expect("get").expect("stored");
    let mut retry = held.clone();
    retry.next_attempt_ms = 20_000;
    retry.attempts += 1;
    assert!(q.replace(held, retry).await.expect("replace"), "{name}");
    let early = q.claim_due(19_999, 100, lease_ms).await.expect("claim");
    assert!(
        early.iter().all(|j| j.id != a),
        "{name}: not before it is due"
    );
    let due = q.claim_due(20_000, 100, lease_ms).await.expect("claim");
    assert_eq!(
        due.iter().filter(|j| j.id == a).count(),
        1,
        "{name}: claimed once when due"
    );
    let held = q.get(&a).await.expect("get").expect("stored");
    let done = held.finished(JobState::Done, None, 7);
    assert!(
        q.replace(held.clone(), done.clone())
            .await
            .expect("replace"),
        "{name}"
    );
    assert!(
        !q.replace(held, done).await.expect("replace"),
        "{name}: stale replace refused"
    );
    let listed = q
        .list(JobState::Done, s1.checked_sub(1), 10)
        .await
        .expect("list");
    assert!(listed.iter().any(|j| j.id == a), "{name}: listed as done");
    let purged = q
        .purge_finished_before(JobState::Done, 8)
        .await
        .expect("purge");
    assert!(purged >= 1, "{name}: purged");
    assert!(
        q.get(&a).await.expect("get").is_none(),
        "{name}: gone after purge"
    );
}

/// What `oldest` must answer once `ours` is stored: a job of that state stored before
/// the check (a store shared with other runs) if it arrived earlier, else `ours`.
fn older(before: &Option<Job<WebhookPayload>>, ours: &Job<WebhookPayload>) -> Job<WebhookPayload> {
    match before {
        Some(b) if b.seq < ours.seq => b.clone(),
        _ => ours.clone(),
    }
}

/// `oldest`: the job of a state that arrived first (the smallest `seq`), whatever order
/// the jobs were stored or moved into the state in; the next one once it leaves.
pub(super) async fn oldest(b: &Backend, name: &str) {
    let q = &b.webhooks;
    // Jobs parked as dead letters: a state no other check leaves a job in.
    let dead_before = q.oldest(JobState::Dead).await.expect("oldest");
    let done_before = q.oldest(JobState::Done).await.expect("oldest");
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(q.next_seq().await.expect("seq"));
    }
    let dead = |seq: u64| {
        let mut j = job(&fresh("evt"), seq, 0);
        j.state = JobState::Dead;
        j.attempts = 3;
        j.failures = 3;
        j.last_error = Some("refused".into());
        j.done_ms = Some(5);
        j
    };
    let (first, second, third) = (dead(seqs[0]), dead(seqs[1]), dead(seqs[2]));
    // Stored out of arrival order.
    for j in [&third, &first, &second] {
        assert!(
            matches!(q.insert_new(j.clone()).await, Ok(Inserted::New)),
            "{name}: insert {}",
            j.id
        );
    }
    assert_eq!(
        q.oldest(JobState::Dead).await.expect("oldest"),
        Some(older(&dead_before, &first)),
        "{name}: the first to arrive, not the first stored"
    );
    // Moved on (replayed and done): the next one is the oldest dead letter.
    let first_done = first.finished(JobState::Done, None, 6);
    assert!(
        q.replace(first.clone(), first_done.clone())
            .await
            .expect("replace"),
        "{name}"
    );
    assert_eq!(
        q.oldest(JobState::Dead).await.expect("oldest"),
        Some(older(&dead_before, &second)),
        "{name}: the next once the oldest left the state"
    );
    assert_eq!(
        q.oldest(JobState::Done).await.expect("oldest"),
        Some(older(&done_before, &first_done)),
        "{name}: the oldest done"
    );
    // A job that arrived later but finished now does not become the oldest done.
    let third_done = third.finished(JobState::Done, None, 6);
    assert!(
        q.replace(third.clone(), third_done.clone())
            .await
            .expect("replace"),
        "{name}"
    );
    assert_eq!(
        q.oldest(JobState::Done).await.expect("oldest"),
        Some(older(&done_before, &first_done)),
        "{name}: by arrival, not by when it entered the state"
    );
    assert_eq!(
        q.oldest(JobState::Dead).await.expect("oldest"),
        Some(older(&dead_before, &second)),
        "{name}"
    );
    let second_done = second.finished(JobState::Done, None, 6);
    assert!(
        q.replace(second.clone(), second_done.clone())
            .await
            .expect("replace"),
        "{name}"
    );
    assert_eq!(
        q.oldest(JobState::Dead)
            .await
            .expect("oldest")
            .map(|j| j.id),
        dead_before.map(|j| j.id),
        "{name}: none of ours left dead"
    );
    let purged = q
        .purge_finished_before(JobState::Done, 8)
        .await
        .expect("purge");
    assert!(purged >= 3, "{name}: purged {purged}");
    for j in [&first, &second, &third] {
        assert!(
            q.get(&j.id).await.expect("get").is_none(),
            "{name}: {} gone after purge",
            j.id
        );
    }
}

pub(super) async fn debug_log(b: &Backend, name: &str) {
    let corr = fresh("corr");
    let entry = |status: u16| DebugEntry {
        at_ms: 1,
        method: "GET".into(),
        route: "/x".into(),
        status,
        latency_us: 1,
        correlation_id: corr.clone(),
        request_id: "r".into(),
        org_id: None,
    };
    b.debug_log
        .append((0..3).map(entry).collect())
        .await
        .expect("append");
    let found = b
        .debug_log
        .recent(Some(corr.clone()), 2)
        .await
        .expect("recent");
    let statuses: Vec<u16> = found.iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![2, 1], "{name}: newest first, limited");
}
