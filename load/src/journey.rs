//! One citizen's journey over HTTP, as their browser walks it: the storefront, the IdP's
//! pages (proof of work, SMS code, identity, consent), back to the storefront, join the
//! queue, wait as the waiting page does, apply when admitted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use testkit::forms::{attribute, form_action, input};
use testkit::FixtureCitizen;
use url::Url;

use crate::http::{Browser, Fail, Http, Page};
use crate::record::{Campaign, JoinRecord, Outcome, Recorder};
use crate::run::Cancel;

/// How long a person who retries keeps coming back to a step while its page tells them
/// when (a minute: on the day of a presale people do not give up after three tries).
const TOLD_TO_COME_BACK_FOR: Duration = Duration::from_secs(60);

/// Where each citizen's SMS code is read.
#[derive(Clone)]
pub enum Codes {
    /// The stub gateway this process serves.
    Outbox(testkit::Outbox),
    /// A stub gateway's or a dev IdP's outbox over HTTP: `GET {url}?to={mobile}`.
    Http(Url),
}

/// What every journey of a run shares.
#[derive(Clone)]
pub struct Journey {
    pub http: Http,
    pub rec: Arc<Recorder>,
    pub codes: Codes,
    pub storefront: String,
    pub campaign: Option<String>,
    /// Multiplies the waiting page's poll intervals (1.0 is what browsers do).
    pub poll_scale: f64,
    /// A waiting citizen who is neither admitted nor closed out after this long fails.
    pub max_wait: Duration,
    pub spoof_ips: bool,
}

/// How one citizen behaves (drawn from the run's mix).
#[derive(Debug, Clone, Default)]
pub struct Traits {
    /// Signed in at another manufacturer earlier: the IdP asks only for consent.
    pub returning: bool,
    /// Leaves the waiting room after this long.
    pub patience: Option<Duration>,
    /// Retries a step that failed with overload or a network error, this many times.
    pub retries: u32,
    /// Types a wrong SMS code first.
    pub wrong_code: bool,
    /// Also joins and applies from a second device.
    pub second_device: bool,
}

pub struct Person {
    pub index: usize,
    pub citizen: FixtureCitizen,
    pub traits: Traits,
    /// The place the first of their devices got in the queue.
    pub place: std::sync::Mutex<Option<String>>,
    /// When the first join request of any of their devices, on any pass, was sent
    /// (seconds since the start): see [`Person::join_sent`].
    first_join: std::sync::Mutex<Option<f64>>,
}

impl Person {
    pub fn new(index: usize, citizen: FixtureCitizen, traits: Traits) -> Self {
        Self {
            index,
            citizen,
            traits,
            place: Default::default(),
            first_join: Default::default(),
        }
    }

    /// Notes a join request sent at `at` and answers when this person's first one was
    /// sent. A person holds one place, whichever request got it: a second device's join
    /// that was answered first, or a join that committed while its answer was lost (a
    /// crash, a Redis wipe) before signing in again. Their place is judged against that
    /// first request; judged against a later one, the place they already held looked
    /// ahead of people who came in between (the 150/s rehearsal's 6 "out of order").
    pub fn join_sent(&self, at: f64) -> f64 {
        let mut first = self.first_join.lock().unwrap_or_else(|e| e.into_inner());
        *first.get_or_insert(at)
    }
}

#[derive(Deserialize)]
struct Status {
    ticket: Option<i64>,
    ahead: Option<i64>,
    admitted: bool,
    closed: bool,
    /// Every unit left is promised to the admitted: the citizen is told, and waits on
    /// (the page says it will tell them if a promise lapses).
    #[serde(default)]
    promised: bool,
}

fn ip_of(index: usize, device: u8) -> String {
    let first = if device == 1 { 10 } else { 100 };
    format!(
        "{first}.{}.{}.{}",
        (index >> 16) & 255,
        (index >> 8) & 255,
        index & 255
    )
}

