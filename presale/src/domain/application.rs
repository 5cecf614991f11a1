//! An application and the rules it is checked against.

use service_kit::Text;

use super::citizen::NationalId;
use super::license::Exclusion;

/// Why an application was refused. Each has a message in Persian and English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    SoldOut,
    AlreadyApplied,
    AlreadyAppliedInRound,
    Suspended,
    OutsideWindow,
    TooYoung,
    RecentPurchase,
    /// Not admitted, or the time to apply ran out.
    TurnOver,
    /// A lottery entry whose rank is not among the winners.
    NotAWinner,
    /// The license asks for a valid driving licence and the traffic police know none.
    NoDrivingLicence,
    /// The license excludes a vehicle registered within its months, or an active plate.
    RecentVehicle,
    /// The license requires the down payment held at a participating bank, and this
    /// person's hold is not confirmed (or was released).
    NoHold,
}

impl Refusal {
    /// Every refusal, for counting them by reason.
    pub const ALL: [Self; 12] = [
        Self::SoldOut,
        Self::AlreadyApplied,
        Self::AlreadyAppliedInRound,
        Self::Suspended,
        Self::OutsideWindow,
        Self::TooYoung,
        Self::RecentPurchase,
        Self::TurnOver,
        Self::NotAWinner,
        Self::NoDrivingLicence,
        Self::RecentVehicle,
        Self::NoHold,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::SoldOut => "sold_out",
            Self::AlreadyApplied => "already_applied",
            Self::AlreadyAppliedInRound => "already_applied_in_round",
            Self::Suspended => "suspended",
            Self::OutsideWindow => "outside_window",
            Self::TooYoung => "too_young",
            Self::RecentPurchase => "recent_purchase",
            Self::TurnOver => "turn_over",
            Self::NotAWinner => "not_a_winner",
            Self::NoDrivingLicence => "no_driving_licence",
            Self::RecentVehicle => "recent_vehicle",
            Self::NoHold => "no_hold",
        }
    }

    pub fn text(self) -> Text {
        match self {
            Self::SoldOut => Text {
                fa: "ظرفیت این پیش‌فروش تکمیل شده است.",
                en: "This presale is sold out.",
            },
            Self::AlreadyApplied => Text {
                fa: "با این کد ملی قبلاً در این پیش‌فروش ثبت‌نام شده است.",
                en: "This national ID has already applied in this presale.",
            },
            Self::AlreadyAppliedInRound => Text {
                fa: "با این کد ملی در این دوره فروش قبلاً ثبت‌نام شده است.",
                en: "This national ID has already applied in this sales round.",
            },
            Self::Suspended => Text {
                fa: "مجوز این پیش‌فروش از سوی وزارت تعلیق شده است.",
                en: "The ministry has suspended this presale's license.",
            },
            Self::OutsideWindow => Text {
                fa: "زمان ثبت‌نام این پیش‌فروش نیست.",
                en: "Registration for this presale is not open now.",
            },
            Self::TooYoung => Text {
                fa: "سن متقاضی کمتر از حد مجاز این پیش‌فروش است.",
                en: "The applicant is younger than this presale allows.",
            },
            Self::NotAWinner => Text {
                fa: "شما در قرعه‌کشی برنده نشده‌اید یا قرعه‌کشی هنوز انجام نشده است.",
                en: "You did not win the lottery, or it has not been drawn yet.",
            },
            Self::TurnOver => Text {
                fa: "نوبت شما نرسیده یا مهلت آن گذشته است.",
                en: "It is not your turn, or your time to apply has run out.",
            },
            Self::NoDrivingLicence => Text {
                fa: "پلیس راهور گواهینامه رانندگی معتبری به نام این کد ملی نمی‌شناسد؛ این پیش‌فروش گواهینامه معتبر می‌خواهد.",
                en: "The traffic police know of no valid driving licence for this national ID; this presale requires one.",
            },
            Self::RecentVehicle => Text {
                fa: "به گفته سامانه شماره‌گذاری، خودرویی در بازه این پیش‌فروش به نام این کد ملی شماره شده یا پلاک فعالی به نام آن است؛ این پیش‌فروش آن را نمی‌پذیرد.",
                en: "The vehicle registry shows a vehicle registered to this national ID within this presale's months, or an active plate; this presale excludes it.",
            },
            Self::NoHold => Text {
                fa: "مسدودی پیش‌پرداخت این پیش‌فروش در یکی از بانک‌های عامل برای این کد ملی تأیید نشده (یا آزاد شده) است؛ نخست از صفحه پیش‌فروش آن را انجام دهید.",
                en: "This presale's down payment hold at a participating bank is not confirmed for this national ID (or was released); place it from the presale's page first.",
            },
            Self::RecentPurchase => Text {
                fa: "این کد ملی در ماه‌های اخیر از خودروسازان بزرگ خرید داشته و در این پیش‌فروش مجاز نیست.",
                en: "This national ID bought from a major manufacturer recently and cannot apply in this presale.",
            },
        }
    }
}

/// The license fields an application is checked against.
#[derive(Debug, Clone)]
pub struct LicenseTerms {
    pub id: String,
    pub units: i64,
    pub opens_at: i64,
    pub closes_at: i64,
    pub min_age: Option<i64>,
    pub round: Option<String>,
    pub active: bool,
    /// Lottery winners apply after the window closes, for `apply_window_secs`.
    pub lottery: bool,
    pub apply_window_secs: i64,
    /// No accepted application at these manufacturers in the last so many months.
    pub exclusion: Option<Exclusion>,
    /// The registries asked (checked before the store is, see `registries`).
    pub registration: Option<super::license::Registration>,
}

/// One applicant's request, with the identity the IdP verified.
#[derive(Debug, Clone)]
pub struct ApplicationRequest {
    pub national_id: NationalId,
    pub citizen_sub: String,
    /// ISO 8601 birth date from the ID token.
    pub birthdate: String,
    /// The queue ticket, or the lottery rank, applied with.
    pub ticket: i64,
    /// A pre-opening arrival's number, whose ticket the seed gave: the application's
    /// transaction checks that the holder owns that arrival (or, without one, the ticket).
    pub arrival: Option<i64>,
    /// The per-campaign keyed hash of the national ID, as the transparency log shows it.
    pub holder: super::Holder,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    pub tracking_code: String,
}

/// A tracking code people can read out on the phone: 10 digits, no ambiguity.
pub fn tracking_code() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen_range(1_000_000_000..10_000_000_000);
    n.to_string()
}

/// Whole years from an ISO birth date to an ISO day.
pub fn age_on(birthdate: &str, today: &str) -> Option<i64> {
    let parse = |s: &str| -> Option<(i64, i64, i64)> {
        let mut it = s.split('-').map(|p| p.parse::<i64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    let (by, bm, bd) = parse(birthdate)?;
    let (ty, tm, td) = parse(today)?;
    let mut age = ty - by;
    if (tm, td) < (bm, bd) {
        age -= 1;
    }
    Some(age)
}

#[cfg(test)]
mod tests {
    use super::age_on;

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age_on("2008-03-20", "2026-03-19"), Some(17));
        assert_eq!(age_on("2008-03-20", "2026-03-20"), Some(18));
        assert_eq!(age_on("garbage", "2026-03-20"), None);
    }
}
