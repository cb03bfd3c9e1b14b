//! Credentials: admin tokens, service tokens and per-org API keys.
//!
//! Only SHA-256 digests of tokens and keys are held (in memory and in the store). A
//! presented token is hashed once; configured tokens are found by digest, and an org key
//! — `eqk.{keyId}.{secret}` — is found by its public key id and its secret's digest is
//! compared in constant time. The key cache is loaded at start, so authentication never
//! touches the disk.

pub mod token_file;

use crate::config::Secret;
use crate::domain::{KeyId, OrgId};
use crate::store::api_keys::{self, ApiKeyRecord};
use crate::store::{self, Store, StoreResult};
use dashmap::DashMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use subtle::ConstantTimeEq;

const ORG_KEY_PREFIX: &str = "eqk";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Admin,
    Service,
    Org(OrgId),
}

#[derive(Debug, Clone)]
struct KeyEntry {
    org: OrgId,
    digest: [u8; 32],
    revoked: bool,
}

pub struct Authenticator {
    admin: HashSet<[u8; 32]>,
    service: HashSet<[u8; 32]>,
    keys: DashMap<KeyId, KeyEntry>,
    store: Store,
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 32 random bytes from the OS, hex-encoded.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Authenticator {
    /// Loads every org key from the store into the cache.
    pub fn load(admin: &[Secret], service: &[Secret], store: Store) -> StoreResult<Self> {
        let added = api_keys::backfill_index(&store.api_keys, &store.api_keys_by_org)?;
        if added > 0 {
            tracing::info!(added, "per-org API key index built");
        }
        let keys = DashMap::new();
        for record in api_keys::all(&store.api_keys) {
            let r = record?;
            keys.insert(
                r.key_id,
                KeyEntry {
                    org: r.org_id,
                    digest: r.secret_sha256,
                    revoked: r.revoked_ms.is_some(),
                },
            );
        }
        let digests = |s: &[Secret]| s.iter().map(|t| digest(t.expose())).collect();
        Ok(Self {
            admin: digests(admin),
            service: digests(service),
            keys,
            store,
        })
    }

    pub fn authenticate(&self, token: &str) -> Option<Credential> {
        if token.is_empty() {
            return None;
        }
        if let Some((key_id, secret)) = parse_org_key(token) {
            let entry = self.keys.get(&key_id)?;
            let matches: bool = entry.digest.ct_eq(&digest(secret)).into();
            return (matches && !entry.revoked).then(|| Credential::Org(entry.org.clone()));
        }
        let d = digest(token);
        if self.admin.contains(&d) {
            Some(Credential::Admin)
        } else if self.service.contains(&d) {
            Some(Credential::Service)
        } else {
            None
        }
    }

    /// Mints a key for `org`; the plaintext is returned once and never stored.
    pub async fn mint(&self, org: &OrgId, now_ms: i64) -> StoreResult<(KeyId, String)> {
        let key_id = KeyId::generate();
        let secret = random_secret();
        let record = ApiKeyRecord {
            key_id: key_id.clone(),
            org_id: org.clone(),
            secret_sha256: digest(&secret),
            created_ms: now_ms,
            revoked_ms: None,
            last4: secret[secret.len().saturating_sub(4)..].to_owned(),
        };
        let s = self.store.clone();
        let rec = record.clone();
        store::blocking(move || api_keys::put(&s.api_keys, &s.api_keys_by_org, &rec)).await?;
        self.store.flush().await?;
        self.keys.insert(
            key_id.clone(),
            KeyEntry {
                org: record.org_id,
                digest: record.secret_sha256,
                revoked: false,
            },
        );
        let plaintext = format!("{ORG_KEY_PREFIX}.{key_id}.{secret}");
        Ok((key_id, plaintext))
    }

    /// The org a key belongs to, if the key exists.
    pub fn key_org(&self, key: &KeyId) -> Option<OrgId> {
        self.keys.get(key).map(|e| e.org.clone())
    }

    /// Revokes a key durably; revoking twice is harmless. `false` if the key is unknown.
    /// The cache refuses the key before the store is written, so a revocation is
    /// effective at once, even while its write is in flight.
    pub async fn revoke(&self, key: &KeyId, now_ms: i64) -> StoreResult<bool> {
        if let Some(mut e) = self.keys.get_mut(key) {
            e.revoked = true;
        }
        let s = self.store.clone();
        let k = key.clone();
        let found = store::blocking(move || {
            let Some(mut record) = api_keys::get(&s.api_keys, &k)? else {
                return Ok(false);
            };
            if record.revoked_ms.is_none() {
                record.revoked_ms = Some(now_ms);
                api_keys::put(&s.api_keys, &s.api_keys_by_org, &record)?;
            }
            Ok(true)
        })
        .await?;
        if found {
            self.store.flush().await?;
        }
        Ok(found)
    }

    /// The org's keys that are not revoked, oldest first.
    pub async fn list(&self, org: &OrgId) -> StoreResult<Vec<ApiKeyRecord>> {
        let s = self.store.clone();
        let org = org.clone();
        let mut keys =
            store::blocking(move || api_keys::of_org(&s.api_keys, &s.api_keys_by_org, &org))
                .await?;
        keys.retain(|k| k.revoked_ms.is_none());
        keys.sort_by_key(|k| k.created_ms);
        Ok(keys)
    }

    /// Revokes every key of `org` durably; returns how many were still active.
    pub async fn revoke_all(&self, org: &OrgId, now_ms: i64) -> StoreResult<u64> {
        let active = self.list(org).await?;
        for k in &active {
            if let Some(mut e) = self.keys.get_mut(&k.key_id) {
                e.revoked = true;
            }
        }
        let s = self.store.clone();
        let n = active.len() as u64;
        store::blocking(move || {
            for mut record in active {
                record.revoked_ms = Some(now_ms);
                api_keys::put(&s.api_keys, &s.api_keys_by_org, &record)?;
            }
            Ok(())
        })
        .await?;
        self.store.flush().await?;
        Ok(n)
    }
}

fn parse_org_key(token: &str) -> Option<(KeyId, &str)> {
    let mut parts = token.splitn(3, '.');
    if parts.next()? != ORG_KEY_PREFIX {
        return None;
    }
    let key_id = KeyId::parse(parts.next()?).ok()?;
    Some((key_id, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::store::OpenOptions {
            cache_capacity_bytes: 1 << 20,
            fdatasync: true,
        };
        let s = Store::open(dir.path(), options).unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn configured_tokens_and_minted_keys_authenticate() {
        let (_d, s) = store();
        let auth =
            Authenticator::load(&[Secret::new("adm")], &[Secret::new("svc")], s.clone()).unwrap();
        assert_eq!(auth.authenticate("adm"), Some(Credential::Admin));
        assert_eq!(auth.authenticate("svc"), Some(Credential::Service));
        assert_eq!(auth.authenticate("nope"), None);
        assert_eq!(auth.authenticate(""), None);
        let org = OrgId::parse("org_1").unwrap();
        let (key_id, plain) = auth.mint(&org, 1).await.unwrap();
        assert_eq!(
            auth.authenticate(&plain),
            Some(Credential::Org(org.clone()))
        );
        let last = if plain.ends_with('0') { '1' } else { '0' };
        let tampered = format!("{}{last}", &plain[..plain.len() - 1]);
        assert_eq!(auth.authenticate(&tampered), None);
        // survives a reload from the store
        let again = Authenticator::load(&[], &[], s.clone()).unwrap();
        assert_eq!(again.authenticate(&plain), Some(Credential::Org(org)));
        assert!(auth.revoke(&key_id, 2).await.unwrap());
        assert_eq!(auth.authenticate(&plain), None);
        let again = Authenticator::load(&[], &[], s).unwrap();
        assert_eq!(again.authenticate(&plain), None);
    }
}
