//! `DebugLogStore` on sled: the `debug_log` tree holds recent requests under a
//! big-endian sequence number, trimmed to a fixed capacity. (Requests never write here
//! themselves: a background task appends batches; see `crate::debug_log`.)

use super::codec::{decode, encode};
use crate::store::{blocking, DebugEntry, DebugLogStore, StoreFuture, StoreResult};
use futures_util::FutureExt;

const ENTRY_V: u8 = 1;

pub struct SledDebugLog {
    tree: sled::Tree,
    capacity: usize,
}

impl SledDebugLog {
    pub fn open(db: &sled::Db, capacity: usize) -> StoreResult<Self> {
        Ok(Self {
            tree: db.open_tree("debug_log")?,
            capacity,
        })
    }
}

impl DebugLogStore for SledDebugLog {
    fn append(&self, entries: Vec<DebugEntry>) -> StoreFuture<()> {
        let (tree, capacity) = (self.tree.clone(), self.capacity);
        blocking(move || append(&tree, &entries, capacity)).boxed()
    }

    fn recent(&self, correlation_id: Option<String>, limit: usize) -> StoreFuture<Vec<DebugEntry>> {
        let tree = self.tree.clone();
        blocking(move || recent(&tree, correlation_id.as_deref(), limit)).boxed()
    }
}

/// Appends `entries` after the last sequence number, then drops the oldest beyond
/// `capacity`. Single caller (the debug-log task), so sequence numbers do not race.
fn append(tree: &sled::Tree, entries: &[DebugEntry], capacity: usize) -> StoreResult<()> {
    let mut next = match tree.last()? {
        Some((k, _)) => seq_of(&k).map_or(0, |s| s + 1),
        None => 0,
    };
    let mut batch = sled::Batch::default();
    for e in entries {
        batch.insert(&next.to_be_bytes(), encode(ENTRY_V, e));
        next += 1;
    }
    tree.apply_batch(batch)?;
    let keep_from = next.saturating_sub(capacity as u64);
    let mut trim = sled::Batch::default();
    for k in tree.range(..keep_from.to_be_bytes()).keys() {
        trim.remove(k?);
    }
    tree.apply_batch(trim)?;
    Ok(())
}

/// Newest first, optionally only one correlation id, at most `limit`.
fn recent(
    tree: &sled::Tree,
    correlation_id: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<DebugEntry>> {
    let mut out = Vec::new();
    for item in tree.iter().values().rev() {
        let entry: DebugEntry = decode("debug_log", ENTRY_V, &item?)?;
        if correlation_id.is_none_or(|c| c == entry.correlation_id) {
            out.push(entry);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u16, corr: &str) -> DebugEntry {
        DebugEntry {
            at_ms: 0,
            method: "GET".into(),
            route: "/x".into(),
            status: n,
            latency_us: 1,
            correlation_id: corr.into(),
            request_id: "r".into(),
            org_id: None,
        }
    }

    #[test]
    fn keeps_the_newest_entries_up_to_capacity() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = db.open_tree("debug_log").unwrap();
        let batch: Vec<_> = (0..7)
            .map(|n| entry(n, if n % 2 == 0 { "even" } else { "odd" }))
            .collect();
        append(&t, &batch, 5).unwrap();
        append(&t, &[entry(7, "odd")], 5).unwrap();
        let all = recent(&t, None, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.status).collect::<Vec<_>>(),
            vec![7, 6, 5, 4, 3]
        );
        let odd = recent(&t, Some("odd"), 1).unwrap();
        assert_eq!(odd.len(), 1);
        assert_eq!(odd[0].status, 7);
    }
}
