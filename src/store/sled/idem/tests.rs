use super::run::{file_name, RunWriter};
use super::*;

fn entry(n: u64, created_ms: i64) -> IdemEntry {
    IdemEntry {
        fingerprint: [n as u8; 16],
        body: format!("{{\"n\":{n}}}").into_bytes(),
        created_ms,
    }
}

fn key(n: u64) -> Vec<u8> {
    format!("i\0org_{}\0req-{n}", n % 7).into_bytes()
}

fn get(runs: &IdemRuns, n: u64) -> Option<IdemEntry> {
    runs.get(&key(n), hash(&key(n))).unwrap()
}

/// `count` entries from `from`, created at `created_ms`, written as one run.
fn add_run(runs: &IdemRuns, from: u64, count: u64, created_ms: i64) {
    runs.insert((from..from + count).map(|n| (key(n), entry(n, created_ms))));
    runs.write_pending().unwrap();
}

fn wait_for_runs(runs: &IdemRuns, at_most: usize) {
    for _ in 0..500 {
        if runs.run_count() <= at_most {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} runs, expected at most {at_most}", runs.run_count());
}

#[test]
fn entries_are_found_in_memory_then_in_their_run_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    runs.insert((0..1_000).map(|n| (key(n), entry(n, 5))));
    assert_eq!(get(&runs, 10), Some(entry(10, 5)));
    assert_eq!(runs.run_count(), 0);
    runs.write_pending().unwrap();
    assert!(!runs.has_pending());
    assert_eq!(runs.run_count(), 1);
    assert!((0..1_000).all(|n| get(&runs, n) == Some(entry(n, 5))));
    assert_eq!(get(&runs, 1_000), None);
    runs.stop();
    drop(runs);
    let runs = IdemRuns::open(dir.path()).unwrap();
    assert_eq!(runs.count(), 1_000);
    assert!((0..1_000).all(|n| get(&runs, n) == Some(entry(n, 5))));
    assert_eq!(get(&runs, 5_000), None);
}

#[test]
fn runs_are_merged_eight_at_a_time_and_every_entry_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    for r in 0..16 {
        add_run(&runs, r * 100, 100, r as i64);
    }
    wait_for_runs(&runs, 2);
    assert_eq!(runs.count(), 1_600);
    assert!((0..1_600).all(|n| get(&runs, n) == Some(entry(n, (n / 100) as i64))));
    // The merged inputs' files are gone.
    let files = std::fs::read_dir(dir.path().join(DIR)).unwrap().count();
    assert_eq!(files, runs.run_count());
}

#[test]
fn the_purge_removes_exactly_the_expired_entries_from_memory_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    add_run(&runs, 0, 300, 10); // all expired: dropped whole
    runs.insert((300..400).map(|n| (key(n), entry(n, if n < 350 { 10 } else { 99 }))));
    runs.write_pending().unwrap(); // half expired: rewritten
    add_run(&runs, 400, 50, 99); // kept
    runs.insert((450..460).map(|n| (key(n), entry(n, if n < 455 { 10 } else { 99 }))));
    let done = runs.purge(50).unwrap();
    assert_eq!(
        done,
        Purged {
            purged: 300 + 50 + 5,
            kept: 50 + 50 + 5
        }
    );
    assert!((0..350).all(|n| get(&runs, n).is_none()));
    assert!((450..455).all(|n| get(&runs, n).is_none()));
    assert!((350..450).chain(455..460).all(|n| get(&runs, n).is_some()));
    assert_eq!(
        runs.purge(50).unwrap(),
        Purged {
            purged: 0,
            kept: 105
        }
    );
}

#[test]
fn an_unfinished_file_and_runs_a_finished_merge_replaced_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    add_run(&runs, 0, 10, 1);
    add_run(&runs, 10, 10, 2);
    let old: Vec<u64> = runs.list().iter().map(|r| r.id).collect();
    // A merge whose output was renamed into place, but whose inputs were not removed
    // (a crash in between), and a run cut off mid-write.
    let d = dir.path().join(DIR);
    let mut merged = RunWriter::create(&d, 100, 20, old.clone()).unwrap();
    let mut all: Vec<_> = (0..20)
        .map(|n| (key(n), entry(n, 1 + (n / 10) as i64)))
        .collect();
    all.sort_by_key(|(k, _)| (hash(k), k.clone()));
    for e in all {
        merged.push(hash(&e.0), &e.0, &e.1).unwrap();
    }
    drop(merged.finish().unwrap());
    std::fs::write(d.join(file_name(101)), b"EQIR\x01 torn").unwrap();
    std::fs::write(d.join(format!("{}.tmp", file_name(102))), b"EQIR").unwrap();
    runs.stop();
    drop(runs);
    let runs = IdemRuns::open(dir.path()).unwrap();
    assert_eq!(
        runs.list().iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![100]
    );
    assert!((0..20).all(|n| get(&runs, n).is_some()));
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    // Ids go on after the highest run file found, so nothing overwrites one.
    add_run(&runs, 20, 1, 3);
    assert!(runs.list().iter().all(|r| r.id == 100 || r.id > 101));
}

