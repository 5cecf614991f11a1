//! After the sale (issue 34): the law's delivery limits, the compensation owed for a late
//! delivery, and the credit a manufacturer's rating allows it to presell.
//!
//! The rules, from the consumer-protection law for car buyers (1386) and its amended
//! executive regulation (1395):
//! - a late delivery is compensated for every whole day past the deadline, on the amount
//!   the buyer had paid by that day, at the monthly rate the ministry's table sets for the
//!   kind of sale and in force on that day ([`compensation`]);
//! - a manufacturer may have outstanding, in units licensed and not yet delivered times
//!   their down payment, at most the ceiling the ministry sets for its star rating
//!   ([`Ceilings`]); while any delivery of its is overdue it may be licensed one new unit
//!   per unit delivered since the first overdue deadline ([`Credit::check`]).

use std::collections::BTreeMap;

/// A day, in seconds: lateness is counted in whole days.
pub const DAY: i64 = 86_400;

/// The kinds of sale the law names, each with its longest delivery time. Licenses are firm
/// or regular presales ([`super::PresaleKind`]); the ministry's rate table covers them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SaleKind {
    Immediate,
    Firm,
    Regular,
    Participation,
    Custom,
    CustomImported,
}

impl SaleKind {
    pub const ALL: [SaleKind; 6] = [
        Self::Immediate,
        Self::Firm,
        Self::Regular,
        Self::Participation,
        Self::Custom,
        Self::CustomImported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "immediate",
            Self::Firm => "firm",
            Self::Regular => "regular",
            Self::Participation => "participation",
            Self::Custom => "custom",
            Self::CustomImported => "custom_imported",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind's name in Persian and English.
    pub fn text(self) -> service_kit::Text {
        use service_kit::t;
        match self {
            Self::Immediate => t!("فروش فوری", "immediate sale"),
            Self::Firm => t!("پیش‌فروش قطعی", "firm presale"),
            Self::Regular => t!("پیش‌فروش عادی", "regular presale"),
            Self::Participation => t!("مشارکت در تولید", "participation in production"),
            Self::Custom => t!("سفارش محدود", "limited custom order"),
            Self::CustomImported => t!("سفارش محدود وارداتی", "limited custom order, imported"),
        }
    }

    /// The law's longest delivery time, in days (a month counted as 30 days).
    pub fn max_delivery_days(self) -> i64 {
        match self {
            Self::Immediate => 30,
            Self::Firm => 9 * 30,
            Self::Regular => 12 * 30,
            Self::Participation => 36 * 30,
            Self::Custom => 3 * 30,
            Self::CustomImported => 4 * 30,
        }
    }
}

impl From<super::PresaleKind> for SaleKind {
    fn from(k: super::PresaleKind) -> Self {
        match k {
            super::PresaleKind::Firm => Self::Firm,
            super::PresaleKind::Regular => Self::Regular,
        }
    }
}

/// A rate of the ministry's table: from `from` (Unix seconds) on, `monthly_bp` basis
/// points (hundredths of a percent) of the amount paid, per month of 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub from: i64,
    pub monthly_bp: i64,
}

/// Rates are 0 to 100% a month.
pub const MAX_MONTHLY_BP: i64 = 10_000;

/// A payment the manufacturer recorded: `amount` rials at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub at: i64,
    pub amount: i64,
}

/// What a delivery's lateness comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lateness {
    /// Whole days past the deadline (until the delivery, or until now).
    pub days: i64,
    /// Compensation owed, whole rials (rounded down once, on the total).
    pub owed: i64,
    /// Late days for which the table had no rate in force (owed nothing: shown, so the
    /// ministry sees the gap).
    pub unrated_days: i64,
}

