//! The local demo: the whole system on embedded defaults (SQLite files, in-process stores)
//! with demo data: stub government services and SMS gateway over synthetic citizens, the
//! IdP with two manufacturers registered, their storefronts, one licensed campaign and a
//! ministry staff account. Everything lives under one folder so that `rm -rf .emta`
//! starts over.

use std::path::{Path, PathBuf};

use crate::deploy::PUSHING;
use idp::admin::{self, NewClient};
use idp::config::{Secret, Settings};
use idp::crypto::Keyring;
use idp::domain::{ClientId, SigningAlg};
use idp::store::Db;
use presale::config::StorefrontConfig;
use presale::domain::{Exclusion, NewLicense, PresaleKind, Selection};
use presale::store::staff::{Role, StaffError};
use presale::store::Store;
use service_kit::keys::random_token;
use testkit::{generate_citizens, FixtureCitizen, StubServices};

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
    /// Each manufacturer's own seed client's secret (manufacturer, secret).
    pub seed_clients: Vec<(String, String)>,
    /// The ministry's own client at the IdP (id, secret), for presale's console.
    pub ministry: (String, String),
}

/// One manufacturer to register: id, English and Persian names, stars, redirect URI.
pub struct DemoManufacturer<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub name_fa: &'a str,
    pub stars: u8,
    pub redirect_uri: String,
    pub post_logout_uri: String,
    pub backchannel_logout_uri: String,
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

/// Prepares the IdP's demo folder, database, citizens and manufacturers; returns settings
/// for `idp::Application::build` with the IdP on `port` and the stubs at `stubs`.
pub async fn prepare(
    dir: &Path,
    port: u16,
    stubs: &str,
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

    let mut settings = Settings::defaults();
    settings.listen = ([127, 0, 0, 1], port).into();
    settings.issuer = format!("http://localhost:{port}");
    settings.storage.database_url = Secret::new(format!(
        "sqlite://{}?mode=rwc",
        dir.join("idp.db").display()
    ));
    settings.secret_key = Secret::new(secret.clone());
    settings.registry_url = stubs.to_owned();
    settings.ownership_url = stubs.to_owned();
    settings.sms_url = stubs.to_owned();
    // Demo visitors solve the proof of work in their browser: keep it quick.
    settings.pow_difficulty = 16;

    let db = Db::connect(settings.storage.database_url.expose(), 4).await?;
    db.migrate().await?;
    let keys = Keyring::new(secret.as_bytes());
    let now = service_kit::clock::now();
    let mut clients = Vec::new();
    for m in manufacturers {
        let cid = ClientId::parse(m.id).map_err(|e| anyhow::anyhow!("{}: {e}", m.id))?;
        let secret = if db.client(&cid).await?.is_some() {
            // A restarted demo hands its storefronts a fresh secret; the old one is gone.
            admin::rotate_secret(&db, &keys, m.id, 0, "demo", now).await?
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
                allowed_scopes: vec!["profile".into(), "phone".into(), "national_id".into()],
                subject_type: idp::domain::SubjectType::Pairwise,
                sector_identifier: Some(format!("{}.storefront", m.id)),
                backchannel_logout_uri: Some(m.backchannel_logout_uri.clone()),
                private_key_jwt: None,
                private_callbacks: true,
            };
            admin::add_client(&db, &keys, new, "demo", now).await?.1
        };
        // One storefront pushes its requests, and the IdP requires it of it.
        if m.id == PUSHING {
            admin::set_par(&db, m.id, true, "demo", now).await?;
        }
        clients.push(DemoClient {
            id: m.id.into(),
            name: m.name.into(),
            secret,
            redirect_uri: m.redirect_uri.clone(),
        });
    }
    let ministry = crate::deploy::register_ministry_client(&db, &keys).await?;
    let makers: Vec<(&str, &str, &str)> = manufacturers
        .iter()
        .map(|m| (m.id, m.name, m.name_fa))
        .collect();
    let seed_clients = crate::deploy::register_seed_clients(&db, &keys, &makers).await?;
    db.close().await;
    Ok(Demo {
        settings,
        citizens,
        clients,
        seed_clients,
        ministry,
    })
}

