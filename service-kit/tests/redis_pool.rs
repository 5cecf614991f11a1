//! The Redis pool against a Redis server of the test's own: a connection in steady use is
//! handed out without a round trip of its own, and one that broke is never handed out
//! again.

use redis::AsyncCommands;
use service_kit::redis::RedisPool;
use testkit::servers::RedisServer;

fn calls(server: &RedisServer, command: &str) -> u64 {
    server.calls(command)
}

/// Every request of a surge takes a connection; a PING (and UNWATCH) on every checkout,
/// deadpool-redis's recycling, was half of the Redis commands a citizen cost (100 of 197
/// in `load sweep`). A connection used within the last second is handed out as it is.
#[tokio::test]
async fn a_connection_in_steady_use_is_handed_out_without_a_ping() {
    let server = RedisServer::start().expect("redis-server");
    let pool = RedisPool::new(&server.url()).expect("pool");
    for i in 0..200 {
        let mut c = pool.get().await.expect("connection");
        let _: () = c.set("k", i).await.expect("SET");
    }
    let pings = calls(&server, "ping");
    assert!(pings <= 2, "{pings} PINGs for 200 checkouts");
    assert_eq!(calls(&server, "set"), 200);
}

/// Connections whose server went away (kill -9 and a restart): the first request to
/// find out fails, and every other connection is checked at its next checkout, so the
/// requests after it are served (three connections in the pool: one failure, not three).
#[tokio::test]
async fn a_connection_that_broke_is_not_handed_out_again() {
    let mut server = RedisServer::start().expect("redis-server");
    let pool = RedisPool::new(&server.url()).expect("pool");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = pool.get().await.expect("connection");
        let _: () = c.set("k", 1).await.expect("SET");
        held.push(c);
    }
    drop(held);
    server.crash_and_restart(true).expect("restart");
    let mut failures = 0;
    for _ in 0..20 {
        let mut c = pool.get().await.expect("connection");
        match c.get::<_, Option<i64>>("k").await {
            Ok(v) => {
                assert_eq!(v, Some(1), "the append-only file kept it");
                break;
            }
            Err(_) => failures += 1,
        }
    }
    assert!(
        failures <= 1,
        "{failures} requests failed on a dead connection"
    );
    let mut c = pool.get().await.expect("connection");
    let v: Option<i64> = c.get("k").await.expect("GET after the restart");
    assert_eq!(v, Some(1));
}