/// The compensation for a delivery due at `deadline` and made (or still not made) at
/// `until`: every whole day `k` past the deadline (from `deadline + (k-1)·DAY` to
/// `deadline + k·DAY`) owes `paid × rate / 30`, with `paid` what the buyer had paid by the
/// day's start and `rate` the table's rate in force then. `rates` and `payments` may be in
/// any order. Computed by spans of days over which neither changes, so its cost is the
/// number of payments and rates, however many days late.
pub fn compensation(deadline: i64, until: i64, payments: &[Payment], rates: &[Rate]) -> Lateness {
    let days = ((until - deadline) / DAY).max(0);
    // The first late day whose start is at or after `t`.
    let first_day_from = |t: i64| -> i64 {
        let since = t.saturating_sub(deadline);
        if since <= 0 {
            1
        } else {
            since.div_euclid(DAY) + i64::from(since.rem_euclid(DAY) != 0) + 1
        }
    };
    let mut cuts: Vec<i64> = payments
        .iter()
        .map(|p| p.at)
        .chain(rates.iter().map(|r| r.from))
        .map(first_day_from)
        .filter(|k| *k > 1 && *k <= days)
        .collect();
    cuts.push(1);
    cuts.push(days + 1);
    cuts.sort_unstable();
    cuts.dedup();
    // Σ paid × bp over the days, divided once at the end: no per-day rounding.
    let mut numerator: i128 = 0;
    let mut unrated_days = 0;
    for span in cuts.windows(2) {
        let (k, next) = (span[0], span[1]);
        if k > days {
            break;
        }
        let start = deadline + (k - 1) * DAY;
        let len = next - k;
        let paid: i128 = payments
            .iter()
            .filter(|p| p.at <= start)
            .map(|p| i128::from(p.amount.max(0)))
            .sum();
        match rates
            .iter()
            .filter(|r| r.from <= start)
            .max_by_key(|r| r.from)
        {
            Some(r) => {
                numerator +=
                    paid * i128::from(r.monthly_bp.clamp(0, MAX_MONTHLY_BP)) * i128::from(len)
            }
            None => unrated_days += len,
        }
    }
    let owed = numerator / (i128::from(MAX_MONTHLY_BP) * 30);
    Lateness {
        days,
        owed: i64::try_from(owed).unwrap_or(i64::MAX),
        unrated_days,
    }
}

/// The ministry's credit ceilings: rials a manufacturer of each star rating may have
/// outstanding in presales. Configured as `stars:rials` pairs (`1:0,2:5000000000000,…`);
/// a rating the table does not name may presell nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ceilings(BTreeMap<u8, i64>);

impl Ceilings {
    /// Parses `stars:rials,…` (stars 1 to 5, rials ≥ 0, each rating once).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (stars, rials) = pair
                .split_once(':')
                .ok_or_else(|| format!("{pair:?}: expected stars:rials"))?;
            let stars: u8 = stars
                .trim()
                .parse()
                .ok()
                .filter(|s| (1..=5).contains(s))
                .ok_or_else(|| format!("{pair:?}: stars are 1 to 5"))?;
            let rials: i64 = rials
                .trim()
                .parse()
                .ok()
                .filter(|r| *r >= 0)
                .ok_or_else(|| format!("{pair:?}: rials are a whole number, 0 or more"))?;
            if out.insert(stars, rials).is_some() {
                return Err(format!("{stars} stars named twice"));
            }
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ceiling for a rating (0 when the table does not name it).
    pub fn for_stars(&self, stars: u8) -> i64 {
        self.0.get(&stars).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u8, i64)> + '_ {
        self.0.iter().map(|(s, r)| (*s, *r))
    }
}

/// The ministry's credit policy at an approval: its ceilings, and each listed
/// manufacturer's rating as the IdP gives it now.
#[derive(Debug, Clone, Default)]
pub struct CreditPolicy {
    pub ceilings: Ceilings,
    pub stars: std::collections::HashMap<String, u8>,
}

