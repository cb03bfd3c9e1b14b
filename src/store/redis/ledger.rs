//! `LedgerStore` on Redis. An org's state, billing mirror, counters (a hash per period)
//! and usage-record idempotency entries all carry the org's hash tag, so a record is one
//! Lua script on the org's slot: look the request id up, and either return the stored
//! answer or count and store the answer (with a TTL past the retention). The reply is
//! acknowledged after `WAIT` has seen it reach `store.redis_wait_replicas` replicas.

use super::conn::Redis;
use super::lease;
use super::org_key;
use crate::domain::{Metric, OrgId, PeriodKey};
use crate::store::codec::{decode, encode};
use crate::store::{
    LedgerStore, LedgerWrite, OrgState, Purged, Recorded, StoreError, StoreFuture, StoreResult,
    StoredLedger, SweepLease, UsageRecord,
};
use futures_util::FutureExt;
use redis::Value;
use std::collections::HashMap;
use std::time::Duration;

pub const STATE_V: u8 = 1;
/// How long a finished sweep is remembered: longer than any period, so a node started
/// late in the period still finds it.
const SWEEP_DONE_KEPT_MS: u64 = 40 * 24 * 3_600_000;

/// The period sweep's lease (then `done`), shared by every node.
fn sweep_key(period: PeriodKey) -> String {
    format!("eq:sweep:{period}")
}
pub const BILLING_V: u8 = 1;
/// Every org with a stored state, for sweeps (a sorted set read in lexical order).
pub const ORGS_INDEX: &str = "eq:orgs";

const RECORD: &str = r#"
local stored = redis.call('GET', KEYS[1])
if stored then return {0, stored} end
local total = redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
local remaining = tonumber(ARGV[5]) - total
if remaining < 0 then remaining = 0 end
local body = '{"periodKey":"' .. ARGV[4] .. '","used":' .. string.format('%d', total)
  .. ',"remaining":' .. string.format('%d', remaining) .. '}'
redis.call('SET', KEYS[1], ARGV[1] .. body, 'EX', ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[8])
return {1, total, body}
"#;

const COMMIT: &str = r#"
local i = 1
if ARGV[1] == 'F' then
  if redis.call('GET', KEYS[3]) ~= ARGV[2] then
    return redis.error_reply('FENCED billing lease not held by this writer')
  end
  i = 3
end
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'S' then redis.call('SET', KEYS[1], ARGV[i + 1]); i = i + 2
  elseif op == 'B' then redis.call('SET', KEYS[2], ARGV[i + 1]); i = i + 2
  elseif op == 'U' then
    local k = KEYS[tonumber(ARGV[i + 1])]
    local v = redis.call('HINCRBY', k, ARGV[i + 2], ARGV[i + 3])
    if v < 0 then redis.call('HSET', k, ARGV[i + 2], 0) end
    i = i + 4
  elseif op == 'Z' then redis.call('HSET', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], 0); i = i + 3
  else return redis.error_reply('unknown ledger op ' .. tostring(op)) end
end
return 1
"#;

