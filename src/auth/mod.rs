//! Credentials: admin tokens, service tokens and per-org API keys.
//!
//! Org keys — `eqk.{keyId}.{secret}` — are held only as SHA-256 digests of their
//! secrets (in memory and in the store): a key is found by its public key id and its
//! secret's digest is compared in constant time. Configured admin and service tokens come
//! from the configuration, which holds them as given, so they are compared as given, in
//! constant time: hashing every presented bearer token cost a check more than its whole
//! engine decision. The key cache is loaded at start, so authentication never touches
//! the disk.

pub mod token_file;

use crate::config::Secret;
use crate::domain::{KeyId, OrgId};
use crate::store::{ApiKeyRecord, KeyStore, StoreResult};
use dashmap::DashMap;
use foldhash::fast::RandomState;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

impl From<&ApiKeyRecord> for KeyEntry {
    fn from(r: &ApiKeyRecord) -> Self {
        Self {
            org: r.org_id.clone(),
            digest: r.secret_sha256,
            revoked: r.revoked_ms.is_some(),
        }
    }
}

pub struct Authenticator {
    admin: Vec<Box<[u8]>>,
    service: Vec<Box<[u8]>>,
    keys: DashMap<KeyId, KeyEntry, RandomState>,
    store: Arc<dyn KeyStore>,
    /// Where `refresh` continues reading the store's key changes from.
    cursor: AtomicU64,
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
    pub async fn load(
        admin: &[Secret],
        service: &[Secret],
        store: Arc<dyn KeyStore>,
    ) -> StoreResult<Self> {
        let (cursor, _) = store.changes_since(0).await?;
        let keys = DashMap::default();
        for r in store.all().await? {
            keys.insert(r.key_id.clone(), KeyEntry::from(&r));
        }
        let tokens = |s: &[Secret]| {
            s.iter()
                .filter(|t| !t.expose().is_empty())
                .map(|t| t.expose().as_bytes().into())
                .collect()
        };
        Ok(Self {
            admin: tokens(admin),
            service: tokens(service),
            keys,
            store,
            cursor: AtomicU64::new(cursor),
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
        let presented = token.as_bytes();
        if any_equal(&self.admin, presented) {
            Some(Credential::Admin)
        } else if any_equal(&self.service, presented) {
            Some(Credential::Service)
        } else {
            None
        }
    }

    /// Applies keys written elsewhere (another node sharing the store) to the cache;
    /// returns how many changed. Called periodically.
    pub async fn refresh(&self) -> StoreResult<usize> {
        let (cursor, changed) = self
            .store
            .changes_since(self.cursor.load(Ordering::SeqCst))
            .await?;
        for r in &changed {
            self.keys.insert(r.key_id.clone(), KeyEntry::from(r));
        }
        self.cursor.store(cursor, Ordering::SeqCst);
        Ok(changed.len())
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
        self.store.put(vec![record.clone()]).await?;
        self.keys.insert(key_id.clone(), KeyEntry::from(&record));
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
        let Some(mut record) = self.store.get(key).await? else {
            return Ok(false);
        };
        if record.revoked_ms.is_none() {
            record.revoked_ms = Some(now_ms);
            self.store.put(vec![record]).await?;
        }
        Ok(true)
    }

    /// The org's keys that are not revoked, oldest first.
    pub async fn list(&self, org: &OrgId) -> StoreResult<Vec<ApiKeyRecord>> {
        let mut keys = self.store.of_org(org).await?;
        keys.retain(|k| k.revoked_ms.is_none());
        keys.sort_by_key(|k| k.created_ms);
        Ok(keys)
    }

    /// Revokes every key of `org` durably; returns how many were still active.
    pub async fn revoke_all(&self, org: &OrgId, now_ms: i64) -> StoreResult<u64> {
        let mut active = self.list(org).await?;
        for k in &mut active {
            if let Some(mut e) = self.keys.get_mut(&k.key_id) {
                e.revoked = true;
            }
            k.revoked_ms = Some(now_ms);
        }
        let n = active.len() as u64;
        self.store.put(active).await?;
        Ok(n)
    }
}

/// How often a node reads the key changes other nodes wrote (a revocation anywhere is
/// refused everywhere within this, plus one store round trip).
pub const KEY_REFRESH: std::time::Duration = std::time::Duration::from_millis(250);

/// Applies key changes written by other nodes sharing the store, every `every`, until
/// aborted. A failing store is logged once per outage, and the cache keeps answering
/// from what it knew.
pub fn follow_key_changes(
    auth: Arc<Authenticator>,
    every: std::time::Duration,
) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut failing = false;
        loop {
            tick.tick().await;
            match auth.refresh().await {
                Ok(_) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error.cause_chain = %crate::errors::chain(&e), "cannot read key changes from the store; revocations on other nodes are not seen");
                }
                Err(_) => {}
            }
        }
    })
}

/// Whether `presented` equals one of `tokens`, in time that depends only on the lengths
/// (every token is compared, none stops early).
fn any_equal(tokens: &[Box<[u8]>], presented: &[u8]) -> bool {
    let mut found = false;
    for t in tokens {
        found |= fixed_time_eq(t, presented);
    }
    found
}

/// `a == b` in time that depends only on the lengths (`subtle`'s slice compare: a length
/// mismatch answers at once; lengths are not secret).
fn fixed_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
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

    #[tokio::test]
    async fn configured_tokens_and_minted_keys_authenticate() {
        let s = crate::store::memory::open(10).keys;
        let auth = Authenticator::load(&[Secret::new("adm")], &[Secret::new("svc")], s.clone())
            .await
            .unwrap();
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
        let again = Authenticator::load(&[], &[], s.clone()).await.unwrap();
        assert_eq!(again.authenticate(&plain), Some(Credential::Org(org)));
        assert!(auth.revoke(&key_id, 2).await.unwrap());
        assert_eq!(auth.authenticate(&plain), None);
        let again = Authenticator::load(&[], &[], s).await.unwrap();
        assert_eq!(again.authenticate(&plain), None);
    }

    #[test]
    fn configured_tokens_match_only_when_every_byte_does() {
        let token = b"eqs_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(fixed_time_eq(token, token));
        for i in [0, 7, 8, 40, token.len() - 1] {
            let mut other = token.to_vec();
            other[i] ^= 1;
            assert!(!fixed_time_eq(token, &other), "byte {i} differs");
        }
        assert!(!fixed_time_eq(token, &token[..token.len() - 1]));
        assert!(!fixed_time_eq(&token[..5], token));
        assert!(fixed_time_eq(b"", b""));
        let tokens: Vec<Box<[u8]>> = vec![b"first".as_slice().into(), token.as_slice().into()];
        assert!(any_equal(&tokens, token));
        assert!(any_equal(&tokens, b"first"));
        assert!(!any_equal(&tokens, b"firsT"));
        assert!(!any_equal(&[], token));
    }
}
