//! The storage conformance suite — the same checks the sled and in-memory backends
//! pass — against the Redis backend on one server and on a six-node cluster.

use super::servers::Redis;
use edgequota::store::redis::open;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backend_conforms_on_one_server() {
    let Some(redis) = Redis::start(1, false) else {
        return;
    };
    let backend = open(redis.options(0)).await.expect("connects");
    edgequota::store::conformance::run(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backend_conforms_on_a_cluster_with_replicas() {
    let Some(redis) = Redis::start(6, true) else {
        return;
    };
    // One seed node is enough: the client learns the others from it.
    let mut options = redis.options(1);
    options.urls.truncate(1);
    let backend = open(options).await.expect("connects");
    assert_eq!(backend.health.backend(), "redis");
    edgequota::store::conformance::run(&backend).await;
}
