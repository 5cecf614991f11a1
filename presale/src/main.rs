//! `presale`: the presale service's command line. Thin: parses arguments, calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use presale::domain::NewLicense;
use presale::store::staff::Role;
use presale::store::Store;
use presale::{Application, Settings};

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
    /// Serve the presale service.
    Serve(Box<Settings>),
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
    /// Make a seed contribution for a license: prints a secret to keep (and reveal after
    /// the freeze) and the commitment to give the ministry at issuance.
    Commit {
        /// The party: `ministry`, the manufacturer's name, or a registered observer's name.
        party: String,
    },
    /// Measure the seed's delay function on this machine: how many steps a second one
    /// core computes and checks, and the steps for a delay of `--seconds` here (choose the
    /// license's `seed_delay.iterations` from the fastest machine an attacker may have).
    SeedDelay {
        /// Steps to time.
        #[arg(long, default_value_t = 200)]
        steps: u64,
        /// The delay wanted, in seconds of this machine.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
    /// Audit a campaign from its public transparency log alone (the same command as the
    /// `emta-verify` binary, which an outside auditor builds without this service).
    Verify(emta_verify::cli::VerifyArgs),
    /// Witness campaign logs: check each new checkpoint extends the one cosigned before
    /// (the log's consistency proof), cosign it with this witness's key and post the
    /// cosignature to the log. A fork or rollback is refused, reported, and makes the
    /// command exit non-zero. Runs until stopped, or once with `--once`.
    Witness {
        /// The presale service's public URL.
        #[arg(long)]
        log: String,
        /// The log's verifier key, obtained out of band.
        #[arg(long)]
        log_key: String,
        /// The campaigns (license ids) to witness.
        #[arg(long = "campaign", required = true)]
        campaigns: Vec<String>,
        /// This witness's name (its key is `witness/NAME`).
        #[arg(long)]
        name: String,
        /// This witness's private key (32 bytes, made on first use, mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// What this witness has cosigned, per campaign (JSON, replaced whole).
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value_t = 5)]
        interval_secs: u64,
        /// Look once and exit (non-zero if a fork was found).
        #[arg(long)]
        once: bool,
        /// Start without a state file: a new witness, which trusts the first checkpoint
        /// it sees of each campaign.
        #[arg(long)]
        init: bool,
    },
    /// Print the transparency logs' verifier key (for EMTA_LOG_VERIFIER_KEY on the replicas
    /// that do not sign, and for auditors' `verify --key`), making the signing key file on
    /// first use (32 bytes, mode 0600: give it to the sequencing replicas only, as
    /// EMTA_LOG_SIGNING_KEY_FILE).
    LogKey {
        #[arg(long)]
        key_file: PathBuf,
        /// Write the key this deployment has signed with so far (derived from
        /// EMTA_SECRET_KEY) instead of a new one: the move to a sequencer's key without
        /// changing the key auditors and witnesses pinned.
        #[arg(long)]
        from_secret: bool,
        #[arg(
            long,
            env = "EMTA_SECRET_KEY",
            default_value = "",
            hide_env_values = true
        )]
        secret_key: String,
    },
    /// Print a witness's verifier key (for the log's EMTA_LOG_WITNESSES and auditors'
    /// `verify --witness`), making its private key file on first use.
    WitnessKey {
        #[arg(long)]
        name: String,
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Compare a round's holds with each participating bank's statement (issue 30): every
    /// difference (held but unknown, captured twice, released and captured, still held
    /// after the round, missing at the bank, another state or amount), as a table or as
    /// JSON. Exits 2 when there is any.
    Reconcile {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://emta-presale.db?mode=rwc"
        )]
        database_url: String,
        /// JSON file of the participating banks, as `presale serve` reads it.
        #[arg(long, env = "EMTA_BANKS_FILE")]
        banks_file: PathBuf,
        /// The license (campaign id).
        #[arg(long)]
        license: String,
        /// JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Run the database migrations with the owner's credentials and, on PostgreSQL, let
    /// the service's role do what it needs and no more (`--grant-to`): it may only read
    /// and append to the audit log and the transparency logs, and owns nothing.
    Migrate {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://emta-presale.db?mode=rwc"
        )]
        database_url: String,
        /// The service's database role.
        #[arg(long)]
        grant_to: Option<String>,
    },
    /// Observers of seeds (a court, a citizens' representative): register one with the
    /// public key it made with `presale observer-key`, list them, disable one.
    Observer {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://emta-presale.db?mode=rwc"
        )]
        database_url: String,
        #[command(subcommand)]
        action: ObserverAction,
    },
    /// An observer's side: print its public key (making its private key file on first
    /// use), or sign a statement to post to `/api/observers/NAME/statements`
    /// (`curl --data-binary @statement URL/api/observers/NAME/statements`).
    ObserverKey {
        #[arg(long)]
        name: String,
        #[arg(long)]
        key_file: PathBuf,
        /// Sign a commitment: the license number and the commitment `presale commit` made.
        #[arg(long, num_args = 2, value_names = ["LICENSE_NO", "COMMITMENT"], conflicts_with = "reveal")]
        commit: Option<Vec<String>>,
        /// Sign a reveal: the campaign (license id) and the secret `presale commit` made.
        #[arg(long, num_args = 2, value_names = ["LICENSE_ID", "SECRET"])]
        reveal: Option<Vec<String>>,
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
enum ObserverAction {
    /// Register an observer under its name with its public key.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        key: String,
        /// Who does it, for the audit log.
        #[arg(long)]
        actor: String,
    },
    /// Disable an observer: its statements no longer count.
    Disable {
        #[arg(long)]
        name: String,
        #[arg(long)]
        actor: String,
    },
    /// List the observers.
    List,
}

