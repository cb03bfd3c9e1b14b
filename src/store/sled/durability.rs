//! What makes a flushed sled write survive power loss: sled 0.34's flush ends in
//! `sync_file_range` on Linux, which neither writes file metadata nor flushes the device's
//! write cache, and it writes large values ("blobs", one file each) without any sync. So
//! after every flush this module `fdatasync`s sled's data file, and `fsync`s each blob
//! file that appeared since the last sync together with their directory. The directories
//! themselves are synced once at open, when sled has created its files.
//!
//! It also tracks the one state in which sled's memory is ahead of the disk: a flush that
//! failed after its batch was applied. Until a later flush succeeds, nothing read from the
//! store may be acknowledged (a replay must not answer 200 from data no flush covered);
//! `Durability::barrier` re-flushes first, and fails while the disk keeps failing.

use crate::store::faults::Faults;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Durability {
    enabled: bool,
    db_file: Option<File>,
    blobs_dir: PathBuf,
    /// Blob files already synced (sled never rewrites a blob file in place).
    synced_blobs: Mutex<HashSet<OsString>>,
    /// A flush failed after its writes were applied: memory may hold undurable data.
    behind: AtomicBool,
    faults: Arc<Faults>,
}

/// Makes the entries of `dir` (files created, renamed or deleted in it) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Durability {
    /// For the sled database at `dir` (already opened). With `enabled` false (benchmarks
    /// only) sled's own flush is all there is.
    pub fn open(dir: &Path, enabled: bool, faults: Arc<Faults>) -> io::Result<Self> {
        let blobs_dir = dir.join("blobs");
        let db_file = if enabled {
            sync_dir(dir)?;
            if blobs_dir.is_dir() {
                sync_dir(&blobs_dir)?;
            }
            Some(File::open(dir.join("db"))?)
        } else {
            None
        };
        let existing = match std::fs::read_dir(&blobs_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            enabled,
            db_file,
            blobs_dir,
            synced_blobs: Mutex::new(existing),
            behind: AtomicBool::new(false),
            faults,
        })
    }

    /// Makes what sled flushed durable. Blocking: call from the writer thread or the
    /// blocking pool.
    pub fn sync(&self) -> io::Result<()> {
        self.faults.flush_fault()?;
        let Some(file) = &self.db_file else {
            return Ok(());
        };
        file.sync_data()?;
        self.sync_new_blobs()
    }

    fn sync_new_blobs(&self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        for entry in entries {
            let name = entry?.file_name();
            if synced.contains(&name) {
                continue;
            }
            match File::open(self.blobs_dir.join(&name)) {
                Ok(f) => f.sync_all()?,
                // Removed by sled meanwhile (the value was overwritten): nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            synced.insert(name);
            any = true;
        }
        if any {
            sync_dir(&self.blobs_dir)?;
        }
        // Forget names sled has deleted, so the set stays as small as the directory.
        if synced.len() > 1024 {
            synced.retain(|n| self.blobs_dir.join(n).exists());
        }
        Ok(())
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Records that a flush failed after its writes were applied.
    pub fn mark_behind(&self) {
        self.behind.store(true, Ordering::SeqCst);
    }

    /// Records that a flush succeeded: everything applied before it is durable.
    pub fn mark_caught_up(&self) {
        self.behind.store(false, Ordering::SeqCst);
    }

    /// Whether memory may hold writes no successful flush covered.
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::SeqCst)
    }
}
