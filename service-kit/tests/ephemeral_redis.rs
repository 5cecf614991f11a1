//! The shared counters against a Redis server of the test's own: what a hit costs the
//! server (a citizen's sign-in counts about twenty of them), and that a counter can never
//! lock a subject out for longer than its window.

use std::time::Duration;

use service_kit::ephemeral::Ephemeral;
use service_kit::keys::Keyring;
use service_kit::limit::{LimitError, Limiter};
use testkit::servers::RedisServer;

fn calls(server: &RedisServer, command: &str) -> u64 {
    server.calls(command)
}

/// A hit is one round trip of two commands (INCR and the window's PEXPIRE NX), no
/// script: the time left is read only when it is answered, on a refusal. (It was a script
/// of four: EVALSHA, INCR, PEXPIRE, PTTL on a new counter, three after.)
#[tokio::test]
async fn a_hit_under_the_limit_reads_no_ttl() {
    let server = RedisServer::start().expect("redis-server");
    let store = Ephemeral::redis(&server.url(), "t").expect("store");
    let limits = Limiter::new(store, Keyring::new(b"k", &[]));
    let window = Duration::from_secs(60);
    for _ in 0..10 {
        limits
            .hit("kind", "subject", 10, window)
            .await
            .expect("under the limit");
    }
    assert_eq!(calls(&server, "incr"), 10);
    assert_eq!(calls(&server, "pexpire"), 10);
    assert_eq!(calls(&server, "evalsha"), 0, "no script");
    assert_eq!(
        calls(&server, "pttl"),
        0,
        "no time left read under the limit"
    );
    match limits.hit("kind", "subject", 10, window).await {
        Err(LimitError::Limited { retry_after }) => {
            assert!((59..=60).contains(&retry_after), "{retry_after}")
        }
        other => panic!("the eleventh: {other:?}"),
    }
    assert_eq!(calls(&server, "pttl"), 1, "read once, for the refusal");
}

/// A counter that lost its expiry (a restore, a hand edit) is given its window again at
/// its next hit: a subject is never locked out for longer than one window.
#[tokio::test]
async fn a_counter_without_an_expiry_gets_its_window_back_at_its_next_hit() {
    let server = RedisServer::start().expect("redis-server");
    let store = Ephemeral::redis(&server.url(), "t").expect("store");
    let limits = Limiter::new(store, Keyring::new(b"k", &[]));
    let key = limits.key("kind", "subject");
    // What the store names the key: `prefix:{key}`.
    server.cli(&["SET", &format!("t:{{{key}}}"), "50"]);
    assert_eq!(server.cli(&["PTTL", &format!("t:{{{key}}}")]).trim(), "-1");
    let r = limits.hit_key(&key, 10, Duration::from_secs(2)).await;
    assert!(
        matches!(r, Err(LimitError::Limited { retry_after: 2 })),
        "{r:?}"
    );
    let ttl: i64 = server
        .cli(&["PTTL", &format!("t:{{{key}}}")])
        .trim()
        .parse()
        .expect("a number");
    assert!((1..=2000).contains(&ttl), "the window is back: {ttl} ms");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    limits
        .hit_key(&key, 10, Duration::from_secs(2))
        .await
        .expect("a new window after the old one");
}

fn reads(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_reads_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_reads_processed")
}

