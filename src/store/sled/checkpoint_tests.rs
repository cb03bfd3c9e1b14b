//! Checkpoints under load: the log stays bounded while commits keep moving the counters a
//! checkpoint is storing, and nothing it folded away is lost.

use super::*;
use crate::domain::{Metric, OrgId, PeriodKey};
use crate::store::LedgerWrite;

/// The bytes of every log segment in `dir`.
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("ledger.") && name.ends_with(".wal")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Every commit moves the same 1,500 counters, more than a pass stores (1,000): a
/// checkpoint that had to leave no counter dirty never finished, and the log grew with
/// every commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_finishes_while_commits_keep_moving_its_counters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cap = 256 << 10;
    let options = OpenOptions {
        wal_cap_bytes: cap,
        ..test_support::options()
    };
    let period = PeriodKey::parse("2026-03").expect("period");
    let orgs: Vec<OrgId> = (0..1_500)
        .map(|i| OrgId::parse(&format!("org_busy_{i:04}")).expect("org"))
        .collect();
    let b = open(dir.path(), options.clone(), Metrics::new()).expect("open");
    let rounds = 60;
    let mut largest = 0;
    for _ in 0..rounds {
        let writes = orgs
            .iter()
            .map(|org| {
                let usage = LedgerWrite::Usage {
                    period,
                    metric: Metric::api_call(),
                    delta: 1,
                };
                (org.clone(), vec![usage])
            })
            .collect();
        let answers = b.ledger.commit_many(writes).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        largest = largest.max(log_bytes(dir.path()));
    }
    // One commit's frame is ~90 KB: the log holds the cap, the segment being folded
    // and a few frames more, never the ~5 MB of all the commits.
    assert!(
        largest < 4 * cap,
        "the log reached {largest} bytes with a cap of {cap}"
    );
    for org in [&orgs[0], &orgs[1_499]] {
        let counters = b.ledger.counters(org, period).await.expect("counters");
        assert_eq!(counters.get(&Metric::api_call()), Some(&rounds));
    }
    b.health.close();
    drop(b);

    let b = open(dir.path(), options, Metrics::new()).expect("reopen");
    for org in [&orgs[0], &orgs[750], &orgs[1_499]] {
        let counters = b.ledger.counters(org, period).await.expect("counters");
        assert_eq!(
            counters.get(&Metric::api_call()),
            Some(&rounds),
            "after a restart"
        );
    }
    b.health.close();
}
