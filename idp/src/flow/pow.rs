//! The proof of work's difficulty, rising with the deployment's load.
//!
//! The phone step's challenge costs `EMTA_POW_DIFFICULTY` bits at rest. As the
//! deployment's cap on stored logins (`EMTA_MAX_LIVE_LOGINS` per login lifetime, the
//! resource a flood of paid-for logins spends) fills, each challenge asks for more:
//!
//! | stored logins, of the cap | bits added |
//! |---|---|
//! | under 50% | 0 |
//! | 50% to 75% | 1 |
//! | 75% to 90% | 2 |
//! | 90% and over | 3 |
//!
//! at most `EMTA_POW_MAX_RISE` (3; 0 turns the rise off). Each bit doubles what a
//! flooder pays per stored login, while a citizen pays once per login (the README's
//! table gives a phone's time at each level). A challenge carries its difficulty under
//! the MAC; a solution is accepted if it meets its own challenge and that challenge asks
//! at least the level now in force less one bit (a replica's view may be a second old,
//! and a citizen's page a few seconds), so challenges stockpiled while the deployment was
//! quiet cannot be spent once it is loaded.
//!
//! The load is read from the shared counter at most once a second per replica (one
//! caller reads, the others use the last reading meanwhile): one Redis read a second,
//! not one per page.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

/// How many bits the difficulty rises for `stored` logins of a cap of `cap`.
pub fn rise_for(stored: i64, cap: i64) -> u8 {
    if cap <= 0 {
        return 0;
    }
    // In per mille, in integers: no float rounding at the edges.
    let fill = stored.max(0).saturating_mul(1000) / cap;
    match fill {
        0..=499 => 0,
        500..=749 => 1,
        750..=899 => 2,
        _ => 3,
    }
}

/// The last reading of the deployment's load, per replica.
#[derive(Debug, Default)]
pub struct PowLoad {
    rise: AtomicU8,
    read_at_ms: AtomicI64,
}

impl PowLoad {
    /// Whether a new reading is due at `now_ms`; true for exactly one caller a second.
    pub fn due(&self, now_ms: i64) -> bool {
        let last = self.read_at_ms.load(Ordering::Relaxed);
        now_ms - last >= 1000
            && self
                .read_at_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn set(&self, rise: u8) {
        self.rise.store(rise, Ordering::Relaxed);
        metrics::gauge!("emta_pow_rise_bits").set(f64::from(rise));
    }

    pub fn rise(&self) -> u8 {
        self.rise.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rise_follows_the_caps_fill() {
        let cap = 100_000;
        for (stored, bits) in [
            (0, 0),
            (49_999, 0),
            (50_000, 1),
            (74_999, 1),
            (75_000, 2),
            (89_999, 2),
            (90_000, 3),
            (150_000, 3),
        ] {
            assert_eq!(rise_for(stored, cap), bits, "{stored}");
        }
        assert_eq!(rise_for(5, 0), 0);
    }

    #[test]
    fn one_reader_a_second() {
        let l = PowLoad::default();
        assert!(l.due(5_000));
        assert!(!l.due(5_500));
        assert!(l.due(6_000));
    }
}