#[test]
fn a_corrupt_block_is_an_error_not_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    add_run(&runs, 0, 10, 1);
    let path = runs.list()[0].path.clone();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    runs.stop();
    drop(runs);
    let runs = IdemRuns::open(dir.path()).unwrap();
    let errors = (0..10)
        .filter(|n| runs.get(&key(*n), hash(&key(*n))).is_err())
        .count();
    assert_eq!(errors, 10, "a miss would count a replay twice");
}

#[test]
fn keys_sharing_one_hash_over_several_blocks_are_all_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = RunWriter::create(dir.path(), 1, 300, vec![]).unwrap();
    let mut keys: Vec<Vec<u8>> = (0..200).map(key).collect();
    keys.sort();
    w.push(7, b"before", &entry(999, 1)).unwrap();
    for (n, k) in keys.iter().enumerate() {
        w.push(42, k, &entry(n as u64, 1)).unwrap();
    }
    w.push(43, b"after", &entry(998, 1)).unwrap();
    let run = w.finish().unwrap();
    for (n, k) in keys.iter().enumerate() {
        assert_eq!(run.get(k, 42).unwrap(), Some(entry(n as u64, 1)));
    }
    assert_eq!(run.get(b"after", 43).unwrap(), Some(entry(998, 1)));
    assert_eq!(run.get(b"before", 7).unwrap(), Some(entry(999, 1)));
    assert_eq!(run.get(b"other", 42).unwrap(), None);
}

#[test]
fn a_run_that_cannot_be_written_keeps_its_entries_for_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    runs.insert((0..100).map(|n| (key(n), entry(n, 1))));
    // What a full or failing disk does to the write: it fails.
    std::fs::remove_dir_all(dir.path().join(DIR)).unwrap();
    assert!(matches!(
        runs.write_pending(),
        Err(crate::store::StoreError::Runs(_))
    ));
    assert!(runs.has_pending());
    assert_eq!(runs.run_count(), 0);
    assert!((0..100).all(|n| get(&runs, n) == Some(entry(n, 1))));
    std::fs::create_dir(dir.path().join(DIR)).unwrap();
    runs.write_pending().unwrap();
    assert!(!runs.has_pending());
    assert!((0..100).all(|n| get(&runs, n) == Some(entry(n, 1))));
    assert_eq!(std::fs::read_dir(dir.path().join(DIR)).unwrap().count(), 1);
}

/// A table past `FREEZE_AT` is written as a run by the background thread, without a
/// checkpoint, and every entry is found before, during and after; the checkpoint then
/// writes only what came after it.
#[test]
fn a_full_table_is_written_in_the_background_and_stays_found_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    let total = FREEZE_AT as u64 + 100;
    runs.insert((0..FREEZE_AT as u64).map(|n| (key(n), entry(n, 5))));
    runs.insert((FREEZE_AT as u64..total).map(|n| (key(n), entry(n, 5))));
    // Found while the background write may be under way.
    assert!((0..total)
        .step_by(97)
        .all(|n| get(&runs, n) == Some(entry(n, 5))));
    for _ in 0..500 {
        if runs.run_count() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        runs.run_count(),
        1,
        "the frozen table became a run by itself"
    );
    assert!(
        runs.has_pending(),
        "the entries after it wait for the checkpoint"
    );
    assert!((0..total).all(|n| get(&runs, n) == Some(entry(n, 5))));
    runs.write_pending().unwrap();
    assert!(!runs.has_pending());
    assert_eq!(runs.count(), total);
    assert!((0..total).all(|n| get(&runs, n) == Some(entry(n, 5))));
    runs.stop();
}

/// A frozen table waiting for its run is purged like the rest: exact counts, the
/// expired entries gone, the others still found and written by the next checkpoint.
#[test]
fn the_purge_drops_the_expired_entries_of_a_frozen_table() {
    let dir = tempfile::tempdir().unwrap();
    let runs = IdemRuns::open(dir.path()).unwrap();
    runs.insert((0..100).map(|n| (key(n), entry(n, if n < 40 { 1 } else { 50 }))));
    // Frozen without waking the background writer: it stays frozen for the purge.
    assert!(runs.freeze());
    assert_eq!(
        runs.purge(10).unwrap(),
        Purged {
            purged: 40,
            kept: 60
        }
    );
    assert!((0..40).all(|n| get(&runs, n).is_none()));
    assert!((40..100).all(|n| get(&runs, n) == Some(entry(n, 50))));
    runs.write_pending().unwrap();
    assert!(!runs.has_pending());
    assert_eq!(runs.count(), 60);
    assert!((40..100).all(|n| get(&runs, n) == Some(entry(n, 50))));
    runs.stop();
}
