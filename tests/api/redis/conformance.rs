//! The storage conformance suite — the same checks the sled and in-memory backends
//! pass — against the Redis backend on one server and on a six-node cluster.

use super::servers::Redis;
use edgequota::store::redis::{open, RedisOptions};
use std::time::Duration;

fn options(urls: Vec<String>, wait_replicas: u32) -> RedisOptions {
    RedisOptions {
        urls,
        // Generous: the whole suite shares two cores with six Redis servers.
        timeout: Duration::from_secs(10),
        wait_replicas,
        wait_timeout: Duration::from_secs(5),
        request_retention_days: 35,
        debug_log_capacity: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backend_conforms_on_one_server() {
    let Some(redis) = Redis::start(1, false) else {
        return;
    };
    let backend = open(options(redis.urls(), 0)).await.expect("connects");
    edgequota::store::conformance::run(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backend_conforms_on_a_cluster_with_replicas() {
    let Some(redis) = Redis::start(6, true) else {
        return;
    };
    // One seed node is enough: the client learns the others from it.
    let backend = open(options(redis.urls()[..1].to_vec(), 1))
        .await
        .expect("connects");
    assert_eq!(backend.health.backend(), "redis");
    edgequota::store::conformance::run(&backend).await;
}
