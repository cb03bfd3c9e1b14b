//! The period sweep's lease on Redis: one key per period (`eq:sweep:<period>`) holds the
//! sweeping node's token for the lease, then `done` for as long as a period lasts and a
//! little more, so that every other node skips a sweep one node has made.

use super::conn::Redis;
use crate::domain::PeriodKey;
use crate::store::{StoreResult, SweepLease};

/// How long `done` is kept: longer than any period, so a node started late in the
/// period still finds it.
const DONE_KEPT_MS: u64 = 40 * 24 * 3_600_000;

/// KEYS[1]: the period's key. ARGV: token, lease ms, renew ('1' to extend a held one).
const LEASE: &str = r#"
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

/// KEYS[1]: the period's key. ARGV: token, how long `done` is kept.
const DONE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
end
return 1
"#;

fn key(period: PeriodKey) -> String {
    format!("eq:sweep:{period}")
}

pub async fn lease(
    redis: &Redis,
    period: PeriodKey,
    token: Option<String>,
    lease_ms: u64,
) -> StoreResult<SweepLease> {
    let (mine, renew) = match token {
        Some(t) => (t, "1"),
        None => (ulid::Ulid::new().to_string(), "0"),
    };
    let key = key(period);
    let mut eval = Redis::eval(LEASE, &[&key]);
    eval.arg(&mine).arg(lease_ms.max(1)).arg(renew);
    let answer: String = redis.query(eval).await?;
    Ok(match answer.as_str() {
        "held" => SweepLease::Held(mine),
        "done" => SweepLease::Done,
        _ => SweepLease::Busy,
    })
}

pub async fn done(redis: &Redis, period: PeriodKey, token: String) -> StoreResult<()> {
    let key = key(period);
    let mut eval = Redis::eval(DONE, &[&key]);
    eval.arg(token).arg(DONE_KEPT_MS);
    let _: i64 = redis.query(eval).await?;
    Ok(())
}
