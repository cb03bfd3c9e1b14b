//! The `ledger` tree's layout: everything an org actor owns, in one tree so that one
//! batch of the group-commit writer is crash-atomic (a counter and the idempotency entry
//! that explains it are never persisted apart).
//!
//! Keys (ids never contain NUL, so NUL separates segments):
//! - `s\0{org}`                           → [`OrgState`] (plan in force, current period)
//! - `c\0{org}\0{period:be32}{metric}`    → used (u64), the running total of the deltas
//! - `i\0{org}\0{request_id}`             → [`IdemEntry`] (payload fingerprint + exact body):
//!   written by older versions only; entries now live in the idempotency runs (`idem`),
//!   under the same key, and reach the tree never (the log's frames carry them, so a
//!   counter and its entry are still durable together)
//! - `b\0{org}`                           → [`BillingRecord`] (Stripe customer, subscription,
//!   pending change), written in the same batch as the plan in force it implies
//!
//! There is deliberately no time index for the purge: sled's per-insert CPU cost is what
//! bounds durable records per second, and an hourly background scan of the entries is
//! cheaper than one more insert on every record.

use super::codec::{decode, encode, push_signed_varint, push_varint};
use crate::domain::{BillingRecord, Metric, OrgId, PeriodKey};
use crate::store::{OrgState, Purged, StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const TREE: &str = "ledger";
const STATE_V: u8 = 1;
const COUNTER_V: u8 = 1;
const IDEM_V: u8 = 1;
/// Schema 2 dropped `default_payment_method` (never read); schema 1 still reads.
const BILLING_V1: u8 = 1;
const BILLING_V: u8 = 2;
const IDEM_PREFIX: [u8; 2] = [b'i', 0];

/// What a usage record answered, kept so a retry gets the identical body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemEntry {
    pub fingerprint: [u8; 16],
    /// As bytes (in postcard the same encoding as a sequence of `u8`, read in one copy
    /// instead of one call per byte).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub created_ms: i64,
}

fn with_org(tag: u8, org: &OrgId) -> Vec<u8> {
    let mut k = Vec::with_capacity(org.as_str().len() + 40);
    k.push(tag);
    k.push(0);
    k.extend_from_slice(org.as_str().as_bytes());
    k
}

pub fn state_key(org: &OrgId) -> Vec<u8> {
    with_org(b's', org)
}

fn counter_prefix(org: &OrgId, period: PeriodKey) -> Vec<u8> {
    let mut k = with_org(b'c', org);
    k.push(0);
    k.extend_from_slice(&period.to_be_bytes());
    k
}

pub fn counter_key(org: &OrgId, period: PeriodKey, metric: &Metric) -> Vec<u8> {
    let mut k = counter_prefix(org, period);
    k.extend_from_slice(metric.as_str().as_bytes());
    k
}

pub fn idem_key(org: &OrgId, request: &crate::domain::RequestId) -> Vec<u8> {
    let mut k = with_org(b'i', org);
    k.push(0);
    k.extend_from_slice(request.as_str().as_bytes());
    k
}

/// Whether a ledger key is a usage idempotency entry's (in the log's frames: those go
/// to the runs, not the tree).
pub fn is_idem_key(key: &[u8]) -> bool {
    key.starts_with(&IDEM_PREFIX)
}

pub fn billing_key(org: &OrgId) -> Vec<u8> {
    with_org(b'b', org)
}

pub fn encode_state(state: &OrgState) -> Vec<u8> {
    encode(STATE_V, state)
}

pub fn encode_billing(record: &BillingRecord) -> Vec<u8> {
    encode(BILLING_V, record)
}

pub fn encode_counter(used: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    encode_counter_into(used, &mut out);
    out
}

/// `encode_counter` into `out` (cleared first): by hand, in one reused buffer, since
/// every group commit writes one per counter it moved. A test holds it to postcard.
pub fn encode_counter_into(used: u64, out: &mut Vec<u8>) {
    out.clear();
    out.push(COUNTER_V);
    push_varint(out, used);
}

/// An entry's stored value (tests write entries as the tree of older versions held them).
#[cfg(test)]
pub fn encode_idem(entry: &IdemEntry) -> Vec<u8> {
    let mut out = Vec::new();
    encode_idem_into(entry, &mut out);
    out
}

