//! Presale licenses as the ministry issues them, and the rules they must satisfy.

use super::application::LicenseTerms;

pub use emta_verify::terms::{
    Exclusion, HoldBefore, HoldTerms, NewLicense, PresaleKind, Registration, SeedDelay, Selection,
};

/// Whether a license may sell now. Suspension is the ministry's (staff console).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenseStatus {
    Active,
    Suspended,
}

impl LicenseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// What a suspension or a resumption asked of a license in a given standing does. Only a
/// real change of status is carried out: a second suspension stopping the queue's clock
/// again would cost everyone whose deadline fell between the two their turn, and a
/// duplicate proposal approved twice is the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// Suspend now.
    Suspend,
    /// Resume; the suspension lasted `paused_ms`, which every open deadline gets back.
    Resume { paused_ms: i64 },
    /// It is so already: nothing to do, and a proposal for it is stale.
    Unchanged,
}

/// The rule: `active` asked of a license in `current` standing, suspended since
/// `suspended_at_ms` (when suspended), at `now_ms` on the database's clock.
pub fn status_change(
    current: LicenseStatus,
    suspended_at_ms: Option<i64>,
    active: bool,
    now_ms: i64,
) -> StatusChange {
    match (current, active) {
        (LicenseStatus::Active, false) => StatusChange::Suspend,
        (LicenseStatus::Suspended, true) => StatusChange::Resume {
            // A suspension from before its start was recorded gives nothing back: no
            // guess at a length an insider could inflate.
            paused_ms: suspended_at_ms.map_or(0, |at| (now_ms - at).max(0)),
        },
        _ => StatusChange::Unchanged,
    }
}

/// Eligibility rule: no accepted application at these manufacturers in the last `months`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error("units, price, down payment, rate and bounds must be positive")]
    NotPositive,
    #[error("the down payment cannot exceed the unit price")]
    DownPayment,
    #[error("the registration window must close after it opens")]
    Window,
    #[error("the delivery deadline passes the legal limit of {0} months for this kind")]
    Deadline(i64),
    #[error("license number: letters, digits and dashes, 3 to 32")]
    LicenseNo,
    #[error("this license number has been issued already")]
    Exists,
    #[error("the seed needs commitments from at least two distinct parties, with distinct names and distinct commitments (name: a-z, 0-9, dashes; commitment: base64url SHA-256)")]
    Parties,
    #[error("times are Unix seconds up to the year 2999, and the apply window is at most 30 days")]
    Times,
    #[error("the minimum age is 0 to 120 years")]
    MinAge,
    #[error("the exclusion rule names at least one manufacturer and 1 to 120 months")]
    Exclusion,
    #[error(
        "the seed needs a reveal window of 1 second to a day and 1 to 100 000 000 delay steps"
    )]
    SeedDelay,
    #[error("the vehicle rule counts 1 to 120 months")]
    VehicleMonths,
    #[error("a hold names 1 to 20 distinct banks (a-z, 0-9, dashes), a positive amount no more than the price, and a title of 1 to 120 characters")]
    Hold,
}

/// An issued license, as storefronts show it and applications are checked against.
#[derive(Debug, Clone)]
pub struct License {
    pub id: String,
    pub license_no: String,
    pub manufacturer: String,
    pub model: String,
    pub units: i64,
    /// Applications accepted so far (never above `units`).
    pub accepted: i64,
    pub unit_price: i64,
    pub down_payment: i64,
    pub kind: PresaleKind,
    pub delivery_deadline: i64,
    pub opens_at: i64,
    pub closes_at: i64,
    pub selection: Selection,
    pub admission_per_min: i64,
    pub max_active: i64,
    pub apply_window_secs: i64,
    pub min_age: Option<i64>,
    pub round: Option<String>,
    pub status: LicenseStatus,
    pub exclusion: Option<Exclusion>,
    /// The registries asked at registration.
    pub registration: Option<Registration>,
}

impl License {
    pub fn is_active(&self) -> bool {
        self.status == LicenseStatus::Active
    }

    pub fn is_lottery(&self) -> bool {
        self.selection == Selection::Lottery
    }

    pub fn sold_out(&self) -> bool {
        self.accepted >= self.units
    }

    /// What an application is checked against.
    pub fn terms(&self) -> LicenseTerms {
        LicenseTerms {
            id: self.id.clone(),
            units: self.units,
            opens_at: self.opens_at,
            closes_at: self.closes_at,
            min_age: self.min_age,
            round: self.round.clone(),
            active: self.is_active(),
            lottery: self.is_lottery(),
            apply_window_secs: self.apply_window_secs,
            exclusion: self.exclusion.clone(),
            registration: self.registration.clone(),
        }
    }
}

pub const MONTH: i64 = 30 * 24 * 3600;
/// The range a license's instants must fall in (Unix seconds up to 2999-12-31): anything
/// else is a typo, and the bound keeps every sum of an instant and a duration far from
/// overflowing.
const EARLIEST: i64 = 0;
const LATEST: i64 = 32_503_593_600;

/// The rules a license's terms must satisfy to be issued.
pub trait Validate {
    fn validate(&self) -> Result<(), LicenseError>;
}

