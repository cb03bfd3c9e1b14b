//! The sled job tree: due index, counts, conditional changes and leases.

use super::*;

fn queue() -> JobTree<String> {
    let db = sled::Config::new().temporary(true).open().unwrap();
    JobTree::bare(db.open_tree("jobs").unwrap(), "jobs", 1).unwrap()
}

fn job(id: &str, seq: u64, due: i64) -> Job<String> {
    let mut j = Job::queued(id.into(), seq, format!("payload of {id}"), 0);
    j.next_attempt_ms = due;
    j
}

#[test]
fn a_job_is_stored_once_and_listed_in_arrival_order() {
    let q = queue();
    assert!(matches!(
        q.insert_new(&job("b", 2, 0)).unwrap(),
        Inserted::New
    ));
    assert!(matches!(
        q.insert_new(&job("a", 1, 0)).unwrap(),
        Inserted::New
    ));
    assert!(matches!(
        q.insert_new(&job("a", 3, 0)).unwrap(),
        Inserted::Existing(e) if e.seq == 1
    ));
    let ids: Vec<_> = q
        .list(JobState::Queued, None, 10)
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(q.list(JobState::Queued, Some(1), 10).unwrap()[0].id, "b");
    assert_eq!(q.count(JobState::Queued), 2);
    assert_eq!(q.oldest(JobState::Queued).unwrap().unwrap().id, "a");
}

#[test]
fn due_reads_only_what_is_due_including_past_instants() {
    let q = queue();
    q.insert_new(&job("later", 1, 5_000)).unwrap();
    q.insert_new(&job("now", 2, 1_000)).unwrap();
    q.insert_new(&job("long-ago", 3, -7_000)).unwrap();
    let due: Vec<_> = q
        .due(1_000, 10)
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(due, ["long-ago", "now"]);
    assert_eq!(q.due(1_000, 1).unwrap().len(), 1);
    assert_eq!(q.next_due_ms().unwrap(), Some(-7_000));
    assert_eq!(q.due(9_999, 10).unwrap().len(), 3);
}

#[test]
fn replace_moves_the_indices_and_counts_and_refuses_a_stale_expectation() {
    let q = queue();
    let queued = job("a", 1, 0);
    q.insert_new(&queued).unwrap();
    let done = queued.finished(JobState::Done, None, 10);
    assert!(q.replace(&queued, &done).unwrap());
    assert!(!q.replace(&queued, &done).unwrap(), "stale");
    assert_eq!((q.count(JobState::Queued), q.count(JobState::Done)), (0, 1));
    assert!(q.due(i64::MAX - 1, 10).unwrap().is_empty());
    assert_eq!(q.get("a").unwrap().unwrap().state, JobState::Done);
    // Counts are rebuilt from the indices on open.
    let reopened = JobTree::<String>::bare(q.tree.clone(), "jobs", 1).unwrap();
    assert_eq!(reopened.count(JobState::Done), 1);
}

#[test]
fn finished_jobs_older_than_the_cutoff_are_purged() {
    let q = queue();
    for (id, seq, at) in [("old", 1, 1_000), ("new", 2, 9_000)] {
        let j = job(id, seq, 0);
        q.insert_new(&j).unwrap();
        q.replace(&j, &j.finished(JobState::Done, None, at))
            .unwrap();
    }
    assert_eq!(q.purge_finished_before(JobState::Done, 5_000).unwrap(), 1);
    assert!(q.get("old").unwrap().is_none());
    assert!(q.get("new").unwrap().is_some());
    assert_eq!(q.count(JobState::Done), 1);
}
