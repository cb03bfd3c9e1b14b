//! The `ledger` tree: everything an org actor owns, in one tree so that one batch of the
//! group-commit writer is crash-atomic (a counter and the idempotency entry that explains
//! it are never persisted apart).
//!
//! Keys (ids never contain NUL, so NUL separates segments):
//! - `s\0{org}`                           → [`OrgState`] (plan in force, current period)
//! - `c\0{org}\0{period:be32}{metric}`    → used (u64)
//! - `i\0{org}\0{request_id}`             → [`IdemEntry`] (payload fingerprint + exact body)
//! - `b\0{org}`                           → [`BillingRecord`] (Stripe customer, subscription,
//!   pending change), written in the same batch as the plan in force it implies
//!
//! There is deliberately no time index for the purge: sled's per-insert CPU cost is what
//! bounds durable records per second, and an hourly background scan of the entries is
//! cheaper than one more insert on every record.

use super::codec::{decode, encode};
use super::{StoreError, StoreResult};
use crate::domain::{BillingRecord, Metric, OrgId, PeriodKey, PlanCode, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const TREE: &str = "ledger";
const STATE_V: u8 = 1;
const COUNTER_V: u8 = 1;
const IDEM_V: u8 = 1;
const BILLING_V: u8 = 1;
const IDEM_PREFIX: [u8; 2] = [b'i', 0];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgState {
    pub plan: PlanCode,
    pub period: PeriodKey,
}

/// What a usage record answered, kept so a retry gets the identical body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemEntry {
    pub fingerprint: [u8; 16],
    pub body: Vec<u8>,
    pub created_ms: i64,
}

/// One write of the ledger; applied by the group-commit writer.
#[derive(Debug, Clone)]
pub enum LedgerOp {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
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

pub fn idem_key(org: &OrgId, request: &RequestId) -> Vec<u8> {
    let mut k = with_org(b'i', org);
    k.push(0);
    k.extend_from_slice(request.as_str().as_bytes());
    k
}

pub fn put_state(org: &OrgId, state: &OrgState) -> LedgerOp {
    LedgerOp::Put(state_key(org), encode(STATE_V, state))
}

fn billing_key(org: &OrgId) -> Vec<u8> {
    with_org(b'b', org)
}

pub fn put_billing(org: &OrgId, record: &BillingRecord) -> LedgerOp {
    LedgerOp::Put(billing_key(org), encode(BILLING_V, record))
}

pub fn get_billing(tree: &sled::Tree, org: &OrgId) -> StoreResult<Option<BillingRecord>> {
    tree.get(billing_key(org))?
        .map(|v| decode(TREE, BILLING_V, &v))
        .transpose()
}

pub fn put_counter(org: &OrgId, period: PeriodKey, metric: &Metric, used: u64) -> LedgerOp {
    LedgerOp::Put(counter_key(org, period, metric), encode(COUNTER_V, &used))
}

pub fn put_idem(org: &OrgId, request: &RequestId, entry: &IdemEntry) -> LedgerOp {
    LedgerOp::Put(idem_key(org, request), encode(IDEM_V, entry))
}

pub fn get_state(tree: &sled::Tree, org: &OrgId) -> StoreResult<Option<OrgState>> {
    tree.get(state_key(org))?
        .map(|v| decode(TREE, STATE_V, &v))
        .transpose()
}

pub fn get_counter(
    tree: &sled::Tree,
    org: &OrgId,
    period: PeriodKey,
    metric: &Metric,
) -> StoreResult<u64> {
    Ok(tree
        .get(counter_key(org, period, metric))?
        .map(|v| decode(TREE, COUNTER_V, &v))
        .transpose()?
        .unwrap_or(0))
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
        out.insert(metric, decode(TREE, COUNTER_V, &v)?);
    }
    Ok(out)
}

