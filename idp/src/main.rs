//! `idp`: the emta OpenID provider's command line. Thin: parses arguments, calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use idp::admin::{self, NewClient};
use idp::config::{Secret, Settings, StorageSettings};
use idp::crypto::Keyring;
use idp::domain::client::ClientStatus;
use idp::domain::SigningAlg;
use idp::store::Db;

#[derive(Parser)]
#[command(
    name = "idp",
    version,
    about = "emta: national OpenID Connect provider"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the provider.
    Serve(Settings),
    /// Apply database migrations and exit.
    Migrate(StorageSettings),
    /// Manage manufacturers (OIDC clients).
    Client {
        #[command(flatten)]
        storage: StorageSettings,
        /// Server secret (client secrets are hashed under it); same as `serve`'s.
        #[arg(long, env = "EMTA_SECRET_KEY", default_value = "")]
        secret_key: Secret,
        /// Who is acting, for the audit log.
        #[arg(long, env = "EMTA_ACTOR", default_value = "operator")]
        actor: String,
        #[command(subcommand)]
        action: ClientAction,
    },
    /// Signing keys.
    Keys {
        #[command(flatten)]
        storage: StorageSettings,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print the audit log, newest first.
    Audit {
        #[command(flatten)]
        storage: StorageSettings,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum ClientAction {
    /// Register a manufacturer; prints its client id and secret (shown once).
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        name_fa: String,
        /// Trust level, 1 to 5 stars.
        #[arg(long, default_value_t = 3)]
        stars: u8,
        /// Exact redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Scopes allowed with client_credentials (repeat).
        #[arg(long = "service-scope")]
        service_scopes: Vec<String>,
        /// ID token signature: ES256 (default) or RS256.
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Validity of the trust record in days.
        #[arg(long, default_value_t = 365)]
        valid_days: i64,
    },
    List,
    Show {
        id: String,
    },
    /// Suspend at once: authorize, token, refresh, introspection and userinfo refuse it.
    Suspend {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Extend the trust record by a year.
    Renew {
        id: String,
    },
    /// Set the star rating (1-5).
    Rate {
        id: String,
        stars: u8,
    },
    /// Issue a new secret; the old one stops working.
    RotateSecret {
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Publish a new key now; it signs after `publish_ahead` seconds.
    Rotate {
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long, default_value_t = 3600)]
        publish_ahead: i64,
        /// ID token lifetime, so the old key stays published until its tokens expire.
        #[arg(long, default_value_t = 600)]
        token_ttl: i64,
    },
    List,
}

async fn open(storage: &StorageSettings) -> anyhow::Result<Db> {
    let db = Db::connect(storage.database_url.expose(), storage.db_max_connections)
        .await
        .context("connecting to the database")?;
    db.migrate().await.context("migrating")?;
    Ok(db)
}

fn alg(s: &str) -> anyhow::Result<SigningAlg> {
    SigningAlg::parse(s).ok_or_else(|| anyhow::anyhow!("alg must be ES256 or RS256"))
}

/// mimalloc: under a token flood glibc's malloc showed up at the top of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    idp::telemetry::init_logging();
    let cli = Cli::parse();
    let now = idp::now();
    match cli.command {
        Command::Serve(settings) => {
            let app = idp::Application::build(settings).await?;
            tracing::info!(addr = %app.addr(), "emta idp listening");
            app.run_until_stopped(idp::app::shutdown_signal()).await?;
        }
        Command::Migrate(storage) => {
            open(&storage).await?;
            println!("migrations applied");
        }
        Command::Client {
            storage,
            secret_key,
            actor,
            action,
        } => {
            let db = open(&storage).await?;
            let keys = Keyring::new(secret_key.expose().as_bytes());
            match action {
                ClientAction::Add {
                    id,
                    name,
                    name_fa,
                    stars,
                    redirect_uris,
                    post_logout_redirect_uris,
                    service_scopes,
                    alg: a,
                    valid_days,
                } => {
                    anyhow::ensure!(
                        !secret_key.expose().is_empty(),
                        "EMTA_SECRET_KEY is required to hash the client secret"
                    );
                    let new = NewClient {
                        id,
                        name,
                        name_fa,
                        stars,
                        redirect_uris,
                        post_logout_redirect_uris,
                        service_scopes,
                        id_token_alg: alg(&a)?,
                        valid_days,
                    };
                    let (client, secret) = admin::add_client(&db, &keys, new, &actor, now).await?;
                    println!("client_id={}\nclient_secret={secret}", client.id.as_str());
                }
                ClientAction::List => {
                    for c in db.clients().await? {
                        println!(
                            "{}\t{}\t{}\t{}★\t{}\tvalid until {}",
                            c.id.as_str(),
                            c.name,
                            c.name_fa,
                            c.stars,
                            c.status.as_str(),
                            idp::format_time(c.valid_until)
                        );
                    }
                }
                ClientAction::Show { id } => {
                    let cid = idp::domain::ClientId::parse(&id)?;
                    let c = db
                        .client(&cid)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no client {id}"))?;
                    println!(
                        "id: {}\nname: {} / {}\nstars: {}\nstatus: {}\nvalid until: {}\nalg: {}",
                        c.id.as_str(),
                        c.name,
                        c.name_fa,
                        c.stars,
                        c.status.as_str(),
                        idp::format_time(c.valid_until),
                        c.id_token_alg.as_str()
                    );
                    for u in &c.redirect_uris {
                        println!("redirect_uri: {}", u.as_str());
                    }
                    for u in &c.post_logout_redirect_uris {
                        println!("post_logout_redirect_uri: {}", u.as_str());
                    }
                    for s in &c.service_scopes {
                        println!("service_scope: {s}");
                    }
                }
                ClientAction::Suspend { id } => {
                    admin::set_status(&db, &id, ClientStatus::Suspended, &actor, now).await?;
                    println!("{id} suspended");
                }
                ClientAction::Resume { id } => {
                    admin::set_status(&db, &id, ClientStatus::Active, &actor, now).await?;
                    println!("{id} active");
                }
                ClientAction::Renew { id } => {
                    let until = admin::renew(&db, &id, &actor, now).await?;
                    println!("{id} valid until {}", idp::format_time(until));
                }
                ClientAction::Rate { id, stars } => {
                    admin::rate(&db, &id, stars, &actor, now).await?;
                    println!("{id} rated {stars}");
                }
                ClientAction::RotateSecret { id } => {
                    anyhow::ensure!(
                        !secret_key.expose().is_empty(),
                        "EMTA_SECRET_KEY is required"
                    );
                    let secret = admin::rotate_secret(&db, &keys, &id, &actor, now).await?;
                    println!("client_secret={secret}");
                }
            }
        }
        Command::Keys { storage, action } => {
            let db = open(&storage).await?;
            match action {
                KeysAction::Rotate {
                    alg: a,
                    publish_ahead,
                    token_ttl,
                } => {
                    let row =
                        idp::keys::rotate(&db, alg(&a)?, now, publish_ahead, token_ttl).await?;
                    db.audit(now, "operator", "keys.rotate", &row.kid, &a)
                        .await?;
                    println!(
                        "published {} ({}); signs from {}",
                        row.kid,
                        row.alg,
                        idp::format_time(row.activate_at)
                    );
                }
                KeysAction::List => {
                    for k in db.signing_keys().await? {
                        println!(
                            "{}\t{}\tactive from {}\tretires {}\tunpublished {}",
                            k.kid,
                            k.alg,
                            idp::format_time(k.activate_at),
                            k.retire_at
                                .map(idp::format_time)
                                .unwrap_or_else(|| "-".into()),
                            k.expires_at
                                .map(idp::format_time)
                                .unwrap_or_else(|| "-".into())
                        );
                    }
                }
            }
        }
        Command::Audit { storage, limit } => {
            let db = open(&storage).await?;
            for a in admin::audit_log(&db, limit).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    idp::format_time(a.at),
                    a.actor,
                    a.action,
                    a.subject,
                    a.detail
                );
            }
        }
    }
    Ok(())
}
