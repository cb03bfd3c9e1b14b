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
//!
//! The log is a series of segment files, `ledger.wal` then `ledger.<n>.wal`, appended to
//! in the newest. A checkpoint under load first seals the segment (syncs it and starts
//! the next), then folds into sled only what the sealed segments hold, and deletes them:
//! a checkpoint that had to empty the whole log could never finish while commits kept
//! moving counters it had already stored (the log grew past its cap without bound).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::durability::sync_dir;

/// The first segment's name (the whole log, before segments existed).
const FIRST: &str = "ledger.wal";
const HEADER: usize = 8;
/// A frame longer than this is corruption, not a commit (a batch is capped far below).
const MAX_FRAME: usize = 1 << 30;

/// The puts of one frame under construction.
#[derive(Default)]
pub struct Ops {
    buf: Vec<u8>,
}

impl Ops {
    /// Room for `bytes` of puts (a group commit sizes its frame by the previous one's).
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// The puts' size in bytes so far.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

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
    dir: PathBuf,
    /// The segment appended to: its number and path.
    seq: u64,
    path: PathBuf,
    file: File,
    /// Older segments, oldest first: replayed at open until a checkpoint deletes them.
    sealed: Vec<PathBuf>,
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
    /// frames its segments hold, oldest first. `fdatasync` false (benchmarks only) skips
    /// syncs.
    pub fn open(dir: &Path, fdatasync: bool) -> io::Result<(Self, Vec<Vec<u8>>)> {
        let mut segments = segments(dir)?;
        let (seq, path) = match segments.pop() {
            Some(last) => last,
            None => (0, dir.join(FIRST)),
        };
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if created && fdatasync {
            sync_dir(dir)?;
        }
        let mut payloads = Vec::new();
        for (_, older) in &segments {
            payloads.extend(
                frames(&std::fs::read(older)?)
                    .into_iter()
                    .map(<[u8]>::to_vec),
            );
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let frames = frames(&bytes);
        let wal = Self {
            dir: dir.to_path_buf(),
            seq,
            path,
            file,
            sealed: segments.into_iter().map(|(_, p)| p).collect(),
            len: frames.iter().map(|f| (HEADER + f.len()) as u64).sum(),
            fdatasync,
            unsynced_since: None,
        };
        payloads.extend(frames.into_iter().map(<[u8]>::to_vec));
        Ok((wal, payloads))
    }

    /// Ends the segment being appended to (synced, so its frames no longer wait for a
    /// sync) and starts the next: what a checkpoint must fold into sled before it may
    /// delete the sealed segments is then fixed. On failure nothing changed.
    pub fn seal(&mut self) -> io::Result<()> {
        self.sync()?;
        let seq = self.seq + 1;
        let path = self.dir.join(format!("ledger.{seq}.wal"));
        // A file of that number can only be one an earlier failed seal left empty.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        if self.fdatasync {
            sync_dir(&self.dir)?;
        }
        self.sealed.push(std::mem::replace(&mut self.path, path));
        self.file = file;
        self.seq = seq;
        self.len = 0;
        Ok(())
    }

    /// Whether sealed segments wait for a checkpoint to delete them.
    pub fn has_sealed(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// Deletes the sealed segments: call only once everything they hold is durable in
    /// sled. The deletions are made durable too: a segment that came back after a power
    /// loss would replay older totals over a tree the later segments no longer correct.
    pub fn drop_sealed(&mut self) -> io::Result<()> {
        if self.sealed.is_empty() {
            return Ok(());
        }
        while let Some(path) = self.sealed.first() {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.sealed.remove(0);
        }
        if self.fdatasync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Appends one frame (not yet synced).
    pub fn append(&mut self, ops: &Ops) -> io::Result<()> {
        // The payload is written from where it lies, after its header, not copied behind
        // the header first: a batch load's frames are hundreds of KB, and that copy was a
        // tenth of the writer thread. (A crash between the two writes leaves a torn
        // frame, as a crash inside one write could: its CRC refuses it at replay.)
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(ops.buf.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(&ops.buf).to_le_bytes());
        self.file.write_all_at(&header, self.len)?;
        self.file.write_all_at(&ops.buf, self.len + HEADER as u64)?;
        self.len += (HEADER + ops.buf.len()) as u64;
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

    /// Empties the log (the sealed segments too): call only once everything it holds
    /// is durable elsewhere.
    pub fn reset(&mut self) -> io::Result<()> {
        self.drop_sealed()?;
        if self.len == 0 {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.sync()?;
        self.len = 0;
        Ok(())
    }

    /// Bytes in the segment being appended to.
    pub fn len(&self) -> u64 {
        self.len
    }

    #[cfg(test)]
    fn current(&self) -> &Path {
        &self.path
    }
}

/// The log's segment files in `dir`, oldest first, with their numbers.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let seq = match name {
            FIRST => Some(0),
            _ => name
                .strip_prefix("ledger.")
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok()),
        };
        if let Some(seq) = seq {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
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
mod tests;
