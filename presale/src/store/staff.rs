//! Ministry staff: accounts with an argon2id password and a TOTP second factor, roles, and
//! the append-only audit log of everything they do.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use sqlx::Row;
use totp_rs::{Builder, Totp};

use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Issues and suspends licenses.
    Issuer,
    /// Reads and exports the audit log.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "issuer" => Some(Self::Issuer),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("username: 3-32 lowercase letters, digits, dots or dashes")]
    Username,
    #[error("passwords need at least 12 characters")]
    WeakPassword,
    #[error("a staff account with this username exists")]
    Exists,
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

/// Why a login failed; deliberately one answer for the user ("wrong credentials").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    BadCredentials,
}

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
        let ok = (3..=32).contains(&username.len())
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
        let mut raw = [0u8; 20];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let secret = totp_rs::Secret::from(raw.to_vec()).to_base32();
        let totp = totp_for(username, &secret)?;
        let uri = totp.to_url().map_err(|e| StaffError::Totp(e.to_string()))?;
        let qr =
            qrcode::QrCode::new(uri.as_bytes()).map_err(|e| StaffError::Totp(e.to_string()))?;
        let svg = qr
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        let inserted = sqlx::query(
            "INSERT INTO staff (username, password_hash, totp_secret, role, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(username)
        .bind(&hash)
        .bind(&secret)
        .bind(role.as_str())
        .bind(now)
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if service_kit::sql::is_unique_violation(&e) => return Err(StaffError::Exists),
            Err(e) => return Err(StoreError::from(e).into()),
        }
        self.audit(now, actor, "staff.add", username, role.as_str())
            .await?;
        Ok(Enrolment {
            otpauth_uri: uri,
            qr_svg: svg,
        })
    }

    /// Checks password and TOTP code (each code usable once). Slow on purpose (argon2id).
    pub async fn staff_login(
        &self,
        username: &str,
        password: &str,
        code: &str,
        now: i64,
    ) -> Result<Result<Role, LoginFailure>, StoreError> {
        let row = sqlx::query("SELECT password_hash, totp_secret, last_totp_step, role FROM staff WHERE username = $1")
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
        let result = match (password_ok, step) {
            (true, Some(step)) if step > last => {
                // Single use: a concurrent login with the same code loses this race.
                let done = sqlx::query("UPDATE staff SET last_totp_step = $2 WHERE username = $1 AND last_totp_step < $2")
                    .bind(username)
                    .bind(step)
                    .execute(self.pool())
                    .await?;
                if done.rows_affected() == 1 {
                    Ok(role)
                } else {
                    Err(LoginFailure::BadCredentials)
                }
            }
            _ => Err(LoginFailure::BadCredentials),
        };
        let action = if result.is_ok() {
            "staff.login"
        } else {
            "staff.login-failed"
        };
        self.audit(now, username, action, username, "").await?;
        Ok(result)
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

    pub async fn audit(
        &self,
        at: i64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        service_kit::sql::append_audit(self.pool(), at, actor, action, subject, detail).await
    }

    /// The audit log, oldest first: (at, actor, action, subject, detail).
    pub async fn audit_entries(
        &self,
    ) -> Result<Vec<(i64, String, String, String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT at, actor, action, subject, detail FROM audit_log ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("at")?,
                    r.try_get("actor")?,
                    r.try_get("action")?,
                    r.try_get("subject")?,
                    r.try_get("detail")?,
                ))
            })
            .collect()
    }
}
