//! Step 1: the mobile number, its proof of work (at a difficulty that rises with the
//! deployment's load), the known-device cookie, and the SMS code with its budgets.

use super::*;

impl Login<'_> {
    /// The phone step's proof-of-work challenge, bound to this login and its browser, at
    /// the difficulty in force ([`Self::pow_difficulty`]).
    pub async fn pow_challenge(&self, tx: &LoginTx, now: i64) -> String {
        let (_, difficulty) = self.pow_difficulty().await;
        pow::issue(&self.keyring, now, difficulty, &pow_binding(tx))
    }

    /// The proof of work's floor (`pow_difficulty`) and its level now: the floor plus the
    /// rise for the deployment's load (see [`crate::flow::pow`]), at most `pow_max_rise`.
    pub async fn pow_difficulty(&self) -> (u8, u8) {
        let base = self.settings.pow_difficulty;
        let max_rise = self.settings.pow_max_rise;
        if max_rise == 0 {
            return (base, base);
        }
        if self.pow_load.due() {
            match self.limiter.window(Subject::LiveLogins).await {
                Ok((count, left)) => self.pow_load.record(
                    count,
                    left,
                    self.settings.max_live_logins,
                    self.secs(self.settings.login_secs),
                ),
                // The last reading stands; the store's failure shows where it matters,
                // and here as a count operators can alert on.
                Err(e) => {
                    metrics::counter!("emta_pow_load_read_failures_total").increment(1);
                    tracing::warn!(error = %e, "reading the deployment's load");
                }
            }
        }
        let rise = self.pow_load.rise().min(max_rise);
        (base, base.saturating_add(rise))
    }

    /// Step 1: checks the proof of work and limits, then sends a code to `mobile`.
    #[tracing::instrument(skip_all, fields(tx = %tx.id))]
    pub async fn submit_phone(
        &self,
        tx: &mut LoginTx,
        mobile: &str,
        challenge: &str,
        nonce: &str,
        from: Origin<'_>,
        now: i64,
    ) -> Result<()> {
        let started = started("phone");
        let result = self
            .submit_phone_inner(tx, mobile, challenge, nonce, from, now)
            .await;
        observe(
            "phone",
            started,
            if result.is_ok() {
                "completed"
            } else {
                "failed"
            },
        );
        result
    }

    pub(super) async fn submit_phone_inner(
        &self,
        tx: &mut LoginTx,
        mobile: &str,
        challenge: &str,
        nonce: &str,
        from: Origin<'_>,
        now: i64,
    ) -> Result<()> {
        let mobile =
            MobileNumber::parse(mobile).map_err(|_| Error::bad_request(msg::BAD_MOBILE))?;
        let random = pow::verify(
            &self.keyring,
            challenge,
            &pow_binding(tx),
            nonce,
            now,
            POW_MAX_AGE,
            {
                let (base, level) = self.pow_difficulty().await;
                move |age| crate::flow::pow::least_accepted(base, level, age)
            },
        )
        .map_err(|_| Error::bad_request(msg::POW_FAILED))?;
        // A solved challenge buys one attempt, on any replica.
        if !self
            .eph
            .put_new(&format!("pow:{random}"), "1", self.secs(POW_MAX_AGE))
            .await?
        {
            return Err(Error::bad_request(msg::POW_FAILED));
        }
        // The address's limits and, paid for, the count of a login to store (a pending
        // one is stored by `send_code`) within its client's share and the deployment's
        // cap: one round trip, counted as one by one (`hit_all`). A code that cannot be
        // sent (limits, the SMS budget, the gateway) stores nothing and gives the login's
        // count back: the citizen retries from the same page.
        let wider = service_kit::net::wider_ranges(from.ip);
        let counted = !tx.persisted;
        let ahead = self.is_known_device(&mobile, tx, from);
        {
            let hour = Duration::from_secs(3600);
            let mut limits: Vec<_> = self
                .address_limits(
                    Subject::IpLogin,
                    from.ip,
                    &wider,
                    self.settings.sms_per_ip * 3,
                )
                .into_iter()
                .map(|(subject, max)| (subject, max, hour))
                .collect();
            if counted {
                limits.extend(self.live_login_limits(tx.request.as_ref(), ahead));
            }
            self.limiter.hit_all(&limits).await.map_err(|(_, e)| e)?;
        }
        if counted {
            tx.persisted = true;
        }
        tx.mobile = Some(mobile.clone());
        let sent = self.send_code(tx, &mobile, from, now).await;
        if sent.is_err() && counted {
            tx.persisted = false;
            if let Err(e) = self.uncount_live_login(tx.request.as_ref(), ahead).await {
                tracing::warn!(error = %e, "a login's count not given back");
            }
        }
        sent
    }

    /// The value of the known-device cookie for `mobile` in `browser`: set when the code
    /// sent to that phone was entered in that browser.
    pub fn known_device_token(&self, mobile: &str, browser: &str) -> String {
        self.keyring
            .hash("known-device", format!("{mobile}|{browser}").as_bytes())
    }

    pub(super) fn is_known_device(
        &self,
        mobile: &MobileNumber,
        tx: &LoginTx,
        from: Origin<'_>,
    ) -> bool {
        from.known_device.is_some_and(|t| {
            self.keyring.verify(
                "known-device",
                format!("{}|{}", mobile.e164(), tx.browser).as_bytes(),
                t,
            )
        })
    }

    /// Sends a fresh code; also the "resend" action, no sooner than a minute after the last.
    ///
    /// The budgets are per (phone, browser), so a stranger who knows a number cannot spend
    /// its owner's: a minute's cooldown and `sms_per_phone` per 10 minutes. Browsers that
    /// never verified this phone have one more budget per (phone, address)
    /// (`sms_per_phone` × 3 an hour), which a stranger spends for their own address only,
    /// and all addresses together a cap per phone (four addresses' worth) that bounds SMS
    /// bombing through fresh browsers from many addresses; a browser where the owner
    /// verified it before (the signed known-device cookie) is held by neither. Every send
    /// also counts against the address and against the deployment's SMS rate.
    pub async fn send_code(
        &self,
        tx: &mut LoginTx,
        mobile: &MobileNumber,
        from: Origin<'_>,
        now: i64,
    ) -> Result<()> {
        let resend = self.settings.resend_secs;
        if now - tx.otp_sent_at < resend {
            return Err(Error::TooSoon {
                text: msg::RESEND_TOO_SOON,
                retry_after: (resend - (now - tx.otp_sent_at)).max(1) as u64,
            });
        }
        let phone_browser = format!("{}|{}", mobile.e164(), tx.browser);
        let cooldown = format!(
            "sms-cooldown:{}",
            self.keyring.hash("rate-subject", phone_browser.as_bytes())
        );
        if resend > 0 && !self.eph.put_new(&cooldown, "1", self.secs(resend)).await? {
            return Err(Error::TooSoon {
                text: msg::RESEND_TOO_SOON,
                retry_after: resend as u64,
            });
        }
        // A code that is not sent after all (a limit, the deployment's budget, the
        // gateway) gives back the cooldown and every count it took: the citizen retries
        // at once, and only codes sent count against anyone.
        let phone_address = format!("{}|{}", mobile.e164(), from.ip);
        let wider = service_kit::net::wider_ranges(from.ip);
        let mut taken: Vec<Subject<'_>> = Vec::new();
        let sent = self
            .send_within_limits(
                tx,
                mobile,
                from,
                (&phone_browser, &phone_address, &wider),
                &mut taken,
            )
            .await;
        let code = match sent {
            Ok(code) => code,
            Err(e) => {
                let _ = self.eph.delete(&cooldown).await;
                for s in taken {
                    let _ = self.limiter.refund(s).await;
                }
                return Err(e);
            }
        };
        metrics::counter!("emta_sms_sent_total").increment(1);
        tx.otp_hash = Some(
            self.keyring
                .hash("otp", format!("{}|{code}", tx.id).as_bytes()),
        );
        tx.otp_sent_at = now;
        tx.known_device = self.is_known_device(mobile, tx, from);
        tx.step = Step::Otp;
        // The tries are per login, not per code: five codes in all.
        self.save_tx(tx).await?;
        tracing::info!(phone = %mobile.masked(), "verification code sent");
        Ok(())
    }

    /// The SMS limits of [`Self::send_code`], then the send: the code sent. Each count
    /// taken is pushed on `taken` so that a failure can give it back.
    pub(super) async fn send_within_limits<'s>(
        &self,
        tx: &LoginTx,
        mobile: &'s MobileNumber,
        from: Origin<'s>,
        (phone_browser, phone_address, wider): (&'s str, &'s str, &'s [(String, i64)]),
        taken: &mut Vec<Subject<'s>>,
    ) -> Result<String> {
        let mut limits = vec![(
            Subject::PhoneSms(phone_browser),
            self.settings.sms_per_phone,
            600,
        )];
        if !self.is_known_device(mobile, tx, from) {
            limits.push((
                Subject::PhoneSms(phone_address),
                self.settings.sms_per_phone * 3,
                3600,
            ));
            limits.push((
                Subject::PhoneSms(mobile.e164()),
                self.settings.sms_per_phone * 12,
                3600,
            ));
        }
        for (subject, max) in
            self.address_limits(Subject::IpSms, from.ip, wider, self.settings.sms_per_ip)
        {
            limits.push((subject, max, 3600));
        }
        // And the deployment's SMS rate, last: all in one round trip, counted as one by
        // one; what a refusal leaves counted before it is given back by the caller.
        let mut asked: Vec<(Subject<'s>, i64, Duration)> = limits
            .into_iter()
            .map(|(subject, max, secs)| (subject, max, Duration::from_secs(secs)))
            .collect();
        asked.push((
            Subject::SmsBudget,
            self.settings.sms_rps,
            Duration::from_secs(1),
        ));
        let counted = self.limiter.hit_all(&asked).await;
        let kept = match &counted {
            Ok(_) => asked.len() - 1,
            Err((i, _)) => (*i).min(asked.len() - 1),
        };
        taken.extend(asked[..kept].iter().map(|(subject, _, _)| *subject));
        counted.map_err(|(_, e)| e)?;
        let code = random_otp();
        let text = format!(
            "امتا: کد تأیید شما {code}\nemta code: {code}\nاین کد را به هیچ‌کس ندهید / never share it"
        );
        self.sms
            .send(mobile.e164(), &text)
            .await
            .map_err(|source| Error::Upstream {
                text: msg::SMS_DOWN,
                source,
            })?;
        Ok(code)
    }
}
