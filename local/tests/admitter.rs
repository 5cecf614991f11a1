//! What the admitter costs once a campaign is over (issue 33): a ministry licenses presale
//! after presale for years, and every replica ticks four times a second. A campaign whose
//! queue is over with nobody admitted still within their time, whose round has nothing to
//! settle and whose log has nothing pending must cost no statement of its own per tick.
//!
//! The statements are those sqlx reports (target `sqlx::query`, every statement it runs,
//! with its text), collected by a subscriber this test binary installs for its process;
//! one test runs both engines in turn, so that no other test's statements are counted
//! (`cargo test` runs a binary's tests in one process).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Every statement's text sqlx has reported in this process since the last `take`.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

impl Statements {
    /// The collector, installed once for the process.
    fn installed() -> Self {
        static ONE: OnceLock<Statements> = OnceLock::new();
        ONE.get_or_init(|| {
            let s = Statements::default();
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(s.clone()))
                .expect("this test binary's only subscriber");
            s
        })
        .clone()
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A statement's text, from the event's fields (`summary`, and `db.statement` when the
/// summary is shortened).
struct Text(String);

impl tracing::field::Visit for Text {
    fn record_str(&mut self, _: &tracing::field::Field, value: &str) {
        self.0.push_str(value);
        self.0.push(' ');
    }
    fn record_debug(&mut self, f: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if matches!(f.name(), "summary" | "db.statement") {
            self.0.push_str(&format!("{value:?} "));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn enabled(&self, m: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        m.target() == "sqlx::query"
    }
    fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut t = Text(String::new());
        e.record(&mut t);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t.0.split_whitespace().collect::<Vec<_>>().join(" "));
    }
}

/// Statements that belong to one campaign's admitter work: its queue, its round's holds,
/// its own look at its log.
fn campaigns_own(statements: &[String]) -> Vec<&String> {
    statements
        .iter()
        .filter(|t| {
            t.contains("queue_campaigns")
                || t.contains("queue_admissions")
                || t.contains("FROM holds")
                || t.contains("log_pending WHERE license_id")
                || t.contains("log_state WHERE license_id")
        })
        .collect()
}

async fn an_over_campaign_costs_no_statement_of_its_own(postgres: bool) {
    let statements = Statements::installed();
    let backend = if postgres {
        testkit::Backend::Servers
    } else {
        testkit::Backend::Embedded
    };
    // The deployment's own campaign closed an hour ago (it rests once its seed is known).
    let now = service_kit::clock::now();
    let d = local::deploy(local::Options {
        postgres_admin: postgres.then(testkit::servers::postgres_admin_url),
        redis_url: backend.redis_url(),
        citizens: 1,
        ..local::Options::new(presale::domain::NewLicense {
            opens_at: now - 7200,
            closes_at: now - 3600,
            ..local::queue_license(50, 0, 60)
        })
    })
    .await
    .expect("deployment");
    // A queue that opened a minute ago and closes in four seconds, taking holds at the
    // stub bank (so that it has a round's work too), issued once the replica runs. Nobody
    // joins: once it closes it is over, with nobody admitted and no hold.
    let now = service_kit::clock::now();
    let closes_at = now + 4;
    d.store
        .issue_license(
            &local::deploy::with_stub_bank_hold(presale::domain::NewLicense {
                license_no: format!("CLOSING-{}", rand::random::<u32>()),
                opens_at: now - 60,
                closes_at,
                ..local::queue_license(50, 0, 60)
            }),
            now,
        )
        .await
        .expect("sql")
        .expect("valid");
    // While it is open, the admitter advances it every tick (the collector sees that).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    statements.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = statements.take();
    assert!(
        open.iter()
            .filter(|t| t.contains("UPDATE queue_campaigns SET serving"))
            .count()
            >= 2,
        "an open queue is advanced every tick: {open:#?}"
    );
    // Past its close, and once its last ticks are done (its seed known, its round over):
    // a second with nothing of its own, ten seconds at most.
    let wait = (closes_at * 1000 - service_kit::clock::now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait + 500)).await;
    for _ in 0..10 {
        statements.take();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if campaigns_own(&statements.take()).is_empty() {
            break;
        }
    }
    statements.take();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let over = statements.take();
    let own = campaigns_own(&over);
    assert!(
        own.is_empty(),
        "an over campaign costs statements every tick: {own:#?}"
    );
    // The admitter still ticks: its one look for the logs with records pending.
    assert!(
        over.iter()
            .filter(|t| t.contains("log_state s WHERE EXISTS"))
            .count()
            >= 4,
        "the admitter ticks: {over:#?}"
    );
    d.stop().await;
}

/// Both engines in one test (one process: see the module's note).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_campaign_costs_no_statement_of_its_own_on_sqlite_and_postgres() {
    an_over_campaign_costs_no_statement_of_its_own(false).await;
    an_over_campaign_costs_no_statement_of_its_own(true).await;
}