const PURGE: &str = r#"
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, id in ipairs(old) do redis.call('DEL', ARGV[2] .. id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return {#old, redis.call('ZCARD', KEYS[1])}
"#;

/// The fingerprint as stored in front of an answer (fixed width).
fn hex16(f: &[u8; 16]) -> String {
    hex::encode(f)
}

fn counters_key(org: &OrgId, period: PeriodKey) -> String {
    org_key(org, &format!("c:{period}"))
}

fn corrupt(problem: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: "redis ledger",
        problem: problem.into(),
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn counters_of(raw: HashMap<String, i64>) -> HashMap<Metric, u64> {
    raw.into_iter()
        .filter_map(|(m, v)| Some((Metric::parse(&m).ok()?, u64::try_from(v).unwrap_or(0))))
        .collect()
}

/// An org's state and billing blobs and one period's counters, as read in one pipeline.
type Loaded = (Option<Vec<u8>>, Option<Vec<u8>>, HashMap<String, i64>);

#[derive(Clone)]
pub struct RedisLedger {
    redis: Redis,
    wait_replicas: u32,
    wait_timeout: Duration,
    retention: Duration,
}

impl RedisLedger {
    pub fn new(
        redis: Redis,
        wait_replicas: u32,
        wait_timeout: Duration,
        retention: Duration,
    ) -> Self {
        Self {
            redis,
            wait_replicas,
            wait_timeout,
            retention,
        }
    }

    async fn record_now(self, org: OrgId, u: UsageRecord) -> StoreResult<Recorded> {
        let request = org_key(&org, &format!("r:{}", u.request.as_str()));
        let counters = counters_key(&org, u.period);
        let times = org_key(&org, "rt");
        let mut eval = Redis::eval(RECORD, &[&request, &counters, &times]);
        eval.arg(hex16(&u.fingerprint))
            .arg(u.metric.as_str())
            .arg(u.delta)
            .arg(u.period.to_string())
            .arg(u.included)
            .arg(self.retention.as_secs())
            .arg(u.now_ms)
            .arg(u.request.as_str());
        let reply: Vec<Value> = if self.wait_replicas == 0 {
            self.redis.query(eval).await?
        } else {
            // In one pipeline, so WAIT rides the same connection to the same primary.
            let mut pipe = redis::pipe();
            pipe.add_command(eval);
            pipe.cmd("WAIT")
                .arg(self.wait_replicas)
                .arg(self.wait_timeout.as_millis() as u64);
            let (reply, acked): (Vec<Value>, i64) = self.redis.pipe(pipe).await?;
            if acked < i64::from(self.wait_replicas) {
                return Err(StoreError::Unavailable(format!(
                    "the record reached {acked} of {} replicas in time",
                    self.wait_replicas
                )));
            }
            reply
        };
        match reply.as_slice() {
            [Value::Int(0), stored] => {
                let stored = bytes(stored).ok_or_else(|| corrupt("stored answer"))?;
                let (fingerprint, body) = stored
                    .split_at_checked(32)
                    .ok_or_else(|| corrupt("short stored answer"))?;
                if fingerprint == hex16(&u.fingerprint).as_bytes() {
                    Ok(Recorded::Replayed { body: body.into() })
                } else {
                    Ok(Recorded::Conflict)
                }
            }
            [Value::Int(1), Value::Int(total), body] => Ok(Recorded::New {
                body: bytes(body).ok_or_else(|| corrupt("answer"))?.into(),
                total: u64::try_from(*total).unwrap_or(0),
            }),
            other => Err(corrupt(format!("record script answered {other:?}"))),
        }
    }

    async fn commit_now(self, org: OrgId, writes: Vec<LedgerWrite>) -> StoreResult<()> {
        let mut keys = vec![
            org_key(&org, "state"),
            org_key(&org, "billing"),
            org_key(&org, "billing-lease"),
        ];
        let mut args: Vec<Vec<u8>> = Vec::new();
        let mut fence = None;
        let mut stores_state = false;
        let counter_index = |keys: &mut Vec<String>, period: PeriodKey| {
            let k = counters_key(&org, period);
            let i = keys.iter().position(|x| *x == k).unwrap_or_else(|| {
                keys.push(k);
                keys.len() - 1
            });
            (i + 1).to_string().into_bytes()
        };
        for w in writes {
            match w {
                LedgerWrite::State(s) => {
                    stores_state = true;
                    args.push(b"S".to_vec());
                    args.push(encode(STATE_V, &s));
                }
                LedgerWrite::Billing(b) => {
                    args.push(b"B".to_vec());
                    args.push(encode(BILLING_V, &*b));
                }
                LedgerWrite::Usage {
                    period,
                    metric,
                    delta,
                } => {
                    args.push(b"U".to_vec());
                    args.push(counter_index(&mut keys, period));
                    args.push(metric.as_str().as_bytes().to_vec());
                    args.push(delta.to_string().into_bytes());
                }
                LedgerWrite::Fence(token) => fence = Some(token),
                LedgerWrite::Zero { period, metric } => {
                    args.push(b"Z".to_vec());
                    args.push(counter_index(&mut keys, period));
                    args.push(metric.as_str().as_bytes().to_vec());
                }
            }
        }
        if args.is_empty() {
            return Ok(());
        }
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut eval = Redis::eval(COMMIT, &key_refs);
        // The fence is checked before any write (a script's writes before an error stay).
        if let Some(token) = &fence {
            eval.arg("F").arg(token.as_str());
        }
        for a in &args {
            eval.arg(a.as_slice());
        }
        match self.redis.query::<i64>(eval).await {
            Ok(_) => {}
            Err(StoreError::Redis(e)) if e.code() == Some("FENCED") => {
                return Err(StoreError::Fenced(e))
            }
            Err(e) => return Err(e),
        }
        if stores_state {
            let mut index = redis::cmd("ZADD");
            index.arg(ORGS_INDEX).arg(0).arg(org.as_str());
            let _: i64 = self.redis.query(index).await?;
        }
        Ok(())
    }

    async fn load_now(self, org: OrgId, period: PeriodKey) -> StoreResult<StoredLedger> {
        let mut pipe = redis::pipe();
        pipe.get(org_key(&org, "state"))
            .get(org_key(&org, "billing"))
            .hgetall(counters_key(&org, period));
        let (state, billing, counters): Loaded = self.redis.pipe(pipe).await?;
        Ok(StoredLedger {
            state: state
                .map(|b| decode::<OrgState>("redis state", STATE_V, &b))
                .transpose()?,
            billing: billing
                .map(|b| decode("redis billing", BILLING_V, &b))
                .transpose()?,
            counters: counters_of(counters),
        })
    }

    /// Up to `limit` org ids after `after` in the sweep index.
    pub async fn org_ids(&self, after: Option<&OrgId>, limit: usize) -> StoreResult<Vec<OrgId>> {
        let start = after.map_or("-".to_owned(), |a| format!("({}", a.as_str()));
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(ORGS_INDEX)
            .arg(start)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let ids: Vec<String> = self.redis.query(cmd).await?;
        Ok(ids.iter().filter_map(|i| OrgId::parse(i).ok()).collect())
    }

    async fn purge_now(self, cutoff_ms: i64) -> StoreResult<Purged> {
        let mut done = Purged::default();
        let mut after: Option<OrgId> = None;
        loop {
            let page = self.org_ids(after.as_ref(), 256).await?;
            let Some(last) = page.last().cloned() else {
                return Ok(done);
            };
            let purges = page.iter().map(|org| {
                let mut eval = Redis::eval(PURGE, &[&org_key(org, "rt")]);
                eval.arg(cutoff_ms).arg(org_key(org, "r:"));
                self.redis.query::<(u64, u64)>(eval)
            });
            for result in futures_util::future::join_all(purges).await {
                let (purged, kept) = result?;
                done.purged += purged;
                done.kept += kept;
            }
            after = Some(last);
        }
    }
}

impl LedgerStore for RedisLedger {
    fn load(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<StoredLedger> {
        self.clone().load_now(org.clone(), period).boxed()
    }

    fn counters(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<HashMap<Metric, u64>> {
        let (redis, key) = (self.redis.clone(), counters_key(org, period));
        async move {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(key);
            Ok(counters_of(redis.query(cmd).await?))
        }
        .boxed()
    }

    fn record(&self, org: &OrgId, usage: UsageRecord) -> StoreFuture<Recorded> {
        self.clone().record_now(org.clone(), usage).boxed()
    }

    fn commit(&self, org: &OrgId, writes: Vec<LedgerWrite>) -> StoreFuture<()> {
        self.clone().commit_now(org.clone(), writes).boxed()
    }

    fn states_page(
        &self,
        after: Option<&OrgId>,
        limit: usize,
    ) -> StoreFuture<Vec<(OrgId, OrgState)>> {
        let this = self.clone();
        let after = after.cloned();
        async move {
            let ids = this.org_ids(after.as_ref(), limit).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut mget = redis::cmd("MGET");
            for org in &ids {
                mget.arg(org_key(org, "state"));
            }
            let states: Vec<Option<Vec<u8>>> = this.redis.query(mget).await?;
            let mut page = Vec::with_capacity(ids.len());
            for (org, state) in ids.into_iter().zip(states) {
                if let Some(bytes) = state {
                    page.push((org, decode("redis state", STATE_V, &bytes)?));
                }
            }
            Ok(page)
        }
        .boxed()
    }

    fn purge_requests(&self, cutoff_ms: i64) -> StoreFuture<Purged> {
        self.clone().purge_now(cutoff_ms).boxed()
    }

    fn sweep_lease(
        &self,
        period: PeriodKey,
        token: Option<String>,
        lease_ms: u64,
    ) -> StoreFuture<SweepLease> {
        let redis = self.redis.clone();
        async move { lease::take(&redis, &sweep_key(period), token, lease_ms).await }.boxed()
    }

    fn sweep_done(&self, period: PeriodKey, token: String) -> StoreFuture<()> {
        let redis = self.redis.clone();
        async move { lease::finish(&redis, &sweep_key(period), token, SWEEP_DONE_KEPT_MS).await }
            .boxed()
    }

    fn requests_ready(&self) -> bool {
        true
    }
}
