//! The log's frames and segments: order across reopens, torn tails, seals and resets.

use super::*;

fn ops(pairs: &[(&[u8], &[u8])]) -> Ops {
    let mut o = Ops::default();
    for (k, v) in pairs {
        o.put(k, v);
    }
    o
}

#[test]
fn frames_come_back_in_order_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, found) = Wal::open(dir.path(), true).unwrap();
    assert!(found.is_empty());
    wal.append(&ops(&[(b"a", b"1"), (b"b", b"")])).unwrap();
    wal.append(&ops(&[(b"a", b"2")])).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, found) = Wal::open(dir.path(), true).unwrap();
    let decoded: Vec<_> = found.iter().map(|p| puts(p).unwrap()).collect();
    assert_eq!(
        decoded,
        vec![
            vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b""[..])],
            vec![(&b"a"[..], &b"2"[..])]
        ]
    );
    assert!(wal.len() > 0);
}

#[test]
fn a_torn_or_corrupt_tail_ends_the_replay_and_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), false).unwrap();
    wal.append(&ops(&[(b"k", b"whole")])).unwrap();
    let whole = wal.len();
    wal.append(&ops(&[(b"k", b"torn value")])).unwrap();
    // A crash mid-append: the second frame lost its last bytes.
    let path = wal.current().to_path_buf();
    drop(wal);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(whole + 10).unwrap();
    let (mut wal, found) = Wal::open(dir.path(), false).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(wal.len(), whole, "the next frame goes over the torn one");
    wal.append(&ops(&[(b"k", b"next")])).unwrap();
    drop(wal);
    let (_, found) = Wal::open(dir.path(), false).unwrap();
    assert_eq!(puts(&found[1]).unwrap(), vec![(&b"k"[..], &b"next"[..])]);

    // A flipped byte inside a frame: its checksum fails and nothing after it counts.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER + 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (_, found) = Wal::open(dir.path(), false).unwrap();
    assert!(found.is_empty());
}

#[test]
fn reset_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), true).unwrap();
    wal.append(&ops(&[(b"k", b"v")])).unwrap();
    wal.reset().unwrap();
    assert_eq!(wal.len(), 0);
    drop(wal);
    let (_, found) = Wal::open(dir.path(), true).unwrap();
    assert!(found.is_empty());
}

fn keys_found(dir: &Path) -> Vec<Vec<u8>> {
    let (_, found) = Wal::open(dir, false).unwrap();
    found
        .iter()
        .flat_map(|p| puts(p).unwrap().into_iter().map(|(k, _)| k.to_vec()))
        .collect()
}

#[test]
fn sealed_segments_replay_before_the_newer_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), true).unwrap();
    wal.append(&ops(&[(b"1", b"")])).unwrap();
    wal.seal().unwrap();
    assert!(wal.has_sealed());
    assert_eq!(wal.len(), 0, "the cap counts the new segment only");
    assert!(
        wal.unsynced_for().is_none(),
        "sealing synced the old frames"
    );
    wal.append(&ops(&[(b"2", b"")])).unwrap();
    wal.seal().unwrap();
    wal.append(&ops(&[(b"3", b"")])).unwrap();
    drop(wal);
    assert_eq!(keys_found(dir.path()), [b"1", b"2", b"3"], "oldest first");

    // Reopened, it appends to the newest segment and still knows the sealed ones.
    let (mut wal, _) = Wal::open(dir.path(), true).unwrap();
    assert!(wal.has_sealed());
    wal.append(&ops(&[(b"4", b"")])).unwrap();
    wal.drop_sealed().unwrap();
    assert!(!wal.has_sealed());
    drop(wal);
    assert_eq!(keys_found(dir.path()), [b"3", b"4"]);

    let (mut wal, _) = Wal::open(dir.path(), true).unwrap();
    wal.seal().unwrap();
    wal.append(&ops(&[(b"5", b"")])).unwrap();
    wal.reset().unwrap();
    drop(wal);
    assert!(
        keys_found(dir.path()).is_empty(),
        "a reset empties every segment"
    );
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, 1, "one segment file is left");
}

#[test]
fn an_unsynced_frame_is_tracked_until_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), true).unwrap();
    assert!(wal.unsynced_for().is_none());
    wal.append(&ops(&[(b"k", b"v")])).unwrap();
    assert!(wal.unsynced_for().is_some(), "appended, not synced");
    wal.retry_sync_later();
    assert!(
        wal.unsynced_for().is_some(),
        "still waiting after a failed sync"
    );
    wal.sync().unwrap();
    assert!(wal.unsynced_for().is_none());
    wal.retry_sync_later();
    assert!(wal.unsynced_for().is_none(), "nothing to retry once synced");
}
