//! The ledger's write-ahead log: what makes a group commit durable with one sequential
//! append and one `fdatasync`, where a sled flush per commit used to (writing out every
//! page a batch dirtied was most of a durable record's cost, and it bounded consumes'
//! write-behind too).
//!
//! Each group commit appends one frame — `[payload length: u32 LE][crc32: u32 LE]` and
//! the payload, a run of `[key length: u32][key][value length: u32][value]` puts — holding
//! the final value of every ledger key the commit wrote (counters as absolute totals), so
//! replaying frames in order onto the tree is idempotent: replaying one twice, or one
//! whose values sled had already flushed, ends in the same state. A checkpoint (the
//! writer, every few seconds or when the log has grown) flushes sled and only then empties
//! the log. At open, the frames found are applied before anything reads the tree; a torn
//! last frame (a crash mid-append, never acknowledged) fails its checksum and ends the
//! replay.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const FILE: &str = "ledger.wal";
const HEADER: usize = 8;
/// A frame longer than this is corruption, not a commit (a batch is capped far below).
const MAX_FRAME: usize = 1 << 30;

/// The puts of one frame under construction.
#[derive(Default)]
pub struct Ops {
    buf: Vec<u8>,
}

impl Ops {
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.buf.reserve(8 + key.len() + value.len());
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
    }
}

/// The puts of a frame's payload, in order; `None` if the payload is malformed.
pub fn puts(payload: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let field = rest.get(4..4 + len)?;
        *rest = &rest[4 + len..];
        Some(field)
    }
    let mut rest = payload;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let key = take(&mut rest)?;
        let value = take(&mut rest)?;
        out.push((key, value));
    }
    Some(out)
}

pub struct Wal {
    file: File,
    /// Bytes of whole frames written; the next frame goes here (after a failed write,
    /// over whatever it left).
    len: u64,
    fdatasync: bool,
    /// When the oldest frame not yet synced was appended (frames of write-behind
    /// commits wait for a later sync).
    unsynced_since: Option<Instant>,
}

impl Wal {
    /// Opens (or creates) the log in `dir` and returns it with the payloads of the whole
    /// frames it holds, oldest first. `fdatasync` false (benchmarks only) skips syncs.
    pub fn open(dir: &Path, fdatasync: bool) -> io::Result<(Self, Vec<Vec<u8>>)> {
        let path = dir.join(FILE);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if created && fdatasync {
            File::open(dir)?.sync_all()?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let frames = frames(&bytes);
        let wal = Self {
            file,
            len: frames.iter().map(|f| (HEADER + f.len()) as u64).sum(),
            fdatasync,
            unsynced_since: None,
        };
        Ok((wal, frames.into_iter().map(<[u8]>::to_vec).collect()))
    }

    /// Appends one frame (not yet synced).
    pub fn append(&mut self, ops: &Ops) -> io::Result<()> {
        let mut frame = Vec::with_capacity(HEADER + ops.buf.len());
        frame.extend_from_slice(&(ops.buf.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&ops.buf).to_le_bytes());
        frame.extend_from_slice(&ops.buf);
        self.file.write_all_at(&frame, self.len)?;
        self.len += frame.len() as u64;
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Makes every frame appended so far durable (the earlier unsynced ones too: one
    /// `fdatasync` covers the whole file).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.fdatasync {
            self.file.sync_data()?;
        }
        self.unsynced_since = None;
        Ok(())
    }

    /// How long the oldest frame not yet synced has waited, if any has.
    pub fn unsynced_for(&self) -> Option<Duration> {
        self.unsynced_since.map(|at| at.elapsed())
    }

    /// After a failed sync: the unsynced frames wait a full interval again, so a failing
    /// disk is retried at that pace rather than in a loop.
    pub fn retry_sync_later(&mut self) {
        if self.unsynced_since.is_some() {
            self.unsynced_since = Some(Instant::now());
        }
    }

    /// Empties the log: call only once everything it holds is durable elsewhere.
    pub fn reset(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.sync()?;
        self.len = 0;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }
}

/// The payloads of the whole, intact frames at the start of `bytes`.
fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc || puts(payload).is_none() {
            break;
        }
        out.push(payload);
        at += HEADER + len;
    }
    out
}

#[cfg(test)]
mod tests {
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
        drop(wal);
        // A crash mid-append: the second frame lost its last bytes.
        let path = dir.path().join(FILE);
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
}
