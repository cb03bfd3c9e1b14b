//! `OrgDirectory` and `KeyStore` on Redis. An org's record lives on its own slot; an
//! org-create `Idempotency-Key` is claimed first (`SET NX`) with everything the create
//! writes, so a create that crashed half-way is finished by the retry that finds the
//! claim. Key changes are appended to a stream whose ids the server assigns in order,
//! which is what lets every node follow revocations without missing one.

use super::conn::Redis;
use super::lease;
use super::ledger::{ORGS_INDEX, STATE_V};
use super::org_key;
use crate::domain::{KeyId, OrgId};
use crate::store::codec::{decode, encode};
use crate::store::{
    ApiKeyRecord, CreateOutcome, CreateReplay, KeyStore, OrgDirectory, OrgRecord, OrgState,
    StoreFuture, StoreResult, SweepLease,
};
use futures_util::FutureExt;
use std::collections::HashMap;

const ORG_V: u8 = 1;
const CLAIM_V: u8 = 1;
const KEY_V: u8 = 1;
const KEYS_ALL: &str = "eq:keys:all";
const KEY_CHANGES: &str = "eq:keys:changes";
/// Key changes kept for nodes that fall behind (each node reads them every second).
const KEY_CHANGES_KEPT: u64 = 100_000;

#[derive(Clone)]
pub struct RedisOrgs(pub Redis);

fn claim_key(idempotency: &str) -> String {
    format!("eq:create:{{{idempotency}}}")
}

fn customer_key(customer: &str) -> String {
    format!("eq:customer:{{{customer}}}")
}

impl RedisOrgs {
    async fn write_org(&self, record: &OrgRecord, state: &OrgState) -> StoreResult<()> {
        let org = &record.org_id;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(org_key(org, "org"), encode(ORG_V, record))
            .ignore()
            .set(org_key(org, "state"), encode(STATE_V, state))
            .ignore();
        let () = self.0.pipe(pipe).await?;
        let mut index = redis::cmd("ZADD");
        index.arg(ORGS_INDEX).arg(0).arg(org.as_str());
        let _: i64 = self.0.query(index).await?;
        Ok(())
    }

    async fn create_now(
        self,
        record: OrgRecord,
        idempotency: Option<(String, CreateReplay)>,
        state: OrgState,
    ) -> StoreResult<CreateOutcome> {
        let Some((key, replay)) = idempotency else {
            self.write_org(&record, &state).await?;
            return Ok(CreateOutcome::Created);
        };
        let claim = encode(CLAIM_V, &(replay, record.clone(), state.clone()));
        let mut set = redis::cmd("SET");
        set.arg(claim_key(&key)).arg(claim).arg("NX").arg("GET");
        let previous: Option<Vec<u8>> = self.0.query(set).await?;
        match previous {
            None => {
                self.write_org(&record, &state).await?;
                Ok(CreateOutcome::Created)
            }
            Some(bytes) => {
                let (replay, first, first_state): (CreateReplay, OrgRecord, OrgState) =
                    decode("redis org claim", CLAIM_V, &bytes)?;
                // The first create may have stopped between its claim and its writes.
                if self.get_now(first.org_id.clone()).await?.is_none() {
                    self.write_org(&first, &first_state).await?;
                }
                Ok(CreateOutcome::Replayed(replay))
            }
        }
    }

    async fn get_now(&self, org: OrgId) -> StoreResult<Option<OrgRecord>> {
        let mut get = redis::cmd("GET");
        get.arg(org_key(&org, "org"));
        let bytes: Option<Vec<u8>> = self.0.query(get).await?;
        bytes.map(|b| decode("redis org", ORG_V, &b)).transpose()
    }
}

impl OrgDirectory for RedisOrgs {
    fn create(
        &self,
        record: OrgRecord,
        idempotency: Option<(String, CreateReplay)>,
        state: OrgState,
    ) -> StoreFuture<CreateOutcome> {
        self.clone().create_now(record, idempotency, state).boxed()
    }

    fn get(&self, org: &OrgId) -> StoreFuture<Option<OrgRecord>> {
        let (this, org) = (self.clone(), org.clone());
        async move { this.get_now(org).await }.boxed()
    }

    fn link_customer(&self, customer: &str, org: &OrgId) -> StoreFuture<()> {
        let mut set = redis::cmd("SET");
        set.arg(customer_key(customer)).arg(org.as_str());
        let redis = self.0.clone();
        async move { redis.query::<()>(set).await }.boxed()
    }

    fn lease(
        &self,
        org: &OrgId,
        token: Option<String>,
        lease_ms: u64,
    ) -> StoreFuture<Option<String>> {
        let (redis, key) = (self.0.clone(), org_key(org, "billing-lease"));
        async move {
            Ok(match lease::take(&redis, &key, token, lease_ms).await? {
                SweepLease::Held(token) => Some(token),
                SweepLease::Busy | SweepLease::Done => None,
            })
        }
        .boxed()
    }

    fn release(&self, org: &OrgId, token: String) -> StoreFuture<()> {
        let (redis, key) = (self.0.clone(), org_key(org, "billing-lease"));
        async move { lease::release(&redis, &key, token).await }.boxed()
    }

