//! Step 3: national ID and birth date, checked against the civil registry and the
//! mobile-ownership registry, with the identity budgets and their refunds.

use super::*;

/// What a successful identity step opened.
pub struct Opened {
    /// The SSO session's cookie value.
    pub cookie: String,
    pub session: Session,
    /// A citizen seen for the first time: no consent of theirs exists.
    pub first_time: bool,
}

impl Login<'_> {
    /// Step 3: national ID and birth date, checked against both registries (or the
    /// identity cache). Opens the SSO session and returns it with its cookie value.
    #[tracing::instrument(skip_all, fields(tx = %tx.id))]
    pub async fn submit_identity(
        &self,
        tx: &mut LoginTx,
        national_id: &str,
        birth_date: &str,
        ip: &str,
        now: i64,
    ) -> Result<Opened> {
        let started = started("identity");
        let result = self
            .submit_identity_inner(tx, national_id, birth_date, ip, now)
            .await;
        observe(
            "identity",
            started,
            if result.is_ok() {
                "completed"
            } else {
                "failed"
            },
        );
        result
    }

    pub(super) async fn submit_identity_inner(
        &self,
        tx: &mut LoginTx,
        national_id: &str,
        birth_date: &str,
        ip: &str,
        now: i64,
    ) -> Result<Opened> {
        if tx.step != Step::Identity {
            return Err(Error::user(StatusCode::CONFLICT, msg::STEP_ORDER));
        }
        let mobile = tx
            .mobile
            .clone()
            .ok_or_else(|| Error::user(StatusCode::CONFLICT, msg::STEP_ORDER))?;
        // Checksum first: a typo must not cost a registry call.
        let nid =
            NationalId::parse(national_id).map_err(|_| Error::bad_request(msg::BAD_NATIONAL_ID))?;
        let birth = JalaliDate::parse(birth_date).map_err(|e| {
            Error::bad_request(match e {
                crate::domain::jalali::JalaliDateError::Format => msg::BAD_BIRTH_DATE,
                crate::domain::jalali::JalaliDateError::NoSuchDay => msg::BAD_BIRTH_DAY,
            })
        })?;
        // Nobody is born after today (in Tehran): a typo, refused before it costs a try
        // or a registry call (zero-padded ISO dates compare as strings).
        if birth.to_iso_string() > service_kit::clock::date_iso(now) {
            return Err(Error::bad_request(msg::BIRTH_IN_FUTURE));
        }
        self.count_identity_try(tx, &mobile, &nid, ip).await?;

        let cached = self.db.citizen_by_national_id(&nid).await?.filter(|c| {
            c.mobile == mobile
                && c.birth_date == birth
                && now - c.verified_at < self.settings.identity_cache_secs
        });
        let (citizen, first_time) = match cached {
            Some(c) => {
                metrics::counter!("emta_identity_cache_total", "outcome" => "hit").increment(1);
                (c, false)
            }
            None => {
                metrics::counter!("emta_identity_cache_total", "outcome" => "miss").increment(1);
                let verified = match self.ask_registries(&nid, &birth, &mobile).await {
                    Ok(v) => v,
                    Err(e @ (Error::Upstream { .. } | Error::Busy { .. })) => {
                        // The registries failed, not the citizen: the try is given back.
                        self.refund_identity_try(tx, &mobile, &nid, ip).await?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                let Some((given_name, family_name)) = verified else {
                    return Err(Error::user(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        msg::IDENTITY_MISMATCH,
                    ));
                };
                let candidate = Citizen {
                    id: format!("c-{}", random_token(15)),
                    national_id: nid.clone(),
                    mobile: mobile.clone(),
                    given_name,
                    family_name,
                    birth_date: birth,
                    verified_at: now,
                };
                let stored = self.db.upsert_citizen(&candidate, now).await?;
                // The row is the one just made (not a known national ID's): nobody has
                // consented to anything for it yet.
                let first_time = stored.id == candidate.id;
                (stored, first_time)
            }
        };
        let cookie = random_token(32);
        let session = Session {
            sid: random_token(16),
            citizen_id: citizen.id.clone(),
            auth_time: now,
        };
        self.save_session(&cookie, &session).await?;
        tx.sid = Some(session.sid.clone());
        tx.step = Step::Consent;
        self.save_tx(tx).await?;
        Ok(Opened {
            cookie,
            session,
            first_time,
        })
    }

    /// Counts an identity try before anything is looked up, atomically, so that parallel
    /// submissions cannot all pass: per login (the fourth voids it), per address, per
    /// verified phone, and per (phone, national ID) pair. Nothing is counted per national
    /// ID alone: only the phone registered to a national ID can ever match it, so a
    /// stranger's failures (from another phone) must not and do not lock its owner out.
    pub(super) async fn count_identity_try(
        &self,
        tx: &LoginTx,
        mobile: &MobileNumber,
        nid: &NationalId,
        ip: &str,
    ) -> Result<()> {
        // The login's tries first (the fourth voids it, and counts against nothing
        // else), then the hourly budgets: one round trip, counted as one by one.
        let tries = step_tries_key(tx, Step::Identity);
        let pair = pair(mobile, nid);
        let hour = Duration::from_secs(3600);
        let mut limits = vec![self.login_tries(&tries, IDENTITY_MAX_TRIES)];
        limits.extend(
            self.identity_budgets(mobile, &pair, ip)
                .map(|(subject, max)| (subject, max, hour)),
        );
        match self.limiter.hit_all(&limits).await {
            Ok(_) => Ok(()),
            Err((0, Error::RateLimited { .. })) => {
                self.drop_tx(&tx.id).await?;
                Err(Error::LoginOver(msg::IDENTITY_VOID))
            }
            Err((_, e)) => Err(e),
        }
    }

    /// The hourly budgets an identity try counts against: per address, per verified phone
    /// and per (phone, national ID) pair; counted and refunded alike.
    pub(super) fn identity_budgets<'a>(
        &self,
        mobile: &'a MobileNumber,
        pair: &'a str,
        ip: &'a str,
    ) -> [(Subject<'a>, i64); 3] {
        [
            (Subject::IpIdentity(ip), self.settings.identity_tries_per_ip),
            (
                Subject::PhoneIdentity(mobile.e164()),
                self.settings.identity_tries_per_phone,
            ),
            (
                Subject::PairIdentity(pair),
                self.settings.fails_per_national_id,
            ),
        ]
    }

    /// Gives back what [`Self::count_identity_try`] counted.
    pub(super) async fn refund_identity_try(
        &self,
        tx: &LoginTx,
        mobile: &MobileNumber,
        nid: &NationalId,
        ip: &str,
    ) -> Result<()> {
        self.eph.unhit(&step_tries_key(tx, Step::Identity)).await?;
        let pair = pair(mobile, nid);
        for (subject, _) in self.identity_budgets(mobile, &pair, ip) {
            self.limiter.refund(subject).await?;
        }
        Ok(())
    }

    /// Both registries, concurrently. `None` is a mismatch of any kind: the citizen is not
    /// told which field was wrong, so the form cannot be used to probe the registry.
    pub(super) async fn ask_registries(
        &self,
        nid: &NationalId,
        birth: &JalaliDate,
        mobile: &MobileNumber,
    ) -> Result<Option<(String, String)>> {
        self.limiter
            .budget(Subject::RegistryBudget, self.settings.registry_rps)
            .await?;
        let (person, owns) = tokio::join!(
            self.registry.check_person(nid, birth),
            self.registry.owns_mobile(nid, mobile)
        );
        let upstream = |source| Error::Upstream {
            text: msg::REGISTRY_DOWN,
            source,
        };
        let person = person.map_err(upstream)?;
        let owns = owns.map_err(upstream)?;
        Ok(match (person, owns) {
            (
                PersonCheck::Match {
                    given_name,
                    family_name,
                },
                true,
            ) => Some((given_name, family_name)),
            _ => None,
        })
    }
}
