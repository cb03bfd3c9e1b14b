//! `KeyStore` on sled: the `api_keys` tree (org API keys by key id; only a SHA-256 of
//! the secret is stored) and its `api_keys_by_org` index (`{org}\0{key id}` → empty),
//! for listing and revoking one org's keys. The index is backfilled at open for keys
//! stored before it existed.
//!
//! Schema 2 added `last4` (the secret's last four characters, shown in listings); a
//! schema-1 record reads with an empty `last4`.

use super::codec::{decode, encode};
use super::Inner;
use crate::domain::{KeyId, OrgId};
use crate::store::{blocking, ApiKeyRecord, KeyStore, StoreError, StoreFuture, StoreResult};
use futures_util::FutureExt;
use serde::Deserialize;
use std::sync::Arc;

const TREE: &str = "api_keys";
const KEY_V1: u8 = 1;
const KEY_V: u8 = 2;

#[derive(Deserialize)]
struct RecordV1 {
    key_id: KeyId,
    org_id: OrgId,
    secret_sha256: [u8; 32],
    created_ms: i64,
    revoked_ms: Option<i64>,
}

fn decode_record(bytes: &[u8]) -> StoreResult<ApiKeyRecord> {
    if bytes.first() == Some(&KEY_V1) {
        let v1: RecordV1 = decode(TREE, KEY_V1, bytes)?;
        return Ok(ApiKeyRecord {
            key_id: v1.key_id,
            org_id: v1.org_id,
            secret_sha256: v1.secret_sha256,
            created_ms: v1.created_ms,
            revoked_ms: v1.revoked_ms,
            last4: String::new(),
        });
    }
    decode(TREE, KEY_V, bytes)
}

fn index_key(org: &OrgId, key: &KeyId) -> Vec<u8> {
    let mut k = index_prefix(org);
    k.extend_from_slice(key.as_str().as_bytes());
    k
}

