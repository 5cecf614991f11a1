//! A license's terms as its log's first record carries them: the wire form that the
//! ministry's console issues and that the auditor reads back. (What makes terms valid for
//! issuance is the presale service's rule, in its domain.)

/// Legal delivery limits by presale kind: firm 9 months, regular 12 months (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresaleKind {
    Firm,
    Regular,
}

impl PresaleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firm => "firm",
            Self::Regular => "regular",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firm" => Some(Self::Firm),
            "regular" => Some(Self::Regular),
            _ => None,
        }
    }

    /// The latest delivery deadline allowed, counted from the registration window's close.
    pub fn max_delivery_months(self) -> i64 {
        match self {
            Self::Firm => 9,
            Self::Regular => 12,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    Queue,
    Lottery,
}

impl Selection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Lottery => "lottery",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queue" => Some(Self::Queue),
            "lottery" => Some(Self::Lottery),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exclusion {
    pub manufacturers: Vec<String>,
    pub months: i64,
}

/// A license to be issued. Times in Unix seconds, money in rials. (JSON for `presale
/// license issue`: the same field names, `kind` "firm" or "regular", `selection` "queue"
/// or "lottery", `parties` the seed commitments: `presale commit PARTY` makes one.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLicense {
    pub license_no: String,
    pub manufacturer: String,
    pub model: String,
    pub units: i64,
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
    pub exclusion: Option<Exclusion>,
    /// Every party's commitment to its seed contribution: at least two parties.
    pub parties: Vec<crate::seed::Commitment>,
    /// The reveals' deadline and the delay between them and the seed (see
    /// [`crate::vdf`]). Required at issuance; absent only in the records of
    /// campaigns issued before it existed (their seed followed the last reveal at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_delay: Option<SeedDelay>,
    /// What a citizen must show to register beyond identity, age and one per round: the
    /// registries' rules. Absent in the records of campaigns issued before it existed,
    /// and when the license asks for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
}

/// The registries a license asks at registration (issue 30), each an HTTP service of its
/// own, as the civil registry is to the IdP.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// A valid driving licence, as the traffic police's registry says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub driving_licence: bool,
    /// No vehicle registered to the national ID in the last so many months, and no active
    /// plate, as the vehicle registry says (the real rounds: 48).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_vehicle_months: Option<i64>,
    /// The down payment held at one of the participating banks, as a mandate the bank
    /// confirms (حساب وکالتی), not a card payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldTerms>,
}

/// A down payment's hold: at which banks, how much, under which account title, and
/// before which step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldTerms {
    /// The participating banks, by the ids the deployment knows them by.
    pub banks: Vec<String>,
    /// Rials held.
    pub amount: i64,
    /// The round's account title: a hold under another title does not count.
    pub title: String,
    pub before: HoldBefore,
}

/// When a hold is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldBefore {
    /// Before entering the lottery or joining the queue (the real rounds' rule: placed
    /// the day before the opening, so the surge costs the banks nothing).
    Entry,
    /// Before applying, once admitted or drawn.
    Apply,
}

impl HoldTerms {
    /// Bank ids: 1 to 20 distinct names of a-z, 0-9 and dashes; a positive amount; a title
    /// of 1 to 120 characters without control characters.
    pub fn valid(&self) -> bool {
        let name = |b: &String| {
            (1..=32).contains(&b.len())
                && b.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        };
        let distinct = self
            .banks
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            == self.banks.len();
        (1..=20).contains(&self.banks.len())
            && self.banks.iter().all(name)
            && distinct
            && self.amount > 0
            && (1..=120).contains(&self.title.chars().count())
            && !self.title.chars().any(char::is_control)
    }
}

impl Registration {
    /// The real rounds' vehicle rule: no car in the last 48 months.
    pub const VEHICLE_MONTHS: i64 = 48;

    /// Whether it asks any registry at all.
    pub fn asks_registries(&self) -> bool {
        self.driving_licence || self.no_vehicle_months.is_some()
    }
}

/// When reveals are due and how long the seed takes to compute after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDelay {
    /// Seconds after the freeze during which the parties reveal. A reveal later is
    /// refused, and the party's share is a fixed marker: withholding cannot be undone.
    pub reveal_secs: i64,
    /// Sloth steps from the reveals (and markers) to the seed. Chosen so that the fastest
    /// known hardware takes longer than `reveal_secs` to compute them: by the time anyone
    /// can know the outcome, every reveal was due.
    pub iterations: u64,
}

impl SeedDelay {
    /// The ministry's default: reveals within a minute of the freeze, and 40 000 steps.
    /// Measured on this project's machine (`presale seed-delay`, `load/BENCHMARKS.md`):
    /// GMP, the fastest implementation we know, takes 4.3 ms per modular square root of
    /// 2048 bits, about 6.4 ms per step (half the steps take two), so 40 000 steps are
    /// about 4 minutes there, and still over two minutes on a core twice as fast: more
    /// than twice the reveal window for an attacker, while the service computes it in
    /// the minutes after the window.
    pub const RECOMMENDED: Self = Self {
        reveal_secs: 60,
        iterations: 40_000,
    };

    /// Whether the window and the steps are in range (1 s to a day; 1 to 100 000 000).
    pub fn valid(&self) -> bool {
        (1..=86_400).contains(&self.reveal_secs) && (1..=100_000_000).contains(&self.iterations)
    }
}
