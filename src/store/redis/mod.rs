//! The Redis backend (`store.backend = "redis"`): every storage trait on a Redis Cluster
//! — or on one Redis server — so several edgequota nodes share one store (SPEC §7).
//!
//! Keys carry what one operation touches in a hash tag: `eq:{<org>}:…` for an org's
//! ledger, record, keys index and idempotency entries, `eq:{jobs:<queue>}:…` for a job
//! queue. Each operation then lives on one slot, and the scripts that must be atomic
//! (a usage record, a ledger commit, a job claim) run there in one step. Values keep the
//! version byte + postcard encoding of the other backends.
//!
//! Every call is bounded by `store.redis_timeout_ms`: an unreachable Redis answers
//! `StoreError::Redis` quickly instead of piling requests up.

mod conn;
mod directory;
mod jobs;
mod lease;
mod ledger;
mod log;

use super::faults::Faults;
use super::{Backend, StoreError, StoreResult};
use conn::Redis;
use std::sync::Arc;
use std::time::Duration;

pub use conn::Conn;

/// How to reach Redis and what to ask of it.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Cluster seed nodes, or one server.
    pub urls: Vec<String>,
    /// The bound on every call (connect, command, retries).
    pub timeout: Duration,
    /// Replicas a usage record must reach (`WAIT`) before it is acknowledged; 0: none.
    pub wait_replicas: u32,
    pub wait_timeout: Duration,
    /// How long a usage record's idempotency entry is kept at least.
    pub request_retention_days: u32,
    pub debug_log_capacity: usize,
}

/// Connects (a cluster when the first URL is a cluster node) and builds every trait.
pub async fn open(options: RedisOptions) -> StoreResult<Backend> {
    let conn = Conn::connect(&options.urls, options.timeout).await?;
    let redis = Redis::new(conn, options.timeout);
    let ledger = Arc::new(ledger::RedisLedger::new(
        redis.clone(),
        options.wait_replicas,
        options.wait_timeout,
        Duration::from_secs(u64::from(options.request_retention_days.max(1)) * 86_400 + 86_400),
    ));
    Ok(Backend {
        ledger,
        orgs: Arc::new(directory::RedisOrgs(redis.clone())),
        keys: Arc::new(directory::RedisKeys(redis.clone())),
        webhooks: Arc::new(jobs::RedisJobs::new(redis.clone(), "webhooks")),
        stigg: Arc::new(jobs::RedisJobs::new(redis.clone(), "stigg")),
        debug_log: Arc::new(log::RedisDebugLog::new(
            redis.clone(),
            options.debug_log_capacity,
        )),
        health: Arc::new(log::RedisHealth(redis)),
        faults: Arc::new(Faults::default()),
    })
}

impl From<::redis::RedisError> for StoreError {
    fn from(e: ::redis::RedisError) -> Self {
        StoreError::Redis(Arc::new(e))
    }
}

/// The key of an org's `part`: `eq:{<org>}:<part>`.
fn org_key(org: &crate::domain::OrgId, part: &str) -> String {
    format!("eq:{{{}}}:{part}", org.as_str())
}