fn index_prefix(org: &OrgId) -> Vec<u8> {
    let mut k = org.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

/// Stores `record` and its index entry (re-putting an existing record is harmless).
pub fn put(tree: &sled::Tree, index: &sled::Tree, record: &ApiKeyRecord) -> StoreResult<()> {
    tree.insert(record.key_id.as_str().as_bytes(), encode(KEY_V, record))?;
    index.insert(index_key(&record.org_id, &record.key_id), &[][..])?;
    Ok(())
}

pub fn get(tree: &sled::Tree, key: &KeyId) -> StoreResult<Option<ApiKeyRecord>> {
    tree.get(key.as_str().as_bytes())?
        .map(|v| decode_record(&v))
        .transpose()
}

pub fn all(tree: &sled::Tree) -> impl Iterator<Item = StoreResult<ApiKeyRecord>> {
    tree.iter().values().map(|v| {
        let v = v.map_err(StoreError::from)?;
        decode_record(&v)
    })
}

/// Every key of `org` (revoked ones too), in key-id order.
pub fn of_org(
    tree: &sled::Tree,
    index: &sled::Tree,
    org: &OrgId,
) -> StoreResult<Vec<ApiKeyRecord>> {
    let prefix = index_prefix(org);
    let mut out = Vec::new();
    for k in index.scan_prefix(&prefix).keys() {
        let k = k?;
        let raw = std::str::from_utf8(&k[prefix.len()..]).map_err(|e| StoreError::Corrupt {
            tree: "api_keys_by_org",
            problem: e.to_string(),
        })?;
        let key = KeyId::parse(raw).map_err(|e| StoreError::Corrupt {
            tree: "api_keys_by_org",
            problem: e.to_string(),
        })?;
        out.extend(get(tree, &key)?);
    }
    Ok(out)
}

/// Adds the index entry of every key stored before the index existed.
pub fn backfill_index(tree: &sled::Tree, index: &sled::Tree) -> StoreResult<u64> {
    let mut added = 0;
    for record in all(tree) {
        let r = record?;
        let k = index_key(&r.org_id, &r.key_id);
        if !index.contains_key(&k)? {
            index.insert(k, &[][..])?;
            added += 1;
        }
    }
    Ok(added)
}

pub struct SledKeys {
    tree: sled::Tree,
    index: sled::Tree,
    inner: Arc<Inner>,
}

impl SledKeys {
    pub fn open(db: &sled::Db, inner: Arc<Inner>) -> StoreResult<Self> {
        let (tree, index) = (db.open_tree("api_keys")?, db.open_tree("api_keys_by_org")?);
        let added = backfill_index(&tree, &index)?;
        if added > 0 {
            tracing::info!(added, "per-org API key index built");
        }
        Ok(Self { tree, index, inner })
    }
}

impl KeyStore for SledKeys {
    fn put(&self, records: Vec<ApiKeyRecord>) -> StoreFuture<()> {
        let (tree, index, inner) = (self.tree.clone(), self.index.clone(), self.inner.clone());
        async move {
            blocking(move || {
                for r in &records {
                    put(&tree, &index, r)?;
                }
                Ok(())
            })
            .await?;
            super::flush(inner).await
        }
        .boxed()
    }

    fn get(&self, key: &KeyId) -> StoreFuture<Option<ApiKeyRecord>> {
        let (tree, key) = (self.tree.clone(), key.clone());
        blocking(move || get(&tree, &key)).boxed()
    }

    fn all(&self) -> StoreFuture<Vec<ApiKeyRecord>> {
        let tree = self.tree.clone();
        blocking(move || all(&tree).collect()).boxed()
    }

    fn of_org(&self, org: &OrgId) -> StoreFuture<Vec<ApiKeyRecord>> {
        let (tree, index, org) = (self.tree.clone(), self.index.clone(), org.clone());
        blocking(move || of_org(&tree, &index, &org)).boxed()
    }

    fn changes_since(&self, cursor: u64) -> StoreFuture<(u64, Vec<ApiKeyRecord>)> {
        // One process writes this store, and its cache sees every write it makes.
        futures_util::future::ready(Ok((cursor, Vec::new()))).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ApiKeyRecord;

    #[test]
    fn schema_1_records_read_and_the_index_is_backfilled() {
        use serde::Serialize;
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (tree, index) = (db.open_tree("k").unwrap(), db.open_tree("i").unwrap());
        #[derive(Serialize)]
        struct Old {
            key_id: KeyId,
            org_id: OrgId,
            secret_sha256: [u8; 32],
            created_ms: i64,
            revoked_ms: Option<i64>,
        }
        let org = OrgId::parse("org_1").unwrap();
        let old = Old {
            key_id: KeyId::parse("key_old").unwrap(),
            org_id: org.clone(),
            secret_sha256: [7; 32],
            created_ms: 5,
            revoked_ms: None,
        };
        tree.insert("key_old", encode(KEY_V1, &old)).unwrap();
        assert_eq!(backfill_index(&tree, &index).unwrap(), 1);
        assert_eq!(backfill_index(&tree, &index).unwrap(), 0);
        let new = ApiKeyRecord {
            key_id: KeyId::parse("key_new").unwrap(),
            org_id: org.clone(),
            secret_sha256: [8; 32],
            created_ms: 6,
            revoked_ms: None,
            last4: "beef".into(),
        };
        put(&tree, &index, &new).unwrap();
        let listed = of_org(&tree, &index, &org).unwrap();
        assert_eq!(listed.len(), 2);
        // Key-id order: key_new, then key_old.
        assert_eq!(listed[0], new);
        assert_eq!(listed[1].last4, "");
        assert_eq!(listed[1].created_ms, 5);
        let other = OrgId::parse("org_10").unwrap();
        assert!(of_org(&tree, &index, &other).unwrap().is_empty());
    }
}