/// An entry's stored value, into `out` (cleared first): by hand, as postcard lays it out
/// (the fingerprint's 16 bytes, the body's length and bytes, the zigzag time), because
/// serde's per-byte calls and the growing `Vec` cost a third of a record's group-commit
/// work. A test holds it to postcard.
pub fn encode_idem_into(entry: &IdemEntry, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(1 + 16 + 10 + entry.body.len() + 10);
    out.push(IDEM_V);
    append_idem_fields(entry, out);
}

/// Appends the entry's fields as postcard writes them (no version byte): also how an
/// idempotency run's blocks hold them.
pub fn append_idem_fields(entry: &IdemEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.fingerprint);
    push_varint(out, entry.body.len() as u64);
    out.extend_from_slice(&entry.body);
    push_signed_varint(out, entry.created_ms);
}

pub fn decode_idem(bytes: &[u8]) -> StoreResult<IdemEntry> {
    decode(TREE, IDEM_V, bytes)
}

pub fn decode_counter(bytes: &[u8]) -> StoreResult<u64> {
    decode(TREE, COUNTER_V, bytes)
}

#[derive(Deserialize)]
struct BillingV1 {
    customer_id: Option<String>,
    email: Option<String>,
    subscription: Option<crate::domain::SubscriptionRecord>,
    #[allow(dead_code)]
    default_payment_method: Option<String>,
}

fn decode_billing(bytes: &[u8]) -> StoreResult<BillingRecord> {
    if bytes.first() == Some(&BILLING_V1) {
        let v1: BillingV1 = decode(TREE, BILLING_V1, bytes)?;
        return Ok(BillingRecord {
            customer_id: v1.customer_id,
            email: v1.email,
            subscription: v1.subscription,
        });
    }
    decode(TREE, BILLING_V, bytes)
}

pub fn get_billing(tree: &sled::Tree, org: &OrgId) -> StoreResult<Option<BillingRecord>> {
    tree.get(billing_key(org))?
        .map(|v| decode_billing(&v))
        .transpose()
}

pub fn get_state(tree: &sled::Tree, org: &OrgId) -> StoreResult<Option<OrgState>> {
    tree.get(state_key(org))?
        .map(|v| decode(TREE, STATE_V, &v))
        .transpose()
}

/// Every metric's counter of one org in one period.
pub fn counters_for(
    tree: &sled::Tree,
    org: &OrgId,
    period: PeriodKey,
) -> StoreResult<HashMap<Metric, u64>> {
    let prefix = counter_prefix(org, period);
    let mut out = HashMap::new();
    for item in tree.scan_prefix(&prefix) {
        let (k, v) = item?;
        let name = std::str::from_utf8(&k[prefix.len()..]).map_err(|e| StoreError::Corrupt {
            tree: TREE,
            problem: e.to_string(),
        })?;
        let metric = Metric::parse(name).map_err(|e| StoreError::Corrupt {
            tree: TREE,
            problem: format!("metric {name:?}: {e}"),
        })?;
        out.insert(metric, decode_counter(&v)?);
    }
    Ok(out)
}

/// Removes idempotency entries created before `cutoff_ms`. Each entry is removed only if
/// it is still the value that was read (compare-and-swap), so a request id recorded anew
/// meanwhile is never lost.
pub fn purge_idem_before(tree: &sled::Tree, cutoff_ms: i64) -> StoreResult<Purged> {
    let mut out = Purged::default();
    for item in tree.scan_prefix(IDEM_PREFIX) {
        let (key, value) = item?;
        let entry = decode_idem(&value)?;
        if entry.created_ms < cutoff_ms
            && tree
                .compare_and_swap(&key, Some(value), None::<&[u8]>)?
                .is_ok()
        {
            out.purged += 1;
        } else {
            out.kept += 1;
        }
    }
    Ok(out)
}

/// The key of every idempotency entry (to rebuild the in-memory filter at start).
pub fn all_idem_keys(tree: &sled::Tree) -> impl Iterator<Item = StoreResult<sled::IVec>> {
    tree.scan_prefix(IDEM_PREFIX)
        .keys()
        .map(|k| k.map_err(StoreError::from))
}

