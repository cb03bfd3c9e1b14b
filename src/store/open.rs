//! Opens the configured backend: sled in `store.path` (the default), or Redis at
//! `store.redis_urls`.

use super::{Backend, StoreResult};
use crate::config::{Settings, StoreBackend};
use crate::metrics::Metrics;
use std::time::Duration;

pub async fn open(settings: &Settings, metrics: &Metrics) -> StoreResult<Backend> {
    let store = &settings.store;
    match store.backend {
        StoreBackend::Sled => {
            let options = super::sled::OpenOptions {
                cache_capacity_bytes: store.cache_capacity_bytes,
                fdatasync: store.fdatasync,
                commit_max_batch: store.commit_max_batch,
                debug_log_capacity: settings.debug_log.capacity,
                idempotency_filter_bits_log2: settings.engine.idempotency_filter_bits_log2,
                wal_cap_bytes: super::sled::WAL_CAP_BYTES,
            };
            let path = store.path.clone();
            let metrics = metrics.clone();
            super::blocking(move || super::sled::open(&path, options, metrics)).await
        }
        StoreBackend::Redis => {
            super::redis::open(super::redis::RedisOptions {
                urls: store.redis_urls.clone(),
                timeout: Duration::from_millis(store.redis_timeout_ms.max(1)),
                wait_replicas: store.redis_wait_replicas,
                wait_timeout: Duration::from_millis(store.redis_wait_timeout_ms),
                request_retention_days: settings.engine.idempotency_retention_days,
                debug_log_capacity: settings.debug_log.capacity,
            })
            .await
        }
    }
}