pub fn get_idem(
    tree: &sled::Tree,
    org: &OrgId,
    request: &RequestId,
) -> StoreResult<Option<IdemEntry>> {
    tree.get(idem_key(org, request))?
        .map(|v| decode(TREE, IDEM_V, &v))
        .transpose()
}

/// What a purge did: entries removed, and entries kept (the gauge of entries held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub purged: u64,
    pub kept: u64,
}

/// Removes idempotency entries created before `cutoff_ms`. Each entry is removed only if
/// it is still the value that was read (compare-and-swap), so a request id recorded anew
/// meanwhile is never lost.
pub fn purge_idem_before(tree: &sled::Tree, cutoff_ms: i64) -> StoreResult<Purged> {
    let mut out = Purged { purged: 0, kept: 0 };
    for item in tree.scan_prefix(IDEM_PREFIX) {
        let (key, value) = item?;
        let entry: IdemEntry = decode(TREE, IDEM_V, &value)?;
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

/// Up to `limit` orgs' stored states in key order, after `after` (for the period sweep,
/// which reads them a page at a time).
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

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("ledger").unwrap()
    }

    fn apply(tree: &sled::Tree, ops: impl IntoIterator<Item = LedgerOp>) {
        for op in ops {
            match op {
                LedgerOp::Put(k, v) => tree.insert(k, v).unwrap(),
                LedgerOp::Remove(k) => tree.remove(k).unwrap(),
            };
        }
    }

    #[test]
    fn counters_are_scoped_by_org_and_period() {
        let t = tree();
        let a = OrgId::parse("org_a").unwrap();
        let ab = OrgId::parse("org_ab").unwrap();
        let p = PeriodKey::parse("2026-01").unwrap();
        let m = Metric::api_call();
        apply(&t, [put_counter(&a, p, &m, 5), put_counter(&ab, p, &m, 9)]);
        apply(&t, [put_counter(&a, p.next(), &m, 1)]);
        assert_eq!(counters_for(&t, &a, p).unwrap()[&m], 5);
        assert_eq!(get_counter(&t, &a, p.next(), &m).unwrap(), 1);
        assert_eq!(get_counter(&t, &ab, p.next(), &m).unwrap(), 0);
    }

    #[test]
    fn states_are_read_a_page_at_a_time() {
        let t = tree();
        let p = PeriodKey::parse("2026-01").unwrap();
        let orgs: Vec<OrgId> = ["org_a", "org_ab", "org_b", "org_c"]
            .iter()
            .map(|o| OrgId::parse(o).unwrap())
            .collect();
        for org in &orgs {
            let state = OrgState {
                plan: PlanCode::free(),
                period: p,
            };
            apply(&t, [put_state(org, &state)]);
        }
        let first = states_page(&t, None, 2).unwrap();
        let second = states_page(&t, Some(&first[1].0), 2).unwrap();
        let third = states_page(&t, Some(&second[1].0), 2).unwrap();
        let seen: Vec<OrgId> = first.into_iter().chain(second).map(|(o, _)| o).collect();
        assert_eq!(seen, orgs);
        assert!(third.is_empty());
    }

    #[test]
    fn purge_removes_only_expired_entries() {
        let t = tree();
        let org = OrgId::parse("org_a").unwrap();
        let old = RequestId::parse("old").unwrap();
        let new = RequestId::parse("new").unwrap();
        let entry = |ms| IdemEntry {
            fingerprint: [1; 16],
            body: b"{}".to_vec(),
            created_ms: ms,
        };
        apply(&t, [put_idem(&org, &old, &entry(1_000))]);
        apply(&t, [put_idem(&org, &new, &entry(9_000))]);
        assert_eq!(
            purge_idem_before(&t, 5_000).unwrap(),
            Purged { purged: 1, kept: 1 }
        );
        assert!(get_idem(&t, &org, &old).unwrap().is_none());
        assert!(get_idem(&t, &org, &new).unwrap().is_some());
        assert_eq!(purge_idem_before(&t, 5_000).unwrap().purged, 0);
    }
}
