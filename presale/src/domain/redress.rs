//! A buyer's redress after the sale (issue 34), as the consumer-protection law for car
//! buyers (1386) and its executive regulation (1395) state it: complaints and where they
//! stand as they age, warranty visits and the law's thresholds, attachments checked by
//! their content, and the rule by which a manufacturer's record withholds stars from its
//! rating. Nothing here knows HTTP or SQL.

use service_kit::{t, Text};

use super::after_sale::DAY;

/// How long a manufacturer has to answer a complaint, by default (the law's ten days for
/// public bodies, which the ministry applies to manufacturers).
pub const ANSWER_DAYS: i64 = 10;

/// What a complaint is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComplaintKind {
    LateDelivery,
    PriceChange,
    WarrantyRefused,
    Other,
}

impl ComplaintKind {
    pub const ALL: [Self; 4] = [
        Self::LateDelivery,
        Self::PriceChange,
        Self::WarrantyRefused,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LateDelivery => "late_delivery",
            Self::PriceChange => "price_change",
            Self::WarrantyRefused => "warranty_refused",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn text(self) -> Text {
        match self {
            Self::LateDelivery => t!("تأخیر در تحویل", "late delivery"),
            Self::PriceChange => t!("تغییر قیمت", "price change"),
            Self::WarrantyRefused => t!("خودداری از خدمات گارانتی", "warranty refused"),
            Self::Other => t!("سایر", "other"),
        }
    }
}

/// Who a complaint is with now. A complaint goes to the manufacturer first; unanswered by
/// its deadline, or escalated by the buyer after an answer, it goes to the province's
/// industry office; still open 15 days after filing, to the consumer-protection
/// organisation; 20 days after, to the three-member board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Manufacturer,
    Province,
    ConsumerProtection,
    Board,
    /// Decided by the ministry (upheld or dismissed), or accepted by the buyer.
    Closed,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manufacturer => "manufacturer",
            Self::Province => "province",
            Self::ConsumerProtection => "consumer_protection",
            Self::Board => "board",
            Self::Closed => "closed",
        }
    }

    pub fn text(self) -> Text {
        match self {
            Self::Manufacturer => t!("نزد خودروساز", "with the manufacturer"),
            Self::Province => t!("سازمان صمت استان", "the province's industry office"),
            Self::ConsumerProtection => t!(
                "سازمان حمایت مصرف‌کنندگان و تولیدکنندگان",
                "the consumer-protection organisation"
            ),
            Self::Board => t!("هیئت سه‌نفره", "the three-member board"),
            Self::Closed => t!("بسته شد", "closed"),
        }
    }
}

/// How a complaint was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Upheld,
    Dismissed,
    /// The buyer accepted the manufacturer's answer.
    Accepted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upheld => "upheld",
            Self::Dismissed => "dismissed",
            Self::Accepted => "accepted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upheld" => Some(Self::Upheld),
            "dismissed" => Some(Self::Dismissed),
            "accepted" => Some(Self::Accepted),
            _ => None,
        }
    }
}

/// A complaint's times, as the ageing rule reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ageing {
    pub filed_at: i64,
    pub answer_due: i64,
    pub answered_at: Option<i64>,
    /// When the buyer took an answered complaint further.
    pub escalated_at: Option<i64>,
    pub outcome: Option<Outcome>,
}

impl Ageing {
    /// Who it is with at `now`.
    pub fn level(&self, now: i64) -> Level {
        if self.outcome.is_some() {
            return Level::Closed;
        }
        let unanswered_late = self.unanswered_late(now);
        if !unanswered_late && self.escalated_at.is_none() {
            return Level::Manufacturer;
        }
        // An answer given only after the deadline does not bring it back: the ministry
        // has it from the deadline on.
        let age = now - self.filed_at;
        if age >= 20 * DAY {
            Level::Board
        } else if age >= 15 * DAY {
            Level::ConsumerProtection
        } else {
            Level::Province
        }
    }

    /// Unanswered past its deadline (now, or answered only after it): counts against the
    /// manufacturer's rating.
    pub fn unanswered_late(&self, now: i64) -> bool {
        match self.answered_at {
            Some(a) => a > self.answer_due,
            None => now > self.answer_due,
        }
    }
}

/// One warranty visit: the car brought in (with its written work order), and when and how
/// it came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    pub opened_at: i64,
    pub safety: bool,
    pub returned_at: Option<i64>,
    /// Whether the repair failed (known when the car came back).
    pub failed: bool,
}

