//! The `api_keys` tree: org API keys by key id. Only a SHA-256 of the secret is stored.

use super::codec::{decode, encode};
use super::{StoreError, StoreResult};
use crate::domain::{KeyId, OrgId};
use serde::{Deserialize, Serialize};

const KEY_V: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub secret_sha256: [u8; 32],
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

pub fn put(tree: &sled::Tree, record: &ApiKeyRecord) -> StoreResult<()> {
    tree.insert(record.key_id.as_str().as_bytes(), encode(KEY_V, record))?;
    Ok(())
}

pub fn get(tree: &sled::Tree, key: &KeyId) -> StoreResult<Option<ApiKeyRecord>> {
    tree.get(key.as_str().as_bytes())?
        .map(|v| decode("api_keys", KEY_V, &v))
        .transpose()
}

pub fn all(tree: &sled::Tree) -> impl Iterator<Item = StoreResult<ApiKeyRecord>> {
    tree.iter().values().map(|v| {
        let v = v.map_err(StoreError::from)?;
        decode("api_keys", KEY_V, &v)
    })
}
