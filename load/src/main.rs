//! `load`: the surge replayer's command line. Thin: parses arguments, calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use load::curve::{Curve, Shape};
use load::http::{Http, Targets};
use load::journey::{Codes, Journey};
use load::record::Recorder;
use load::run::{Mix, Plan};
use url::Url;

/// mimalloc, the services' own allocator: the deployments this binary runs in process (the
/// sweep's, the demo's) are then measured and run as the services are deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "load",
    version,
    about = "emta load: replays a registration surge end to end and reports whether it held"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a surge: arrivals on a curve, each a citizen walking the real journey.
    Run(Box<RunArgs>),
    /// List the named scenarios.
    Scenarios,
    /// Bad input at scale: a local deployment (the stubs, the IdP, presale, a campaign)
    /// sent malformed forms, oversized fields, wrong content types, broken cookies,
    /// replayed CSRF tokens, odd methods and paths on every page and JSON endpoint. Fails
    /// on any 5xx other than a 503 with Retry-After, or a dropped connection.
    Fuzz {
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// On PostgreSQL and Redis (EMTA_TEST_POSTGRES_URL, EMTA_TEST_REDIS_URL; default
        /// the local servers) rather than SQLite and in-process stores.
        #[arg(long)]
        servers: bool,
        #[arg(long, default_value = "load-fuzz.json")]
        out: PathBuf,
    },
    /// Find the largest arrival rate one replica of each service holds: an in-process
    /// deployment on PostgreSQL and Redis, then plateaus of rising rates until one does
    /// not hold (every step's p99 under the limit, no errors but planned sold-out).
    Sweep {
        #[arg(
            long,
            env = "EMTA_TEST_POSTGRES_URL",
            default_value = testkit::servers::DEFAULT_POSTGRES_URL
        )]
        postgres: String,
        #[arg(
            long,
            env = "EMTA_TEST_REDIS_URL",
            default_value = testkit::servers::DEFAULT_REDIS_URL
        )]
        redis: String,
        /// Arrival rates to try, per second, in order.
        #[arg(long, value_delimiter = ',', default_value = "10,20,40,60,80,100,120")]
        rates: Vec<f64>,
        /// Seconds of each plateau.
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
        /// The IdP's proof-of-work difficulty (citizens' devices pay it, and here the load
        /// tool does, on the same cores as the servers).
        #[arg(long, default_value_t = 8)]
        pow_difficulty: u8,
        #[arg(long, default_value_t = 500.0)]
        p99_limit_ms: f64,
        /// Keep going past the first rate that does not hold.
        #[arg(long)]
        all: bool,
        /// Leave out the bank step (the campaign asks no down payment hold), to compare.
        #[arg(long)]
        no_bank: bool,
        /// Units for sale per arrival: 0.5, half of them buy (selling out is part of the
        /// run); 1 for an overload run, where a queue longer than the units would make
        /// the run's end wait for admitted citizens' time to lapse (600 s).
        #[arg(long, default_value_t = 0.5)]
        units_per_arrival: f64,
        /// The campaign's admission rate per minute (the ministry sets it to what the
        /// database absorbs; the queue holds everyone else).
        #[arg(long, default_value_t = 6000)]
        admission_per_min: i64,
        /// The presale replica's SQL pool (its `EMTA_DB_MAX_CONNECTIONS`).
        #[arg(long, default_value_t = local::PRESALE_DB_CONNECTIONS)]
        presale_db_connections: u32,
        /// The presale replica's admission budget, as `EMTA_MAX_INFLIGHT` and
        /// `EMTA_QUEUE_BUDGET_MS` (`N,MS`; 0 turns it off); the service's defaults if unset.
        #[arg(long, value_parser = parse_admission)]
        presale_admission: Option<(usize, u64)>,
        /// The IdP's admission budget, likewise.
        #[arg(long, value_parser = parse_admission)]
        idp_admission: Option<(usize, u64)>,
        #[arg(long, default_value = "load-sweep")]
        out: PathBuf,
    },
    /// Rehearse the opening with faults, on this machine: the tool starts PostgreSQL, Redis
    /// (append-only file, a replica), the stubs, IdP and presale replicas as processes, runs a
    /// plateau of arrivals with a fault schedule (by default a Redis kill -9, a PostgreSQL
    /// crash-restart and a presale replica kill -9), and checks the ledger: nothing
    /// acknowledged lost, nothing issued twice, no admission out of order, no oversell.
    Rehearse {
        /// Arrivals per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
        /// A fault schedule (`SECONDS FAULT` a line; faults: redis-crash, redis-wipe,
        /// redis-failover, redis-partition, redis-latency, postgres-restart,
        /// postgres-partition, postgres-latency, presale-crash, presale-clock-skew,
        /// idp-crash, or `run COMMAND`).
        #[arg(long)]
        faults: Option<PathBuf>,
        /// The presale binary the replicas run (default: beside this one).
        #[arg(long)]
        presale_binary: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        presale_replicas: usize,
        /// The idp binary the IdP replicas run (default: beside this one); 0 replicas run
        /// the IdP in this process instead (then `idp-crash` cannot be injected).
        #[arg(long)]
        idp_binary: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        idp_replicas: usize,
        #[arg(long, default_value_t = 6000)]
        admission_per_min: i64,
        #[arg(long, default_value_t = 8)]
        pow_difficulty: u8,
        #[arg(long, default_value_t = 500.0)]
        p99_limit_ms: f64,
        /// The presale replicas' admission budget (`N,MS`, as for `load sweep`); the
        /// service's defaults if unset.
        #[arg(long, value_parser = parse_admission)]
        presale_admission: Option<(usize, u64)>,
        /// The IdP replicas' admission budget, likewise.
        #[arg(long, value_parser = parse_admission)]
        idp_admission: Option<(usize, u64)>,
        #[arg(long, default_value = "load-rehearsal")]
        out: PathBuf,
    },
    /// Serve the stub civil registry, mobile-ownership service and SMS gateway over
    /// synthetic citizens; point the IdP's EMTA_REGISTRY_URL, EMTA_OWNERSHIP_URL and
    /// EMTA_SMS_URL at it.
    Stubs {
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// How many synthetic citizens.
        #[arg(long, default_value_t = 100_000)]
        citizens: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the citizens (JSON) for the replayer.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// 100 citizens over 20 s, no mixes: does the path work at all.
    Smoke,
    /// Against the README's demo (`local demo`): an opening-day spike of ~100 citizens
    /// with every mix, read codes from the demo's outbox.
    Demo,
    /// An opening at 200 arrivals/s with every mix (~3 800 citizens in two minutes).
    Opening,
    /// 5 million registrations in a day, 10% in the first ten minutes, replayed at a
    /// thousandth and sixty times faster (5 000 citizens in 24 minutes).
    NationalDay,
}