/// Where the demo listens.
pub struct Ports {
    pub idp: u16,
    pub presale: u16,
    pub stubs: u16,
}

/// Runs the IdP alone (with the stubs) until Ctrl-C or SIGTERM.
pub async fn run_idp(dir: &Path, ports: &Ports) -> anyhow::Result<()> {
    let stub_url = format!("http://localhost:{}", ports.stubs);
    let manufacturers = demo_manufacturers(&format!("http://localhost:{}", ports.presale));
    let demo = prepare(&dir.join("idp"), ports.idp, &stub_url, &manufacturers).await?;
    serve_stubs(&demo.citizens, ports.stubs, &stub_url).await?;
    let issuer = demo.settings.issuer.clone();
    let app = idp::Application::build(demo.settings).await?;
    println!("\nemta IdP demo is running\n");
    println!("  IdP (issuer)      {issuer}");
    println!("  discovery         {issuer}/.well-known/openid-configuration");
    println!("  citizen account   {issuer}/account   (walks the whole verification flow)");
    println!("  SMS outbox        {stub_url}/outbox   (the codes the demo 'sent')");
    for c in &demo.clients {
        println!(
            "  client {:<12} secret {}  redirect {}",
            c.id, c.secret, c.redirect_uri
        );
    }
    print_citizens(dir, &demo.citizens);
    app.run_until_stopped(service_kit::shutdown::shutdown_signal())
        .await?;
    Ok(())
}

const MAKERS: [(&str, &str, &str, u8); 2] = [
    ("saipa", "Saipa", "سایپا", 4),
    ("iran-khodro", "Iran Khodro", "ایران خودرو", 5),
];

fn demo_manufacturers(base: &str) -> Vec<DemoManufacturer<'static>> {
    MAKERS
        .iter()
        .map(|(id, name, name_fa, stars)| DemoManufacturer {
            id,
            name,
            name_fa,
            stars: *stars,
            redirect_uri: format!("{base}/{id}/callback"),
            post_logout_uri: format!("{base}/{id}/"),
            backchannel_logout_uri: format!("{base}/{id}/backchannel-logout"),
        })
        .collect()
}

/// The stub civil registry, mobile ownership and SMS gateway, on loopback.
async fn serve_stubs(citizens: &[FixtureCitizen], port: u16, url: &str) -> anyhow::Result<()> {
    let stubs = StubServices::new(citizens.to_vec());
    stubs
        .clone()
        .serve(([127, 0, 0, 1], port).into(), std::future::pending())
        .await?;
    // The bank's pages at the address the browser and presale know it by.
    *stubs.bank.base.lock().unwrap_or_else(|p| p.into_inner()) = format!("{url}/bank");
    Ok(())
}

fn print_citizens(dir: &Path, citizens: &[FixtureCitizen]) {
    println!(
        "\n  synthetic citizens (mobile, national ID, Jalali birth date); all in {}:",
        dir.join("idp/citizens.json").display()
    );
    for c in citizens.iter().take(3) {
        println!("    {}  {}  {}", c.mobile, c.national_id, c.birth_date);
    }
    println!("\nCtrl-C stops it; rm -rf {} starts over.", dir.display());
}

/// The demo campaign: Saipa Shahin, 100 units, opening `opens_in` minutes from `now`.
fn demo_license(now: i64, opens_in: i64) -> NewLicense {
    let opens = now + opens_in * 60;
    NewLicense {
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
        parties: crate::parties::commitments("saipa"),
        seed_delay: Some(crate::parties::SEED_DELAY),
        // The real rounds' registration: a driving licence, no car in 48 months, and the
        // down payment held at a participating bank before joining.
        registration: Some(presale::domain::Registration {
            driving_licence: true,
            no_vehicle_months: Some(presale::domain::Registration::VEHICLE_MONTHS),
            hold: Some(presale::domain::HoldTerms {
                banks: vec![crate::deploy::STUB_BANK.into()],
                amount: 2_000_000_000,
                title: "پیش‌فروش شاهین — دوره نمایشی / Shahin presale, demo round".into(),
                before: presale::domain::HoldBefore::Entry,
            }),
        }),
    }
}