/// Why a journey stopped before an outcome of its own.
enum Stop {
    Fail(&'static str, Fail),
}

/// One device of one citizen walking the pages.
struct Walk<'a> {
    j: &'a Journey,
    p: &'a Person,
    b: Browser,
    /// When the next step was meant to start.
    next: Instant,
    /// The step being walked (reported if the run is interrupted).
    step: &'static str,
    device: u8,
}

enum Req {
    Go(Url),
    Post(Url, Vec<(&'static str, String)>),
}

fn has(p: &Page, s: &str) -> bool {
    p.body.contains(s)
}

/// A page of the IdP's sign-in (the phone step, or consent for a citizen it still knows).
fn is_sign_in(p: &Page) -> bool {
    has(p, "name=\"mobile\"") || has(p, "name=\"decision\"")
}

fn ok_page(p: &Page) -> Result<(), Fail> {
    if p.status >= 400 {
        return Err(Fail::Status {
            status: p.status,
            retry_after: p.retry_after,
        });
    }
    Ok(())
}

impl<'a> Walk<'a> {
    fn new(j: &'a Journey, p: &'a Person, device: u8, next: Instant) -> Self {
        let ip = j.spoof_ips.then(|| ip_of(p.index, device));
        Self {
            j,
            p,
            b: Browser::new(ip),
            next,
            step: "storefront",
            device,
        }
    }

    /// One step: the request (with the person's retries), recorded from `self.next`. A
    /// person who retries does so `retries` times after a failure, and for as long as
    /// [`TOLD_TO_COME_BACK_FOR`] while the page says when to come back (503 or 429 with
    /// Retry-After: the busy page asks them to try again in a few seconds).
    async fn step(
        &mut self,
        name: &'static str,
        req: Req,
        check: impl Fn(&Page) -> Result<(), Fail>,
    ) -> Result<Page, Stop> {
        self.step_with(name, req, check, self.p.traits.retries)
            .await
    }

    /// [`Walk::step`] with its own number of retries (0 where a retry must start over).
    async fn step_with(
        &mut self,
        name: &'static str,
        req: Req,
        check: impl Fn(&Page) -> Result<(), Fail>,
        retries: u32,
    ) -> Result<Page, Stop> {
        self.step = name;
        let mut attempt = 0;
        let started = Instant::now();
        let mut req = req;
        loop {
            let (r, asked) = match &req {
                Req::Go(u) => (self.j.http.go(&self.b, u).await, u),
                Req::Post(u, f) => {
                    let form: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    (self.j.http.post(&self.b, u, &form).await, u)
                }
            };
            // Where a redirect took the browser: a retry reloads that page (the storefront's
            // callback, say), as a person does, rather than sending the first request again
            // (a consent already given, a code already spent).
            let landed = r
                .as_ref()
                .ok()
                .map(|p| p.url.clone())
                .filter(|u| u != asked);
            // The last answer's own time, and which page it was when it was a refusal.
            let last = r.as_ref().ok().map(|p| {
                let page = if p.status == 503 {
                    p.name()
                } else {
                    String::new()
                };
                (p.took, page)
            });
            let r = r.and_then(|p| check(&p).map(|()| p));
            let last = last.as_ref().map(|(took, page)| (*took, page.as_str()));
            self.j
                .rec
                .step_answered(name, self.next, r.as_ref().map(|p| p.status), last);
            self.next = Instant::now();
            match r {
                Ok(p) => {
                    if attempt > 0 {
                        self.j.rec.retried_ok();
                    }
                    return Ok(p);
                }
                Err(f)
                    if f.retryable()
                        && (attempt < retries
                            || (retries > 0
                                && f.retry_after().is_some()
                                && started.elapsed() < TOLD_TO_COME_BACK_FOR)) =>
                {
                    attempt += 1;
                    let wait = f.retry_after().unwrap_or(1 << attempt).min(60);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    self.next = Instant::now();
                    if let Some(u) = landed {
                        req = Req::Go(u);
                    }
                }
                Err(f) => return Err(Stop::Fail(name, f)),
            }
        }
    }

    fn storefront_url(&self, front: &str, path: &str) -> Result<Url, Stop> {
        self.j
            .http
            .targets()
            .presale
            .join(&format!("/{front}/{path}"))
            .map_err(|_| Stop::Fail("storefront", Fail::Page("a storefront URL")))
    }

    /// Signs in at storefront `front`; the storefront page afterwards. A sign-in that
    /// ends on an error page (the login gone with a store, a code already spent by a
    /// request whose answer was lost, a server down) is started again from the storefront,
    /// twice at most, as a person would.
    async fn sign_in(&mut self, front: &str) -> Result<Page, Stop> {
        let mut again = 0;
        loop {
            match self.sign_in_once(front).await {
                Err(Stop::Fail(_, f)) if again < 2 && f.start_over() => {
                    again += 1;
                    self.j.rec.started_over();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.next = Instant::now();
                }
                r => return r,
            }
        }
    }

    async fn sign_in_once(&mut self, front: &str) -> Result<Page, Stop> {
        let login = self.storefront_url(front, "login")?;
        let home = self.storefront_url(front, "")?;
        let mut tries = 0;
        let mut p = loop {
            let p = self
                .step("storefront", Req::Go(login.clone()), ok_page)
                .await?;
            if !has(&p, "name=\"mobile\"") {
                break p;
            }
            match self.verify(&p).await {
                Ok(p) => break p,
                // Told to wait (a new code only once a minute per phone, as a second
                // device is; or throttled): a person waits as told and starts again with
                // a fresh page, since a proof of work is good for one try only.
                Err(Stop::Fail("phone", f)) if f.status() == Some(429) && tries < 3 => {
                    tries += 1;
                    let wait = f.retry_after().unwrap_or(60).min(120);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    self.next = Instant::now();
                }
                Err(e) => return Err(e),
            }
        };
        if has(&p, "name=\"decision\"") {
            let action = action(&p, "/consent", "consent")?;
            let form = vec![
                ("csrf", input(&p.body, "csrf").unwrap_or_default()),
                ("decision", "approve".into()),
            ];
            p = self
                .step("consent", Req::Post(action, form), ok_page)
                .await?;
        }
        if p.url.path() != home.path() {
            return Err(Stop::Fail(self.step, Fail::Page("back at the storefront")));
        }
        if self.b.idp_replicas_seen() > 1 {
            self.j.rec.login_across_replicas();
        }
        self.j.rec.signed_in(self.p.index, front);
        Ok(p)
    }

    /// The IdP's verification pages from the phone page on: proof of work, SMS code,
    /// national ID and birth date. The page after the identity step.
    async fn verify(&mut self, phone: &Page) -> Result<Page, Stop> {
        let c = &self.p.citizen;
        let challenge = input(&phone.body, "pow_challenge").unwrap_or_default();
        let solving = Instant::now();
        let ch = challenge.clone();
        let nonce = tokio::task::spawn_blocking(move || testkit::login::solve_pow(&ch))
            .await
            .map_err(|_| Stop::Fail("phone", Fail::Page("a proof of work")))?;
        self.j.rec.client("proof of work", solving.elapsed());
        self.next = Instant::now();
        let before = self.latest_code().await;
        let form = vec![
            ("csrf", input(&phone.body, "csrf").unwrap_or_default()),
            ("mobile", c.mobile.clone()),
            ("pow_challenge", challenge),
            ("pow_nonce", nonce),
        ];
        let second = self.device > 1;
        let otp = self
            .step_with(
                "phone",
                Req::Post(action(phone, "/phone", "phone")?, form),
                |p| {
                    // A second device asking for a code within the minute is told to wait:
                    // planned, not an error.
                    if second && p.status == 429 {
                        return Ok(());
                    }
                    ok_page(p)?;
                    if has(p, "name=\"code\"") {
                        Ok(())
                    } else {
                        Err(Fail::Page("the SMS code form"))
                    }
                },
                0,
            )
            .await?;
        if otp.status == 429 {
            return Err(Stop::Fail(
                "phone",
                Fail::Status {
                    status: 429,
                    retry_after: otp.retry_after,
                },
            ));
        }
        let code = self.code(before).await?;
        let otp_action = action(&otp, "/otp", "otp")?;
        let csrf = input(&otp.body, "csrf").unwrap_or_default();
        let mut otp = otp;
        if self.p.traits.wrong_code {
            let wrong = format!("{:06}", (code.parse::<u32>().unwrap_or(0) + 1) % 1_000_000);
            otp = self
                .step(
                    "otp (wrong code)",
                    Req::Post(
                        otp_action.clone(),
                        vec![("csrf", csrf.clone()), ("code", wrong)],
                    ),
                    |p| {
                        if p.status >= 500 || p.status == 429 {
                            return ok_page(p);
                        }
                        if has(p, "name=\"code\"") {
                            Ok(())
                        } else {
                            Err(Fail::Page("a wrong code refused"))
                        }
                    },
                )
                .await?;
        }
        let csrf = input(&otp.body, "csrf").unwrap_or(csrf);
        let identity = self
            .step(
                "otp",
                Req::Post(otp_action, vec![("csrf", csrf), ("code", code)]),
                |p| {
                    ok_page(p)?;
                    if has(p, "name=\"national_id\"") {
                        Ok(())
                    } else {
                        Err(Fail::Page("the identity form"))
                    }
                },
            )
            .await?;
        let form = vec![
            ("csrf", input(&identity.body, "csrf").unwrap_or_default()),
            ("national_id", c.national_id.clone()),
            ("birth_date", c.birth_date.clone()),
        ];
        self.step(
            "identity",
            Req::Post(action(&identity, "/identity", "identity")?, form),
            ok_page,
        )
        .await
    }

    async fn latest_code(&self) -> Option<String> {
        let mobile = testkit::citizens::e164(&self.p.citizen.mobile)?;
        let list: Vec<testkit::stubs::OutboxEntry> = match &self.j.codes {
            Codes::Outbox(o) => o.list(Some(&mobile), 1),
            Codes::Http(u) => {
                let mut u = u.clone();
                u.query_pairs_mut().append_pair("to", &mobile);
                self.j
                    .http
                    .client()
                    .get(u)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?
            }
        };
        list.first().and_then(|e| testkit::stubs::code_in(&e.text))
    }

    /// The code the gateway delivered after the phone step (not `before`, an older one).
    async fn code(&mut self, before: Option<String>) -> Result<String, Stop> {
        self.step = "sms";
        for _ in 0..100 {
            if let Some(c) = self
                .latest_code()
                .await
                .filter(|c| Some(c) != before.as_ref())
            {
                self.j.rec.step("sms", self.next, Ok(200));
                self.next = Instant::now();
                return Ok(c);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let f = Fail::Page("an SMS code");
        self.j.rec.step("sms", self.next, Err(&f));
        Err(Stop::Fail("sms", f))
    }

    /// From the storefront page: join, wait, apply.
    async fn queue(&mut self, front: &Page) -> Result<Outcome, Stop> {
        let id = match &self.j.campaign {
            Some(id) => id.clone(),
            None => attribute(&front.body, "data-campaign=", "data-campaign").ok_or(Stop::Fail(
                "join",
                Fail::Page("a campaign on the storefront"),
            ))?,
        };
        let marker = format!("data-campaign=\"{id}\"");
        let num = |n: &str| attribute(&front.body, &marker, n).and_then(|v| v.parse().ok());
        self.j.rec.campaign(Campaign {
            id: id.clone(),
            units: num("data-units"),
            opens_at: num("data-opens-at"),
            selection: attribute(&front.body, &marker, "data-selection"),
        });
        self.hold(front, &id).await?;
        let mut front = front.clone();
        let mut signed_in_again = false;
        let (wait, sent) = loop {
            let storefront = self.j.storefront.clone();
            if !signed_in_again && has(&front, &format!("/{storefront}/login\"")) {
                // The storefront shows them signed out: the session the sign-in had just
                // stored went with its store (a Redis wiped between the callback and this
                // page). A person signs in again, once.
                signed_in_again = true;
                self.j.rec.started_over();
                front = self.sign_in(&storefront).await?;
                continue;
            }
            let join_url = action(&front, &format!("/c/{id}/join"), "join")?;
            let csrf = input(&front.body, "csrf").unwrap_or_default();
            let sent = self.p.join_sent(self.j.rec.secs(Instant::now()));
            let wait = self
                .step("join", Req::Post(join_url, vec![("csrf", csrf)]), |p| {
                    if p.status == 409 {
                        return Ok(());
                    }
                    ok_page(p)?;
                    if has(p, "data-status-url") || (!signed_in_again && is_sign_in(p)) {
                        Ok(())
                    } else {
                        Err(Fail::Page("the waiting room"))
                    }
                })
                .await?;
            if wait.status == 409 || has(&wait, "data-status-url") {
                break (wait, sent);
            }
            // Sent to sign in: the storefront session went with its store (a Redis wiped).
            // A person signs in again and joins, as at the application below. Once.
            signed_in_again = true;
            self.j.rec.started_over();
            front = self.sign_in(&storefront).await?;
        };
        if wait.status == 409 {
            return Ok(Outcome::SoldOut { at: "join" });
        }
        let done = self.j.rec.secs(Instant::now());
        let place = self
            .b
            .cookie(&wait.url, &format!("emta_q_{id}"))
            .and_then(|v| v.split('.').next().map(str::to_owned))
            .unwrap_or_default();
        {
            let mut first = self.p.place.lock().unwrap_or_else(|e| e.into_inner());
            match first.as_ref() {
                Some(other) if *other != place => self.j.rec.second_device_mismatch(),
                Some(_) => {}
                None => *first = Some(place.clone()),
            }
        }
        if place.starts_with('L') {
            return Ok(Outcome::Entered);
        }
        let ticket = place.strip_prefix('T').and_then(|t| t.parse::<i64>().ok());
        let join = (self.device == 1).then(|| {
            self.j.rec.join(JoinRecord {
                citizen: self.p.index,
                sent,
                done,
                early: place.starts_with('E'),
                ticket,
            })
        });
        if self.device > 1 {
            self.j
                .rec
                .waiting
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let waited = self.wait_turn(&wait, join).await;
        self.j.rec.left_queue();
        let (mut page, mut apply) = match waited? {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };
        let front = self.j.storefront.clone();
        let home = self.storefront_url(&front, "")?;
        let mut signed_in_again = false;
        loop {
            let url = wait
                .url
                .join(&apply)
                .map_err(|_| Stop::Fail("apply", Fail::Page("the application form")))?;
            let csrf = input(&page.body, "csrf").unwrap_or_default();
            let done = self
                .step("apply", Req::Post(url, vec![("csrf", csrf)]), |p| {
                    if p.status == 409 || p.status == 403 {
                        Ok(())
                    } else {
                        ok_page(p)
                    }
                })
                .await?;
            // Sent back to the storefront: the storefront session is gone (its store lost
            // it). A person signs in again and applies; the admission is durable and bound
            // to their ticket, so the waiting page shows the form again. Once.
            let session_lost = done.status == 200
                && !has(&done, "data-tracking-code")
                && done.url.path() == home.path();
            if !session_lost || signed_in_again {
                return Ok(self.applied(&done));
            }
            signed_in_again = true;
            self.j.rec.started_over();
            self.sign_in(&front).await?;
            (page, apply) = match self.wait_turn(&wait, None).await? {
                Ok(found) => found,
                Err(outcome) => return Ok(outcome),
            };
        }
    }

    fn applied(&self, done: &Page) -> Outcome {
        if done.status == 200 {
            // Accepted only with a tracking code: a 200 without one is another page (a
            // sign-in the session was lost to), not an application.
            let Some(code) = attribute(&done.body, "data-tracking-code", "data-tracking-code")
            else {
                return Outcome::Failed {
                    step: "apply",
                    kind: "answered 200 without a tracking code".into(),
                };
            };
            self.j.rec.tracking_code(self.p.index, code);
            self.j.rec.accepted(self.p.index);
            return Outcome::Applied;
        }
        let b = &done.body;
        if b.contains("sold out") {
            Outcome::SoldOut { at: "apply" }
        } else if b.contains("has already applied") {
            Outcome::Refused {
                why: "already applied".into(),
            }
        } else if b.contains("younger than") {
            Outcome::Refused {
                why: "too young".into(),
            }
        } else if b.contains("bought from a major manufacturer") {
            Outcome::Refused {
                why: "recent purchase".into(),
            }
        } else if b.contains("not your turn") {
            Outcome::Failed {
                step: "apply",
                kind: "shown the form but told it is not their turn".into(),
            }
        } else if b.contains("suspended") {
            Outcome::Refused {
                why: "license suspended".into(),
            }
        } else {
            Outcome::Failed {
                step: "apply",
                kind: format!("refused with {}", done.status),
            }
        }
    }

    /// Waits until the waiting page shows the application form: the page and the form's
    /// action, or an outcome. Like the page's script, a reload that does not show the form
    /// yet (another replica whose counters are a tick behind) goes back to waiting.
    async fn wait_turn(
        &mut self,
        wait: &Page,
        join: Option<usize>,
    ) -> Result<Result<(Page, String), Outcome>, Stop> {
        for _ in 0..20 {
            if let Err(outcome) = self.wait(wait, join).await? {
                return Ok(Err(outcome));
            }
            let page = self
                .step("wait page", Req::Go(wait.url.clone()), ok_page)
                .await?;
            if let Some(apply) = form_action(&page.body, "/apply") {
                return Ok(Ok((page, apply)));
            }
            if has(&page, "The queue has closed") {
                return Ok(Err(Outcome::SoldOut { at: "wait" }));
            }
        }
        Ok(Err(Outcome::Failed {
            step: "wait page",
            kind: "admitted by the status but never shown the form".into(),
        }))
    }

    /// Polls the status as the waiting page's script does (2 s, growing by half up to
    /// 30 s, back to 2 s near the turn; Retry-After obeyed) until admitted (`Ok(Ok)`),
    /// or an outcome: closed, gave up, waited too long.
    async fn wait(
        &mut self,
        page: &Page,
        join: Option<usize>,
    ) -> Result<Result<(), Outcome>, Stop> {
        let status_url = attribute(&page.body, "data-status-url", "data-status-url")
            .and_then(|s| page.url.join(&s).ok())
            .ok_or(Stop::Fail("wait", Fail::Page("the status URL")))?;
        let since = Instant::now();
        let give_up = self.p.traits.patience.map(|p| since + p);
        let deadline = since + self.j.max_wait;
        let mut delay = 2.0f64;
        let mut told_promised = false;
        loop {
            self.step = "wait";
            let mut wake = Instant::now() + Duration::from_secs_f64(delay * self.j.poll_scale);
            if let Some(g) = give_up {
                if g <= wake {
                    tokio::time::sleep_until(g.into()).await;
                    return Ok(Err(Outcome::GaveUp { at: "wait" }));
                }
            }
            if deadline <= wake {
                wake = deadline;
            }
            tokio::time::sleep_until(wake.into()).await;
            if Instant::now() >= deadline {
                // Told, when last asked, that every unit left was promised to the
                // admitted: an answer (a lapsed promise would have admitted them), not a
                // failure. Never told anything is a failure.
                if told_promised {
                    return Ok(Err(Outcome::SoldOut {
                        at: crate::record::PROMISED_AT_END,
                    }));
                }
                return Ok(Err(Outcome::Failed {
                    step: "wait",
                    kind: "neither admitted nor closed out in time".into(),
                }));
            }
            self.next = Instant::now();
            self.step = "status";
            let r = self.j.http.json::<Status>(&self.b, &status_url).await;
            self.j
                .rec
                .step("status", self.next, r.as_ref().map(|_| 200));
            match r {
                Ok(s) => {
                    if let (Some(t), Some(j)) = (s.ticket, join) {
                        self.j.rec.ticket(j, t);
                    }
                    if s.admitted {
                        if let Some(t) = s.ticket {
                            self.j.rec.admitted(self.p.index, t);
                        }
                        return Ok(Ok(()));
                    }
                    if s.closed {
                        return Ok(Err(Outcome::SoldOut { at: "wait" }));
                    }
                    told_promised = s.promised;
                    delay = if s.ahead.is_some_and(|a| a < 50) {
                        2.0
                    } else {
                        (delay * 1.5).min(30.0)
                    };
                }
                Err(f) => {
                    let ra = f.retry_after().map(|s| s as f64).unwrap_or(0.0);
                    delay = (delay * 1.5).min(30.0).max(ra);
                }
            }
        }
    }
}

impl Walk<'_> {
    /// The down payment's hold, when the campaign asks for one before registering (issue
    /// 30): its page, the bank's page (the person chooses the first participating bank),
    /// signing in to the bank with the card and PIN, approving, and back to emta, which
    /// confirms the hold with the bank. Skipped when the storefront offers no hold, or the
    /// person's hold is confirmed already.
    async fn hold(&mut self, front: &Page, id: &str) -> Result<(), Stop> {
        let storefront = self.j.storefront.clone();
        if !has(front, &format!("/{storefront}/c/{id}/hold\"")) {
            return Ok(());
        }
        let url = self.storefront_url(&storefront, &format!("c/{id}/hold"))?;
        let page = self.step("hold", Req::Go(url.clone()), ok_page).await?;
        if has(&page, "data-hold-state=\"held\"") {
            return Ok(());
        }
        let csrf = input(&page.body, "csrf").unwrap_or_default();
        let bank = page
            .body
            .split("<option value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let bank_page = self
            .step(
                "bank",
                Req::Post(url, vec![("csrf", csrf), ("bank", bank)]),
                |p| {
                    ok_page(p)?;
                    if has(p, "name=\"card\"") {
                        Ok(())
                    } else {
                        Err(Fail::Page("the bank's page"))
                    }
                },
            )
            .await?;
        let login = action(&bank_page, "/login", "bank_sign_in")?;
        let card = testkit::bank::card_of(&self.p.citizen.national_id);
        let approve_page = self
            .step(
                "bank_sign_in",
                Req::Post(
                    login,
                    vec![("card", card), ("pin", testkit::bank::PIN.to_owned())],
                ),
                |p| {
                    ok_page(p)?;
                    if has(p, "name=\"auth\"") {
                        Ok(())
                    } else {
                        Err(Fail::Page("the bank's approval"))
                    }
                },
            )
            .await?;
        let approve = action(&approve_page, "/approve", "bank_approve")?;
        let auth = input(&approve_page.body, "auth").unwrap_or_default();
        self.step(
            "bank_approve",
            Req::Post(
                approve,
                vec![("auth", auth), ("decision", "approve".to_owned())],
            ),
            |p| {
                ok_page(p)?;
                if has(p, "data-hold-outcome=\"true\"") {
                    Ok(())
                } else {
                    Err(Fail::Page("the hold confirmed"))
                }
            },
        )
        .await?;
        Ok(())
    }
}

fn action(p: &Page, suffix: &str, what: &'static str) -> Result<Url, Stop> {
    form_action(&p.body, suffix)
        .and_then(|a| p.url.join(&a).ok())
        .ok_or(Stop::Fail(what, Fail::Page("the form")))
}

impl Journey {
    /// Journeys through an in-process deployment: requests rotate over its presale
    /// replicas, codes come straight from its stub gateway, every citizen has an address.
    pub fn local(
        d: &local::Deployment,
        poll_scale: f64,
        max_wait: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: Http::new(
                crate::http::Targets {
                    presale: d.presale.clone(),
                    presale_replicas: if d.replicas.len() > 1 {
                        d.replicas.clone()
                    } else {
                        vec![]
                    },
                    idp_replicas: vec![],
                    issuer: None,
                },
                Duration::from_secs(30),
            )?,
            rec: Arc::new(Recorder::new(Instant::now())),
            codes: Codes::Outbox(d.stub.outbox.clone()),
            storefront: "saipa".into(),
            campaign: None,
            poll_scale,
            max_wait,
            spoof_ips: true,
        })
    }

    /// Before the surge: a returning citizen signs in at another manufacturer's
    /// storefront, so at arrival the IdP asks only for consent. Returns their browser.
    pub async fn warm_up(&self, p: &Person, other: &str) -> Result<Browser, String> {
        let mut w = Walk::new(self, p, 1, Instant::now());
        match w.sign_in(other).await {
            Ok(_) => Ok(w.b),
            Err(Stop::Fail(step, f)) => Err(format!("{step}: {}", f.kind())),
        }
    }

    /// The whole journey from arrival `intended` (the first step is timed from it). With
    /// `browser`, the citizen arrives already signed in at the IdP. Records the outcome;
    /// returns when every device of this citizen is done, or at `cancel`.
    pub async fn run(
        self: Arc<Self>,
        p: Arc<Person>,
        intended: Instant,
        browser: Option<Browser>,
        mut cancel: tokio::sync::watch::Receiver<Cancel>,
    ) {
        let mut w = Walk::new(&self, &p, 1, intended);
        if let Some(b) = browser {
            w.b = b;
        }
        let second = p.traits.second_device;
        let second_cancel = cancel.clone();
        let mut other: Option<tokio::task::JoinHandle<()>> = None;
        let walked = {
            let fut = async {
                let front = w.sign_in(&self.storefront).await?;
                if second {
                    let (j, p2, c2) = (self.clone(), p.clone(), second_cancel.clone());
                    other = Some(tokio::spawn(async move { j.second_device(p2, c2).await }));
                }
                w.queue(&front).await
            };
            tokio::select! {
                r = fut => Ok(r),
                c = cancel.wait_for(|c| *c != Cancel::No) => Err(c.map_or(Cancel::Interrupted, |c| *c)),
            }
        };
        let outcome = match walked {
            Ok(Ok(o)) => o,
            Ok(Err(Stop::Fail(step, f))) => Outcome::Failed {
                step,
                kind: f.kind(),
            },
            Err(Cancel::Overdue) => Outcome::Failed {
                step: w.step,
                kind: "still going at the run's deadline".into(),
            },
            Err(_) => Outcome::Interrupted { step: w.step },
        };
        if let Some(h) = other {
            let _ = h.await;
        }
        // Whichever device's application was accepted, this citizen got one (the other
        // device is then told "already applied", or "sold out" if that came first).
        let outcome = if self.rec.has_accepted(p.index) {
            Outcome::Applied
        } else {
            outcome
        };
        self.rec.outcome(outcome);
    }

    /// The same citizen on a second device: signs in (waiting for a new code as told),
    /// joins (must get the same place), waits and applies; only one application may be
    /// accepted per national ID.
    async fn second_device(
        self: Arc<Self>,
        p: Arc<Person>,
        mut cancel: tokio::sync::watch::Receiver<Cancel>,
    ) {
        let mut w = Walk::new(&self, &p, 2, Instant::now());
        let fut = async {
            let front = w.sign_in(&self.storefront).await?;
            w.queue(&front).await
        };
        let r = tokio::select! {
            r = fut => r,
            _ = cancel.wait_for(|c| *c != Cancel::No) => return,
        };
        match r {
            Ok(Outcome::Refused { why }) if why == "already applied" => {
                self.rec.second_device_refused()
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod join_tests {
    use super::Person;

    /// A person's join is dated by the first request of any device or pass: a second
    /// device that joined first, or a join whose answer was lost, gave them their place.
    #[test]
    fn a_persons_join_is_dated_by_their_first_request() {
        let citizen = testkit::citizens::generate_citizens(1, 1).remove(0);
        let p = Person::new(0, citizen, Default::default());
        assert_eq!(p.join_sent(3.5), 3.5);
        assert_eq!(
            p.join_sent(9.0),
            3.5,
            "a later request keeps the first date"
        );
    }
}