struct Preset {
    curve: Curve,
    mix: Mix,
    demo: bool,
}

fn everyday_mix() -> Mix {
    Mix {
        returning: 0.1,
        give_up: 0.05,
        patience_secs: 300.0,
        retry: 0.8,
        wrong_code: 0.05,
        second_device: 0.02,
    }
}

fn national_day() -> Curve {
    // Per minute: 500 000 in the first ten minutes, the other 4.5 million decaying over the
    // rest of the day.
    let rest = 24 * 60 - 10;
    let tau = 180.0f64;
    let norm: f64 = (0..rest).map(|m| (-(m as f64) / tau).exp()).sum();
    let mut counts = vec![50_000.0; 10];
    counts.extend((0..rest).map(|m| 4_500_000.0 * (-(m as f64) / tau).exp() / norm));
    Curve {
        bucket_secs: 60.0,
        counts,
    }
}

impl Scenario {
    fn preset(self) -> anyhow::Result<Preset> {
        Ok(match self {
            Self::Smoke => Preset {
                curve: Curve::shape(Shape::Plateau, 5.0, 20.0)?,
                mix: Mix::default(),
                demo: false,
            },
            Self::Demo => Preset {
                curve: Curve::shape(Shape::Opening, 10.0, 60.0)?,
                mix: Mix {
                    patience_secs: 600.0,
                    ..everyday_mix()
                },
                demo: true,
            },
            Self::Opening => Preset {
                curve: Curve::shape(Shape::Opening, 200.0, 120.0)?,
                mix: everyday_mix(),
                demo: false,
            },
            Self::NationalDay => Preset {
                curve: national_day().scaled(0.001).compressed(60.0),
                mix: everyday_mix(),
                demo: false,
            },
        })
    }
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "smoke")]
    scenario: Scenario,
    /// The presale service's public URL.
    #[arg(long)]
    presale: Option<Url>,
    /// The storefront (manufacturer id) citizens register at.
    #[arg(long, default_value = "saipa")]
    storefront: String,
    /// Where returning citizens signed in before the surge (another manufacturer).
    #[arg(long)]
    sso_from: Option<String>,
    /// The campaign id; by default the storefront's first.
    #[arg(long)]
    campaign: Option<String>,
    /// Presale replicas behind the public URL; requests rotate over them.
    #[arg(long = "presale-replica")]
    presale_replicas: Vec<Url>,
    /// The IdP's issuer URL, when requests to it should rotate over --idp-replica.
    #[arg(long)]
    issuer: Option<Url>,
    #[arg(long = "idp-replica")]
    idp_replicas: Vec<Url>,
    /// Synthetic citizens (JSON, as `load stubs --out` or the demo writes them).
    #[arg(long)]
    citizens: Option<PathBuf>,
    /// Where SMS codes are read: the stub SMS gateway's /outbox.
    #[arg(long)]
    outbox: Option<Url>,

    /// A built-in shape instead of the scenario's curve.
    #[arg(long, value_enum)]
    shape: Option<Shape>,
    /// Peak arrivals per second of --shape.
    #[arg(long, default_value_t = 10.0)]
    peak: f64,
    /// Seconds of --shape.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// A recorded arrival series (CSV: one bucket a line, the last column the count).
    #[arg(long, conflicts_with = "shape")]
    csv: Option<PathBuf>,
    /// Seconds per line of --csv (60 for a per-minute series).
    #[arg(long, default_value_t = 1.0)]
    csv_bucket_secs: f64,
    /// Multiply arrivals (0.01 replays a hundredth of the crowd).
    #[arg(long)]
    scale: Option<f64>,
    /// Replay this many times faster.
    #[arg(long)]
    compress: Option<f64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,

    #[command(flatten)]
    mix: MixFlags,

    /// Multiplies the waiting page's poll intervals (1 = as browsers poll).
    #[arg(long, default_value_t = 1.0)]
    poll_scale: f64,
    /// A citizen neither admitted nor closed out after this long counts as failed.
    #[arg(long, default_value_t = 3600)]
    max_wait_secs: u64,
    /// The latency every step's p99 must stay under for the run to hold.
    #[arg(long, default_value_t = 500.0)]
    p99_limit_ms: f64,
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Do not send X-Forwarded-For (by default every citizen has an address of their own,
    /// which a deployment that trusts its ingress uses for per-IP limits).
    #[arg(long)]
    no_spoof_ips: bool,
    /// A fault schedule (one `SECONDS FAULT` a line; `run COMMAND` runs the operator's
    /// hook): see the README's "Rehearsing the opening".
    #[arg(long)]
    faults: Option<PathBuf>,
    /// After the last arrival, journeys still going after this long are ended and counted
    /// failed, so a run always ends (default: --max-wait-secs plus two minutes).
    #[arg(long)]
    finish_within_secs: Option<u64>,
    /// Do not check the acknowledgements against the campaign's transparency log after
    /// the run (the ledger: 0 lost, 0 issued twice, 0 out of order, 0 oversold).
    #[arg(long)]
    no_ledger: bool,
    /// The IdP's database (read only), so the ledger also checks every acknowledged
    /// sign-in against the grants and refresh tokens the IdP answered; the demo's by
    /// default with `--scenario demo`. Without it, tokens are not checked.
    #[arg(long)]
    idp_database_url: Option<String>,
    /// Report path without extension: writes .json and .html.
    #[arg(long, default_value = "load-report")]
    out: PathBuf,
}