/// A step's counters are one round trip (issue 33): four subjects counted with one read
/// of the server's, where one by one they were four.
#[tokio::test]
async fn a_steps_counters_are_one_round_trip() {
    let server = RedisServer::start().expect("redis-server");
    let store = Ephemeral::redis(&server.url(), "t").expect("store");
    let limits = Limiter::new(store, Keyring::new(b"k", &[]));
    let window = Duration::from_secs(60);
    // The pool's connection made (and its version read), and the script loaded (the
    // server's first EVALSHA of it is answered NOSCRIPT), before counting.
    limits
        .hit_keys(&[("warm", 10, window), ("warm-too", 10, window)])
        .await
        .expect("warm");
    let keys = ["a", "b", "c", "d"];
    let asked: Vec<(&str, i64, Duration)> = keys.iter().map(|k| (*k, 10, window)).collect();
    // What reading the count costs by itself (redis-cli's own requests).
    let reading = {
        let a = reads(&server);
        reads(&server) - a
    };
    let before = reads(&server);
    let counts = limits.hit_keys(&asked).await.expect("under every limit");
    assert_eq!(counts, [1, 1, 1, 1]);
    assert_eq!(
        reads(&server) - before - reading,
        1,
        "one round trip for four counters"
    );
    // One by one, as the steps counted before, it was one a counter.
    let before = reads(&server);
    for k in ["e", "f", "g", "h"] {
        limits
            .hit_key(k, 10, window)
            .await
            .expect("under the limit");
    }
    assert_eq!(reads(&server) - before - reading, 4);
    for k in keys {
        assert_eq!(
            server.cli(&["GET", &format!("t:{{{k}}}")]).trim(),
            "1",
            "{k} counted once"
        );
        let ttl: i64 = server
            .cli(&["PTTL", &format!("t:{{{k}}}")])
            .trim()
            .parse()
            .expect("pttl");
        assert!(ttl > 0, "{k} has its window");
    }
}

/// The same store in process and on `server` (its keys under the prefix `t`): what a step's
/// counters answer must not depend on which.
fn in_process_and_on(server: &RedisServer) -> [Ephemeral; 2] {
    [
        Ephemeral::memory(),
        Ephemeral::redis(&server.url(), "t").expect("store"),
    ]
}

/// Counted together, refused as one by one: the counters after the first refusal are
/// never touched (not counted and given back: another request must never see a count
/// this one did not keep, and a request dropped between the two would keep it), those
/// before it (and the refused one) stay counted, and the refusal's Retry-After is its
/// own window's.
#[tokio::test]
async fn counted_together_refused_as_one_by_one() {
    let server = RedisServer::start().expect("redis-server");
    for store in in_process_and_on(&server) {
        let limits = Limiter::new(store.clone(), Keyring::new(b"k", &[]));
        limits
            .hit_key("full", 1, Duration::from_secs(30))
            .await
            .expect("the first");
        let asked = [
            ("before", 5, Duration::from_secs(60)),
            ("full", 1, Duration::from_secs(30)),
            ("after", 5, Duration::from_secs(60)),
            ("after-too", 5, Duration::from_secs(60)),
        ];
        match limits.hit_keys(&asked).await {
            Err((1, LimitError::Limited { retry_after })) => {
                assert!((29..=30).contains(&retry_after), "{retry_after}")
            }
            other => panic!("refused at the second: {other:?}"),
        }
        assert_eq!(store.count("before").await.expect("count"), 1);
        assert_eq!(store.count("full").await.expect("count"), 2);
        assert_eq!(store.count("after").await.expect("count"), 0, "not counted");
        assert_eq!(
            store.count("after-too").await.expect("count"),
            0,
            "not counted"
        );
    }
    for key in ["after", "after-too"] {
        assert_eq!(
            server.cli(&["EXISTS", &format!("t:{{{key}}}")]).trim(),
            "0",
            "{key} never touched"
        );
    }
    assert_eq!(calls(&server, "decr"), 0, "nothing given back");
}