    fn org_of_customer(&self, customer: &str) -> StoreFuture<Option<OrgId>> {
        let mut get = redis::cmd("GET");
        get.arg(customer_key(customer));
        let redis = self.0.clone();
        async move {
            let org: Option<String> = redis.query(get).await?;
            Ok(org.and_then(|o| OrgId::parse(&o).ok()))
        }
        .boxed()
    }
}

#[derive(Clone)]
pub struct RedisKeys(pub Redis);

fn key_key(key: &KeyId) -> String {
    format!("eq:key:{{{}}}", key.as_str())
}

/// A stream id `<ms>-<seq>` as one growing number, and back.
fn cursor_of(id: &str) -> u64 {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    let (ms, seq) = (
        ms.parse::<u64>().unwrap_or(0),
        seq.parse::<u64>().unwrap_or(0),
    );
    (ms << 22) | seq.min((1 << 22) - 1)
}

fn id_of(cursor: u64) -> String {
    format!("{}-{}", cursor >> 22, cursor & ((1 << 22) - 1))
}

impl RedisKeys {
    async fn many(&self, ids: Vec<String>) -> StoreResult<Vec<ApiKeyRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(256) {
            let mut mget = redis::cmd("MGET");
            for id in chunk {
                mget.arg(format!("eq:key:{{{id}}}"));
            }
            let found: Vec<Option<Vec<u8>>> = self.0.query(mget).await?;
            for bytes in found.into_iter().flatten() {
                out.push(decode("redis key", KEY_V, &bytes)?);
            }
        }
        Ok(out)
    }

    async fn put_now(self, records: Vec<ApiKeyRecord>) -> StoreResult<()> {
        for r in &records {
            let mut pipe = redis::pipe();
            pipe.set(key_key(&r.key_id), encode(KEY_V, r)).ignore();
            let () = self.0.pipe(pipe).await?;
            let mut by_org = redis::cmd("SADD");
            by_org
                .arg(org_key(&r.org_id, "keys"))
                .arg(r.key_id.as_str());
            let _: i64 = self.0.query(by_org).await?;
            let mut all = redis::cmd("SADD");
            all.arg(KEYS_ALL).arg(r.key_id.as_str());
            let _: i64 = self.0.query(all).await?;
            let mut change = redis::cmd("XADD");
            change
                .arg(KEY_CHANGES)
                .arg("MAXLEN")
                .arg("~")
                .arg(KEY_CHANGES_KEPT)
                .arg("*")
                .arg("key")
                .arg(r.key_id.as_str());
            let _: String = self.0.query(change).await?;
        }
        Ok(())
    }

    async fn changes_now(self, cursor: u64) -> StoreResult<(u64, Vec<ApiKeyRecord>)> {
        if cursor == 0 {
            let mut last = redis::cmd("XREVRANGE");
            last.arg(KEY_CHANGES).arg("+").arg("-").arg("COUNT").arg(1);
            let newest: Vec<(String, HashMap<String, String>)> = self.0.query(last).await?;
            return Ok((
                newest.first().map_or(1, |(id, _)| cursor_of(id)),
                Vec::new(),
            ));
        }
        let mut range = redis::cmd("XRANGE");
        range
            .arg(KEY_CHANGES)
            .arg(format!("({}", id_of(cursor)))
            .arg("+")
            .arg("COUNT")
            .arg(10_000);
        let changed: Vec<(String, HashMap<String, String>)> = self.0.query(range).await?;
        let next = changed.last().map_or(cursor, |(id, _)| cursor_of(id));
        let mut ids: Vec<String> = changed
            .into_iter()
            .filter_map(|(_, f)| f.get("key").cloned())
            .collect();
        ids.sort();
        ids.dedup();
        Ok((next, self.many(ids).await?))
    }
}

impl KeyStore for RedisKeys {
    fn put(&self, records: Vec<ApiKeyRecord>) -> StoreFuture<()> {
        self.clone().put_now(records).boxed()
    }

    fn get(&self, key: &KeyId) -> StoreFuture<Option<ApiKeyRecord>> {
        let (this, id) = (self.clone(), key.as_str().to_owned());
        async move { Ok(this.many(vec![id]).await?.pop()) }.boxed()
    }

    fn all(&self) -> StoreFuture<Vec<ApiKeyRecord>> {
        let this = self.clone();
        async move {
            let mut members = redis::cmd("SMEMBERS");
            members.arg(KEYS_ALL);
            let ids: Vec<String> = this.0.query(members).await?;
            this.many(ids).await
        }
        .boxed()
    }

    fn of_org(&self, org: &OrgId) -> StoreFuture<Vec<ApiKeyRecord>> {
        let (this, set) = (self.clone(), org_key(org, "keys"));
        async move {
            let mut members = redis::cmd("SMEMBERS");
            members.arg(set);
            let ids: Vec<String> = this.0.query(members).await?;
            this.many(ids).await
        }
        .boxed()
    }

    fn changes_since(&self, cursor: u64) -> StoreFuture<(u64, Vec<ApiKeyRecord>)> {
        self.clone().changes_now(cursor).boxed()
    }
}
