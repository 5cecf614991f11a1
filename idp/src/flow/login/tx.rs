//! A login transaction's life: opened (as the browser's pending cookie until the phone
//! step's proof of work), counted against the budgets that bound how many may be stored,
//! stored, loaded and ended; and the forms' CSRF tokens bound to it.

use super::*;

impl Login<'_> {
    /// Opens a login transaction that the store holds at once: the consent step of a
    /// citizen with a live SSO session (who paid for it when they signed in). It counts
    /// against the address's limit, the session's ([`SESSION_LOGINS`]) and its client's
    /// share, not against the deployment's cap of paid-for logins, which a session could
    /// otherwise spend for everyone.
    pub async fn start_login(
        &self,
        browser: &str,
        request: Option<AuthRequest>,
        step: Step,
        sid: Option<String>,
        ip: &str,
        now: i64,
    ) -> Result<LoginTx> {
        // A live session's holder is admitted ahead of the client's share, which
        // strangers can spend; the session's own limit bounds what it opens. One round
        // trip with the address's limits, counted as one by one.
        let wider = service_kit::net::wider_ranges(ip);
        let mut limits = self.start_limit_list(ip, &wider);
        match sid.as_deref() {
            Some(sid) => limits.push((
                Subject::SessionLogins(sid),
                SESSION_LOGINS,
                self.secs(self.settings.login_secs),
            )),
            None => limits.push((
                Subject::ClientLoginStart(request.as_ref().map_or("", |r| r.client_id.as_str())),
                self.settings.logins_per_client_rps,
                Duration::from_secs(1),
            )),
        }
        self.limiter.hit_all(&limits).await.map_err(|(_, e)| e)?;
        drop(limits);
        let tx = LoginTx {
            id: random_token(18),
            browser: browser.to_owned(),
            created_at: now,
            request,
            step,
            mobile: None,
            otp_hash: None,
            otp_sent_at: 0,
            known_device: false,
            sid,
            persisted: true,
        };
        self.save_tx(&tx).await?;
        metrics::counter!("emta_login_step_total", "step" => "start", "outcome" => "started")
            .increment(1);
        Ok(tx)
    }

    /// Opens a login at the phone step without storing anything: the transaction travels
    /// as the browser's pending cookie (MACed, bound to the browser, expiring with the
    /// login) until the phone step's proof of work is paid, and only then is stored (see
    /// [`Self::submit_phone`]). A flood of authorize requests of any size from any number
    /// of addresses costs the store nothing but the per-address and per-client counters.
    /// Returns the transaction and its cookie's value.
    pub async fn pending_login(
        &self,
        browser: &str,
        request: Option<AuthRequest>,
        ip: &str,
        now: i64,
    ) -> Result<std::result::Result<(LoginTx, String), TooLarge>> {
        self.start_limits(ip).await?;
        let tx = LoginTx {
            id: random_token(18),
            browser: browser.to_owned(),
            created_at: now,
            request,
            step: Step::Phone,
            mobile: None,
            otp_hash: None,
            otp_sent_at: 0,
            known_device: false,
            sid: None,
            persisted: false,
        };
        let body = b64(&serde_json::to_vec(&tx).map_err(|e| Error::Internal(e.to_string()))?);
        let mac = self.keyring.hash("login-pending", body.as_bytes());
        let sealed = format!("{body}.{mac}");
        if sealed.len() > MAX_PENDING {
            return Ok(Err(TooLarge));
        }
        metrics::counter!("emta_login_step_total", "step" => "start", "outcome" => "started")
            .increment(1);
        Ok(Ok((tx, sealed)))
    }

    /// One more login or code of the SSO session `sid` ([`SESSION_LOGINS`] per login
    /// lifetime; 429 past it).
    pub async fn session_use(&self, sid: &str) -> Result<()> {
        self.limiter
            .hit(
                Subject::SessionLogins(sid),
                SESSION_LOGINS,
                self.secs(self.settings.login_secs),
            )
            .await
    }

    /// The login `id` of this browser as the store holds it ([`Self::load_tx`]) or, not
    /// stored, as its pending cookie's `pending` value carries it: its MAC, its id, this
    /// browser, its phone step and its lifetime checked, and not a login whose code step
    /// was decided since (finished or voided: a kept cookie does not bring it back).
    /// Expired or altered is "login over". With a pending cookie the stored login and the
    /// code step's outcome are read in one command (MGET on a single server; before the
    /// phone step the store has neither), where they were read one after the other.
    /// With `session_cookie` (the consent step's page and post need the browser's SSO
    /// session), the session is read in the same command: [`Loaded::session`]. On a
    /// Redis Cluster, where each key is a command of its own, nothing is read ahead:
    /// the login first, the outcome only for a pending login, the session when asked
    /// for ([`Self::live_session`]).
    pub async fn load_or_pending(
        &self,
        id: &str,
        browser: Option<&str>,
        pending: Option<&str>,
        session_cookie: Option<&str>,
        now: i64,
    ) -> Result<Loaded> {
        if !self.eph.reads_many_at_once() {
            let tx = match (self.load_tx(id, browser).await, pending) {
                (Err(Error::LoginOver(_)), Some(value)) => {
                    let tx = self.pending_tx(id, value, browser, now)?;
                    if self.eph.get(&otp_outcome_key(id)).await?.is_some() {
                        return Err(Error::LoginOver(msg::LOGIN_EXPIRED));
                    }
                    tx
                }
                (tx, _) => tx?,
            };
            return Ok(Loaded { tx, session: None });
        }
        let session_cookie = session_cookie.filter(|c| c.len() <= 64);
        if pending.is_none() && session_cookie.is_none() {
            return Ok(Loaded {
                tx: self.load_tx(id, browser).await?,
                session: None,
            });
        }
        if id.len() > 64 {
            return Err(Error::user(StatusCode::NOT_FOUND, msg::LOGIN_EXPIRED));
        }
        let tx_key = tx_key(id);
        let outcome_key = otp_outcome_key(id);
        let session_key = session_cookie.map(session_key);
        let mut keys = vec![tx_key.as_str()];
        if pending.is_some() {
            keys.push(&outcome_key);
        }
        if let Some(k) = &session_key {
            keys.push(k);
        }
        let read = self.eph.get_many(&keys).await?;
        if read.len() != keys.len() {
            return Err(Error::Internal("a read of keys answered otherwise".into()));
        }
        let mut read = read.into_iter();
        let stored = read.next().flatten();
        let outcome = pending.and_then(|_| read.next().flatten());
        let session = session_key.map(|_| {
            read.next()
                .flatten()
                .and_then(|raw| serde_json::from_str(&raw).ok())
        });
        // As the store's login and then the pending cookie one after the other: the
        // cookie is tried where the stored login is over (absent, or no longer reading
        // back), and a decided code step ends it too.
        let stored = match stored {
            Some(raw) => self.stored_tx(&raw, browser),
            None => Err(Error::LoginOver(msg::LOGIN_EXPIRED)),
        };
        let tx = match (stored, pending) {
            (Err(Error::LoginOver(_)), Some(value)) => {
                let tx = self.pending_tx(id, value, browser, now)?;
                if outcome.is_some() {
                    return Err(Error::LoginOver(msg::LOGIN_EXPIRED));
                }
                tx
            }
            (tx, _) => tx?,
        };
        Ok(Loaded { tx, session })
    }

    /// The pending cookie's login, its own checks only (not the code step's outcome,
    /// which is the store's).
    fn pending_tx(
        &self,
        id: &str,
        value: &str,
        browser: Option<&str>,
        now: i64,
    ) -> Result<LoginTx> {
        let over = || Error::LoginOver(msg::LOGIN_EXPIRED);
        if value.len() > MAX_PENDING {
            return Err(over());
        }
        let (body, mac) = value.rsplit_once('.').ok_or_else(over)?;
        if !self.keyring.verify("login-pending", body.as_bytes(), mac) {
            return Err(over());
        }
        let tx: LoginTx = service_kit::keys::b64_decode(body)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(over)?;
        let live = now < tx.created_at + self.settings.login_secs;
        if tx.id != id || tx.step != Step::Phone || tx.persisted || !live {
            return Err(over());
        }
        if browser != Some(tx.browser.as_str()) {
            return Err(Error::user(StatusCode::FORBIDDEN, msg::LOGIN_OTHER_BROWSER));
        }
        Ok(tx)
    }

    /// Gives back what [`Self::live_login_limits`] counted, for a login that was not stored
    /// after all (its code could not be sent).
    pub(super) async fn uncount_live_login(
        &self,
        request: Option<&AuthRequest>,
        ahead: bool,
    ) -> Result<()> {
        if !ahead {
            let client = request.map_or("", |r| r.client_id.as_str());
            self.limiter
                .refund(Subject::ClientLoginStart(client))
                .await?;
        }
        self.limiter.refund(Subject::LiveLogins).await
    }

    /// One more paid-for login to store: its client's share (`logins_per_client_rps`, so
    /// that a flood through one manufacturer, paid for in proofs of work, takes only that
    /// share; the account page's sign-ins have one budget of their own),
    /// unless `ahead` (the phone's owner, on a browser where its code was entered before:
    /// admitted ahead of a share that strangers can spend), and the deployment's cap
    /// (`max_live_logins` per login lifetime); past either, 503 with Retry-After, before
    /// the store fills. The limits only: the phone step counts them with its address's
    /// in one round trip.
    pub(super) fn live_login_limits<'r>(
        &self,
        request: Option<&'r AuthRequest>,
        ahead: bool,
    ) -> Vec<(Subject<'r>, i64, Duration)> {
        let mut limits = Vec::with_capacity(2);
        if !ahead {
            let client = request.map_or("", |r| r.client_id.as_str());
            limits.push((
                Subject::ClientLoginStart(client),
                self.settings.logins_per_client_rps,
                Duration::from_secs(1),
            ));
        }
        limits.push((
            Subject::LiveLogins,
            self.settings.max_live_logins,
            self.secs(self.settings.login_secs),
        ));
        limits
    }

    /// The limit on opening a login, stored or not: an address may open only
    /// `logins_per_ip` a minute (and its ranges their share, see [`Self::address_limits`]).
    pub(super) async fn start_limits(&self, ip: &str) -> Result<()> {
        let wider = service_kit::net::wider_ranges(ip);
        let limits = self.start_limit_list(ip, &wider);
        self.limiter.hit_all(&limits).await.map_err(|(_, e)| e)?;
        Ok(())
    }

    /// A login's tries of one step (`key`, from `step_tries_key`) as a limit to count
    /// first with the step's budgets: `max` tries in the login's lifetime.
    pub(super) fn login_tries<'k>(&self, key: &'k str, max: i64) -> (Subject<'k>, i64, Duration) {
        (
            Subject::LoginTries(key),
            max,
            self.secs(self.settings.login_secs),
        )
    }

    /// The limits of [`Self::start_limits`], to count with others in one round trip.
    fn start_limit_list<'a>(
        &self,
        ip: &'a str,
        wider: &'a [(String, i64)],
    ) -> Vec<(Subject<'a>, i64, Duration)> {
        let minute = Duration::from_secs(60);
        self.address_limits(
            Subject::IpLoginStart,
            ip,
            wider,
            self.settings.logins_per_ip,
        )
        .into_iter()
        .map(|(subject, max)| (subject, max, minute))
        .collect()
    }

    /// A per-address budget as a real network sees it: the address (an IPv4 address or an
    /// IPv6 /64) gets `max`, and an IPv6 address's /56 and /48 (`wider`, from
    /// [`service_kit::net::wider_ranges`]) 8 and 32 times as much in all, so rotating
    /// through the /64s of one subscriber's range buys nothing; an address in a
    /// configured carrier-NAT range, shared by thousands, gets `carrier_nat_factor` times
    /// all of these.
    pub(super) fn address_limits<'a>(
        &self,
        kind: fn(&'a str) -> Subject<'a>,
        ip: &'a str,
        wider: &'a [(String, i64)],
        max: i64,
    ) -> Vec<(Subject<'a>, i64)> {
        let factor = if service_kit::net::in_ranges(ip, &self.settings.carrier_nat_ranges) {
            self.settings.carrier_nat_factor.max(1)
        } else {
            1
        };
        // An IPv6 /64 is one subscriber's, carrier or not: the factor is for what many
        // share (an IPv4 address behind carrier NAT, an IPv6 range).
        let own = if ip.contains('/') { 1 } else { factor };
        let mut out = vec![(kind(ip), max.saturating_mul(own))];
        for (range, times) in wider {
            out.push((
                kind(range),
                max.saturating_mul(*times).saturating_mul(factor),
            ));
        }
        out
    }

    pub async fn save_tx(&self, tx: &LoginTx) -> Result<()> {
        let json = serde_json::to_string(tx).map_err(|e| Error::Internal(e.to_string()))?;
        self.eph
            .put(&tx_key(&tx.id), &json, self.tx_ttl(tx))
            .await?;
        Ok(())
    }

    /// Saves the transaction's next state only if it still exists; false if it was ended
    /// meanwhile (voided, finished, expired).
    pub async fn replace_tx(&self, tx: &LoginTx) -> Result<bool> {
        let json = serde_json::to_string(tx).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self
            .eph
            .replace(&tx_key(&tx.id), &json, self.tx_ttl(tx))
            .await?)
    }

    pub(super) fn tx_ttl(&self, tx: &LoginTx) -> Duration {
        self.secs((tx.created_at + self.settings.login_secs - crate::now()).max(1))
    }

    /// Loads a transaction and checks that this browser started it.
    pub async fn load_tx(&self, id: &str, browser: Option<&str>) -> Result<LoginTx> {
        if id.len() > 64 {
            return Err(Error::user(StatusCode::NOT_FOUND, msg::LOGIN_EXPIRED));
        }
        let raw = self
            .eph
            .get(&tx_key(id))
            .await?
            .ok_or(Error::LoginOver(msg::LOGIN_EXPIRED))?;
        self.stored_tx(&raw, browser)
    }

    /// A stored login's value read back, and checked to be this browser's.
    fn stored_tx(&self, raw: &str, browser: Option<&str>) -> Result<LoginTx> {
        // A stored login that no longer reads (its values are parsed again: a number
        // outside today's operator ranges, a format from an older release) is a login
        // that is over, not a server error: the citizen starts again.
        let tx: LoginTx = serde_json::from_str(raw).map_err(|e| {
            // Its kind and place only: the message may quote a value (a phone number).
            tracing::warn!(
                kind = ?e.classify(),
                column = e.column(),
                "a stored login does not read back"
            );
            Error::LoginOver(msg::LOGIN_EXPIRED)
        })?;
        if browser != Some(tx.browser.as_str()) {
            return Err(Error::user(StatusCode::FORBIDDEN, msg::LOGIN_OTHER_BROWSER));
        }
        Ok(tx)
    }

    /// Ends a transaction. Its wrong-code counter is left to expire, so a guess that was
    /// already in flight still counts against the voided login instead of starting over.
    pub async fn drop_tx(&self, id: &str) -> Result<()> {
        self.eph.delete(&tx_key(id)).await?;
        Ok(())
    }

    /// Takes a transaction for the one request that finishes it: `LoginOver` if another
    /// took it first (or it lapsed).
    pub(super) async fn claim_tx(&self, id: &str) -> Result<()> {
        match self.eph.take(&tx_key(id)).await? {
            Some(_) => Ok(()),
            None => Err(Error::LoginOver(msg::LOGIN_EXPIRED)),
        }
    }

    /// The CSRF token of a form: a keyed hash of what the form belongs to and the browser.
    pub fn csrf_token(&self, scope: &str, browser: &str) -> String {
        self.keyring
            .hash("csrf", format!("{scope}|{browser}").as_bytes())
    }

    pub fn check_csrf(&self, scope: &str, browser: &str, token: &str) -> Result<()> {
        if self
            .keyring
            .verify("csrf", format!("{scope}|{browser}").as_bytes(), token)
        {
            Ok(())
        } else {
            Err(Error::user(StatusCode::FORBIDDEN, msg::CSRF))
        }
    }
}
