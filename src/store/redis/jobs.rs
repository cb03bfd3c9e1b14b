//! `JobQueue` on Redis: one queue's jobs, indices and stream under one hash tag
//! (`eq:{jobs:<queue>}:…`), so every change is one Lua script on one slot.
//!
//! A job is a versioned blob in a hash keyed by its id (the event id for webhooks: a
//! delivery stored twice is one job); a sorted set per state orders the jobs by arrival
//! (lists, counts) and one per finished state by when they finished (purges). Delivery
//! goes through a Redis Stream with one consumer group: a queued job waits in `due`
//! (scored by when it may run: backoff and a parked queue need a due time, which a
//! stream has not), a claim moves the jobs that are due into the stream and reads them
//! with `XREADGROUP` as this node's consumer, and a replace (finished, or queued again
//! for later) acknowledges and deletes its entry. A node that dies holding entries
//! leaves them pending in the group, and the next claim on any node takes those idle
//! past the lease with `XAUTOCLAIM` — judged by Redis's clock, one clock for every node.

use super::conn::Redis;
use crate::store::codec::{decode, encode};
use crate::store::jobs::{Inserted, Job, JobState};
use crate::store::{JobQueue, StoreFuture, StoreResult};
use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;

const JOB_V: u8 = 1;
/// The consumer group every node reads the queue's stream in.
const GROUP: &str = "workers";

/// KEYS: jobs hash, state set, due set, finished set. ARGV: id, blob, seq, due ('' when
/// not queued), done_ms ('' when not finished).
const INSERT: &str = r#"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return existing end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1]) end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1]) end
return false
"#;

/// KEYS: jobs hash, old state set, new state set, due set, old finished set, new finished
/// set, entries hash, stream. ARGV: id, expected blob, new blob, seq, due, done_ms, group.
const REPLACE: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
-- The job leaves the stream, if it is in it.
local entry = redis.call('HGET', KEYS[7], ARGV[1])
if entry then
  redis.call('XACK', KEYS[8], ARGV[7], entry)
  redis.call('XDEL', KEYS[8], entry)
  redis.call('HDEL', KEYS[7], ARGV[1])
end
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1]) end
redis.call('ZREM', KEYS[5], ARGV[1])
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[6], ARGV[6], ARGV[1]) end
return 1
"#;

/// KEYS: jobs hash, due set, entries hash, stream. ARGV: now, limit, lease ms, group,
/// consumer. The due jobs enter the stream; then this consumer takes entries other
/// consumers have held idle past the lease, then new ones. An entry whose job has left
/// the stream since (finished, purged) is acknowledged and dropped.
const CLAIM: &str = r#"
redis.pcall('XGROUP', 'CREATE', KEYS[4], ARGV[4], '0', 'MKSTREAM')
local limit = tonumber(ARGV[2])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, limit)) do
  redis.call('HSET', KEYS[3], id, redis.call('XADD', KEYS[4], '*', 'id', id))
  redis.call('ZREM', KEYS[2], id)
end
local out = {}
local function take(entries)
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    local id = fields and fields[2]
    local blob = id and redis.call('HGET', KEYS[1], id)
    if blob and redis.call('HGET', KEYS[3], id) == entry[1] then
      table.insert(out, blob)
    else
      redis.call('XACK', KEYS[4], ARGV[4], entry[1])
      redis.call('XDEL', KEYS[4], entry[1])
    end
  end
end
take(redis.call('XAUTOCLAIM', KEYS[4], ARGV[4], ARGV[5], ARGV[3], '0-0', 'COUNT', limit)[2])
if #out < limit then
  local fresh = redis.call('XREADGROUP', 'GROUP', ARGV[4], ARGV[5], 'COUNT', limit - #out,
    'STREAMS', KEYS[4], '>')
  if fresh then take(fresh[1][2]) end
end
return out
"#;

/// KEYS: jobs hash, state set, finished set, entries hash, stream. ARGV: cutoff, group.
/// Also forgets consumers (nodes gone for a day) that hold nothing.
const PURGE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[1])
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[5], ARGV[2])
if type(consumers) == 'table' and not consumers.err then
  for _, c in ipairs(consumers) do
    local info = {}
    for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
    if info['pending'] == 0 and (info['idle'] or 0) > 86400000 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[5], ARGV[2], info['name'])
    end
  end
end
return #ids
"#;

pub struct RedisJobs<P> {
    redis: Redis,
    tag: String,
    /// This node's consumer name in the stream's group (unique per process).
    consumer: String,
    payload: PhantomData<fn() -> P>,
}

impl<P> RedisJobs<P> {
    pub fn new(redis: Redis, queue: &str) -> Self {
        Self {
            redis,
            tag: format!("eq:{{jobs:{queue}}}"),
            consumer: format!("node-{}", ulid::Ulid::new()),
            payload: PhantomData,
        }
    }

    fn key(&self, part: &str) -> String {
        format!("{}:{part}", self.tag)
    }

    fn state_key(&self, state: JobState) -> String {
        self.key(&format!("st:{}", state.tag() as char))
    }

    fn finished_key(&self, state: JobState) -> String {
        self.key(&format!("fin:{}", state.tag() as char))
    }

    fn due_arg<Q>(job: &Job<Q>) -> String {
        if job.state == JobState::Queued {
            job.next_attempt_ms.to_string()
        } else {
            String::new()
        }
    }

    fn done_arg<Q>(job: &Job<Q>) -> String {
        job.done_ms.map(|ms| ms.to_string()).unwrap_or_default()
    }
}

