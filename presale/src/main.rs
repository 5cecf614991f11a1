//! `presale`: the presale service's command line. Thin: parses arguments, calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use presale::license::{Exclusion, NewLicense, PresaleKind, Selection};
use presale::service::{Config, Service, StorefrontConfig};

/// mimalloc, as in the IdP: allocation-heavy request handling under a surge.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "presale",
    version,
    about = "emta presale: storefronts, fair queue, applications"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole system locally on embedded defaults, with demo data: the IdP, two
    /// manufacturers' storefronts and one licensed campaign opening a few minutes later.
    Demo {
        #[arg(long, default_value = ".emta")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8400)]
        idp_port: u16,
        #[arg(long, default_value_t = 8500)]
        port: u16,
        /// Minutes until the demo campaign opens.
        #[arg(long, default_value_t = 3)]
        opens_in: i64,
    },
    /// Licenses outside the console.
    License {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://emta-presale.db?mode=rwc"
        )]
        database_url: String,
        #[command(subcommand)]
        action: LicenseAction,
    },
    /// Ministry staff accounts.
    Staff {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://emta-presale.db?mode=rwc"
        )]
        database_url: String,
        #[command(subcommand)]
        action: StaffAction,
    },
    /// Serve the presale service.
    Serve {
        #[arg(long, env = "EMTA_PRESALE_LISTEN", default_value = "127.0.0.1:8500")]
        listen: std::net::SocketAddr,
        #[arg(
            long,
            env = "EMTA_PRESALE_URL",
            default_value = "http://localhost:8500"
        )]
        base_url: String,
        #[arg(long, env = "EMTA_ISSUER", default_value = "http://localhost:8400")]
        issuer: String,
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://emta-presale.db?mode=rwc"
        )]
        database_url: String,
        #[arg(long, env = "REDIS_URL", default_value = "")]
        redis_url: String,
        #[arg(long, env = "EMTA_REDIS_PREFIX", default_value = "emta")]
        redis_prefix: String,
        #[arg(long, env = "EMTA_SECRET_KEY")]
        secret_key: String,
        /// JSON file: [{"id","name","name_fa","client_secret"}], one per manufacturer.
        #[arg(long, env = "EMTA_STOREFRONTS_FILE")]
        storefronts: PathBuf,
        /// Requests per second one IP may make to this replica (per-replica, governor).
        #[arg(long, env = "EMTA_IP_PER_SEC", default_value_t = 50)]
        ip_per_sec: u32,
        /// Take the client IP from the rightmost X-Forwarded-For entry (behind an ingress).
        #[arg(long, env = "EMTA_TRUST_FORWARDED_FOR", default_value_t = false)]
        trust_forwarded_for: bool,
        /// On SIGTERM, seconds to keep serving with readiness false before closing.
        #[arg(long, env = "EMTA_DRAIN_SECS", default_value_t = 0)]
        drain_secs: u64,
    },
}

#[derive(Subcommand)]
enum LicenseAction {
    /// Issue a license from a JSON file (bootstrap, scripted test deployments). Validated
    /// like the console's form and written to the audit log as `cli:<actor>`; the console
    /// with TOTP is the way for day-to-day issuing.
    Issue {
        /// The license (NewLicense fields; times in Unix seconds).
        #[arg(long)]
        file: PathBuf,
        /// Who issues it, for the audit log.
        #[arg(long)]
        actor: String,
    },
}