impl Validate for NewLicense {
    fn validate(&self) -> Result<(), LicenseError> {
        let ok_no = (3..=32).contains(&self.license_no.len())
            && self
                .license_no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok_no {
            return Err(LicenseError::LicenseNo);
        }
        if self.units <= 0
            || self.unit_price <= 0
            || self.down_payment <= 0
            || self.admission_per_min <= 0
            || self.max_active <= 0
            || self.apply_window_secs <= 0
        {
            return Err(LicenseError::NotPositive);
        }
        if self.down_payment > self.unit_price {
            return Err(LicenseError::DownPayment);
        }
        let instants = [self.opens_at, self.closes_at, self.delivery_deadline];
        if instants.iter().any(|t| !(EARLIEST..=LATEST).contains(t))
            || self.apply_window_secs > MONTH
        {
            return Err(LicenseError::Times);
        }
        if self.closes_at <= self.opens_at {
            return Err(LicenseError::Window);
        }
        let months = self.kind.max_delivery_months();
        if self.delivery_deadline > self.closes_at + months * MONTH
            || self.delivery_deadline <= self.closes_at
        {
            return Err(LicenseError::Deadline(months));
        }
        if self.min_age.is_some_and(|a| !(0..=120).contains(&a)) {
            return Err(LicenseError::MinAge);
        }
        if self
            .exclusion
            .as_ref()
            .is_some_and(|e| e.manufacturers.is_empty() || !(1..=120).contains(&e.months))
        {
            return Err(LicenseError::Exclusion);
        }
        if !crate::transparency::seed::valid_parties(&self.parties) {
            return Err(LicenseError::Parties);
        }
        if !self.seed_delay.is_some_and(|d| d.valid()) {
            return Err(LicenseError::SeedDelay);
        }
        if self
            .registration
            .as_ref()
            .and_then(|r| r.no_vehicle_months)
            .is_some_and(|m| !(1..=120).contains(&m))
        {
            return Err(LicenseError::VehicleMonths);
        }
        if let Some(h) = self.registration.as_ref().and_then(|r| r.hold.as_ref()) {
            if !h.valid() || h.amount > self.unit_price {
                return Err(LicenseError::Hold);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Sound terms, for tests to change what they are about.
    pub(crate) fn sample() -> NewLicense {
        NewLicense {
            license_no: "MIMT-1403-0001".into(),
            manufacturer: "saipa".into(),
            model: "Shahin".into(),
            units: 100,
            unit_price: 8_000_000_000,
            down_payment: 2_000_000_000,
            kind: PresaleKind::Firm,
            delivery_deadline: 1_000 + 8 * MONTH,
            opens_at: 0,
            closes_at: 1_000,
            selection: Selection::Queue,
            admission_per_min: 600,
            max_active: 50,
            apply_window_secs: 600,
            min_age: Some(18),
            round: None,
            exclusion: None,
            parties: ["ministry", "saipa"]
                .map(|p| crate::transparency::seed::Contribution::generate(p).commitment())
                .to_vec(),
            seed_delay: Some(SeedDelay {
                reveal_secs: 5,
                iterations: 4,
            }),
            registration: None,
        }
    }

    #[test]
    fn only_a_real_change_of_status_is_carried_out() {
        use LicenseStatus::{Active, Suspended};
        assert_eq!(
            status_change(Active, None, false, 10),
            StatusChange::Suspend
        );
        assert_eq!(
            status_change(Suspended, Some(4), false, 10),
            StatusChange::Unchanged,
            "a second suspension is not a change"
        );
        assert_eq!(
            status_change(Active, None, true, 10),
            StatusChange::Unchanged
        );
        assert_eq!(
            status_change(Suspended, Some(4), true, 10),
            StatusChange::Resume { paused_ms: 6 }
        );
        assert_eq!(
            status_change(Suspended, None, true, 10),
            StatusChange::Resume { paused_ms: 0 }
        );
        assert_eq!(
            status_change(Suspended, Some(40), true, 10),
            StatusChange::Resume { paused_ms: 0 },
            "a clock that stepped back gives no negative time"
        );
    }

    #[test]
    fn a_firm_presale_must_deliver_within_nine_months() {
        assert_eq!(sample().validate(), Ok(()));
        let mut late = sample();
        late.delivery_deadline = 1_000 + 10 * MONTH;
        assert_eq!(late.validate(), Err(LicenseError::Deadline(9)));
        late.kind = PresaleKind::Regular;
        assert_eq!(late.validate(), Ok(()));
    }

    #[test]
    fn nonsense_terms_are_refused() {
        let mut l = sample();
        l.down_payment = l.unit_price + 1;
        assert_eq!(l.validate(), Err(LicenseError::DownPayment));
        let mut l = sample();
        l.closes_at = l.opens_at;
        assert_eq!(l.validate(), Err(LicenseError::Window));
        let mut l = sample();
        l.license_no = "no spaces".into();
        assert_eq!(l.validate(), Err(LicenseError::LicenseNo));
        let mut l = sample();
        l.parties.pop();
        assert_eq!(l.validate(), Err(LicenseError::Parties));
        // One commitment under two names is one party (issue 31, point 1). First failure:
        // such a license was valid.
        let mut l = sample();
        l.parties[1].commitment = l.parties[0].commitment.clone();
        assert_eq!(l.validate(), Err(LicenseError::Parties));
        let mut l = sample();
        l.seed_delay = None;
        assert_eq!(l.validate(), Err(LicenseError::SeedDelay));
        // Found by the license form's property test: a rule that excludes nobody, ages and
        // instants whose sums overflow.
        let mut l = sample();
        l.exclusion = Some(crate::domain::Exclusion {
            manufacturers: vec![],
            months: 12,
        });
        assert_eq!(l.validate(), Err(LicenseError::Exclusion));
        let mut l = sample();
        l.min_age = Some(-1);
        assert_eq!(l.validate(), Err(LicenseError::MinAge));
        let mut l = sample();
        l.closes_at = i64::MAX;
        assert_eq!(l.validate(), Err(LicenseError::Times));
    }
}
