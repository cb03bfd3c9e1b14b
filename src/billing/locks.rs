//! Per-key async locks (one org's billing calls, one org's Stigg job): callers for one
//! key run one after another, different keys never wait on each other, and a key's mutex
//! is forgotten once nobody holds or waits on it, so the map stays as small as the work
//! in flight.

use dashmap::DashMap;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

pub struct KeyedLocks<K: Eq + Hash + Clone>(DashMap<K, Arc<Mutex<()>>>);

/// Holds one key's lock until dropped.
pub struct KeyGuard<'a, K: Eq + Hash + Clone> {
    guard: Option<OwnedMutexGuard<()>>,
    key: K,
    locks: &'a KeyedLocks<K>,
}

impl<K: Eq + Hash + Clone> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self(DashMap::new())
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub async fn lock(&self, key: &K) -> KeyGuard<'_, K> {
        let mutex = self.0.entry(key.clone()).or_default().clone();
        KeyGuard {
            guard: Some(mutex.lock_owned().await),
            key: key.clone(),
            locks: self,
        }
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks
            .0
            .remove_if(&self.key, |_, m| Arc::strong_count(m) == 1);
    }
}
