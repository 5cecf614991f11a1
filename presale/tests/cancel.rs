//! A request cancelled while its transaction's BEGIN is in flight (a citizen's browser
//! that hangs up, a timeout, a shed request) must not leave its pooled connection inside
//! that transaction: the next borrower's statements would run in it, hold its locks, and
//! be lost when the connection closes. sqlx 0.8.6 does leave it so on PostgreSQL
//! (transact-rs/sqlx#4393, fixed upstream after the last release); a fault rehearsal found
//! it as "citizen vanished after upsert" and "there is already a transaction in progress".

use std::future::Future;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cancelled_during_begin_leaves_no_open_transaction_behind() {
    let db = testkit::Backend::Servers.database("cancel").await;
    // One connection, so every borrower gets the one a cancelled BEGIN used.
    let pool = service_kit::sql::connect_pool(&db.url, 1)
        .await
        .expect("pool");
    // Sees what is committed, from another pool.
    let monitor = service_kit::sql::connect_pool(&db.url, 1)
        .await
        .expect("monitor");
    sqlx::query("CREATE TABLE cancel_probe (v BIGINT NOT NULL)")
        .execute(&monitor)
        .await
        .expect("table");
    let mut lost = 0;
    for i in 0..1500u64 {
        // Polled a few times, then dropped: cancelled at a different point each time,
        // some with BEGIN sent and its answer not yet read.
        {
            let mut begin = Box::pin(service_kit::sql::begin(&pool));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for _ in 0..(1 + i % 12) {
                if begin.as_mut().poll(&mut cx).is_ready() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(i * 37 % 400));
            }
        }
        // The next borrower writes, outside any transaction of its own: the write must be
        // committed, visible to anyone.
        sqlx::query("INSERT INTO cancel_probe (v) VALUES ($1)")
            .bind(i as i64)
            .execute(&pool)
            .await
            .expect("insert");
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM cancel_probe WHERE v = $1")
            .bind(i as i64)
            .fetch_one(&monitor)
            .await
            .expect("select");
        if seen == 0 {
            lost += 1;
            // Out of the stale transaction again, so each try counts once.
            let _ = sqlx::query("ROLLBACK").execute(&pool).await;
        }
    }
    assert_eq!(
        lost, 0,
        "{lost} of 1500 writes after a cancelled BEGIN ran inside its transaction, never committed"
    );
}