#[derive(Subcommand)]
enum StaffAction {
    /// Create a staff account (the first one included). The password is read from
    /// EMTA_STAFF_PASSWORD; prints the TOTP enrolment URI and QR code (SVG file).
    Add {
        #[arg(long)]
        username: String,
        /// issuer or auditor.
        #[arg(long)]
        role: String,
        #[arg(long, env = "EMTA_STAFF_PASSWORD", hide_env_values = true)]
        password: String,
        /// Where to write the enrolment QR code.
        #[arg(long, default_value = "totp-enrolment.svg")]
        qr_out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    idp::telemetry::init_logging();
    match Cli::parse().command {
        Command::Serve {
            listen,
            base_url,
            issuer,
            database_url,
            redis_url,
            redis_prefix,
            secret_key,
            storefronts,
            ip_per_sec,
            trust_forwarded_for,
            drain_secs,
        } => {
            let storefronts: Vec<StorefrontConfig> =
                serde_json::from_slice(&std::fs::read(&storefronts)?)?;
            let cfg = Config {
                listen,
                base_url,
                issuer,
                database_url,
                redis_url,
                redis_prefix,
                secret_key,
                storefronts,
                ip_per_sec,
                trust_forwarded_for,
                drain_secs,
            };
            let service = Service::build(cfg).await?;
            tracing::info!(addr = %service.addr()?, "emta presale listening");
            service
                .run_until_stopped(idp::app::shutdown_signal())
                .await?;
        }
        Command::Demo {
            dir,
            idp_port,
            port,
            opens_in,
        } => demo(dir, idp_port, port, opens_in).await?,
        Command::License {
            database_url,
            action: LicenseAction::Issue { file, actor },
        } => {
            let license: NewLicense = serde_json::from_slice(&std::fs::read(&file)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let store = presale::applications::Store::connect(&database_url, 2).await?;
            store.migrate().await?;
            let now = idp::now();
            let id = store
                .issue_license(&license, now)
                .await?
                .map_err(|e| anyhow::anyhow!("license refused: {e}"))?;
            store
                .audit(
                    now,
                    &format!("cli:{actor}"),
                    "license.issue",
                    &id,
                    &format!(
                        "{} {} units={}",
                        license.license_no, license.model, license.units
                    ),
                )
                .await?;
            println!("{id}");
        }
        Command::Staff {
            database_url,
            action:
                StaffAction::Add {
                    username,
                    role,
                    password,
                    qr_out,
                },
        } => {
            let role = presale::staff::Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("role: issuer or auditor"))?;
            let store = presale::applications::Store::connect(&database_url, 2).await?;
            store.migrate().await?;
            let e = store
                .add_staff(&username, &password, role, "cli", idp::now())
                .await?;
            std::fs::write(&qr_out, e.qr_svg)?;
            println!("staff {username} ({}) created", role.as_str());
            println!(
                "TOTP enrolment (scan the QR in {} or enter this URI):\n{}",
                qr_out.display(),
                e.otpauth_uri
            );
        }
    }
    Ok(())
}

async fn demo(dir: PathBuf, idp_port: u16, port: u16, opens_in: i64) -> anyhow::Result<()> {
    let base = format!("http://localhost:{port}");
    let makers = [
        ("saipa", "Saipa", "سایپا", 4u8),
        ("iran-khodro", "Iran Khodro", "ایران خودرو", 5u8),
    ];
    let manufacturers: Vec<idp::demo::DemoManufacturer> = makers
        .iter()
        .map(|(id, name, name_fa, stars)| idp::demo::DemoManufacturer {
            id,
            name,
            name_fa,
            stars: *stars,
            redirect_uri: format!("{base}/{id}/callback"),
            post_logout_uri: format!("{base}/{id}/"),
        })
        .collect();
    let mut demo = idp::demo::prepare(&dir.join("idp"), idp_port, &manufacturers).await?;
    demo.settings.trust_forwarded_for = true;
    let issuer = demo.settings.issuer.clone();
    let secret = demo.settings.secret_key.expose().to_owned();
    let idp_app = idp::Application::build(demo.settings, None).await?;
    tokio::spawn(idp_app.run_until_stopped(std::future::pending()));

    let database_url = format!("sqlite://{}?mode=rwc", dir.join("presale.db").display());
    let store = presale::applications::Store::connect(&database_url, 4).await?;
    store.migrate().await?;
    let now = idp::now();
    if store.licenses().await?.iter().all(|l| l.closes_at <= now) {
        let opens = now + opens_in * 60;
        let license = NewLicense {
            license_no: format!("MIMT-DEMO-{}", now % 100_000),
            manufacturer: "saipa".into(),
            model: "شاهین / Shahin".into(),
            units: 100,
            unit_price: 8_500_000_000,
            down_payment: 2_000_000_000,
            kind: PresaleKind::Firm,
            delivery_deadline: opens + 2 * 24 * 3600 + 240 * 24 * 3600,
            opens_at: opens,
            closes_at: opens + 2 * 24 * 3600,
            selection: Selection::Queue,
            admission_per_min: 30,
            max_active: 10,
            apply_window_secs: 600,
            min_age: Some(18),
            round: Some("demo-round".into()),
            exclusion: Some(Exclusion {
                manufacturers: vec!["saipa".into(), "iran-khodro".into()],
                months: 48,
            }),
        };
        store
            .issue_license(&license, now)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // A ministry issuer for the console: password printed, TOTP enrolment written.
    let staff_note = match store
        .add_staff(
            "ministry",
            "demo-password-1403",
            presale::staff::Role::Issuer,
            "demo",
            now,
        )
        .await
    {
        Ok(e) => {
            let qr = dir.join("ministry-totp.svg");
            std::fs::write(&qr, e.qr_svg)?;
            format!(
                "user ministry, password demo-password-1403, TOTP: scan {} or add {}",
                qr.display(),
                e.otpauth_uri
            )
        }
        Err(presale::staff::StaffError::Exists) => format!(
            "user ministry, password demo-password-1403, TOTP as enrolled before ({})",
            dir.join("ministry-totp.svg").display()
        ),
        Err(e) => return Err(e.into()),
    };
    let storefronts = demo
        .clients
        .iter()
        .map(|c| {
            let (_, name, name_fa, _) = makers
                .iter()
                .find(|m| m.0 == c.id)
                .copied()
                .unwrap_or(("", "", "", 0));
            StorefrontConfig {
                id: c.id.clone(),
                name: name.into(),
                name_fa: name_fa.into(),
                client_secret: c.secret.clone(),
            }
        })
        .collect();
    let service = Service::build(Config {
        listen: ([127, 0, 0, 1], port).into(),
        base_url: base.clone(),
        issuer: issuer.clone(),
        database_url,
        redis_url: String::new(),
        redis_prefix: "emta".into(),
        secret_key: secret,
        storefronts,
        ip_per_sec: 50,
        // The demo listens on loopback only: whoever reaches it is on this machine, so it
        // may take the client IP from X-Forwarded-For, which lets `load` give every
        // simulated citizen an address of their own.
        trust_forwarded_for: true,
        drain_secs: 0,
    })
    .await?;
    println!("\nemta demo is running (embedded defaults: SQLite, in-process stores)\n");
    println!("  storefronts        {base}/   ({base}/saipa/ and {base}/iran-khodro/)");
    println!(
        "  national login     {issuer}   (discovery: {issuer}/.well-known/openid-configuration)"
    );
    println!("  citizen account    {issuer}/account");
    println!("  SMS outbox (demo)  {issuer}/dev/outbox   (read your code here)");
    println!("  ministry console   {base}/ministry   ({staff_note})");
    println!(
        "  demo campaign      Saipa Shahin, 100 units, opens {opens_in} min after the first start"
    );
    println!(
        "\n  synthetic citizens (mobile, national ID, Jalali birth date); all in {}:",
        dir.join("idp/citizens.json").display()
    );
    for c in demo.citizens.iter().take(3) {
        println!("    {}  {}  {}", c.mobile, c.national_id, c.birth_date);
    }
    println!("\nCtrl-C stops it; rm -rf {} starts over.", dir.display());
    service
        .run_until_stopped(idp::app::shutdown_signal())
        .await?;
    Ok(())
}