/// A refusal at the first key counts nothing after it; one at the last key reads its
/// own time left (the script's answer ends with it); and a server that lost its scripts
/// (a restart, `SCRIPT FLUSH`) counts once, not twice.
#[tokio::test]
async fn refusals_at_either_end_and_a_flushed_script() {
    let server = RedisServer::start().expect("redis-server");
    for store in in_process_and_on(&server) {
        let limits = Limiter::new(store.clone(), Keyring::new(b"k", &[]));
        let minute = Duration::from_secs(60);
        limits.hit_key("first", 1, minute).await.expect("first");
        match limits
            .hit_keys(&[("first", 1, minute), ("second", 5, minute)])
            .await
        {
            Err((0, LimitError::Limited { .. })) => {}
            other => panic!("refused at the first: {other:?}"),
        }
        assert_eq!(store.count("second").await.expect("count"), 0);
        limits
            .hit_key("last", 1, Duration::from_secs(20))
            .await
            .expect("last");
        match limits
            .hit_keys(&[("other", 5, minute), ("last", 1, Duration::from_secs(20))])
            .await
        {
            Err((1, LimitError::Limited { retry_after })) => {
                assert!((19..=20).contains(&retry_after), "{retry_after}")
            }
            other => panic!("refused at the last: {other:?}"),
        }
        assert_eq!(store.count("other").await.expect("count"), 1);
    }
    server.cli(&["SCRIPT", "FLUSH"]);
    let limits = Limiter::new(
        Ephemeral::redis(&server.url(), "t").expect("store"),
        Keyring::new(b"k", &[]),
    );
    let counts = limits
        .hit_keys(&[
            ("x", 5, Duration::from_secs(60)),
            ("y", 5, Duration::from_secs(60)),
        ])
        .await
        .expect("counted");
    assert_eq!(counts, [1, 1], "counted once after the script was reloaded");
}

/// A step's counters set their window once, at their first hit: a subject hit again costs
/// one command a hit. A counter that lost its expiry is given its window at its refusal.
#[tokio::test]
async fn a_steps_counters_set_their_window_once_and_heal_at_a_refusal() {
    let server = RedisServer::start().expect("redis-server");
    let store = Ephemeral::redis(&server.url(), "t").expect("store");
    let limits = Limiter::new(store, Keyring::new(b"k", &[]));
    let minute = Duration::from_secs(60);
    let asked = [("shared", 100, minute), ("budget", 100, minute)];
    limits.hit_keys(&asked).await.expect("first");
    let set = calls(&server, "pexpire");
    assert_eq!(set, 2, "each counter's window set at its first hit");
    for _ in 0..5 {
        limits.hit_keys(&asked).await.expect("again");
    }
    assert_eq!(calls(&server, "pexpire"), set, "not again");
    for k in ["shared", "budget"] {
        let ttl: i64 = server
            .cli(&["PTTL", &format!("t:{{{k}}}")])
            .trim()
            .parse()
            .expect("pttl");
        assert!(ttl > 0, "{k} keeps its window");
    }
    // What the store names the key: `prefix:{key}`.
    server.cli(&["SET", "t:{lost}", "50"]);
    match limits
        .hit_keys(&[("other", 100, minute), ("lost", 10, Duration::from_secs(2))])
        .await
    {
        Err((1, LimitError::Limited { retry_after })) => {
            assert!((1..=2).contains(&retry_after), "{retry_after}")
        }
        other => panic!("refused at the lost counter: {other:?}"),
    }
    let ttl: i64 = server
        .cli(&["PTTL", "t:{lost}"])
        .trim()
        .parse()
        .expect("pttl");
    assert!((1..=2000).contains(&ttl), "given its window back: {ttl}");
}

