//! One run file: an immutable, sorted set of usage idempotency entries, written once
//! (by a checkpoint from the entries it made durable, or by a merge of older runs) and
//! then only read, until a merge or the purge replaces it whole.
//!
//! Layout: `[magic 4][version 1]`, then blocks — each `[length u32 LE][crc32 u32 LE]`
//! and a versioned postcard list of up to `BLOCK_ENTRIES` `(key, entry)` in the order of
//! `(hash(key), key)` — then the footer: the versioned postcard [`Footer`] (every block's
//! first hash and
//! offset, the run's Bloom filter, its entry count and age range, the runs it replaces),
//! its length and crc (u32 LE each) and the magic again. A file without a whole,
//! matching footer was never finished (a crash while writing) and is not a run.
//!
//! A look-up reads only the footer's index (held in memory) and one block with `pread`:
//! the filter answers "absent" for nearly every key not in the run without any read.
//! Ordered by hash, not by key: sorting and merging then compare integers (a
//! checkpoint sorts a few hundred thousand entries while commits wait), and the index
//! keeps 8 bytes per block.

use super::bloom::Bloom;
use crate::store::codec::{decode, encode, push_varint};
use crate::store::sled::ledger::{append_idem_fields, IdemEntry};
use crate::store::{StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"EQIR";
const FILE_V: u8 = 1;
const BLOCK_V: u8 = 1;
const FOOTER_V: u8 = 1;
const TREE: &str = "idempotency runs";
/// Entries per block: a hit decodes one block (~10 KB), the index keeps one key per block.
pub const BLOCK_ENTRIES: usize = 64;

pub type Entry = (Vec<u8>, IdemEntry);

/// An entry as a block is read: encoded exactly as an `Entry` (a byte string is its
/// length and its bytes in postcard either way), but the key is read in one copy, not
/// one call per byte — a look-up that the filter let through decodes a whole block.
#[derive(Deserialize)]
struct Stored(#[serde(with = "serde_bytes")] Vec<u8>, IdemEntry);

/// An entry as a look-up reads it: borrowed from the block, so that deciding which of
/// its 64 entries is the one (most often none: the filter let a stranger through)
/// allocates nothing; only the match is copied out.
#[derive(Deserialize)]
struct Borrowed<'a>(
    #[serde(borrow, with = "serde_bytes")] &'a [u8],
    BorrowedEntry<'a>,
);

#[derive(Deserialize)]
struct BorrowedEntry<'a> {
    fingerprint: [u8; 16],
    #[serde(borrow, with = "serde_bytes")]
    body: &'a [u8],
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct Footer {
    count: u64,
    min_created_ms: i64,
    max_created_ms: i64,
    /// Runs this one was merged from: they are obsolete once this file exists.
    replaces: Vec<u64>,
    /// Each block's first hash, offset and length.
    blocks: Vec<(u64, u64, u32)>,
    filter: Bloom,
}

/// A finished run, as held in memory.
pub struct Run {
    pub id: u64,
    pub path: PathBuf,
    file: File,
    pub count: u64,
    pub min_created_ms: i64,
    pub max_created_ms: i64,
    pub replaces: Vec<u64>,
    blocks: Vec<(u64, u64, u32)>,
    filter: Bloom,
}

pub fn io(e: io::Error) -> StoreError {
    StoreError::Runs(std::sync::Arc::new(e))
}

fn corrupt(problem: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: TREE,
        problem: problem.into(),
    }
}

pub fn file_name(id: u64) -> String {
    format!("{id:016x}.run")
}

/// The run id a file name stands for (`None` for anything else in the directory).
pub fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".run")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
}

