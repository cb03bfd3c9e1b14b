//! The `webhooks` tree: every Stripe event received (the raw bytes Stripe signed) with its
//! processing state, and one index per state in arrival order — so the queue is a prefix
//! scan, a restart resumes where it left off, and admins page through dead letters.
//!
//! Keys (event ids never contain NUL):
//! - `e\0{event_id}`              → [`WebhookEvent`]
//! - `x\0{state}\0{seq:be64}`     → event id (state tags: q, p, d, i)
//!
//! Every change of an event and its index entry happens in one sled transaction, and
//! changes are conditional on the state read before (two processors of one event — the
//! supervisor and the job endpoint — cannot both record an outcome).

use super::codec::{decode, encode};
use super::{transaction_result, StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;

const TREE: &str = "webhooks";
const EVENT_V: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventState {
    Queued,
    Processed,
    Dead,
    Ignored,
}

impl EventState {
    pub const ALL: [EventState; 4] = [
        EventState::Queued,
        EventState::Processed,
        EventState::Dead,
        EventState::Ignored,
    ];

    fn tag(self) -> u8 {
        match self {
            EventState::Queued => b'q',
            EventState::Processed => b'p',
            EventState::Dead => b'd',
            EventState::Ignored => b'i',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Queued => "queued",
            EventState::Processed => "processed",
            EventState::Dead => "dead",
            EventState::Ignored => "ignored",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    pub event_type: String,
    /// The body exactly as received (or as fetched from Stripe's events API).
    pub raw: Vec<u8>,
    /// Arrival order.
    pub seq: u64,
    pub received_ms: i64,
    pub state: EventState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Not to be tried again before this instant (backoff).
    pub next_attempt_ms: i64,
    pub done_ms: Option<i64>,
}

/// What [`insert`] did.
#[derive(Debug)]
pub enum Inserted {
    New,
    /// An event with this id was already stored; here it is.
    Duplicate(Box<WebhookEvent>),
}

fn event_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 2);
    k.extend_from_slice(b"e\0");
    k.extend_from_slice(id.as_bytes());
    k
}

fn index_prefix(state: EventState) -> [u8; 4] {
    [b'x', 0, state.tag(), 0]
}

fn index_key(state: EventState, seq: u64) -> Vec<u8> {
    let mut k = index_prefix(state).to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

/// Stores `event` and its index entry unless an event with its id exists.
pub fn insert(tree: &sled::Tree, event: &WebhookEvent) -> StoreResult<Inserted> {
    let key = event_key(&event.id);
    let value = encode(EVENT_V, event);
    transaction_result(tree.transaction(|t| {
        if let Some(existing) = t.get(&key)? {
            let existing = decode(TREE, EVENT_V, &existing).map_err(abort)?;
            return Ok(Inserted::Duplicate(Box::new(existing)));
        }
        t.insert(key.as_slice(), value.as_slice())?;
        t.insert(index_key(event.state, event.seq), event.id.as_bytes())?;
        Ok(Inserted::New)
    }))
}

pub fn get(tree: &sled::Tree, id: &str) -> StoreResult<Option<WebhookEvent>> {
    tree.get(event_key(id))?
        .map(|v| decode(TREE, EVENT_V, &v))
        .transpose()
}

/// Replaces `expected` by `new` (same id) if the stored event is still `expected`;
/// returns whether it was.
pub fn replace(
    tree: &sled::Tree,
    expected: &WebhookEvent,
    new: &WebhookEvent,
) -> StoreResult<bool> {
    let key = event_key(&expected.id);
    let old_value = encode(EVENT_V, expected);
    let new_value = encode(EVENT_V, new);
    transaction_result(tree.transaction(|t| {
        if t.get(&key)?.as_deref() != Some(old_value.as_slice()) {
            return Ok(false);
        }
        t.remove(index_key(expected.state, expected.seq))?;
        t.insert(key.as_slice(), new_value.as_slice())?;
        t.insert(index_key(new.state, new.seq), new.id.as_bytes())?;
        Ok(true)
    }))
}

/// Events in `state`, in arrival order, after `after_seq`; at most `limit`.
pub fn list(
    tree: &sled::Tree,
    state: EventState,
    after_seq: Option<u64>,
    limit: usize,
) -> StoreResult<Vec<WebhookEvent>> {
    let prefix = index_prefix(state);
    let start = match after_seq {
        Some(seq) => index_key(state, seq.saturating_add(1)),
        None => prefix.to_vec(),
    };
    let mut out = Vec::new();
    for item in tree.range(start..) {
        let (k, id) = item?;
        if !k.starts_with(&prefix) || out.len() >= limit {
            break;
        }
        let id = std::str::from_utf8(&id).map_err(|e| StoreError::Corrupt {
            tree: TREE,
            problem: e.to_string(),
        })?;
        // An index entry without its event would be a bug; skip rather than fail a list.
        if let Some(event) = get(tree, id)? {
            out.push(event);
        }
    }
    Ok(out)
}

/// Removes events in `state` finished before `cutoff_ms`; returns how many.
pub fn purge_done_before(tree: &sled::Tree, state: EventState, cutoff_ms: i64) -> StoreResult<u64> {
    let mut purged = 0;
    for event in list(tree, state, None, usize::MAX)? {
        if event.done_ms.is_some_and(|ms| ms < cutoff_ms) && replace_removed(tree, &event)? {
            purged += 1;
        }
    }
    Ok(purged)
}

/// Removes `expected` (and its index entry) if it is still stored as read.
fn replace_removed(tree: &sled::Tree, expected: &WebhookEvent) -> StoreResult<bool> {
    let key = event_key(&expected.id);
    let old_value = encode(EVENT_V, expected);
    transaction_result(tree.transaction(|t| {
        if t.get(&key)?.as_deref() != Some(old_value.as_slice()) {
            return Ok(false);
        }
        t.remove(key.as_slice())?;
        t.remove(index_key(expected.state, expected.seq))?;
        Ok(true)
    }))
}

/// How many events are in `state`.
pub fn count(tree: &sled::Tree, state: EventState) -> usize {
    tree.scan_prefix(index_prefix(state)).keys().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree(TREE).unwrap()
    }

    fn event(id: &str, seq: u64) -> WebhookEvent {
        WebhookEvent {
            id: id.into(),
            event_type: "customer.subscription.updated".into(),
            raw: b"{}".to_vec(),
            seq,
            received_ms: 0,
            state: EventState::Queued,
            attempts: 0,
            last_error: None,
            next_attempt_ms: 0,
            done_ms: None,
        }
    }

    #[test]
    fn an_event_is_stored_once_and_queued_in_arrival_order() {
        let t = tree();
        assert!(matches!(
            insert(&t, &event("evt_b", 2)).unwrap(),
            Inserted::New
        ));
        assert!(matches!(
            insert(&t, &event("evt_a", 1)).unwrap(),
            Inserted::New
        ));
        assert!(matches!(
            insert(&t, &event("evt_a", 3)).unwrap(),
            Inserted::Duplicate(e) if e.seq == 1
        ));
        let queued: Vec<_> = list(&t, EventState::Queued, None, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(queued, ["evt_a", "evt_b"]);
        assert_eq!(
            list(&t, EventState::Queued, Some(1), 10).unwrap()[0].id,
            "evt_b"
        );
    }

    #[test]
    fn finished_events_older_than_the_cutoff_are_purged() {
        let t = tree();
        for (id, seq, done) in [("evt_old", 1, 1_000), ("evt_new", 2, 9_000)] {
            let mut e = event(id, seq);
            e.state = EventState::Processed;
            e.done_ms = Some(done);
            insert(&t, &e).unwrap();
        }
        assert_eq!(
            purge_done_before(&t, EventState::Processed, 5_000).unwrap(),
            1
        );
        assert!(get(&t, "evt_old").unwrap().is_none());
        assert!(get(&t, "evt_new").unwrap().is_some());
        assert_eq!(count(&t, EventState::Processed), 1);
    }

    #[test]
    fn replace_moves_the_index_and_refuses_a_stale_expectation() {
        let t = tree();
        let queued = event("evt_a", 1);
        insert(&t, &queued).unwrap();
        let mut done = queued.clone();
        done.state = EventState::Processed;
        assert!(replace(&t, &queued, &done).unwrap());
        assert!(!replace(&t, &queued, &done).unwrap(), "stale");
        assert_eq!(count(&t, EventState::Queued), 0);
        assert_eq!(count(&t, EventState::Processed), 1);
        assert_eq!(
            get(&t, "evt_a").unwrap().unwrap().state,
            EventState::Processed
        );
    }
}