/// A subject's own counter ([`Counter::Own`], issue 33) counts exactly as a shared one:
/// alone and among a step's counters, in process and on Redis, the same counts, the same
/// refusal with its window's Retry-After, the same window. On Redis its first hit is one
/// command, `SET … NX PX` (no INCR, no PEXPIRE), and one that exists is counted on.
#[tokio::test]
async fn an_own_counter_counts_as_a_shared_one_for_one_command_when_new() {
    use service_kit::ephemeral::Counter;
    let server = RedisServer::start().expect("redis-server");
    let window = Duration::from_secs(30);
    for store in in_process_and_on(&server) {
        let on_redis = matches!(store, Ephemeral::Redis(_));
        let limits = Limiter::new(store.clone(), Keyring::new(b"k", &[]));
        // Alone.
        let (incr, pexpire, set) = (
            calls(&server, "incr"),
            calls(&server, "pexpire"),
            calls(&server, "set"),
        );
        limits
            .hit_key_as("alone", 3, window, Counter::Own)
            .await
            .expect("the first");
        if on_redis {
            assert_eq!(calls(&server, "set") - set, 1, "one SET");
            assert_eq!(calls(&server, "incr") - incr, 0, "no INCR");
            assert_eq!(calls(&server, "pexpire") - pexpire, 0, "no PEXPIRE");
            let ttl: i64 = server
                .cli(&["PTTL", "t:{alone}"])
                .trim()
                .parse()
                .expect("pttl");
            assert!((29_000..=30_000).contains(&ttl), "its window: {ttl}");
        }
        for _ in 0..2 {
            limits
                .hit_key_as("alone", 3, window, Counter::Own)
                .await
                .expect("within the limit");
        }
        assert_eq!(store.count("alone").await.expect("count"), 3);
        match limits.hit_key_as("alone", 3, window, Counter::Own).await {
            Err(LimitError::Limited { retry_after }) => {
                assert!((29..=30).contains(&retry_after), "{retry_after}")
            }
            other => panic!("the fourth is refused: {other:?}"),
        }
        // Among a step's counters, first and last; a refusal at an own counter.
        limits
            .hit_key("shared", 10, window)
            .await
            .expect("the shared one exists");
        let asked = [
            ("mine", 1, window, Counter::Own),
            ("shared", 10, window, Counter::Shared),
            ("mine-too", 5, Duration::from_secs(60), Counter::Own),
        ];
        let counts = limits.hit_keys_as(&asked).await.expect("under every limit");
        assert_eq!(counts, [1, 2, 1]);
        match limits.hit_keys_as(&asked).await {
            Err((0, LimitError::Limited { retry_after })) => {
                assert!((29..=30).contains(&retry_after), "{retry_after}")
            }
            other => panic!("refused at the first: {other:?}"),
        }
        assert_eq!(store.count("mine").await.expect("count"), 2);
        assert_eq!(store.count("shared").await.expect("count"), 2, "untouched");
        assert_eq!(
            store.count("mine-too").await.expect("count"),
            1,
            "untouched"
        );
    }
    // Each its own window (the script's arguments are three a key).
    for (key, window_ms) in [("mine", 30_000), ("mine-too", 60_000), ("shared", 30_000)] {
        let ttl: i64 = server
            .cli(&["PTTL", &format!("t:{{{key}}}")])
            .trim()
            .parse()
            .expect("pttl");
        assert!(
            (window_ms - 2_000..=window_ms).contains(&ttl),
            "{key} has its window: {ttl}"
        );
    }
}

/// An own counter that lost its expiry (a restore, a hand edit) gets its window back, as
/// a shared one does: at its next hit alone, at its refusal among a step's counters. No
/// subject is refused for longer than one window.
#[tokio::test]
async fn an_own_counter_without_an_expiry_gets_its_window_back() {
    use service_kit::ephemeral::Counter;
    let server = RedisServer::start().expect("redis-server");
    let store = Ephemeral::redis(&server.url(), "t").expect("store");
    let limits = Limiter::new(store, Keyring::new(b"k", &[]));
    let window = Duration::from_secs(2);
    for key in ["alone", "among"] {
        server.cli(&["SET", &format!("t:{{{key}}}"), "50"]);
    }
    assert!(limits
        .hit_key_as("alone", 10, window, Counter::Own)
        .await
        .is_err());
    let asked = [
        ("other", 10, window, Counter::Shared),
        ("among", 10, window, Counter::Own),
    ];
    assert!(limits.hit_keys_as(&asked).await.is_err());
    for key in ["alone", "among"] {
        let ttl: i64 = server
            .cli(&["PTTL", &format!("t:{{{key}}}")])
            .trim()
            .parse()
            .expect("pttl");
        assert!((1..=2_000).contains(&ttl), "{key}: its window again, {ttl}");
    }
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    limits
        .hit_key_as("alone", 10, window, Counter::Own)
        .await
        .expect("a window later, counted afresh");
    limits
        .hit_keys_as(&asked)
        .await
        .expect("a window later, counted afresh");
}