impl Run {
    /// Opens a finished run; `Ok(None)` for a file never finished.
    pub fn open(id: u64, path: &Path) -> StoreResult<Option<Run>> {
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 17 {
            return Ok(None);
        }
        let mut tail = [0u8; 12];
        file.read_exact_at(&mut tail, len - 12).map_err(io)?;
        if &tail[8..] != MAGIC {
            return Ok(None);
        }
        let footer_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
        let crc = u32::from_le_bytes([tail[4], tail[5], tail[6], tail[7]]);
        let Some(start) = (len - 12).checked_sub(footer_len).filter(|s| *s >= 5) else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; footer_len as usize];
        file.read_exact_at(&mut bytes, start).map_err(io)?;
        if crc32fast::hash(&bytes) != crc {
            return Ok(None);
        }
        let footer: Footer = decode(TREE, FOOTER_V, &bytes)?;
        Ok(Some(Run {
            id,
            path: path.to_path_buf(),
            file,
            count: footer.count,
            min_created_ms: footer.min_created_ms,
            max_created_ms: footer.max_created_ms,
            replaces: footer.replaces,
            blocks: footer.blocks,
            filter: footer.filter,
        }))
    }

    pub fn may_contain(&self, hash: u64) -> bool {
        self.filter.may_contain(hash)
    }

    /// Block `index`'s frame, checked: its body starts at byte 8.
    fn frame(&self, index: usize) -> StoreResult<Vec<u8>> {
        let Some((_, offset, len)) = self.blocks.get(index) else {
            return Err(corrupt(format!("run {:x}: no block {index}", self.id)));
        };
        let mut frame = vec![0u8; *len as usize];
        self.file.read_exact_at(&mut frame, *offset).map_err(io)?;
        let (header, body) = frame.split_at(8.min(frame.len()));
        let crc = header
            .get(4..8)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if crc != Some(crc32fast::hash(body)) {
            return Err(corrupt(format!(
                "run {:x}: block {index} fails its crc",
                self.id
            )));
        }
        Ok(frame)
    }

    fn block(&self, index: usize) -> StoreResult<Vec<Entry>> {
        let frame = self.frame(index)?;
        let stored: Vec<Stored> = decode(TREE, BLOCK_V, frame.get(8..).unwrap_or_default())?;
        Ok(stored.into_iter().map(|Stored(k, e)| (k, e)).collect())
    }

    /// The entry stored for `key`, whose hash is `hash` (call only when `may_contain`
    /// said so).
    pub fn get(&self, key: &[u8], hash: u64) -> StoreResult<Option<IdemEntry>> {
        // Keys of one hash may start in the block before the first whose first hash is
        // `hash`, and run on over several.
        let start = self
            .blocks
            .partition_point(|(first, _, _)| *first < hash)
            .saturating_sub(1);
        for index in start..self.blocks.len() {
            if self.blocks[index].0 > hash {
                break;
            }
            let frame = self.frame(index)?;
            let block: Vec<Borrowed> = decode(TREE, BLOCK_V, frame.get(8..).unwrap_or_default())?;
            if let Some(Borrowed(_, e)) = block.into_iter().find(|b| b.0 == key) {
                return Ok(Some(IdemEntry {
                    fingerprint: e.fingerprint,
                    body: e.body.to_vec(),
                    created_ms: e.created_ms,
                }));
            }
        }
        Ok(None)
    }

    /// Every entry in key order, a block at a time (merges and the purge).
    pub fn entries(&self) -> impl Iterator<Item = StoreResult<Entry>> + '_ {
        (0..self.blocks.len()).flat_map(move |i| match self.block(i) {
            Ok(block) => block.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    }
}

/// A block's bytes from its count and its encoded entries: the version, then the
/// entries as postcard writes a `Vec` (its length, then each).
fn block_body(count: usize, entries: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + 10 + entries.len());
    body.push(BLOCK_V);
    push_varint(&mut body, count as u64);
    body.extend_from_slice(entries);
    body
}

/// Writes a run from entries in strictly increasing `(hash, key)` order: to a temporary name,
/// synced, then renamed into place and the directory synced, so a run file that exists
/// under its name is whole and durable.
pub struct RunWriter {
    id: u64,
    dir: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    /// The block being filled, its entries already encoded (see `push`).
    block: Vec<u8>,
    block_entries: usize,
    block_hash: u64,
    footer: Footer,
    renamed: bool,
}

impl RunWriter {
    /// `expected` sizes the Bloom filter (an upper bound of the entries to come).
    pub fn create(dir: &Path, id: u64, expected: u64, replaces: Vec<u64>) -> io::Result<Self> {
        let tmp = dir.join(format!("{}.tmp", file_name(id)));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(MAGIC)?;
        out.write_all(&[FILE_V])?;
        Ok(Self {
            id,
            dir: dir.to_path_buf(),
            tmp,
            out,
            offset: 5,
            block: Vec::with_capacity(BLOCK_ENTRIES * 128),
            block_entries: 0,
            block_hash: 0,
            renamed: false,
            footer: Footer {
                count: 0,
                min_created_ms: i64::MAX,
                max_created_ms: i64::MIN,
                replaces,
                blocks: Vec::new(),
                filter: Bloom::with_capacity(expected),
            },
        })
    }

