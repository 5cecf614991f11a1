//! Ministry staff: accounts with an argon2id password and a TOTP second factor, roles, and
//! the append-only audit log of everything they do.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use sqlx::Row;
use totp_rs::{Builder, Totp};

use super::{audit, Store, StoreError};

/// A staff account as the administrators' page lists it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub username: String,
    pub role: Role,
    /// A representative's manufacturer.
    pub manufacturer: Option<String>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("username: 3-32 lowercase letters, digits, dots or dashes, not ending in -seed")]
    Username,
    #[error("passwords need at least 12 characters")]
    WeakPassword,
    #[error("a staff account with this username exists")]
    Exists,
    #[error("a representative is enrolled for one manufacturer, and only a representative is")]
    Manufacturer,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("TOTP setup failed: {0}")]
    Totp(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What enrolment gives the new staff member: the otpauth URI and its QR code (SVG).
pub struct Enrolment {
    pub otpauth_uri: String,
    pub qr_svg: String,
}

fn totp_for(username: &str, secret_b32: &str) -> Result<Totp, StaffError> {
    let secret = totp_rs::Secret::try_from_base32(secret_b32)
        .map_err(|e| StaffError::Totp(e.to_string()))?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(username)
        .with_issuer(Some("emta ministry"))
        .build()
        .map_err(|e| StaffError::Totp(e.to_string()))
}

/// A fresh TOTP secret for `username` (base32) and its enrolment to show once.
fn new_totp(username: &str) -> Result<(String, Enrolment), StaffError> {
    let mut raw = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let secret = totp_rs::Secret::from(raw.to_vec()).to_base32();
    let totp = totp_for(username, &secret)?;
    let uri = totp.to_url().map_err(|e| StaffError::Totp(e.to_string()))?;
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| StaffError::Totp(e.to_string()))?;
    let svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok((
        secret,
        Enrolment {
            otpauth_uri: uri,
            qr_svg: svg,
        },
    ))
}

pub use crate::domain::staff::{Account, LoginFailure, Role, SignedIn, Standing};

impl Store {
    /// Creates a staff account; returns the TOTP enrolment to show once.
    pub async fn add_staff(
        &self,
        username: &str,
        password: &str,
        role: Role,
        actor: &str,
        now: i64,
    ) -> Result<Enrolment, StaffError> {
        self.enrol(username, password, role, None, actor, now).await
    }

    /// Creates a representative of `manufacturer`; returns the TOTP enrolment to show once.
    pub async fn add_representative(
        &self,
        username: &str,
        password: &str,
        manufacturer: &str,
        actor: &str,
        now: i64,
    ) -> Result<Enrolment, StaffError> {
        self.enrol(
            username,
            password,
            Role::Representative,
            Some(manufacturer),
            actor,
            now,
        )
        .await
    }