/// Overrides of the scenario's mix (shares between 0 and 1).
#[derive(Args)]
struct MixFlags {
    #[arg(long)]
    returning: Option<f64>,
    #[arg(long)]
    give_up: Option<f64>,
    #[arg(long)]
    patience_secs: Option<f64>,
    #[arg(long)]
    retry: Option<f64>,
    #[arg(long)]
    wrong_code: Option<f64>,
    #[arg(long)]
    second_device: Option<f64>,
}

fn share(name: &str, v: Option<f64>, default: f64) -> anyhow::Result<f64> {
    let v = v.unwrap_or(default);
    anyhow::ensure!(
        (0.0..=1.0).contains(&v),
        "--{name} is a share between 0 and 1, not {v}"
    );
    Ok(v)
}

async fn run(a: RunArgs) -> anyhow::Result<bool> {
    let preset = a.scenario.preset()?;
    let faults = match &a.faults {
        Some(path) => load::faults::read(path)?,
        None => Vec::new(),
    };
    let mut curve = match (&a.csv, a.shape) {
        (Some(path), _) => Curve::from_csv(&std::fs::read_to_string(path)?, a.csv_bucket_secs)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        (None, Some(shape)) => Curve::shape(shape, a.peak, a.duration)?,
        (None, None) => preset.curve,
    };
    if let Some(s) = a.scale {
        anyhow::ensure!(s > 0.0, "--scale must be positive");
        curve = curve.scaled(s);
    }
    if let Some(c) = a.compress {
        anyhow::ensure!(c > 0.0, "--compress must be positive");
        curve = curve.compressed(c);
    }
    let m = &a.mix;
    let mix = Mix {
        returning: share("returning", m.returning, preset.mix.returning)?,
        give_up: share("give-up", m.give_up, preset.mix.give_up)?,
        patience_secs: m.patience_secs.unwrap_or(preset.mix.patience_secs).max(0.0),
        retry: share("retry", m.retry, preset.mix.retry)?,
        wrong_code: share("wrong-code", m.wrong_code, preset.mix.wrong_code)?,
        second_device: share("second-device", m.second_device, preset.mix.second_device)?,
    };
    let demo = preset.demo;
    let presale = match (a.presale, demo) {
        (Some(u), _) => u,
        (None, true) => Url::parse("http://localhost:8500")?,
        (None, false) => anyhow::bail!("--presale URL is required (or --scenario demo)"),
    };
    let citizens_path = match (a.citizens, demo) {
        (Some(p), _) => p,
        (None, true) => PathBuf::from(".emta/idp/citizens.json"),
        (None, false) => anyhow::bail!("--citizens FILE is required: the synthetic citizens the deployment's registry knows (load stubs --out FILE)"),
    };
    let citizens: Vec<testkit::FixtureCitizen> = serde_json::from_slice(
        &std::fs::read(&citizens_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", citizens_path.display()))?,
    )?;
    let outbox = match (a.outbox, demo) {
        (Some(u), _) => u,
        (None, true) => Url::parse("http://localhost:8300/outbox")?,
        (None, false) => anyhow::bail!("--outbox URL is required: where the stub SMS gateway shows codes (http://STUBS/outbox)"),
    };
    let idp_database = a
        .idp_database_url
        .clone()
        .or_else(|| demo.then(|| "sqlite://.emta/idp/idp.db?mode=rw".to_owned()));
    let sso_from = a
        .sso_from
        .or_else(|| demo.then(|| "iran-khodro".to_owned()));
    let target = serde_json::json!({
        "presale": presale.as_str(),
        "storefront": a.storefront,
        "presale_replicas": a.presale_replicas.iter().map(Url::as_str).collect::<Vec<_>>(),
        "issuer": a.issuer.as_ref().map(Url::as_str),
        "idp_replicas": a.idp_replicas.iter().map(Url::as_str).collect::<Vec<_>>(),
        "sso_from": sso_from,
    });
    let http = Http::new(
        Targets {
            presale,
            presale_replicas: a.presale_replicas,
            idp_replicas: a.idp_replicas,
            issuer: a.issuer,
        },
        Duration::from_secs(a.timeout_secs),
    )?;
    let journey = Journey {
        http,
        rec: std::sync::Arc::new(Recorder::new(std::time::Instant::now())),
        codes: Codes::Http(outbox),
        storefront: a.storefront,
        campaign: a.campaign,
        poll_scale: a.poll_scale,
        max_wait: Duration::from_secs(a.max_wait_secs),
        spoof_ips: !a.no_spoof_ips,
    };
    let preset_name = a
        .scenario
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    // The curve's own name when the scenario's was replaced.
    let name = match (&a.csv, a.shape) {
        (Some(path), _) => format!("{} ({preset_name} mix)", path.display()),
        (None, Some(shape)) => format!(
            "{} {}/s over {} s ({preset_name} mix)",
            shape
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default(),
            a.peak,
            a.duration
        ),
        (None, None) => preset_name,
    };
    eprintln!(
        "{name}: {:.0} arrivals over {:.0} s, peak {:.1}/s; Ctrl-C stops with a partial report",
        curve.total(),
        curve.duration_secs(),
        curve.peak_per_sec()
    );
    let national_ids: Vec<String> = citizens.iter().map(|c| c.national_id.clone()).collect();
    let plan = Plan {
        scenario: name,
        curve,
        seed: a.seed,
        mix,
        citizens,
        sso_from,
        p99_limit_ms: a.p99_limit_ms,
        progress: true,
        target,
        faults,
        injector: None,
        finish_within: Duration::from_secs(a.finish_within_secs.unwrap_or(a.max_wait_secs + 120)),
    };
    let ledger_at = journey.http.targets().presale.to_string();
    let mut report = load::run::run(plan, journey, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    if !a.no_ledger {
        if let Some(c) = report.campaign.clone() {
            eprintln!(
                "checking the ledger against the transparency log of {}",
                c.id
            );
            let mut l =
                // Against a deployment the tool does not own it holds no secret: the
                // tickets are checked by number and by citizen, not by holder.
                load::ledger::check(&ledger_at, &c.id, &report.acks, None, Duration::from_secs(30))
                    .await?;
            if let Some(url) = &idp_database {
                eprintln!("checking the sign-ins against the IdP's grants");
                let db = idp::store::Db::connect(url, 2)
                    .await
                    .map_err(|e| anyhow::anyhow!("the IdP's database: {e}"))?;
                let checked =
                    load::ledger::check_tokens(&mut l, &report.acks, &national_ids, &db).await;
                db.close().await;
                checked?;
            }
            report = report.with_ledger(l);
        }
    }
    let (json, page) = load::run::write(&report, &a.out)?;
    println!("{}", report.summary());
    println!("report: {} and {}", json.display(), page.display());
    Ok(report.verdict.held)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_logging();
    match Cli::parse().command {
        Command::Run(a) => {
            if !run(*a).await? {
                std::process::exit(2);
            }
        }
        Command::Sweep {
            postgres,
            redis,
            rates,
            secs,
            pow_difficulty,
            p99_limit_ms,
            all,
            no_bank,
            units_per_arrival,
            admission_per_min,
            presale_db_connections,
            presale_admission,
            idp_admission,
            out,
        } => {
            let table = load::sweep::run(load::sweep::Sweep {
                postgres_admin: postgres,
                redis_url: redis,
                rates,
                secs,
                pow_difficulty,
                p99_limit_ms,
                out,
                all,
                no_bank,
                units_per_arrival,
                admission_per_min,
                presale_db_connections,
                presale_admission,
                idp_admission,
            })
            .await?;
            println!("{table}");
        }
        Command::Rehearse {
            rate,
            secs,
            faults,
            presale_binary,
            presale_replicas,
            idp_binary,
            idp_replicas,
            admission_per_min,
            pow_difficulty,
            p99_limit_ms,
            presale_admission,
            idp_admission,
            out,
        } => {
            let faults = match &faults {
                Some(path) => load::faults::read(path)?,
                None => load::rehearsal::default_schedule(secs),
            };
            let presale_binary = service_binary("presale", presale_binary)?;
            let idp_binary = match idp_replicas {
                0 => None,
                _ => Some(service_binary("idp", idp_binary)?),
            };
            let report = load::rehearsal::run(load::rehearsal::Rehearsal {
                rate,
                secs,
                faults,
                presale_binary,
                presale_replicas,
                idp_binary,
                idp_replicas,
                units: None,
                admission_per_min,
                pow_difficulty,
                p99_limit_ms,
                presale_admission,
                idp_admission,
                progress: true,
                seed: 1,
            })
            .await?;
            let (json, page) = load::run::write(&report, &out)?;
            println!("{}", report.summary());
            println!("report: {} and {}", json.display(), page.display());
            if !report.ledger.as_ref().is_some_and(|l| l.holds()) {
                std::process::exit(2);
            }
        }
        Command::Fuzz {
            requests,
            concurrency,
            seed,
            servers,
            out,
        } => {
            let report = load::fuzz::local(requests, concurrency, seed, servers).await?;
            std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
            println!("{}", report.summary());
            println!("report: {}", out.display());
            if !report.holds() {
                std::process::exit(2);
            }
        }
        Command::Scenarios => {
            for s in Scenario::value_variants() {
                if let Some(v) = s.to_possible_value() {
                    let p = s.preset()?;
                    println!(
                        "{:<13} {:>7.0} arrivals over {:>5.0} s, peak {:>6.1}/s  {}",
                        v.get_name(),
                        p.curve.total(),
                        p.curve.duration_secs(),
                        p.curve.peak_per_sec(),
                        v.get_help().map(|h| h.to_string()).unwrap_or_default()
                    );
                }
            }
        }
        Command::Stubs {
            listen,
            citizens,
            seed,
            out,
        } => {
            let (addr, list, handle) = load::stubs::serve(
                listen,
                citizens,
                seed,
                out.as_deref(),
                service_kit::shutdown::shutdown_signal(),
            )
            .await?;
            println!(
                "stub services on http://{addr} for {} synthetic citizens",
                list.len()
            );
            println!("  EMTA_REGISTRY_URL=http://{addr} EMTA_OWNERSHIP_URL=http://{addr} EMTA_SMS_URL=http://{addr}");
            println!("  codes sent: GET http://{addr}/outbox?to=09…");
            handle.await?;
        }
    }
    Ok(())
}

/// A service's binary: `given`, or the one of that name beside this one; it must exist.
fn service_binary(name: &str, given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join(name))
            .ok_or_else(|| anyhow::anyhow!("--{name}-binary is required"))?,
    };
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it (cargo build --release -p {name}) or give --{name}-binary",
        path.display()
    );
    Ok(path)
}

/// `N,MS`: an admission budget of N requests in flight, each waiting at most MS for room.
fn parse_admission(s: &str) -> Result<(usize, u64), String> {
    let (n, ms) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected N,MS (e.g. 256,100)"))?;
    let n = n.trim().parse().map_err(|e| format!("{n:?}: {e}"))?;
    let ms = ms.trim().parse().map_err(|e| format!("{ms:?}: {e}"))?;
    Ok((n, ms))
}

#[cfg(test)]
mod tests {
    use super::parse_admission;

    #[test]
    fn an_admission_budget_is_two_numbers() {
        assert_eq!(parse_admission("64,100"), Ok((64, 100)));
        assert_eq!(parse_admission(" 0 , 5 "), Ok((0, 5)));
        for bad in ["64", "", "a,1", "1,b", "-1,100", "1,2,3"] {
            assert!(parse_admission(bad).is_err(), "{bad:?} is refused");
        }
    }
}
