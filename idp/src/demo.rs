//! The local demo: the IdP on embedded defaults (a SQLite file, the in-process store, the
//! fixture registry and the SMS outbox) with synthetic citizens and demo manufacturers.
//! Everything lives under one folder so that `rm -rf .emta` starts over.

use std::path::{Path, PathBuf};

use crate::admin::{self, NewClient};
use crate::config::{Secret, Settings};
use crate::crypto::{random_token, Keyring};
use crate::dev::{generate_citizens, FixtureCitizen};
use crate::domain::{ClientId, SigningAlg};
use crate::store::Db;

/// A demo manufacturer and the secret it was given on this start.
pub struct DemoClient {
    pub id: String,
    pub name: String,
    pub secret: String,
    pub redirect_uri: String,
}

pub struct Demo {
    pub settings: Settings,
    pub citizens: Vec<FixtureCitizen>,
    pub clients: Vec<DemoClient>,
}

/// One manufacturer to register: id, English and Persian names, stars, redirect URI.
pub struct DemoManufacturer<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub name_fa: &'a str,
    pub stars: u8,
    pub redirect_uri: String,
    pub post_logout_uri: String,
}

fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        return Ok(s);
    }
    let s = make()?;
    std::fs::write(path, &s)?;
    Ok(s)
}

/// Prepares the demo folder, database, citizens and manufacturers; returns settings for
/// `Application::build` with the IdP on `port`.
pub async fn prepare(
    dir: &Path,
    port: u16,
    manufacturers: &[DemoManufacturer<'_>],
) -> anyhow::Result<Demo> {
    std::fs::create_dir_all(dir)?;
    let secret = read_or_create(&dir.join("secret"), || Ok(random_token(32)))?;
    let citizens_path: PathBuf = dir.join("citizens.json");
    let citizens_json = read_or_create(&citizens_path, || {
        Ok(serde_json::to_string_pretty(&generate_citizens(
            1000, 1403,
        ))?)
    })?;
    let citizens: Vec<FixtureCitizen> = serde_json::from_str(&citizens_json)?;

    let mut settings = Settings::for_tests();
    settings.listen = ([127, 0, 0, 1], port).into();
    settings.issuer = format!("http://localhost:{port}");
    settings.storage.database_url = Secret::new(format!(
        "sqlite://{}?mode=rwc",
        dir.join("idp.db").display()
    ));
    settings.secret_key = Secret::new(secret.clone());
    settings.dev = true;
    settings.fixture_citizens = Some(citizens_path);
    // Demo visitors solve the proof of work in their browser: keep it quick.
    settings.pow_difficulty = 16;

    let db = Db::connect(settings.storage.database_url.expose(), 4).await?;
    db.migrate().await?;
    let keys = Keyring::new(secret.as_bytes());
    let now = crate::now();
    let mut clients = Vec::new();
    for m in manufacturers {
        let cid = ClientId::parse(m.id).map_err(|e| anyhow::anyhow!("{}: {e}", m.id))?;
        let secret = if db.client(&cid).await?.is_some() {
            admin::rotate_secret(&db, &keys, m.id, "demo", now).await?
        } else {
            let new = NewClient {
                id: m.id.into(),
                name: m.name.into(),
                name_fa: m.name_fa.into(),
                stars: m.stars,
                redirect_uris: vec![m.redirect_uri.clone()],
                post_logout_redirect_uris: vec![m.post_logout_uri.clone()],
                service_scopes: vec!["presale.read".into()],
                id_token_alg: SigningAlg::ES256,
                valid_days: 365,
            };
            admin::add_client(&db, &keys, new, "demo", now).await?.1
        };
        clients.push(DemoClient {
            id: m.id.into(),
            name: m.name.into(),
            secret,
            redirect_uri: m.redirect_uri.clone(),
        });
    }
    db.close().await;
    Ok(Demo {
        settings,
        citizens,
        clients,
    })
}
