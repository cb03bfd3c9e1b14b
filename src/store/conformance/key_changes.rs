//! Conformance of `KeyStore::changes_since`, by which every node follows the API keys
//! written through the others: a cursor of 0 asks for the current cursor and answers no
//! keys; a cursor answers the keys written after it, each once and as last written, and
//! none written only before it; the cursor answered never goes back. A store one process
//! writes may answer no changes at all, so there only the second half is checked (what
//! it answers was written since the cursor, as last written); a store several nodes
//! share (`StoreHealth::shared`) must answer every change.

use super::*;
use crate::store::ApiKeyRecord;

pub(super) async fn changes_since(b: &Backend, name: &str) {
    let org = new_org(b).await;
    let key = |n: u8| key_of(&org, n);
    // This org's keys among `records` (a shared store answers others' too), oldest first.
    let ours = |records: &[ApiKeyRecord]| {
        let mut mine: Vec<ApiKeyRecord> = records
            .iter()
            .filter(|r| r.org_id == org)
            .cloned()
            .collect();
        mine.sort_by_key(|r| r.created_ms);
        mine
    };
    let (early, kept, late) = (key(1), key(2), key(3));
    b.keys
        .put(vec![early.clone(), kept.clone()])
        .await
        .expect("put");
    let (start, none) = b.keys.changes_since(0).await.expect("changes");
    assert_eq!(
        none,
        Vec::<ApiKeyRecord>::new(),
        "{name}: cursor 0 answers the cursor only"
    );
    let mut revoked = kept.clone();
    revoked.revoked_ms = Some(20);
    b.keys.put(vec![late.clone()]).await.expect("put");
    b.keys.put(vec![revoked.clone()]).await.expect("put");
    let (next, changed) = b.keys.changes_since(start).await.expect("changes");
    let mine = ours(changed.as_slice());
    assert!(
        next >= start,
        "{name}: the cursor went back: {start} → {next}"
    );
    if b.health.shared() {
        assert_eq!(
            mine,
            vec![revoked.clone(), late.clone()],
            "{name}: the keys written since the cursor, each once as last written, and \
             not the one written only before it"
        );
        assert!(next > start, "{name}: the cursor moves past the changes");
    } else {
        assert!(
            mine.iter().all(|r| *r == revoked || *r == late),
            "{name}: only keys written since the cursor, as last written: {mine:?}"
        );
    }
    let (after, again) = b.keys.changes_since(next).await.expect("changes");
    assert_eq!(
        ours(again.as_slice()),
        Vec::<ApiKeyRecord>::new(),
        "{name}: nothing of this org written since the cursor"
    );
    assert!(
        after >= next,
        "{name}: the cursor went back: {next} → {after}"
    );
    // The store itself holds the keys as last written, whatever it answered.
    assert_eq!(
        b.keys.get(&kept.key_id).await.expect("get"),
        Some(revoked),
        "{name}: the revocation is stored"
    );
    assert_eq!(
        b.keys.get(&early.key_id).await.expect("get"),
        Some(early),
        "{name}"
    );
}