/// The whole system until Ctrl-C or SIGTERM: stubs, the IdP, the storefronts, a campaign.
/// The license number a person proposes from the console in the demo: the manufacturers'
/// commitments for it are sent at start.
pub const DEMO_LICENSE_NO: &str = "DEMO-1405-0002";

pub async fn run(dir: &Path, ports: &Ports, opens_in: i64) -> anyhow::Result<()> {
    let base = format!("http://localhost:{}", ports.presale);
    let stub_url = format!("http://localhost:{}", ports.stubs);
    let mut demo = prepare(
        &dir.join("idp"),
        ports.idp,
        &stub_url,
        &demo_manufacturers(&base),
    )
    .await?;
    serve_stubs(&demo.citizens, ports.stubs, &stub_url).await?;
    demo.settings.trust_forwarded_for = true;
    // The trust badge's page names the licensed campaigns presale lists (issue 34).
    demo.settings.presale_url = Some(base.clone());
    let issuer = demo.settings.issuer.clone();
    let secret = demo.settings.secret_key.expose().to_owned();
    let idp_app = idp::Application::build(demo.settings).await?;
    tokio::spawn(idp_app.run_until_stopped(std::future::pending()));

    let database_url = format!("sqlite://{}?mode=rwc", dir.join("presale.db").display());
    let store = Store::connect(&database_url, 4).await?;
    store.migrate().await?;
    let now = service_kit::clock::now();
    // The ministry's late-delivery compensation rates (issue 34), a month: 2.5% for an
    // immediate sale and a firm presale, the deposit rate plus 1% (2.9%) for a regular
    // presale and participation, 3% for custom orders.
    if store.compensation_rates().await?.is_empty() {
        use presale::domain::after_sale::{Rate, SaleKind};
        for (kind, monthly_bp) in [
            (SaleKind::Immediate, 250),
            (SaleKind::Firm, 250),
            (SaleKind::Regular, 290),
            (SaleKind::Participation, 290),
            (SaleKind::Custom, 300),
            (SaleKind::CustomImported, 300),
        ] {
            let rate = Rate {
                from: now,
                monthly_bp,
            };
            store
                .set_compensation_rate(kind, rate, "cli:demo", now)
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    if store.licenses().await?.iter().all(|l| l.closes_at <= now) {
        store
            .issue_license(&demo_license(now, opens_in), now)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // An administrator and two ministry issuers for the console (a change to a campaign
    // needs a second issuer's approval), and the demo campaign's manufacturer's
    // representative: passwords printed, TOTP enrolments written.
    let mut staff_notes = Vec::new();
    let maker = demo_license(now, opens_in).manufacturer;
    let representative = format!("{maker}.rep");
    for (user, role) in [
        ("admin", Role::Administrator),
        ("ministry", Role::Issuer),
        ("ministry.two", Role::Issuer),
        (representative.as_str(), Role::Representative),
    ] {
        let qr = dir.join(format!("{user}-totp.svg"));
        let added = if role == Role::Representative {
            store
                .add_representative(user, "demo-password-1403", &maker, "demo", now)
                .await
        } else {
            store
                .add_staff(user, "demo-password-1403", role, "demo", now)
                .await
        };
        let note = match added {
            Ok(e) => {
                std::fs::write(&qr, e.qr_svg)?;
                format!(
                    "{} {user}, password demo-password-1403, TOTP: scan {} or add {}",
                    role.as_str(),
                    qr.display(),
                    e.otpauth_uri
                )
            }
            Err(StaffError::Exists) => format!(
                "{} {user}, password demo-password-1403, TOTP as enrolled before ({})",
                role.as_str(),
                qr.display()
            ),
            Err(e) => return Err(e.into()),
        };
        staff_notes.push(note);
    }
    let staff_note = staff_notes.join("\n                     ");
    // The seed's parties, played by the machine: they reveal as soon as the list is frozen.
    tokio::spawn(crate::parties::reveal_when_frozen(store.clone()));
    let storefronts: Vec<StorefrontConfig> = demo
        .clients
        .iter()
        .filter_map(|c| {
            let (_, name, name_fa, _) = MAKERS.iter().find(|m| m.0 == c.id)?;
            Some(StorefrontConfig {
                id: c.id.clone(),
                name: (*name).into(),
                name_fa: (*name_fa).into(),
                client_secret: presale::config::Secret::new(c.secret.clone()),
                push_requests: c.id == PUSHING,
            })
        })
        .collect();
    let mut settings = crate::deploy::presale_settings(
        ([127, 0, 0, 1], ports.presale).into(),
        &base,
        &issuer,
        &secret,
        &storefronts,
    );
    settings.storage.database_url = presale::config::Secret::new(database_url);
    // Complaints' attachments beside the database; the after-sale record every 30 s.
    settings.files_dir = dir.join("files");
    settings.record_every_secs = 30;
    settings.ministry_client_id = Some(demo.ministry.0.clone());
    settings.traffic_police_url = Some(stub_url.clone());
    settings.sms_url = Some(stub_url.clone());
    settings.banks = vec![crate::deploy::stub_bank(
        &stub_url,
        &testkit::bank::StubBank::default(),
    )];
    settings.vehicle_registry_url = Some(stub_url.clone());
    settings.ministry_client_secret = Some(presale::config::Secret::new(demo.ministry.1.clone()));
    let service = presale::Application::build(settings).await?;
    // The manufacturers' back-ends send their seed commitments for the next license
    // number through their own credentials at the IdP, as real ones would: a license for
    // it can be proposed in the console once the ministry's is entered there.
    let makers = demo.seed_clients.clone();
    let (issuer_c, base_c) = (issuer.clone(), base.clone());
    tokio::spawn(async move {
        for _ in 0..50 {
            let mut all = true;
            for (id, secret) in &makers {
                let sent = crate::parties::commit_through_idp(
                    &issuer_c,
                    &base_c,
                    id,
                    secret,
                    DEMO_LICENSE_NO,
                )
                .await;
                all &= sent.is_ok();
            }
            if all {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        tracing::warn!("the demo manufacturers' seed commitments were not sent");
    });
    let ministry_commitment = crate::parties::contribution("ministry")
        .commitment()
        .commitment;
    println!("\nemta demo is running (embedded defaults: SQLite, in-process stores)\n");
    println!("  storefronts        {base}/   ({base}/saipa/ and {base}/iran-khodro/)");
    println!(
        "  national login     {issuer}   (discovery: {issuer}/.well-known/openid-configuration)"
    );
    println!("  citizen account    {issuer}/account");
    println!("  SMS outbox (stub)  {stub_url}/outbox   (read your code here)");
    println!("  ministry console   {base}/ministry");
    println!("                     {staff_note}");
    println!(
        "  run a campaign     as ministry.two, enter the ministry's seed commitment for license number"
    );
    println!(
        "                     {DEMO_LICENSE_NO} at {base}/ministry/commitments: {ministry_commitment}"
    );
    println!(
        "                     (both manufacturers' arrived through their own credentials); then as ministry"
    );
    println!(
        "                     propose it at {base}/ministry/licenses/new and approve it as ministry.two"
    );
    println!(
        "  demo campaign      Saipa Shahin, 100 units, opens {opens_in} min after the first start"
    );
    print_citizens(dir, &demo.citizens);
    service
        .run_until_stopped(service_kit::shutdown::shutdown_signal())
        .await?;
    Ok(())
}