/// What the law says a buyer is owed, from the car's visits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarrantyTally {
    /// Seconds off the road in all the visits (the one open counts to `now`).
    pub off_road: i64,
    /// The longest stay, in seconds (visits within [`ONE_STAY_GAP`] of each other are one).
    pub longest: i64,
    pub failed_safety: u32,
    /// A like replacement car while the car is in: any stay over 48 hours.
    pub replacement_car_due: bool,
    /// Replacement or refund: 3 failed repairs of a safety defect, or 30 days off the road.
    pub replace_or_refund_due: bool,
}

/// The 48 hours after which a replacement car is due.
pub const REPLACEMENT_CAR_AFTER: i64 = 48 * 3600;
/// Failed safety repairs after which the car is replaced or refunded.
pub const FAILED_SAFETY_REPAIRS: u32 = 3;
/// Days off the road in all after which the car is replaced or refunded.
pub const DAYS_OFF_ROAD: i64 = 30;

/// Visits back in the workshop within this of the car's return are one stay for the 48
/// hours (out and in again does not start them over).
pub const ONE_STAY_GAP: i64 = DAY;

pub fn warranty_tally(visits: &[Visit], now: i64) -> WarrantyTally {
    let mut t = WarrantyTally::default();
    let mut sorted: Vec<&Visit> = visits.iter().collect();
    sorted.sort_by_key(|v| v.opened_at);
    // The current stay: (its start, its latest end).
    let mut stay: Option<(i64, i64)> = None;
    for v in sorted {
        let end = v.returned_at.unwrap_or(now).max(v.opened_at);
        t.off_road = t.off_road.saturating_add(end - v.opened_at);
        stay = match stay {
            Some((start, last)) if v.opened_at <= last.saturating_add(ONE_STAY_GAP) => {
                Some((start, last.max(end)))
            }
            _ => Some((v.opened_at, end)),
        };
        if let Some((start, last)) = stay {
            t.longest = t.longest.max(last - start);
        }
        if v.safety && v.failed && v.returned_at.is_some() {
            t.failed_safety += 1;
        }
    }
    t.replacement_car_due = t.longest > REPLACEMENT_CAR_AFTER;
    t.replace_or_refund_due =
        t.failed_safety >= FAILED_SAFETY_REPAIRS || t.off_road >= DAYS_OFF_ROAD * DAY;
    t
}

/// What a manufacturer's record holds against it (the last 365 days).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demerits {
    /// Accepted applications past their delivery deadline and not delivered.
    pub overdue: i64,
    /// Complaints unanswered past their deadline.
    pub unanswered: i64,
    /// Complaints the ministry upheld.
    pub upheld: i64,
    /// Cars past the law's replacement-or-refund threshold.
    pub warranty: i64,
}

impl Demerits {
    pub fn total(&self) -> i64 {
        self.overdue
            .saturating_add(self.unanswered)
            .saturating_add(self.upheld)
            .saturating_add(self.warranty)
    }

    /// The stars the record withholds from the ministry's rating: none for a clean
    /// record, one for the first demerit and one more for each further ten, at most four
    /// (the rating shown is never below one star).
    pub fn withheld(&self) -> u8 {
        match self.total() {
            0 => 0,
            n => u8::try_from((1 + (n - 1) / 10).min(4)).unwrap_or(4),
        }
    }
}

/// An attachment's kind, read from its first bytes (never from what the browser says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Pdf,
    Png,
    Jpeg,
}

/// The largest attachment, and how many a complaint may carry.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_FILES: usize = 3;