/// A manufacturer's standing when a license for it is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    /// Its star rating at the IdP, when a ceiling applies.
    pub stars: Option<u8>,
    /// The ceiling for that rating.
    pub ceiling: Option<i64>,
    /// Units licensed and not yet delivered, times their down payment.
    pub outstanding: i64,
    /// Whether any of its deliveries is overdue, and if so the units delivered since the
    /// first overdue deadline and the units licensed since then.
    pub overdue: Option<Overdue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    pub applications: i64,
    pub delivered_since: i64,
    pub licensed_since: i64,
}

/// Why a license was refused on credit, with the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreditRefusal {
    #[error("over the credit ceiling: {outstanding} rials outstanding + {asked} asked > {ceiling} allowed at {stars} stars")]
    Ceiling {
        stars: u8,
        ceiling: i64,
        outstanding: i64,
        asked: i64,
    },
    #[error("{overdue} deliveries are overdue: {allowed} new units allowed (one per unit delivered since), {asked} asked")]
    Overdue {
        overdue: i64,
        allowed: i64,
        asked: i64,
    },
}

impl Credit {
    /// Whether a license of `units` at `down_payment` may be issued.
    pub fn check(&self, units: i64, down_payment: i64) -> Result<(), CreditRefusal> {
        let asked = units.saturating_mul(down_payment);
        if let (Some(stars), Some(ceiling)) = (self.stars, self.ceiling) {
            if self.outstanding.saturating_add(asked) > ceiling {
                return Err(CreditRefusal::Ceiling {
                    stars,
                    ceiling,
                    outstanding: self.outstanding,
                    asked,
                });
            }
        }
        if let Some(o) = self.overdue {
            let allowed = (o.delivered_since - o.licensed_since).max(0);
            if units > allowed {
                return Err(CreditRefusal::Overdue {
                    overdue: o.applications,
                    allowed,
                    asked: units,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    #[test]
    fn compensation_by_hand() {
        // 400 000 000 rials paid before the deadline, 2.5% a month: 10 days late owe
        // 400 000 000 × 0.025 / 30 × 10 = 3 333 333.33… → 3 333 333.
        let paid = [Payment {
            at: T0 - 10 * DAY,
            amount: 400_000_000,
        }];
        let rate = [Rate {
            from: 0,
            monthly_bp: 250,
        }];
        let l = compensation(T0, T0 + 10 * DAY + 3600, &paid, &rate);
        assert_eq!(
            l,
            Lateness {
                days: 10,
                owed: 3_333_333,
                unrated_days: 0
            }
        );
        // Not a whole day late: nothing.
        assert_eq!(compensation(T0, T0 + DAY - 1, &paid, &rate).owed, 0);
        assert_eq!(compensation(T0, T0 - 5 * DAY, &paid, &rate).days, 0);
    }

    #[test]
    fn compensation_follows_payments_and_rate_changes() {
        // 100 000 000 paid before; 200 000 000 more paid at the start of day 4. The rate is
        // 3% until day 6 starts, then 4%. Days 1-3: 100M × 300; days 4-5: 300M × 300;
        // days 6-8: 300M × 400. Σ = 3·3e10 + 2·9e10 + 3·1.2e11 = 6.3e11; / 300 000
        // = 2 100 000.
        let paid = [
            Payment {
                at: T0 + 3 * DAY,
                amount: 200_000_000,
            },
            Payment {
                at: T0 - DAY,
                amount: 100_000_000,
            },
        ];
        let rates = [
            Rate {
                from: T0 + 5 * DAY,
                monthly_bp: 400,
            },
            Rate {
                from: T0 - 100 * DAY,
                monthly_bp: 300,
            },
        ];
        let l = compensation(T0, T0 + 8 * DAY, &paid, &rates);
        assert_eq!(l.days, 8);
        assert_eq!(l.owed, 2_100_000);
        // Before any rate was in force nothing is owed, and the gap is counted.
        let late_rate = [Rate {
            from: T0 + 2 * DAY,
            monthly_bp: 300,
        }];
        let l = compensation(T0, T0 + 4 * DAY, &paid[1..], &late_rate);
        assert_eq!(l.unrated_days, 2);
        assert_eq!(l.owed, 100_000_000 * 300 * 2 / 300_000);
    }

    /// The rule as the law states it, a day at a time: the oracle for [`compensation`].
    fn by_day(deadline: i64, until: i64, payments: &[Payment], rates: &[Rate]) -> Lateness {
        let days = ((until - deadline) / DAY).max(0);
        let (mut numerator, mut unrated_days) = (0i128, 0);
        for k in 1..=days {
            let start = deadline + (k - 1) * DAY;
            let paid: i128 = payments
                .iter()
                .filter(|p| p.at <= start)
                .map(|p| i128::from(p.amount))
                .sum();
            match rates
                .iter()
                .filter(|r| r.from <= start)
                .max_by_key(|r| r.from)
            {
                Some(r) => numerator += paid * i128::from(r.monthly_bp),
                None => unrated_days += 1,
            }
        }
        Lateness {
            days,
            owed: i64::try_from(numerator / 300_000).unwrap_or(i64::MAX),
            unrated_days,
        }
    }

    #[test]
    fn spans_compute_what_the_days_do() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(34);
        for _ in 0..2000 {
            let late = rng.gen_range(-3 * DAY..400 * DAY);
            let jitter = |rng: &mut rand::rngs::StdRng| rng.gen_range(-40 * DAY..420 * DAY);
            let payments: Vec<Payment> = (0..rng.gen_range(0..5))
                .map(|_| Payment {
                    at: T0 + jitter(&mut rng),
                    amount: rng.gen_range(1..5_000_000_000),
                })
                .collect();
            let rates: Vec<Rate> = (0..rng.gen_range(0..4))
                .map(|_| Rate {
                    from: T0 + jitter(&mut rng),
                    monthly_bp: rng.gen_range(0..=MAX_MONTHLY_BP),
                })
                .collect();
            assert_eq!(
                compensation(T0, T0 + late, &payments, &rates),
                by_day(T0, T0 + late, &payments, &rates),
                "{late} {payments:?} {rates:?}"
            );
        }
        // A deadline in 1970 costs no more than one in the future.
        let far = compensation(
            0,
            T0,
            &[Payment { at: 0, amount: 1 }],
            &[Rate {
                from: 0,
                monthly_bp: 1,
            }],
        );
        assert_eq!(far.days, T0 / DAY);
    }

    #[test]
    fn ceilings_parse_strictly() {
        let c = Ceilings::parse("1:0, 3:5000 ,5:9000").expect("parses");
        assert_eq!(
            (c.for_stars(1), c.for_stars(2), c.for_stars(3)),
            (0, 0, 5000)
        );
        for bad in ["0:5", "6:5", "3:-1", "3", "3:5,3:6", "x:1"] {
            assert!(Ceilings::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credit_refuses_with_the_figures() {
        let c = Credit {
            stars: Some(3),
            ceiling: Some(1_000),
            outstanding: 600,
            overdue: None,
        };
        assert_eq!(c.check(4, 100), Ok(()));
        assert_eq!(
            c.check(5, 100),
            Err(CreditRefusal::Ceiling {
                stars: 3,
                ceiling: 1_000,
                outstanding: 600,
                asked: 500
            })
        );
        let late = Credit {
            stars: None,
            ceiling: None,
            outstanding: 0,
            overdue: Some(Overdue {
                applications: 7,
                delivered_since: 5,
                licensed_since: 2,
            }),
        };
        assert_eq!(late.check(3, 1), Ok(()));
        assert_eq!(
            late.check(4, 1),
            Err(CreditRefusal::Overdue {
                overdue: 7,
                allowed: 3,
                asked: 4
            })
        );
    }

    #[test]
    fn every_kind_parses_back_and_has_the_laws_limit() {
        for k in SaleKind::ALL {
            assert_eq!(SaleKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SaleKind::Immediate.max_delivery_days(), 30);
        assert_eq!(SaleKind::CustomImported.max_delivery_days(), 120);
    }
}
