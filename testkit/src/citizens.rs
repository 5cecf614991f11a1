//! Synthetic citizens: what the stub registries know, what the load tool and the tests
//! sign in as.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One synthetic person as the registries know them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FixtureCitizen {
    pub national_id: String,
    /// Local form, `09…`.
    pub mobile: String,
    pub given_name: String,
    pub family_name: String,
    /// Jalali, `YYYY/MM/DD`.
    pub birth_date: String,
    /// Whether the traffic police hold a valid driving licence for them.
    #[serde(default = "valid_licence")]
    pub driving_licence: bool,
    /// The vehicles the vehicle registry has registered to them.
    #[serde(default)]
    pub vehicles: Vec<FixtureVehicle>,
}

fn valid_licence() -> bool {
    true
}

/// A vehicle registered to a synthetic citizen, relative to when the registry is asked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FixtureVehicle {
    pub months_ago: i64,
    pub plate_active: bool,
}

/// Every tenth citizen from the eighth on has no driving licence; from the ninth, a car
/// registered 20 months ago under an active plate; from the tenth, a car registered 60
/// months ago and sold since (eligible under a 48-month rule). The rest hold a licence
/// and no vehicle. By position, not drawn, so the citizens a seed gives are the same as
/// before these existed.
pub fn registries_of(index: usize) -> (bool, Vec<FixtureVehicle>) {
    match index % 10 {
        7 => (false, Vec::new()),
        8 => (
            true,
            vec![FixtureVehicle {
                months_ago: 20,
                plate_active: true,
            }],
        ),
        9 => (
            true,
            vec![FixtureVehicle {
                months_ago: 60,
                plate_active: false,
            }],
        ),
        _ => (true, Vec::new()),
    }
}

const GIVEN: &[&str] = &[
    "علی",
    "محمد",
    "زهرا",
    "فاطمه",
    "حسین",
    "مریم",
    "رضا",
    "سارا",
    "مهدی",
    "نرگس",
    "امیر",
    "لیلا",
    "حمید",
    "پریسا",
    "کاوه",
    "شیرین",
];
const FAMILY: &[&str] = &[
    "احمدی",
    "محمدی",
    "حسینی",
    "رضایی",
    "کریمی",
    "موسوی",
    "جعفری",
    "صادقی",
    "رحیمی",
    "کاظمی",
    "نوری",
    "تهرانی",
    "شیرازی",
    "اصفهانی",
];

/// A valid national ID from nine leading digits: the tenth is the mod-11 check digit
/// (weights 10..2; remainders under 2 stand, others become 11 - r). IDs whose nine digits
/// are all the same are not issued.
pub fn national_id_from(prefix: u32) -> Option<String> {
    let nine = format!("{:09}", prefix % 1_000_000_000);
    if nine.bytes().all(|b| b == nine.as_bytes()[0]) {
        return None;
    }
    let weighted: u32 = nine
        .bytes()
        .zip((2..=10).rev())
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = match weighted % 11 {
        r @ (0 | 1) => r,
        r => 11 - r,
    };
    Some(format!("{nine}{check}"))
}

/// Generates `n` synthetic citizens with valid national IDs, unique mobile numbers and
/// adults' birth dates, reproducibly from `seed`.
pub fn generate_citizens(n: usize, seed: u64) -> Vec<FixtureCitizen> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some(nid) = national_id_from(rng.gen_range(1_000_000..999_999_999)) else {
            continue;
        };
        if !seen.insert(nid.clone()) {
            continue;
        }
        let year = rng.gen_range(1330..=1384);
        let month = rng.gen_range(1..=12u8);
        // Months 1-6 have 31 days, 7-11 have 30, Esfand 29 (30 in leap years): 29 is
        // always valid for the second half.
        let day = rng.gen_range(1..=if month <= 6 { 31 } else { 29 });
        let (driving_licence, vehicles) = registries_of(out.len());
        out.push(FixtureCitizen {
            driving_licence,
            vehicles,
            national_id: nid,
            mobile: format!("09{:09}", 100_000_000 + out.len() as u64),
            given_name: GIVEN[rng.gen_range(0..GIVEN.len())].to_owned(),
            family_name: FAMILY[rng.gen_range(0..FAMILY.len())].to_owned(),
            birth_date: format!("{year:04}/{month:02}/{day:02}"),
        });
    }
    out
}

/// A mobile number in any form people type (`09…`, `9…`, `+989…`, Persian digits) as
/// E.164 (`+989…`), as the SMS gateway is addressed.
pub fn e164(mobile: &str) -> Option<String> {
    let digits: String = service_kit::digits::to_latin_digits(mobile)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let national = digits.get(digits.len().checked_sub(10)?..)?;
    national.starts_with('9').then(|| format!("+98{national}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_citizens_are_unique_and_reproducible() {
        let cs = generate_citizens(500, 7);
        let nids: std::collections::HashSet<_> = cs.iter().map(|c| &c.national_id).collect();
        let mobiles: std::collections::HashSet<_> = cs.iter().map(|c| &c.mobile).collect();
        assert_eq!((nids.len(), mobiles.len()), (500, 500));
        assert!(cs.iter().all(|c| c.national_id.len() == 10));
        assert_eq!(generate_citizens(10, 7), generate_citizens(10, 7));
    }

    #[test]
    fn the_check_digit_is_the_registry_s() {
        // 0499370899 is a well-known valid example.
        assert_eq!(national_id_from(49_937_089).as_deref(), Some("0499370899"));
        assert_eq!(national_id_from(111_111_111), None);
    }

    #[test]
    fn mobiles_become_e164() {
        assert_eq!(e164("09121234567").as_deref(), Some("+989121234567"));
        assert_eq!(e164("۰۹۱۲۱۲۳۴۵۶۷").as_deref(), Some("+989121234567"));
        assert_eq!(e164("+989121234567").as_deref(), Some("+989121234567"));
        assert_eq!(e164("12345"), None);
    }
}