impl FileKind {
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }

    pub fn parse_mime(s: &str) -> Option<Self> {
        [Self::Pdf, Self::Png, Self::Jpeg]
            .into_iter()
            .find(|k| k.mime() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;

    fn ageing(answered_at: Option<i64>, escalated_at: Option<i64>) -> Ageing {
        Ageing {
            filed_at: 0,
            answer_due: ANSWER_DAYS * DAY,
            answered_at,
            escalated_at,
            outcome: None,
        }
    }

    #[test]
    fn an_unanswered_complaint_climbs_at_10_15_and_20_days() {
        let a = ageing(None, None);
        assert_eq!(a.level(9 * DAY), Level::Manufacturer);
        assert_eq!(
            a.level(10 * DAY),
            Level::Manufacturer,
            "the tenth day is the deadline"
        );
        assert_eq!(a.level(10 * DAY + 1), Level::Province);
        assert_eq!(a.level(15 * DAY), Level::ConsumerProtection);
        assert_eq!(a.level(20 * DAY), Level::Board);
        assert!(a.unanswered_late(10 * DAY + 1) && !a.unanswered_late(10 * DAY));
    }

    #[test]
    fn an_answer_in_time_keeps_it_with_the_manufacturer_until_the_buyer_escalates() {
        let answered = ageing(Some(3 * DAY), None);
        assert_eq!(answered.level(30 * DAY), Level::Manufacturer);
        assert!(!answered.unanswered_late(30 * DAY));
        let escalated = ageing(Some(3 * DAY), Some(4 * DAY));
        assert_eq!(escalated.level(4 * DAY), Level::Province);
        assert_eq!(escalated.level(16 * DAY), Level::ConsumerProtection);
        let late = ageing(Some(12 * DAY), None);
        assert!(
            late.unanswered_late(12 * DAY),
            "an answer after the deadline counts"
        );
        assert_eq!(late.level(13 * DAY), Level::Province);
        let decided = Ageing {
            outcome: Some(Outcome::Upheld),
            ..ageing(None, None)
        };
        assert_eq!(decided.level(40 * DAY), Level::Closed);
    }

    #[test]
    fn a_replacement_car_after_48_hours_and_replacement_after_three_failures_or_30_days() {
        let stay = |from: i64, hours: i64, safety: bool, failed: bool| Visit {
            opened_at: from,
            safety,
            returned_at: Some(from + hours * H),
            failed,
        };
        let t = warranty_tally(&[stay(0, 48, false, false)], 100 * DAY);
        assert!(!t.replacement_car_due, "48 hours is not over 48 hours");
        let open = Visit {
            opened_at: 0,
            safety: false,
            returned_at: None,
            failed: false,
        };
        assert!(warranty_tally(&[open], 48 * H + 1).replacement_car_due);
        let two = [stay(0, 10, true, true), stay(DAY, 10, true, true)];
        assert!(!warranty_tally(&two, 100 * DAY).replace_or_refund_due);
        let three = [
            stay(0, 10, true, true),
            stay(DAY, 10, true, true),
            stay(2 * DAY, 10, true, true),
        ];
        let t = warranty_tally(&three, 100 * DAY);
        assert_eq!(t.failed_safety, 3);
        assert!(t.replace_or_refund_due);
        // Failed repairs of what is not a safety defect do not count towards three.
        let cosmetic = [
            stay(0, 10, false, true),
            stay(DAY, 10, false, true),
            stay(2 * DAY, 10, false, true),
        ];
        assert!(!warranty_tally(&cosmetic, 100 * DAY).replace_or_refund_due);
        // 29 days and 23 hours in three stays: not yet; one hour more: due.
        let long = [
            stay(0, 10 * 24, false, false),
            stay(20 * DAY, 10 * 24, false, false),
        ];
        let almost = Visit {
            opened_at: 40 * DAY,
            safety: false,
            returned_at: Some(40 * DAY + 10 * 24 * H - H),
            failed: false,
        };
        let mut visits = long.to_vec();
        visits.push(almost);
        assert!(!warranty_tally(&visits, 100 * DAY).replace_or_refund_due);
        visits[2].returned_at = Some(40 * DAY + 10 * 24 * H);
        assert!(warranty_tally(&visits, 100 * DAY).replace_or_refund_due);
    }

    #[test]
    fn the_record_withholds_one_star_then_one_per_ten_at_most_four() {
        let d = |n| Demerits {
            unanswered: n,
            ..Demerits::default()
        };
        assert_eq!(d(0).withheld(), 0);
        assert_eq!(d(1).withheld(), 1);
        assert_eq!(d(10).withheld(), 1);
        assert_eq!(d(11).withheld(), 2);
        assert_eq!(d(31).withheld(), 4);
        assert_eq!(d(i64::MAX).withheld(), 4);
        let mixed = Demerits {
            overdue: 5,
            unanswered: 3,
            upheld: 2,
            warranty: 1,
        };
        assert_eq!((mixed.total(), mixed.withheld()), (11, 2));
    }

    #[test]
    fn attachments_are_known_by_their_first_bytes() {
        assert_eq!(FileKind::sniff(b"%PDF-1.7\n"), Some(FileKind::Pdf));
        assert_eq!(
            FileKind::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(FileKind::Png)
        );
        assert_eq!(
            FileKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(FileKind::Jpeg)
        );
        for bad in [
            &b"<html><script>"[..],
            b"GIF89a",
            b"",
            b"%PD",
            b"MZ\x90\x00",
        ] {
            assert_eq!(FileKind::sniff(bad), None);
        }
    }
}