    /// Adds an entry; entries come in increasing `(hash, key)` order. It is encoded at
    /// once, by hand, as postcard encodes an `Entry` in a `Vec` (a test holds them
    /// equal): freezing a table wrote every key and body through serde one byte at a
    /// time, after copying them, on a thread that shares the cores with the commits.
    pub fn push(&mut self, hash: u64, key: &[u8], entry: &IdemEntry) -> io::Result<()> {
        let f = &mut self.footer;
        f.count += 1;
        f.min_created_ms = f.min_created_ms.min(entry.created_ms);
        f.max_created_ms = f.max_created_ms.max(entry.created_ms);
        f.filter.insert(hash);
        if self.block_entries == 0 {
            self.block_hash = hash;
        }
        push_varint(&mut self.block, key.len() as u64);
        self.block.extend_from_slice(key);
        append_idem_fields(entry, &mut self.block);
        self.block_entries += 1;
        if self.block_entries == BLOCK_ENTRIES {
            self.write_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self) -> io::Result<()> {
        if self.block_entries == 0 {
            return Ok(());
        }
        let body = block_body(self.block_entries, &self.block);
        self.block.clear();
        self.block_entries = 0;
        let len = 8 + body.len();
        self.out.write_all(&(body.len() as u32).to_le_bytes())?;
        self.out.write_all(&crc32fast::hash(&body).to_le_bytes())?;
        self.out.write_all(&body)?;
        self.footer
            .blocks
            .push((self.block_hash, self.offset, len as u32));
        self.offset += len as u64;
        Ok(())
    }

    /// Finishes the file and opens it as a run.
    pub fn finish(self) -> StoreResult<Run> {
        let (id, path) = self.finish_file().map_err(io)?;
        Run::open(id, &path)?
            .ok_or_else(|| corrupt(format!("run {id:x} unreadable right after writing")))
    }

    fn finish_file(mut self) -> io::Result<(u64, PathBuf)> {
        self.write_block()?;
        let footer = encode(FOOTER_V, &self.footer);
        self.out.write_all(&footer)?;
        self.out.write_all(&(footer.len() as u32).to_le_bytes())?;
        self.out
            .write_all(&crc32fast::hash(&footer).to_le_bytes())?;
        self.out.write_all(MAGIC)?;
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        let path = self.dir.join(file_name(self.id));
        std::fs::rename(&self.tmp, &path)?;
        self.renamed = true;
        crate::store::sled::durability::sync_dir(&self.dir)?;
        Ok((self.id, path))
    }
}

impl Drop for RunWriter {
    /// A run abandoned or failed (a full disk) gives its space back at once.
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs written before blocks were encoded by hand must stay readable, and the
    /// reader decodes postcard: the hand-written block is postcard's, byte for byte, at
    /// every varint boundary of the lengths and times.
    #[test]
    fn a_hand_encoded_block_is_postcards() {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, len) in [0usize, 1, 127, 128, 300].into_iter().enumerate() {
            for created_ms in [0i64, -1, 63, -64, 64, 1_764_000_000_000, i64::MIN, i64::MAX] {
                let key: Vec<u8> = (0..len + i).map(|b| b as u8).collect();
                entries.push((
                    key,
                    IdemEntry {
                        fingerprint: [i as u8; 16],
                        body: vec![b'x'; len],
                        created_ms,
                    },
                ));
            }
        }
        for count in [0, 1, 8, 17, entries.len()] {
            let block = &entries[..count];
            let mut encoded = Vec::new();
            for (k, e) in block {
                push_varint(&mut encoded, k.len() as u64);
                encoded.extend_from_slice(k);
                append_idem_fields(e, &mut encoded);
            }
            assert_eq!(
                block_body(count, &encoded),
                encode(BLOCK_V, &block.to_vec()),
                "{count}"
            );
        }
    }
}
