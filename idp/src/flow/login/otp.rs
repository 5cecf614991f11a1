//! Step 2: the SMS code, every try counted before it is compared.

use super::*;

impl Login<'_> {
    /// Step 2: checks the code. Five wrong codes void the transaction.
    #[tracing::instrument(skip_all, fields(tx = %tx.id))]
    pub async fn submit_otp(&self, tx: &mut LoginTx, code: &str, now: i64) -> Result<()> {
        let started = started("otp");
        let result = self.submit_otp_inner(tx, code, now).await;
        observe(
            "otp",
            started,
            if result.is_ok() {
                "completed"
            } else {
                "failed"
            },
        );
        result
    }

    pub(super) async fn submit_otp_inner(
        &self,
        tx: &mut LoginTx,
        code: &str,
        now: i64,
    ) -> Result<()> {
        if tx.step != Step::Otp {
            return Err(Error::user(StatusCode::CONFLICT, msg::STEP_ORDER));
        }
        let code = crate::domain::digits::digits_only(code.trim());
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::bad_request(msg::OTP_FORMAT));
        }
        if now - tx.otp_sent_at > self.settings.otp_secs {
            return Err(Error::bad_request(msg::OTP_EXPIRED));
        }
        let mobile = tx.mobile.as_ref().map_or("", MobileNumber::e164).to_owned();
        // Every try is counted before the code is compared, atomically: parallel guesses
        // cannot each see "fewer than five so far", and a try past the fifth is never
        // compared at all.
        // And per (phone, browser), across its logins: opening new logins in a browser
        // buys it no new guesses. Not per phone: a stranger's wrong codes would then
        // lock the owner's right one out. Across browsers the guesses stay bounded per
        // code (five) and so per SMS, which the phone's SMS budgets bound.
        let phone_browser = format!("{mobile}|{}", tx.browser);
        let mut budgets = vec![(phone_browser.as_str(), self.settings.otp_tries_per_phone)];
        // And, from browsers that never verified this phone, a cap per phone (three
        // browsers' worth): the owner's known device is not held by it, so strangers
        // spending it lock nobody out, and their guesses stay bounded per phone too.
        if !tx.known_device {
            budgets.push((mobile.as_str(), self.settings.otp_tries_per_phone * 3));
        }
        // The login's tries first (past the fifth, the login is over and nothing else
        // is counted), then the phone's: one round trip, counted as one by one.
        let tries_key = step_tries_key(tx, Step::Otp);
        let hour = Duration::from_secs(3600);
        let mut limits = vec![self.login_tries(&tries_key, OTP_MAX_TRIES)];
        limits.extend(
            budgets
                .into_iter()
                .map(|(subject, max)| (Subject::PhoneOtp(subject), max, hour)),
        );
        let tries = match self.limiter.hit_all(&limits).await {
            Ok(counts) => counts.first().copied().unwrap_or(i64::MAX),
            Err((0, Error::RateLimited { .. })) => {
                return Err(Error::LoginOver(msg::LOGIN_EXPIRED))
            }
            Err((_, Error::RateLimited { retry_after })) => {
                return Err(Error::TooSoon {
                    text: msg::OTP_TRIES,
                    retry_after,
                })
            }
            Err((_, e)) => return Err(e),
        };
        let expected = tx.otp_hash.clone().unwrap_or_default();
        let right = self
            .keyring
            .verify("otp", format!("{}|{code}", tx.id).as_bytes(), &expected);
        if !right && tries < OTP_MAX_TRIES {
            return Err(Error::bad_request(msg::OTP_WRONG));
        }
        // The right code and the fifth wrong one may race: the first to claim the step's
        // outcome decides it, so a void stands and a success is never voided after it.
        let outcome = otp_outcome_key(&tx.id);
        let decided = self
            .eph
            .put_new(&outcome, "1", self.secs(self.settings.login_secs))
            .await?;
        if !decided {
            return Err(Error::LoginOver(msg::LOGIN_EXPIRED));
        }
        if !right {
            self.drop_tx(&tx.id).await?;
            return Err(Error::LoginOver(msg::OTP_VOID));
        }
        tx.step = Step::Identity;
        tx.otp_hash = None;
        if !self.replace_tx(tx).await? {
            return Err(Error::LoginOver(msg::LOGIN_EXPIRED));
        }
        Ok(())
    }
}
