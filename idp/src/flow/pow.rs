//! The proof of work's difficulty, rising with the deployment's load.
//!
//! The phone step's challenge costs `EMTA_POW_DIFFICULTY` bits at rest. As the logins
//! stored across the deployment approach their cap (`EMTA_MAX_LIVE_LOGINS` per login
//! lifetime, the resource a flood of paid-for logins spends), each challenge asks for more:
//!
//! | stored logins, of the cap | bits added |
//! |---|---|
//! | under 50% | 0 |
//! | 50% to 75% | 1 |
//! | 75% to 90% | 2 |
//! | 90% and over | 3 |
//!
//! at most `EMTA_POW_MAX_RISE` (3 is the table's top; 0 turns the rise off). The cap is
//! counted in a fixed window that starts again empty while the logins of the last window
//! are still stored: so the reading is the current window's count plus the last window's
//! last count, fading linearly over one login lifetime from the window's end as those
//! logins lapse (a new window is told by its end time, read with the count). Nothing
//! else counts (a pushed request is the pushing client's budget, see
//! [`crate::flow::authorize::push`]).
//!
//! A challenge carries its difficulty under the MAC. A solution must meet its own
//! challenge, and that challenge must ask at least the level now in force; for a
//! challenge issued within the last [`GRACE_SECS`], one bit less is enough (a citizen's
//! page may have been shown just before a rise, and a replica's reading may be a second
//! old). Challenges gathered longer ago than that pay the level in force.
//!
//! The load is read from the shared counter at most once a second per replica (one
//! caller reads, the others use the last reading meanwhile): one Redis read a second,
//! not one per page. Time here is monotonic: a wall clock stepped back does not freeze it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after its issue a challenge may be one bit under the level in force.
pub const GRACE_SECS: i64 = 120;

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

/// The least difficulty accepted for a challenge `age` seconds old when the level in
/// force is `now` bits and the configured floor `base`.
pub fn least_accepted(base: u8, now: u8, age: i64) -> u8 {
    if age <= GRACE_SECS {
        base.max(now.saturating_sub(1))
    } else {
        base.max(now)
    }
}

#[derive(Debug, Default)]
struct Reading {
    read_at: Option<Instant>,
    /// The window last read: its count and when it ends.
    window: Option<(i64, Instant)>,
    /// The last window's final count, and when that window ended.
    carried: Option<(i64, Instant)>,
}

/// The last reading of the deployment's load, per replica.
#[derive(Debug, Default)]
pub struct PowLoad {
    rise: AtomicU8,
    reading: Mutex<Reading>,
}

impl PowLoad {
    /// Whether a new reading is due now (one a second); true for one caller at a time.
    pub fn due(&self) -> bool {
        self.due_at(Instant::now())
    }

    fn due_at(&self, now: Instant) -> bool {
        let Ok(mut r) = self.reading.try_lock() else {
            return false;
        };
        if r.read_at
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        r.read_at = Some(now);
        true
    }

    /// Records a reading of the window: its `count` and the time it has `left` (`None`:
    /// no window, nothing counted yet), for a cap of `cap` over `lifetime`.
    pub fn record(&self, count: i64, left: Option<Duration>, cap: i64, lifetime: Duration) {
        self.record_at(count, left, cap, lifetime, Instant::now());
    }

    fn record_at(
        &self,
        count: i64,
        left: Option<Duration>,
        cap: i64,
        lifetime: Duration,
        now: Instant,
    ) {
        let rise = {
            let mut r = self.reading.lock().unwrap_or_else(|p| p.into_inner());
            let ends = left.map(|l| now + l);
            // A new window is told by its end, not by a falling count (a refund lowers
            // the count too): the window last read has ended, and its logins are still
            // stored, lapsing over one lifetime from when it ended.
            if let Some((last, last_ends)) = r.window {
                if last_ends <= now && ends != Some(last_ends) {
                    r.carried = Some((last, last_ends));
                }
            }
            r.window = ends.map(|e| (count, e));
            let carried = r.carried.map_or(0, |(n, since)| {
                if lifetime.is_zero() {
                    return 0;
                }
                let left = lifetime.saturating_sub(now.saturating_duration_since(since));
                (n as f64 * left.as_secs_f64() / lifetime.as_secs_f64()) as i64
            });
            rise_for(count.saturating_add(carried), cap)
        };
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
        let t = Instant::now();
        assert!(l.due_at(t));
        assert!(!l.due_at(t + Duration::from_millis(500)));
        assert!(l.due_at(t + Duration::from_millis(1000)));
    }

    /// A window that starts again empty does not drop the level while the last window's
    /// logins are still stored: they fade out over one login lifetime. A count that falls
    /// inside one window (a refund) is no new window.
    #[test]
    fn the_last_windows_logins_count_until_they_lapse() {
        let l = PowLoad::default();
        let life = Duration::from_secs(900);
        let t = Instant::now();
        let left = |at: u64| Some(Duration::from_secs(900 - at));
        l.record_at(95, left(0), 100, life, t);
        assert_eq!(l.rise(), 3);
        // Refunds within the window: the count falls, nothing is carried.
        l.record_at(40, left(10), 100, life, t + Duration::from_secs(10));
        assert_eq!(l.rise(), 0);
        l.record_at(95, left(899), 100, life, t + Duration::from_secs(899));
        // The window ended at 900 and a new one started: 95 still stored, a few new.
        let next = |at: u64| Some(Duration::from_secs(900 + 901 - at));
        l.record_at(2, next(901), 100, life, t + Duration::from_secs(901));
        assert_eq!(l.rise(), 3);
        // Half a lifetime after the window ended: about 47 of them left, and 10 new.
        l.record_at(10, next(1350), 100, life, t + Duration::from_secs(1350));
        assert_eq!(l.rise(), 1);
        // A lifetime on: all lapsed.
        l.record_at(10, next(1800), 100, life, t + Duration::from_secs(1800));
        assert_eq!(l.rise(), 0);
    }

    #[test]
    fn one_bit_of_grace_for_a_fresh_challenge_only() {
        assert_eq!(least_accepted(18, 18, 0), 18);
        assert_eq!(least_accepted(18, 20, 30), 19);
        assert_eq!(least_accepted(18, 20, GRACE_SECS + 1), 20);
        assert_eq!(least_accepted(18, 19, 10), 18);
    }
}
