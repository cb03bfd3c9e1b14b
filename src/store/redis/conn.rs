//! One connection handle for both shapes of Redis — a cluster (one multiplexed connection
//! per node, slots followed through MOVED/ASK and failovers) or a single server (a
//! connection manager that reconnects) — and the bounded calls every trait makes.

use crate::store::{StoreError, StoreResult};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Value};
use std::time::Duration;

#[derive(Clone)]
pub enum Conn {
    Cluster(ClusterConnection),
    Single(ConnectionManager),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Single(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Cluster(c) => c.get_db(),
            Conn::Single(c) => c.get_db(),
        }
    }
}

fn unavailable(what: impl Into<String>) -> StoreError {
    StoreError::Unavailable(what.into())
}

impl Conn {
    /// A cluster connection when the first URL answers as a cluster node (or several
    /// URLs are given); otherwise a single server's connection manager.
    pub async fn connect(urls: &[String], timeout: Duration) -> StoreResult<Conn> {
        let first = urls
            .first()
            .ok_or_else(|| unavailable("store.redis_urls is empty"))?;
        let client = redis::Client::open(first.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2);
        let mut single = tokio::time::timeout(
            timeout * 2,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| unavailable(format!("connecting to {first} timed out")))??;
        let info: String = tokio::time::timeout(
            timeout,
            redis::cmd("INFO").arg("cluster").query_async(&mut single),
        )
        .await
        .map_err(|_| unavailable("INFO cluster timed out"))??;
        let clustered = urls.len() > 1 || info.contains("cluster_enabled:1");
        if !clustered {
            return Ok(Conn::Single(single));
        }
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(6)
            .min_retry_wait(20)
            .max_retry_wait(500)
            .build()?;
        let cluster = tokio::time::timeout(timeout * 2, client.get_async_connection())
            .await
            .map_err(|_| unavailable("connecting to the cluster timed out"))??;
        Ok(Conn::Cluster(cluster))
    }
}

/// The shared connection and the bound on each call.
#[derive(Clone)]
pub struct Redis {
    conn: Conn,
    timeout: Duration,
}

impl Redis {
    pub fn new(conn: Conn, timeout: Duration) -> Self {
        Self { conn, timeout }
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(unavailable("a Redis call timed out")),
        }
    }

    pub async fn pipe<T: FromRedisValue>(&self, pipe: Pipeline) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut conn)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(unavailable("a Redis call timed out")),
        }
    }

    /// `EVAL` of `script` (sent whole: no script cache to lose in a failover).
    pub fn eval(script: &str, keys: &[&str]) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        cmd
    }
}
