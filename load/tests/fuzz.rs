//! Bad input against every page and JSON endpoint of both services, on both backends:
//! never a 5xx other than a planned 503 with Retry-After, never a dropped connection, and
//! both services ready afterwards. (`load fuzz --requests 1000000` is the long run.)

async fn fuzz(servers: bool) {
    let report = load::fuzz::local(4_000, 8, 7, servers)
        .await
        .expect("the fuzz run");
    println!("{}", report.summary());
    assert!(report.requests >= 4_000, "{report:?}");
    assert!(
        report.mutations.len() >= 10,
        "every kind of bad input was sent: {:?}",
        report.mutations
    );
    assert!(
        report.findings_total == 0,
        "{} answers were 5xx or none: {:#?}",
        report.findings_total,
        report.findings
    );
    assert!(report.ready_after, "both services ready afterwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_gets_a_server_error_embedded() {
    fuzz(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_gets_a_server_error_on_postgres_and_redis() {
    fuzz(true).await;
}