impl<P> Clone for RedisJobs<P> {
    fn clone(&self) -> Self {
        Self {
            redis: self.redis.clone(),
            tag: self.tag.clone(),
            consumer: self.consumer.clone(),
            payload: PhantomData,
        }
    }
}

fn decode_job<P: DeserializeOwned>(bytes: &[u8]) -> StoreResult<Job<P>> {
    decode("redis job", JOB_V, bytes)
}

impl<P> RedisJobs<P>
where
    P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn by_ids(&self, ids: Vec<String>) -> StoreResult<Vec<Job<P>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.key("jobs"));
        for id in &ids {
            hmget.arg(id);
        }
        let blobs: Vec<Option<Vec<u8>>> = self.redis.query(hmget).await?;
        blobs
            .into_iter()
            .flatten()
            .map(|b| decode_job(&b))
            .collect()
    }

    async fn range(&self, state: JobState, min: String, limit: usize) -> StoreResult<Vec<Job<P>>> {
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range
            .arg(self.state_key(state))
            .arg(min)
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let ids: Vec<String> = self.redis.query(range).await?;
        self.by_ids(ids).await
    }
}

impl<P> JobQueue<P> for RedisJobs<P>
where
    P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn next_seq(&self) -> StoreFuture<u64> {
        let (redis, key) = (self.redis.clone(), self.key("seq"));
        async move {
            let mut incr = redis::cmd("INCR");
            incr.arg(key);
            redis.query(incr).await
        }
        .boxed()
    }

    fn insert_new(&self, job: Job<P>) -> StoreFuture<Inserted<P>> {
        let this = self.clone();
        async move {
            let keys = [
                this.key("jobs"),
                this.state_key(job.state),
                this.key("due"),
                this.finished_key(job.state),
            ];
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut eval = Redis::eval(INSERT, &refs);
            eval.arg(&job.id)
                .arg(encode(JOB_V, &job))
                .arg(job.seq)
                .arg(Self::due_arg(&job))
                .arg(Self::done_arg(&job));
            let existing: Option<Vec<u8>> = this.redis.query(eval).await?;
            Ok(match existing {
                None => Inserted::New,
                Some(bytes) => Inserted::Existing(Box::new(decode_job(&bytes)?)),
            })
        }
        .boxed()
    }

    fn get(&self, id: &str) -> StoreFuture<Option<Job<P>>> {
        let (this, id) = (self.clone(), id.to_owned());
        async move { Ok(this.by_ids(vec![id]).await?.pop()) }.boxed()
    }

    fn replace(&self, expected: Job<P>, new: Job<P>) -> StoreFuture<bool> {
        let this = self.clone();
        async move {
            let keys = [
                this.key("jobs"),
                this.state_key(expected.state),
                this.state_key(new.state),
                this.key("due"),
                this.finished_key(expected.state),
                this.finished_key(new.state),
                this.key("entries"),
                this.key("stream"),
            ];
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut eval = Redis::eval(REPLACE, &refs);
            eval.arg(&expected.id)
                .arg(encode(JOB_V, &expected))
                .arg(encode(JOB_V, &new))
                .arg(new.seq)
                .arg(Self::due_arg(&new))
                .arg(Self::done_arg(&new))
                .arg(GROUP);
            let replaced: i64 = this.redis.query(eval).await?;
            Ok(replaced == 1)
        }
        .boxed()
    }

    fn claim_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> StoreFuture<Vec<Job<P>>> {
        let this = self.clone();
        async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let keys = [
                this.key("jobs"),
                this.key("due"),
                this.key("entries"),
                this.key("stream"),
            ];
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut eval = Redis::eval(CLAIM, &refs);
            eval.arg(now_ms)
                .arg(limit)
                .arg(lease_ms.max(0))
                .arg(GROUP)
                .arg(&this.consumer);
            let blobs: Vec<Vec<u8>> = this.redis.query(eval).await?;
            blobs.iter().map(|b| decode_job(b)).collect()
        }
        .boxed()
    }

    fn list(
        &self,
        state: JobState,
        after_seq: Option<u64>,
        limit: usize,
    ) -> StoreFuture<Vec<Job<P>>> {
        let this = self.clone();
        let min = after_seq.map_or("-inf".to_owned(), |s| format!("({s}"));
        async move { this.range(state, min, limit).await }.boxed()
    }

    fn oldest(&self, state: JobState) -> StoreFuture<Option<Job<P>>> {
        let this = self.clone();
        async move {
            Ok(this
                .range(state, "-inf".to_owned(), 1)
                .await?
                .into_iter()
                .next())
        }
        .boxed()
    }

    fn count(&self, state: JobState) -> StoreFuture<u64> {
        let (redis, key) = (self.redis.clone(), self.state_key(state));
        async move {
            let mut card = redis::cmd("ZCARD");
            card.arg(key);
            redis.query(card).await
        }
        .boxed()
    }

    fn purge_finished_before(&self, state: JobState, cutoff_ms: i64) -> StoreFuture<u64> {
        let this = self.clone();
        async move {
            let keys = [
                this.key("jobs"),
                this.state_key(state),
                this.finished_key(state),
                this.key("entries"),
                this.key("stream"),
            ];
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut eval = Redis::eval(PURGE, &refs);
            eval.arg(cutoff_ms).arg(GROUP);
            this.redis.query(eval).await
        }
        .boxed()
    }
}