#[derive(Subcommand)]
enum StaffAction {
    /// Create a staff account (the first one included). The password is read from
    /// EMTA_STAFF_PASSWORD; prints the TOTP enrolment URI and QR code (SVG file).
    Add {
        #[arg(long)]
        username: String,
        /// administrator, issuer, auditor or representative.
        #[arg(long)]
        role: String,
        /// A representative's manufacturer (its client id at the IdP).
        #[arg(long)]
        manufacturer: Option<String>,
        #[arg(long, env = "EMTA_STAFF_PASSWORD", hide_env_values = true)]
        password: String,
        /// Where to write the enrolment QR code.
        #[arg(long, default_value = "totp-enrolment.svg")]
        qr_out: PathBuf,
    },
    /// Disable an account and end its sessions at once.
    Disable {
        #[arg(long)]
        username: String,
        /// Who does it, for the audit log.
        #[arg(long)]
        actor: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[arg(long)]
        username: String,
        #[arg(long)]
        actor: String,
    },
    /// End every session of an account (a lost laptop) without disabling it.
    RevokeSessions {
        #[arg(long)]
        username: String,
        #[arg(long)]
        actor: String,
    },
    /// Recompute the audit log's hash chain and compare it with its anchors in the
    /// campaigns' transparency logs. Exits non-zero on any finding.
    AuditCheck,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_logging();
    match Cli::parse().command {
        Command::Serve(mut settings) => {
            anyhow::ensure!(
                settings.storefronts_file.is_some(),
                "EMTA_STOREFRONTS_FILE is required: the manufacturers' client registrations at the IdP"
            );
            settings.load_storefronts()?;
            let app = Application::build(*settings).await?;
            tracing::info!(addr = %app.addr()?, "emta presale listening");
            app.run_until_stopped(service_kit::shutdown::shutdown_signal())
                .await?;
        }
        Command::License {
            database_url,
            action: LicenseAction::Issue { file, actor },
        } => {
            let license: NewLicense = serde_json::from_slice(&std::fs::read(&file)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let store = Store::connect(&database_url, 2).await?;
            store.migrate().await?;
            let id = store
                .issue_license_as(&license, &format!("cli:{actor}"), service_kit::clock::now())
                .await?
                .map_err(|e| anyhow::anyhow!("license refused: {e}"))?;
            println!("{id}");
        }
        Command::SeedDelay { steps, seconds } => {
            let input = presale::transparency::seed::sha256(b"emta seed delay calibration");
            let started = std::time::Instant::now();
            let output = presale::transparency::vdf::delay(&input, steps);
            let slow = started.elapsed().as_secs_f64();
            let started = std::time::Instant::now();
            anyhow::ensure!(
                presale::transparency::vdf::check(&input, steps, &output),
                "the delay function did not check"
            );
            let fast = started.elapsed().as_secs_f64();
            let per_sec = steps as f64 / slow;
            println!("steps:            {steps}");
            println!("compute:          {slow:.3} s ({per_sec:.1} steps/s on one core)");
            println!(
                "check:            {fast:.4} s ({:.0}x faster)",
                slow / fast.max(1e-9)
            );
            println!(
                "for {seconds} s here: iterations = {}",
                (per_sec * seconds as f64).round() as u64
            );
        }
        Command::Commit { party } => {
            anyhow::ensure!(
                presale::transparency::seed::valid_party(&party),
                "party: lowercase letters, digits and dashes, 1 to 32"
            );
            let c = presale::transparency::seed::Contribution::generate(&party);
            println!("party:      {party}");
            println!(
                "secret:     {}   (keep it; reveal it only after the list is frozen)",
                c.secret
            );
            println!(
                "commitment: {}   (give this to the ministry for the license)",
                c.commitment().commitment
            );
        }
        Command::Witness {
            log,
            log_key,
            campaigns,
            name,
            key_file,
            state,
            interval_secs,
            once,
            init,
        } => {
            use presale::transparency::witness::{observe, Refusal, State, WitnessKey};
            let key = WitnessKey::from_file(&name, &key_file).map_err(anyhow::Error::msg)?;
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?;
            let mut seen = State::load(&state, init).map_err(anyhow::Error::msg)?;
            let persist = |s: &State| s.save(&state);
            loop {
                let mut forked = false;
                // One campaign's fork or outage stops nobody else's witnessing.
                for campaign in &campaigns {
                    match observe(&http, &log, campaign, &log_key, &key, &mut seen, &persist).await
                    {
                        Ok(o) => println!("{campaign}: {o:?}"),
                        Err(e @ Refusal::Fork { .. }) => {
                            forked = true;
                            eprintln!(
                                "{campaign}: REFUSED: {e} (both signed checkpoints are in {})",
                                state.display()
                            );
                        }
                        Err(e) => eprintln!("{campaign}: {e}"),
                    }
                }
                if once {
                    if forked {
                        anyhow::bail!("a log forked");
                    }
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_secs(interval_secs)).await;
            }
        }
        Command::LogKey {
            key_file,
            from_secret,
            secret_key,
        } => {
            if from_secret {
                anyhow::ensure!(!secret_key.is_empty(), "EMTA_SECRET_KEY is required");
                let keys = service_kit::keys::Keyring::new(secret_key.as_bytes(), &[]);
                presale::transparency::LogKey::write_seed(
                    &key_file,
                    &presale::transparency::log_seed_of(&keys),
                )
                .map_err(anyhow::Error::msg)?;
            }
            let key = presale::transparency::LogKey::from_file(&key_file, true)
                .map_err(anyhow::Error::msg)?;
            println!("{}", key.verifier_key());
        }
        Command::ObserverKey {
            name,
            key_file,
            commit,
            reveal,
        } => {
            let key = presale::transparency::observer::ObserverKey::from_file(&name, &key_file)
                .map_err(anyhow::Error::msg)?;
            let note = match (commit.as_deref(), reveal.as_deref()) {
                (Some([no, c]), _) => key.commit(no, c).map_err(anyhow::Error::msg)?,
                (_, Some([id, secret])) => key.reveal(id, secret).map_err(anyhow::Error::msg)?,
                _ => format!("{}\n", key.verifier_key()),
            };
            print!("{note}");
        }
        Command::Observer {
            database_url,
            action,
        } => {
            let store = Store::connect(&database_url, 2).await?;
            store.migrate().await?;
            let now = service_kit::clock::now();
            match action {
                ObserverAction::Add { name, key, actor } => {
                    store
                        .add_observer(&name, &key, &format!("cli:{actor}"), now)
                        .await?
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    println!("observer {name} registered");
                }
                ObserverAction::Disable { name, actor } => {
                    anyhow::ensure!(
                        store
                            .disable_observer(&name, &format!("cli:{actor}"), now)
                            .await?,
                        "no enabled observer {name}"
                    );
                    println!("observer {name} disabled");
                }
                ObserverAction::List => {
                    for o in store.observers().await? {
                        let state = if o.disabled_at.is_some() {
                            "disabled"
                        } else {
                            "enabled"
                        };
                        println!("{}\t{state}\t{}\tby {}", o.name, o.verifier_key, o.added_by);
                    }
                }
            }
        }
        Command::WitnessKey { name, key_file } => {
            let key = presale::transparency::witness::WitnessKey::from_file(&name, &key_file)
                .map_err(anyhow::Error::msg)?;
            println!("{}", key.verifier_key());
        }
        Command::Verify(args) => args.run().await?,
        Command::Reconcile {
            database_url,
            banks_file,
            license,
            json,
        } => {
            let banks: Vec<presale::config::BankConfig> =
                serde_json::from_slice(&std::fs::read(&banks_file)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", banks_file.display()))?;
            let banks =
                presale::adapters::bank::Banks::new(&banks, std::time::Duration::from_secs(30));
            let store = Store::connect(&database_url, 2).await?;
            store.check_migrated().await?;
            let report = presale::reconcile::reconcile(&store, &banks, &license).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            if !report.differences.is_empty() {
                std::process::exit(2);
            }
        }
        Command::Migrate {
            database_url,
            grant_to,
        } => {
            let store = Store::connect(&database_url, 2).await?;
            store.migrate().await?;
            if let Some(role) = grant_to {
                store.grant_service_role(&role).await?;
                println!("migrated; {role} may read and append the audit and transparency logs, not rewrite them");
            } else {
                println!("migrated");
            }
        }
        Command::Staff {
            database_url,
            action,
        } => {
            let store = Store::connect(&database_url, 2).await?;
            store.migrate().await?;
            staff(&store, action).await?;
        }
    }
    Ok(())
}

async fn staff(store: &Store, action: StaffAction) -> anyhow::Result<()> {
    use presale::store::staff::Standing;
    let now = service_kit::clock::now();
    let (username, actor, standing) = match action {
        StaffAction::Add {
            username,
            role,
            manufacturer,
            password,
            qr_out,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("role: administrator, issuer, auditor or representative")
            })?;
            let e = match (role, manufacturer) {
                (Role::Representative, Some(m)) => {
                    store
                        .add_representative(&username, &password, &m, "cli:staff-add", now)
                        .await?
                }
                (role, None) => {
                    store
                        .add_staff(&username, &password, role, "cli:staff-add", now)
                        .await?
                }
                _ => {
                    anyhow::bail!("--manufacturer goes with --role representative, and only there")
                }
            };
            std::fs::write(&qr_out, e.qr_svg)?;
            println!("staff {username} ({}) created", role.as_str());
            println!(
                "TOTP enrolment (scan the QR in {} or enter this URI):\n{}",
                qr_out.display(),
                e.otpauth_uri
            );
            return Ok(());
        }
        StaffAction::AuditCheck => {
            let check = store.check_audit_chain().await?;
            for f in &check.findings {
                println!("FINDING: {f}");
            }
            anyhow::ensure!(
                check.ok(),
                "the audit log: {} findings",
                check.findings.len()
            );
            println!(
                "the audit log: {} chained entries recomputed, {} anchors in the transparency logs match",
                check.entries, check.anchors
            );
            return Ok(());
        }
        StaffAction::Disable { username, actor } => (username, actor, Standing::Disabled),
        StaffAction::Enable { username, actor } => (username, actor, Standing::Enabled),
        StaffAction::RevokeSessions { username, actor } => (username, actor, Standing::Revoked),
    };
    let done = store
        .set_staff_standing(&username, standing, &format!("cli:{actor}"), now)
        .await?;
    anyhow::ensure!(done, "no staff account {username}");
    println!("{username}: {standing:?}; every session of the account has ended");
    Ok(())
}
