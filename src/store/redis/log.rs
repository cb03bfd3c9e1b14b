//! The DebugLog on Redis (one capped stream shared by every node, newest read first) and
//! the store's health: what it is, a real write read back, and nothing to flush — Redis
//! makes writes durable by its own persistence settings (see the README).

use super::conn::Redis;
use crate::store::codec::{decode, encode};
use crate::store::{DebugEntry, DebugLogStore, StoreError, StoreFuture, StoreHealth};
use futures_util::FutureExt;
use redis::Value;

const ENTRY_V: u8 = 1;
const STREAM: &str = "eq:debuglog";
/// Entries read per step while looking for one correlation id.
const PAGE: usize = 500;

#[derive(Clone)]
pub struct RedisDebugLog {
    redis: Redis,
    capacity: usize,
}

impl RedisDebugLog {
    pub fn new(redis: Redis, capacity: usize) -> Self {
        Self { redis, capacity }
    }
}

/// `[[id, [field, value, ...]], ...]` of XREVRANGE: each id and its `e` field's bytes.
fn entries(reply: Value) -> Vec<(String, Vec<u8>)> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else {
                return None;
            };
            let fields = parts.pop()?;
            let id = match parts.pop()? {
                Value::BulkString(b) => String::from_utf8(b).ok()?,
                Value::SimpleString(s) => s,
                _ => return None,
            };
            let Value::Array(fields) = fields else {
                return None;
            };
            let blob = fields.into_iter().nth(1).and_then(|v| match v {
                Value::BulkString(b) => Some(b),
                _ => None,
            })?;
            Some((id, blob))
        })
        .collect()
}

impl DebugLogStore for RedisDebugLog {
    fn append(&self, batch: Vec<DebugEntry>) -> StoreFuture<()> {
        let this = self.clone();
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for e in &batch {
                pipe.cmd("XADD")
                    .arg(STREAM)
                    .arg("MAXLEN")
                    .arg(this.capacity)
                    .arg("*")
                    .arg("e")
                    .arg(encode(ENTRY_V, e))
                    .ignore();
            }
            let () = this.redis.pipe(pipe).await?;
            Ok(())
        }
        .boxed()
    }

    fn recent(&self, correlation_id: Option<String>, limit: usize) -> StoreFuture<Vec<DebugEntry>> {
        let this = self.clone();
        async move {
            let mut found = Vec::new();
            let mut end = "+".to_owned();
            let mut read = 0;
            while found.len() < limit && read < this.capacity {
                let mut range = redis::cmd("XREVRANGE");
                range.arg(STREAM).arg(&end).arg("-").arg("COUNT").arg(PAGE);
                let page = entries(this.redis.query::<Value>(range).await?);
                let Some((last, _)) = page.last() else {
                    break;
                };
                end = format!("({last}");
                read += page.len();
                for (_, blob) in page {
                    let e: DebugEntry = decode("redis debug log", ENTRY_V, &blob)?;
                    if correlation_id
                        .as_ref()
                        .is_none_or(|c| *c == e.correlation_id)
                    {
                        found.push(e);
                        if found.len() == limit {
                            break;
                        }
                    }
                }
            }
            Ok(found)
        }
        .boxed()
    }
}

#[derive(Clone)]
pub struct RedisHealth(pub Redis);

impl StoreHealth for RedisHealth {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn shared(&self) -> bool {
        true
    }

    fn round_trip(&self) -> StoreFuture<()> {
        let redis = self.0.clone();
        async move {
            let key = format!("eq:smoke:{{{}}}", ulid::Ulid::new());
            let mut set = redis::cmd("SET");
            set.arg(&key).arg("1").arg("EX").arg(60);
            let () = redis.query(set).await?;
            let mut get = redis::cmd("GET");
            get.arg(&key);
            let back: Option<String> = redis.query(get).await?;
            let mut del = redis::cmd("DEL");
            del.arg(&key);
            let _: i64 = redis.query(del).await?;
            match back.as_deref() {
                Some("1") => Ok(()),
                _ => Err(StoreError::Unavailable(
                    "a value written was not read back".into(),
                )),
            }
        }
        .boxed()
    }

    fn size_on_disk(&self) -> StoreFuture<Option<u64>> {
        async { Ok(None) }.boxed()
    }

    fn flush(&self) -> StoreFuture<()> {
        async { Ok(()) }.boxed()
    }

    fn close(&self) {}
}