    async fn enrol(
        &self,
        username: &str,
        password: &str,
        role: Role,
        manufacturer: Option<&str>,
        actor: &str,
        now: i64,
    ) -> Result<Enrolment, StaffError> {
        let bound = match (role, manufacturer) {
            (Role::Representative, Some(m)) => {
                crate::transparency::seed::valid_party(m) && m != super::commitments::MINISTRY
            }
            (Role::Representative, None) | (_, Some(_)) => false,
            (_, None) => true,
        };
        if !bound {
            return Err(StaffError::Manufacturer);
        }
        // Never a manufacturer's seed client's name (`{manufacturer}-seed`): a commitment
        // entered under it would take that client's place for the license number.
        let ok = (3..=32).contains(&username.len())
            && !username.ends_with(super::commitments::SEED_CLIENT_SUFFIX)
            && username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !ok {
            return Err(StaffError::Username);
        }
        if password.chars().count() < 12 {
            return Err(StaffError::WeakPassword);
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| StaffError::Hash(e.to_string()))?
            .to_string();
        let (secret, enrolment) = new_totp(username)?;
        let mut tx = service_kit::sql::begin(self.pool())
            .await
            .map_err(StoreError::from)?;
        let inserted = sqlx::query(            "INSERT INTO staff (username, password_hash, totp_secret, role, created_at, manufacturer) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(username)
        .bind(&hash)
        .bind(&secret)
        .bind(role.as_str())
        .bind(now)
        .bind(manufacturer)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if service_kit::sql::is_unique_violation(&e) => return Err(StaffError::Exists),
            Err(e) => return Err(StoreError::from(e).into()),
        }
        // A representative's manufacturer is on the record: what the seed's eligibility
        // reads, not the column.
        let detail = enrolled_as(role, manufacturer);
        let entry = audit::Entry {
            at: now,
            actor,
            action: "staff.add",
            subject: username,
            detail: &detail,
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(enrolment)
    }

    /// Every staff account, by username.
    pub async fn staff_members(&self) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(            "SELECT username, role, manufacturer, created_at, disabled_at FROM staff ORDER BY username",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let username: String = r.try_get("username")?;
                Ok(Member {
                    role: Role::parse(&r.try_get::<String, _>("role")?)
                        .ok_or_else(|| StoreError::Corrupt(format!("staff {username}: role")))?,
                    manufacturer: r.try_get("manufacturer")?,
                    created_at: r.try_get("created_at")?,
                    disabled_at: r.try_get("disabled_at")?,
                    username,
                })
            })
            .collect()
    }

    /// Gives an account a new TOTP secret (a lost phone): the old codes stop working, every
    /// session of the account ends, and the new enrolment is shown once. None if there is
    /// no such account.
    pub async fn reset_staff_totp(
        &self,
        username: &str,
        actor: &str,
        now: i64,
    ) -> Result<Option<Enrolment>, StaffError> {
        let (secret, enrolment) = new_totp(username)?;
        let mut tx = service_kit::sql::begin(self.pool())
            .await
            .map_err(StoreError::from)?;
        let done = sqlx::query(
            "UPDATE staff SET totp_secret = $2, last_totp_step = 0, \
             session_epoch = session_epoch + 1 WHERE username = $1",
        )
        .bind(username)
        .bind(&secret)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let entry = audit::Entry {
            at: now,
            actor,
            action: "staff.reset-totp",
            subject: username,
            detail: "",
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Some(enrolment))
    }

    /// Changes an account's role; its sessions end, so the new role holds from its next
    /// sign-in. False if there is no such account or it has this role already.
    pub async fn set_staff_role(
        &self,
        username: &str,
        role: Role,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        if role == Role::Representative {
            return Ok(false);
        }
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let done = sqlx::query(
            "UPDATE staff SET role = $2, session_epoch = session_epoch + 1 \
             WHERE username = $1 AND role <> $2 AND role <> 'representative'",
        )
        .bind(username)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let entry = audit::Entry {
            at: now,
            actor,
            action: "staff.role",
            subject: username,
            detail: role.as_str(),
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Checks password and TOTP code (each code usable once) of an enabled account. Slow
    /// on purpose (argon2id). A failure is audited as `anonymous` (the caller is not known
    /// to be the account's owner), and only for an existing account, so a flood of made-up
    /// usernames writes nothing durable.
    pub async fn staff_login(
        &self,
        username: &str,
        password: &str,
        code: &str,
        now: i64,
        from: &str,
    ) -> Result<Result<SignedIn, LoginFailure>, StoreError> {
        let row = sqlx::query(
            "SELECT password_hash, totp_secret, last_totp_step, role, disabled_at, session_epoch \
             FROM staff WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            // Spend the same time as a real check, so usernames cannot be probed by timing.
            let _ = Argon2::default()
                .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng));
            return Ok(Err(LoginFailure::BadCredentials));
        };
        let hash: String = row.try_get("password_hash")?;
        let secret: String = row.try_get("totp_secret")?;
        let last: i64 = row.try_get("last_totp_step")?;
        let disabled = row.try_get::<Option<i64>, _>("disabled_at")?.is_some();
        let epoch: i64 = row.try_get("session_epoch")?;
        let role = Role::parse(&row.try_get::<String, _>("role")?).unwrap_or(Role::Auditor);
        let password_ok = PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let step = totp_for(username, &secret)
            .ok()
            .and_then(|t| t.check(code.trim(), now as u64))
            .map(|s| s as i64);
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let result = match (password_ok, step) {
            (true, Some(step)) if step > last && !disabled => {
                // Single use: a concurrent login with the same code loses this race.
                let done = sqlx::query("UPDATE staff SET last_totp_step = $2 WHERE username = $1 AND last_totp_step < $2 AND disabled_at IS NULL")
                    .bind(username)
                    .bind(step)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 1 {
                    Ok(SignedIn { role, epoch })
                } else {
                    Err(LoginFailure::BadCredentials)
                }
            }
            _ => Err(LoginFailure::BadCredentials),
        };
        let (actor, action) = match (&result, disabled) {
            (Ok(_), _) => (username, "staff.login"),
            (Err(_), true) => ("anonymous", "staff.login-disabled"),
            (Err(_), false) => ("anonymous", "staff.login-failed"),
        };
        let detail = format!("from {from}");
        let entry = audit::Entry {
            at: now,
            actor,
            action,
            subject: username,
            detail: &detail,
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// An account's standing, read on every console request: its role, whether it is
    /// enabled, and the epoch its sessions must carry.
    pub async fn staff_account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT role, manufacturer, disabled_at, session_epoch FROM staff WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Account {
                role: Role::parse(&r.try_get::<String, _>("role")?)
                    .ok_or_else(|| StoreError::Corrupt(format!("staff {username}: role")))?,
                manufacturer: r.try_get("manufacturer")?,
                enabled: r.try_get::<Option<i64>, _>("disabled_at")?.is_none(),
                epoch: r.try_get("session_epoch")?,
            })
        })
        .transpose()
    }

    /// Disables or re-enables an account, or only ends its sessions (`Standing::Revoked`);
    /// every change ends every session the account has. False if there is no such account.
    pub async fn set_staff_standing(
        &self,
        username: &str,
        standing: Standing,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = service_kit::sql::begin(self.pool()).await?;
        let (sql, action) = match standing {
            Standing::Disabled => (
                "UPDATE staff SET disabled_at = $2, session_epoch = session_epoch + 1 WHERE username = $1",
                "staff.disable",
            ),
            Standing::Enabled => (
                "UPDATE staff SET disabled_at = NULL, session_epoch = session_epoch + 1 WHERE username = $1",
                "staff.enable",
            ),
            Standing::Revoked => (
                "UPDATE staff SET session_epoch = session_epoch + 1 WHERE username = $1",
                "staff.revoke-sessions",
            ),
        };
        let mut query = sqlx::query(sql).bind(username);
        if standing == Standing::Disabled {
            query = query.bind(now);
        }
        let done = query.execute(&mut *tx).await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let entry = audit::Entry {
            at: now,
            actor,
            action,
            subject: username,
            detail: "",
            anchor: None,
        };
        self.audit_in(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The people behind an account: the account itself, and whoever enrolled it (an
    /// administrator, who was shown its password, which nobody can change, and its first
    /// TOTP secret), and theirs, back to the command line (outside the console). Read from
    /// the hash-chained `staff.add` entries, not from a column the service's role could
    /// rewrite. A TOTP reset or a role change gives nobody the password: it adds nobody.
    /// Two accounts with anyone in common are one person for four-eyes.
    pub(crate) async fn people_behind(
        &self,
        conn: &mut sqlx::AnyConnection,
        username: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut seen = std::collections::HashSet::from([username.to_owned()]);
        let mut next = vec![username.to_owned()];
        while let Some(u) = next.pop() {
            let enrolled = sqlx::query(
                "SELECT actor FROM audit_log WHERE action = 'staff.add' AND subject = $1",
            )
            .bind(&u)
            .fetch_all(&mut *conn)
            .await?;
            for row in enrolled {
                let by: String = row.try_get("actor")?;
                // Only console accounts: the command line's `cli:…` (a colon is in no
                // username) and the like are outside it.
                let account = !by.contains(':')
                    && sqlx::query("SELECT 1 AS one FROM staff WHERE username = $1")
                        .bind(&by)
                        .fetch_optional(&mut *conn)
                        .await?
                        .is_some();
                if account && seen.insert(by.clone()) {
                    next.push(by);
                }
            }
        }
        Ok(seen)
    }
    /// The manufacturer `username` represents, if it is an enabled representative enrolled
    /// for it on the record (its `staff.add` entry names the manufacturer: a row inserted
    /// or a column rewritten in the database without one represents nobody).
    pub(crate) async fn representative_of(
        &self,
        conn: &mut sqlx::AnyConnection,
        username: &str,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT role, manufacturer, disabled_at FROM staff WHERE username = $1")
                .bind(username)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let manufacturer: Option<String> = row.try_get("manufacturer")?;
        let enabled = row.try_get::<Option<i64>, _>("disabled_at")?.is_none();
        let (Some(manufacturer), true, true) = (
            manufacturer,
            row.try_get::<String, _>("role")? == Role::Representative.as_str(),
            enabled,
        ) else {
            return Ok(None);
        };
        let details =
            sqlx::query("SELECT detail FROM audit_log WHERE action = 'staff.add' AND subject = $1")
                .bind(username)
                .fetch_all(&mut *conn)
                .await?;
        if self.role_on_record(&mut *conn, username).await? != Some(Role::Representative) {
            return Ok(None);
        }
        let expected = enrolled_as(Role::Representative, Some(&manufacturer));
        let mut on_record = false;
        for d in details {
            on_record |= d.try_get::<String, _>("detail")? == expected;
        }
        Ok(on_record.then_some(manufacturer))
    }

    /// The role an account has on the record: that of its latest `staff.add` or
    /// `staff.role` entry (the hash chain's order), whatever the column says.
    pub(crate) async fn role_on_record(
        &self,
        conn: &mut sqlx::AnyConnection,
        username: &str,
    ) -> Result<Option<Role>, StoreError> {
        let detail: Option<String> = sqlx::query(
            "SELECT detail FROM audit_log WHERE action IN ('staff.add', 'staff.role') \
             AND subject = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(username)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get("detail"))
        .transpose()?;
        Ok(detail.and_then(|d| d.split(' ').next().and_then(Role::parse)))
    }

    /// Whether `a` and `b` may be the two pairs of eyes: nobody behind one is behind the
    /// other (see [`Store::people_behind`]).
    pub(crate) async fn independent(
        &self,
        conn: &mut sqlx::AnyConnection,
        a: &str,
        b: &str,
    ) -> Result<bool, StoreError> {
        let behind_a = self.people_behind(conn, a).await?;
        let behind_b = self.people_behind(conn, b).await?;
        Ok(behind_a.is_disjoint(&behind_b))
    }

    /// The current TOTP code of a staff member (tests and the enrolment check only).
    pub async fn current_totp(
        &self,
        username: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let secret: Option<String> =
            sqlx::query("SELECT totp_secret FROM staff WHERE username = $1")
                .bind(username)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.try_get("totp_secret"))
                .transpose()?;
        Ok(secret
            .and_then(|s| totp_for(username, &s).ok())
            .map(|t| t.generate(now as u64).to_string()))
    }
}

/// The `staff.add` entry's detail: the role, and a representative's manufacturer.
fn enrolled_as(role: Role, manufacturer: Option<&str>) -> String {
    match manufacturer {
        Some(m) => format!("{} {m}", role.as_str()),
        None => role.as_str().to_owned(),
    }
}
