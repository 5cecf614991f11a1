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
    Serve(Box<Settings>),
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
        /// Accept private and loopback callback URLs (`jwks_uri`, back-channel logout):
        /// a local deployment only, as `serve`'s flag of the same name.
        #[arg(long, env = "EMTA_ALLOW_PRIVATE_CALLBACKS", default_value_t = false)]
        allow_private_callbacks: bool,
        #[command(subcommand)]
        action: ClientAction,
    },
    /// Signing keys.
    Keys {
        #[command(flatten)]
        storage: StorageSettings,
        /// The server's secret and key-encryption keys (new keys are sealed as `serve`
        /// seals them).
        #[arg(long, env = "EMTA_SECRET_KEY", default_value = "")]
        secret_key: Secret,
        #[arg(long, env = "EMTA_KEY_ENCRYPTION_KEY", default_value = "")]
        key_encryption_key: Secret,
        #[arg(long, env = "EMTA_KEY_ENCRYPTION_KEY_PREVIOUS", default_value = "")]
        key_encryption_key_previous: Secret,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Trust badges (issue 34).
    Badge {
        #[command(subcommand)]
        action: BadgeAction,
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
enum BadgeAction {
    /// Fetch pages and report the emta badges on them that are copied (the issuer's
    /// script on another origin), forged (a script not served by the issuer), altered
    /// (copied markup with another rating), stale (copied markup stating a standing the
    /// manufacturer no longer has) or static copies; exits with status 2 if any.
    Scan {
        /// The IdP whose badges these are (its issuer URL).
        #[arg(long, env = "EMTA_ISSUER")]
        issuer: String,
        /// JSON instead of a table.
        #[arg(long, default_value_t = false)]
        json: bool,
        /// The pages to fetch.
        #[arg(required = true)]
        pages: Vec<String>,
    },
}

#[derive(clap::Args)]
struct AddClient {
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
    /// A claims scope the client may ask for (repeat): profile, phone, national_id.
    /// Default: profile and phone; national_id only where the ministry decides.
    #[arg(long = "allow-scope")]
    allowed_scopes: Vec<String>,
    /// `pairwise` (default: a sub of its own per sector) or `public`.
    #[arg(long, default_value = "pairwise")]
    subject_type: String,
    /// Sector of pairwise subjects (default: the redirect URIs' host).
    #[arg(long)]
    sector_identifier: Option<String>,
    /// Where logout tokens are posted (OIDC Back-Channel Logout).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    #[command(flatten)]
    keys: ClientKeysArgs,
}

/// A client that authenticates with its own key (private_key_jwt) instead of a secret.
#[derive(clap::Args)]
struct ClientKeysArgs {
    /// A file with the client's public keys (a JWKS document).
    #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
    jwks: Option<std::path::PathBuf>,
    /// The https URL where the client publishes its public keys.
    #[arg(long)]
    jwks_uri: Option<String>,
}

impl ClientKeysArgs {
    fn parse(&self, private: bool) -> anyhow::Result<Option<idp::domain::client::KeySource>> {
        let doc = self
            .jwks
            .as_ref()
            .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
            .transpose()?;
        Ok(admin::parse_client_keys(
            doc.as_deref(),
            self.jwks_uri.as_deref(),
            private,
        )?)
    }
}

#[derive(Subcommand)]
enum ClientAction {
    /// Register a manufacturer; prints its client id and secret (shown once).
    Add(Box<AddClient>),
    /// Set the scopes a client may ask for and the subject it sees.
    Policy {
        id: String,
        #[arg(long = "allow-scope")]
        allowed_scopes: Vec<String>,
        #[arg(long, default_value = "pairwise")]
        subject_type: String,
    },
    /// Require pushed authorization requests (RFC 9126) of a client, or stop requiring
    /// them: `--required true|false`.
    Par {
        id: String,
        #[arg(long, action = clap::ArgAction::Set)]
        required: bool,
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
    /// Register new public keys (private_key_jwt): a JWKS file or URI; with neither, the
    /// client goes back to its secret (rotate it to get one).
    Keys {
        id: String,
        #[command(flatten)]
        keys: ClientKeysArgs,
    },
    /// Issue a new secret; the old one keeps working for the overlap (0 for a leak).
    RotateSecret {
        id: String,
        #[arg(long, default_value_t = 24)]
        overlap_hours: i64,
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

fn subject_type(s: &str) -> anyhow::Result<idp::domain::SubjectType> {
    idp::domain::SubjectType::parse(s)
        .ok_or_else(|| anyhow::anyhow!("subject type must be pairwise or public"))
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
            let app = idp::Application::build(*settings).await?;
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
            allow_private_callbacks,
            action,
        } => {
            let db = open(&storage).await?;
            let keys = Keyring::new(secret_key.expose().as_bytes());
            match action {
                ClientAction::Add(add) => {
                    let add = *add;
                    anyhow::ensure!(
                        !secret_key.expose().is_empty(),
                        "EMTA_SECRET_KEY is required to hash the client secret"
                    );
                    let new = NewClient {
                        id: add.id,
                        name: add.name,
                        name_fa: add.name_fa,
                        stars: add.stars,
                        redirect_uris: add.redirect_uris,
                        post_logout_redirect_uris: add.post_logout_redirect_uris,
                        service_scopes: add.service_scopes,
                        id_token_alg: alg(&add.alg)?,
                        valid_days: add.valid_days,
                        allowed_scopes: if add.allowed_scopes.is_empty() {
                            admin::DEFAULT_SCOPES
                                .iter()
                                .map(|s| s.to_string())
                                .collect()
                        } else {
                            add.allowed_scopes
                        },
                        subject_type: subject_type(&add.subject_type)?,
                        sector_identifier: add.sector_identifier,
                        backchannel_logout_uri: add.backchannel_logout_uri,
                        private_key_jwt: add.keys.parse(allow_private_callbacks)?,
                        private_callbacks: allow_private_callbacks,
                    };
                    let (client, secret) = admin::add_client(&db, &keys, new, &actor, now).await?;
                    println!("client_id={}", client.id.as_str());
                    if secret.is_empty() {
                        println!("token_endpoint_auth_method=private_key_jwt");
                    } else {
                        println!("client_secret={secret}");
                    }
                }
                ClientAction::List => {
                    for c in db.clients().await? {
                        println!(
                            "{}\t{}\t{}\t{}★ (ministry {}★, {} withheld by the record)\t{}\tvalid until {}",
                            c.id.as_str(),
                            c.name,
                            c.name_fa,
                            c.rating(),
                            c.stars,
                            c.withheld,
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
                        "id: {}\nname: {} / {}\nrating: {}\nstars (the ministry's): {}\nwithheld by the after-sale record: {}\nstatus: {}\nvalid until: {}\nalg: {}",
                        c.id.as_str(),
                        c.name,
                        c.name_fa,
                        c.rating(),
                        c.stars,
                        c.withheld,
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
                    println!(
                        "allowed scopes: {}\nsubject: {} (sector {})\nbackchannel logout: {}",
                        c.allowed_scopes,
                        c.subject_type.as_str(),
                        c.sector(),
                        c.backchannel_logout_uri
                            .as_ref()
                            .map_or("-", |u| u.as_str())
                    );
                    println!("token_endpoint_auth_method: {}", c.auth.method());
                    println!(
                        "pushed authorization requests: {}",
                        if c.require_par {
                            "required"
                        } else {
                            "optional"
                        }
                    );
                    match &c.auth {
                        idp::domain::client::ClientAuth::PrivateKeyJwt(
                            idp::domain::client::KeySource::Uri(u),
                        ) => println!("jwks_uri: {u}"),
                        idp::domain::client::ClientAuth::PrivateKeyJwt(
                            idp::domain::client::KeySource::Jwks(set),
                        ) => {
                            for k in &set.keys {
                                println!("jwk: {}", k.common.key_id.as_deref().unwrap_or("-"));
                            }
                        }
                        idp::domain::client::ClientAuth::Secret => {}
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
                    match admin::set_status(&db, &id, ClientStatus::Active, &actor, now).await? {
                        ClientStatus::Active => println!("{id} active"),
                        ClientStatus::Suspended => println!(
                            "{id}: the operator's suspension lifted; still suspended by the ministry's console (an inspection's decision, lifted there)"
                        ),
                    }
                }
                ClientAction::Renew { id } => {
                    let until = admin::renew(&db, &id, &actor, now).await?;
                    println!("{id} valid until {}", idp::format_time(until));
                }
                ClientAction::Rate { id, stars } => {
                    admin::rate(&db, &id, stars, &actor, now).await?;
                    println!("{id} rated {stars}");
                }
                ClientAction::RotateSecret { id, overlap_hours } => {
                    anyhow::ensure!(
                        !secret_key.expose().is_empty(),
                        "EMTA_SECRET_KEY is required"
                    );
                    let secret =
                        admin::rotate_secret(&db, &keys, &id, overlap_hours * 3600, &actor, now)
                            .await?;
                    println!("client_secret={secret}");
                }
                ClientAction::Keys { id, keys: k } => {
                    admin::set_client_keys(
                        &db,
                        &id,
                        k.parse(allow_private_callbacks)?,
                        allow_private_callbacks,
                        &actor,
                        now,
                    )
                    .await?;
                    println!("{id}: keys set");
                }
                ClientAction::Par { id, required } => {
                    admin::set_par(&db, &id, required, &actor, now).await?;
                    println!(
                        "{id}: pushed authorization requests {}",
                        if required { "required" } else { "optional" }
                    );
                }
                ClientAction::Policy {
                    id,
                    allowed_scopes,
                    subject_type: st,
                } => {
                    admin::set_policy(&db, &id, &allowed_scopes, subject_type(&st)?, &actor, now)
                        .await?;
                    println!("{id}: policy set");
                }
            }
        }
        Command::Keys {
            storage,
            secret_key,
            key_encryption_key,
            key_encryption_key_previous,
            action,
        } => {
            let db = open(&storage).await?;
            let keys = idp::keys::Keys::new(idp::keys::keks(
                key_encryption_key.expose(),
                key_encryption_key_previous.expose(),
                secret_key.expose(),
            ));
            match action {
                KeysAction::Rotate {
                    alg: a,
                    publish_ahead,
                    token_ttl,
                } => {
                    anyhow::ensure!(
                        !secret_key.expose().is_empty() || !key_encryption_key.expose().is_empty(),
                        "EMTA_SECRET_KEY (or EMTA_KEY_ENCRYPTION_KEY) is required to seal the key"
                    );
                    let row =
                        idp::keys::rotate(&db, &keys, alg(&a)?, now, publish_ahead, token_ttl)
                            .await?;
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
        Command::Badge {
            action:
                BadgeAction::Scan {
                    issuer,
                    json,
                    pages,
                },
        } => {
            let found = idp::badge_scan::scan(&issuer, &pages).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else if found.is_empty() {
                println!("no finding on {} page(s)", pages.len());
            } else {
                println!("kind\tmanufacturer\tpage\tdetail");
                for f in &found {
                    println!(
                        "{}\t{}\t{}\t{}",
                        f.kind,
                        f.manufacturer.as_deref().unwrap_or("-"),
                        f.page,
                        f.detail
                    );
                }
            }
            if !found.is_empty() {
                std::process::exit(2);
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
