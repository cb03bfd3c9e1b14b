//! The runs inside the whole sled store: where a record's entry is found after a clean
//! stop, after a crash (only the log holds it), and when an older release stored it in
//! the ledger tree.

use crate::domain::{Metric, OrgId, PeriodKey, RequestId};
use crate::metrics::Metrics;
use crate::store::sled::test_support::options;
use crate::store::sled::{ledger, open, wal};
use crate::store::{Backend, Recorded, UsageRecord};

/// An entry as the store writes it, for `request`.
fn stored(request: &str, fingerprint: u8, body: &[u8]) -> (Vec<u8>, ledger::IdemEntry) {
    let key = ledger::idem_key(&org(), &RequestId::parse(request).expect("id"));
    let entry = ledger::IdemEntry {
        fingerprint: [fingerprint; 16],
        body: body.to_vec(),
        created_ms: 1_000,
    };
    (key, entry)
}

/// Opens with `open`, retrying for up to two seconds: a closed store's (or a dropped
/// `sled::Db`'s) last threads let go of sled's lock file shortly after, not at once.
async fn when_unlocked<T, E>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    for _ in 0..100 {
        if let Ok(opened) = open() {
            return Ok(opened);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    open()
}

fn org() -> OrgId {
    OrgId::parse("org_runs").expect("org")
}

fn usage(request: &str, delta: u64) -> UsageRecord {
    UsageRecord {
        period: PeriodKey::parse("2026-03").expect("period"),
        metric: Metric::api_call(),
        delta,
        request: RequestId::parse(request).expect("request id"),
        fingerprint: [delta as u8; 16],
        included: 100,
        now_ms: 1_000,
    }
}

async fn record(b: &Backend, request: &str, delta: u64) -> Recorded {
    b.ledger
        .record(&org(), usage(request, delta))
        .await
        .expect("record")
}

fn is_replay_of(r: Recorded, body: &[u8]) -> bool {
    matches!(r, Recorded::Replayed { body: b } if &*b == body)
}

fn new_body(r: Recorded) -> Vec<u8> {
    match r {
        Recorded::New { body, .. } => body.to_vec(),
        other => panic!("expected a new record, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_clean_stop_entries_are_in_a_run_file_and_none_in_the_ledger_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = open(dir.path(), options(), Metrics::new()).expect("open");
    let first = new_body(record(&b, "clean-1", 3).await);
    b.health.close();
    drop(b);
    let runs = std::fs::read_dir(dir.path().join("idempotency")).expect("runs dir");
    assert_eq!(runs.count(), 1, "the final checkpoint wrote one run");
    let b = open(dir.path(), options(), Metrics::new()).expect("reopen");
    assert!(is_replay_of(record(&b, "clean-1", 3).await, &first));
    assert!(matches!(record(&b, "clean-1", 4).await, Recorded::Conflict));
    b.health.close();
    drop(b);
    let db = when_unlocked(|| sled::open(dir.path()))
        .await
        .expect("sled");
    let tree = db.open_tree("ledger").expect("ledger");
    assert_eq!(tree.scan_prefix([b'i', 0]).count(), 0);
}

/// What a `kill -9` leaves: the entry only in the log's frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_only_in_the_log_is_found_after_the_replay_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, entry) = stored("crashed", 2, b"{\"the\":\"answer\"}");
    let (mut log, _) = wal::Wal::open(dir.path(), true).expect("log");
    let mut ops = wal::Ops::default();
    ops.put(&key, &ledger::encode_idem(&entry));
    log.append(&ops).expect("append");
    log.sync().expect("sync");
    drop(log);
    let b = open(dir.path(), options(), Metrics::new()).expect("open");
    assert!(is_replay_of(record(&b, "crashed", 2).await, &entry.body));
    b.health.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_an_older_release_stored_in_the_ledger_tree_is_still_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, entry) = stored("legacy", 5, b"{\"stored\":\"before\"}");
    {
        let db = sled::open(dir.path()).expect("sled");
        let tree = db.open_tree("ledger").expect("ledger");
        tree.insert(&key, ledger::encode_idem(&entry))
            .expect("insert");
        db.flush().expect("flush");
    }
    let b = when_unlocked(|| open(dir.path(), options(), Metrics::new()))
        .await
        .expect("open");
    assert!(is_replay_of(record(&b, "legacy", 5).await, &entry.body));
    let fresh = record(&b, "fresh", 1).await;
    assert!(matches!(fresh, Recorded::New { total: 1, .. }));
    b.health.close();
}