/// Up to `limit` orgs' stored states in key order, after `after`.
pub fn states_page(
    tree: &sled::Tree,
    after: Option<&OrgId>,
    limit: usize,
) -> StoreResult<Vec<(OrgId, OrgState)>> {
    let start = match after {
        // The key right after `after`'s: its own key with a NUL appended.
        Some(org) => {
            let mut k = state_key(org);
            k.push(0);
            k
        }
        None => vec![b's', 0],
    };
    let mut out = Vec::new();
    for item in tree.range(start..) {
        let (k, v) = item?;
        if !k.starts_with(&[b's', 0]) || out.len() >= limit {
            break;
        }
        let raw = std::str::from_utf8(&k[2..]).map_err(|e| StoreError::Corrupt {
            tree: TREE,
            problem: e.to_string(),
        })?;
        let org = OrgId::parse(raw).map_err(|e| StoreError::Corrupt {
            tree: TREE,
            problem: e.to_string(),
        })?;
        out.push((org, decode(TREE, STATE_V, &v)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written encodings are postcard's, byte for byte, at every length
    /// boundary of the body's varint and for times before and after the epoch.
    #[test]
    fn entries_and_counters_are_written_as_postcard_writes_them() {
        let mut out = vec![42];
        for len in [0, 1, 60, 127, 128, 300, 16_384] {
            for created_ms in [0, -1, 1_700_000_000_123, i64::MAX] {
                let entry = IdemEntry {
                    fingerprint: [len as u8; 16],
                    body: vec![b'x'; len],
                    created_ms,
                };
                encode_idem_into(&entry, &mut out);
                assert_eq!(out, encode(IDEM_V, &entry), "{len} {created_ms}");
                assert_eq!(decode_idem(&out).expect("decodes"), entry);
            }
        }
        for used in [0, 1, 999, 1 << 40, u64::MAX] {
            encode_counter_into(used, &mut out);
            assert_eq!(out, encode(COUNTER_V, &used), "{used}");
            assert_eq!(decode_counter(&out).expect("decodes"), used);
        }
    }

    /// Entries written before the body was encoded as bytes still read, and read the same.
    #[test]
    fn an_entry_whose_body_was_written_as_a_sequence_reads_the_same() {
        #[derive(serde::Serialize)]
        struct Before {
            fingerprint: [u8; 16],
            body: Vec<u8>,
            created_ms: i64,
        }
        let body = b"{\"periodKey\":\"2026-03\",\"used\":300,\"remaining\":700}".to_vec();
        let before = Before {
            fingerprint: [7; 16],
            body: body.clone(),
            created_ms: 1_700_000_000_123,
        };
        let now = IdemEntry {
            fingerprint: [7; 16],
            body,
            created_ms: 1_700_000_000_123,
        };
        let old_bytes = encode(IDEM_V, &before);
        assert_eq!(decode_idem(&old_bytes).expect("decodes"), now);
        assert_eq!(encode_idem(&now), old_bytes, "and is written the same");
    }

    #[test]
    fn a_schema_1_billing_mirror_still_reads() {
        #[derive(serde::Serialize)]
        struct V1 {
            customer_id: Option<String>,
            email: Option<String>,
            subscription: Option<crate::domain::SubscriptionRecord>,
            default_payment_method: Option<String>,
        }
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("ledger").unwrap();
        let org = OrgId::parse("org_v1").unwrap();
        let old = V1 {
            customer_id: Some("cus_1".into()),
            email: Some("a@b.co".into()),
            subscription: None,
            default_payment_method: Some("pm_1".into()),
        };
        tree.insert(billing_key(&org), encode(BILLING_V1, &old))
            .unwrap();
        let read = get_billing(&tree, &org).unwrap().unwrap();
        assert_eq!(read.customer_id.as_deref(), Some("cus_1"));
        assert_eq!(read.email.as_deref(), Some("a@b.co"));
        tree.insert(billing_key(&org), encode_billing(&read))
            .unwrap();
        assert_eq!(get_billing(&tree, &org).unwrap(), Some(read));
    }
}
