//! Token endpoint and citizen-flow benchmark (`cargo bench -p idp --bench token`).
//!
//! Starts the real IdP in-process on the embedded defaults (SQLite + in-process store) or,
//! with `EMTA_BENCH_REDIS_URL` and `EMTA_BENCH_POSTGRES_URL`, on PostgreSQL + Redis, and
//! drives it over HTTP with a fixed number of concurrent clients:
//! - `client_credentials`: a manufacturer back-end asking for a token;
//! - `authorization_code`: code exchange with PKCE and an ES256 ID token (codes are minted
//!   beforehand through the same code path the consent page uses);
//! - `refresh_token`: rotation with reuse detection;
//! - the full citizen flow: authorize, proof of work, SMS code, identity, consent, token.
//!
//! Prints throughput and HDR latency percentiles; results are recorded in BENCHMARKS.md.

use std::sync::Arc;

use idp::admin::{self, NewClient};
use idp::domain::{Citizen, JalaliDate, MobileNumber, NationalId, SigningAlg};
use idp::flow::authorize::{AuthRequest, Prompt};
use idp::{Application, Settings};
use testkit::{generate_citizens, FixtureCitizen, StubServices};
use tokio::sync::Mutex;

const CONCURRENCY: usize = 32;

/// Runs `total` requests over `CONCURRENCY` tasks; `make(i)` performs request `i`.
async fn drive<F, Fut>(name: &'static str, total: usize, make: F) -> testkit::drive::Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    testkit::drive::drive(name, total, CONCURRENCY, make).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale: usize = std::env::var("EMTA_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let citizens = generate_citizens(2000, 7);
    let stub = StubServices::new(citizens.clone());
    let stub_url = stub.start().await;
    let dir = testkit::servers::TempDir::new("emta-bench")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut s = Settings::defaults();
    s.issuer = format!("http://localhost:{port}");
    let backend = match (
        std::env::var("EMTA_BENCH_POSTGRES_URL"),
        std::env::var("EMTA_BENCH_REDIS_URL"),
    ) {
        (Ok(pg), Ok(redis)) => {
            s.storage.database_url = idp::config::Secret::new(pg);
            s.storage.redis_url = idp::config::Secret::new(redis);
            s.storage.redis_prefix = format!("bench{}", std::process::id());
            "PostgreSQL + Redis"
        }
        _ => {
            s.storage.database_url = idp::config::Secret::new(format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("idp.db").display()
            ));
            "SQLite + in-process store"
        }
    };
    // 32 random bytes (the strength check refuses a patterned key, as it should).
    s.secret_key = idp::config::Secret::new("tbT/3jUFn/kP2NjFDptD7XlSaf0x5m23CEwFdGuatsQ=");
    s.registry_url = stub_url;
    s.ownership_url = s.registry_url.clone();
    s.sms_url = s.registry_url.clone();
    s.pow_difficulty = 8;
    s.resend_secs = 0;
    s.sms_per_phone = 1_000_000;
    s.sms_per_ip = 1_000_000;
    s.token_rps_per_client = 1_000_000;
    // The gateways' contracted rates would pace the flow, not the IdP: out of the way.
    s.sms_rps = 1_000_000;
    s.registry_rps = 1_000_000;
    s.identity_tries_per_ip = 1_000_000;
    s.logins_per_ip = 1_000_000;
    s.logins_per_client_rps = 1_000_000;
    let app = Application::build_with_listener(s, listener).await?;
    let core = app.core();
    let base = format!("http://localhost:{port}");
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let redirect_uri = "http://localhost:9/cb".to_string();
    let (_, secret) = admin::add_client(
        &core.db,
        &core.keyring,
        NewClient {
            id: "bench".into(),
            name: "Bench".into(),
            name_fa: "بنچ".into(),
            stars: 5,
            redirect_uris: vec![redirect_uri.clone()],
            post_logout_redirect_uris: vec![],
            service_scopes: vec!["presale.read".into()],
            id_token_alg: SigningAlg::ES256,
            valid_days: 365,
            allowed_scopes: vec!["profile".into(), "phone".into(), "national_id".into()],
            subject_type: idp::domain::SubjectType::Pairwise,
            sector_identifier: None,
            backchannel_logout_uri: None,
            private_key_jwt: None,
            private_callbacks: true,
        },
        "bench",
        idp::now(),
    )
    .await?;
    core.reload().await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let token_url = format!("{base}/token");

    println!("\nemta idp token benchmark: {backend}, {CONCURRENCY} concurrent clients\n");
    println!("{}", testkit::drive::HEADER);

    // Warm-up.
    {
        let (http, url, secret) = (http.clone(), token_url.clone(), secret.clone());
        drive("warm-up", 500, move |_| {
            let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
            async move { cc(&http, &url, &secret).await }
        })
        .await;
    }

    // `EMTA_BENCH_ONLY=authorization_code` runs one operation (for profiling).
    let only = std::env::var("EMTA_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only == name;
    let cc_total = if wanted("client_credentials") {
        20_000 * scale
    } else {
        0
    };
    let (h, u, sec) = (http.clone(), token_url.clone(), secret.clone());
    drive("client_credentials", cc_total, move |_| {
        let (http, url, secret) = (h.clone(), u.clone(), sec.clone());
        async move { cc(&http, &url, &secret).await }
    })
    .await
    .print();

    // Codes minted through the consent page's code path, for one verified citizen.
    let c0 = &citizens[0];
    let citizen = core
        .db
        .upsert_citizen(
            &Citizen {
                id: "c-bench".into(),
                national_id: NationalId::parse(&c0.national_id)?,
                mobile: MobileNumber::parse(&c0.mobile)?,
                given_name: c0.given_name.clone(),
                family_name: c0.family_name.clone(),
                birth_date: JalaliDate::parse(&c0.birth_date)?,
                verified_at: idp::now(),
            },
            idp::now(),
        )
        .await?;
    let n_codes = if wanted("authorization_code") || wanted("refresh_token") {
        5_000 * scale
    } else {
        0
    };
    let verifier = "v".repeat(43);
    let challenge = idp::crypto::b64(&idp::crypto::sha256(verifier.as_bytes()));
    let mut codes = Vec::with_capacity(n_codes);
    let bench_id = idp::domain::ClientId::parse("bench").expect("a client id");
    let bench_uri = idp::domain::RedirectUri::parse(&redirect_uri).expect("a redirect URI");
    for _ in 0..n_codes {
        let req = AuthRequest {
            client_id: bench_id.clone(),
            redirect_uri: bench_uri.clone(),
            scope: idp::domain::Scopes::parse_known(
                "openid profile phone national_id",
                idp::domain::client::KNOWN_SCOPES,
            ),
            state: None,
            nonce: Some("n".into()),
            code_challenge: challenge.clone(),
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
            english: false,
            hint_sub: None,
        };
        let url = core
            .tokens()
            .issue_code(&req, &citizen.id, "sid", idp::now(), idp::now())
            .await?;
        let code = url::Url::parse(&url)?
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        codes.push(code);
    }
    let codes = Arc::new(codes);
    let refresh_tokens = Arc::new(Mutex::new(Vec::with_capacity(n_codes)));
    let (h, u, sec, cs, rts, ru, v) = (
        http.clone(),
        token_url.clone(),
        secret.clone(),
        codes.clone(),
        refresh_tokens.clone(),
        redirect_uri.clone(),
        verifier.clone(),
    );
    drive("authorization_code", n_codes, move |i| {
        let (http, url, secret, codes, rts, ru, v) = (
            h.clone(),
            u.clone(),
            sec.clone(),
            cs.clone(),
            rts.clone(),
            ru.clone(),
            v.clone(),
        );
        async move {
            let r = http
                .post(&url)
                .basic_auth("bench", Some(&secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", codes[i].as_str()),
                    ("redirect_uri", ru.as_str()),
                    ("code_verifier", v.as_str()),
                ])
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => {
                    let j: serde_json::Value = r.json().await.unwrap_or_default();
                    if let Some(rt) = j["refresh_token"].as_str() {
                        rts.lock().await.push(rt.to_owned());
                    }
                    j["id_token"].is_string()
                }
                _ => false,
            }
        }
    })
    .await
    .print();

    let rts = Arc::new(std::mem::take(&mut *refresh_tokens.lock().await));
    let (h, u, sec) = (http.clone(), token_url.clone(), secret.clone());
    let n = rts.len();
    drive("refresh_token", n, move |i| {
        let (http, url, secret, rts) = (h.clone(), u.clone(), sec.clone(), rts.clone());
        async move {
            http.post(&url)
                .basic_auth("bench", Some(&secret))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rts[i].as_str()),
                ])
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await
    .print();

    let (h, b) = (http.clone(), base.clone());
    drive(
        "discovery",
        if wanted("discovery") {
            20_000 * scale
        } else {
            0
        },
        move |_| {
            let (http, base) = (h.clone(), b.clone());
            async move {
                http.get(format!("{base}/.well-known/openid-configuration"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        },
    )
    .await
    .print();

    // The whole citizen journey, one new browser per citizen (no SSO).
    let flows = if wanted("full citizen flow") {
        300 * scale
    } else {
        0
    };
    let (b, st, sec, ru, cz) = (
        base.clone(),
        stub.clone(),
        secret.clone(),
        redirect_uri.clone(),
        Arc::new(citizens.clone()),
    );
    drive("full citizen flow", flows.min(1900), move |i| {
        let (base, stub, secret, ru, citizens) =
            (b.clone(), st.clone(), sec.clone(), ru.clone(), cz.clone());
        async move {
            citizen_flow(&base, &stub, &secret, &ru, &citizens[i + 1])
                .await
                .is_ok()
        }
    })
    .await
    .print();
    println!();
    drop(dir);
    Ok(())
}

async fn cc(http: &reqwest::Client, url: &str, secret: &str) -> bool {
    http.post(url)
        .basic_auth("bench", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

fn input(body: &str, name: &str) -> String {
    testkit::forms::input(body, name).unwrap_or_default()
}

async fn citizen_flow(
    base: &str,
    stub: &StubServices,
    secret: &str,
    redirect_uri: &str,
    who: &FixtureCitizen,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let verifier = idp::crypto::random_token(32);
    let challenge = idp::crypto::b64(&idp::crypto::sha256(verifier.as_bytes()));
    let auth = format!(
        "{base}/authorize?response_type=code&client_id=bench&redirect_uri={}&scope=openid%20profile%20national_id&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect::<String>()
    );
    let loc = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let r = http.get(&auth).send().await?;
    let tx = loc(&r);
    let page = http.get(format!("{base}{tx}")).send().await?.text().await?;
    let pow = input(&page, "pow_challenge");
    let nonce = testkit::login::solve_pow(&pow);
    let csrf = input(&page, "csrf");
    let r = http
        .post(format!("{base}{tx}/phone"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("mobile", who.mobile.as_str()),
            ("pow_challenge", pow.as_str()),
            ("pow_nonce", nonce.as_str()),
        ])
        .send()
        .await?;
    anyhow::ensure!(r.status() == 303, "phone {}", r.status());
    let code = stub.outbox.latest_code(&who.mobile).unwrap_or_default();
    let r = http
        .post(format!("{base}{tx}/otp"))
        .form(&[("csrf", csrf.as_str()), ("code", code.as_str())])
        .send()
        .await?;
    anyhow::ensure!(r.status() == 303, "otp {}", r.status());
    let r = http
        .post(format!("{base}{tx}/identity"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("national_id", who.national_id.as_str()),
            ("birth_date", who.birth_date.as_str()),
        ])
        .send()
        .await?;
    anyhow::ensure!(r.status() == 303, "identity {}", r.status());
    let r = http
        .post(format!("{base}{tx}/consent"))
        .form(&[("csrf", csrf.as_str()), ("decision", "approve")])
        .send()
        .await?;
    let back = loc(&r);
    let code = url::Url::parse(&back)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let r = http
        .post(format!("{base}/token"))
        .basic_auth("bench", Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "token {}", r.status());
    Ok(())
}
