//! Leases on Redis, for the billing lock of an org and the period sweep alike: one key
//! holds the holder's token for `lease_ms`; the holder extends it, hands it back, or (a
//! sweep) marks the work `done`, which no later asker can take.

use super::conn::Redis;
use crate::store::{StoreResult, SweepLease as Lease};

/// KEYS[1]: the lease. ARGV: token, lease ms, '1' to extend a held one ('0' to take).
const TAKE: &str = r#"
local held = redis.call('GET', KEYS[1])
if held == 'done' then return 'done' end
if ARGV[3] == '1' then
  if held ~= ARGV[1] then return 'busy' end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'held'
end
if held then return 'busy' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'held'
"#;

/// KEYS[1]: the lease. ARGV: token, then what to leave ('' to delete the key) and for
/// how many ms.
const END: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Takes the lease in `key` for `lease_ms` — or, with the `token` of the lease held,
/// extends it. The answer is the sweep lease's type for both kinds: the billing lock
/// is never marked done, so it is only ever held or busy.
pub async fn take(
    redis: &Redis,
    key: &str,
    token: Option<String>,
    lease_ms: u64,
) -> StoreResult<Lease> {
    let (mine, renew) = match token {
        Some(t) => (t, "1"),
        None => (ulid::Ulid::new().to_string(), "0"),
    };
    let mut eval = Redis::eval(TAKE, &[key]);
    eval.arg(&mine).arg(lease_ms.max(1)).arg(renew);
    let answer: String = redis.query(eval).await?;
    Ok(match answer.as_str() {
        "held" => Lease::Held(mine),
        "done" => Lease::Done,
        _ => Lease::Busy,
    })
}

/// Hands the lease back, if `token` still holds it.
pub async fn release(redis: &Redis, key: &str, token: String) -> StoreResult<()> {
    end(redis, key, token, "", 0).await
}

/// Marks the lease's work done for `kept_ms`, if `token` still holds it.
pub async fn finish(redis: &Redis, key: &str, token: String, kept_ms: u64) -> StoreResult<()> {
    end(redis, key, token, "done", kept_ms).await
}

async fn end(redis: &Redis, key: &str, token: String, leave: &str, ms: u64) -> StoreResult<()> {
    let mut eval = Redis::eval(END, &[key]);
    eval.arg(token).arg(leave).arg(ms);
    let _: i64 = redis.query(eval).await?;
    Ok(())
}
