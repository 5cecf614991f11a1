//! Arrival curves: how many citizens arrive in each second (or minute) of a surge, and the
//! arrival instants drawn from it. Arrivals follow the curve whatever the servers do (an
//! open model), so a slow server cannot slow the arrivals down.

use rand::{Rng, SeedableRng};

/// Expected arrivals per bucket of `bucket_secs` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub bucket_secs: f64,
    pub counts: Vec<f64>,
}

/// Built-in shapes over a duration, peaking at a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// From zero to the peak rate, linearly.
    Ramp,
    /// A tenth of the peak, then the peak for a tenth of the duration at 20%, then a tenth
    /// again: a campaign opening at a fixed hour.
    Spike,
    /// The peak rate throughout.
    Plateau,
    /// The peak at the start, halving every seventh of the duration.
    Decay,
    /// Opening day: early arrivals growing before the opening (first 20%), the peak at the
    /// opening, then an exponential decay to a twentieth of the peak.
    Opening,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CurveError {
    #[error("line {line}: `{text}` is not a number of arrivals")]
    NotANumber { line: usize, text: String },
    #[error("line {line}: a negative number of arrivals")]
    Negative { line: usize },
    #[error("the curve has no arrivals")]
    Empty,
    #[error("{0} must be positive")]
    NotPositive(&'static str),
}

impl Curve {
    /// A built-in shape: `peak` arrivals per second, over `duration_secs`, per second.
    pub fn shape(shape: Shape, peak: f64, duration_secs: f64) -> Result<Self, CurveError> {
        if peak <= 0.0 {
            return Err(CurveError::NotPositive("the peak rate"));
        }
        if duration_secs < 1.0 {
            return Err(CurveError::NotPositive("the duration"));
        }
        let n = duration_secs.round() as usize;
        let d = n as f64;
        let counts = (0..n)
            .map(|i| {
                let t = i as f64 + 0.5;
                match shape {
                    Shape::Ramp => peak * t / d,
                    Shape::Plateau => peak,
                    Shape::Spike => {
                        if (0.2 * d..0.3 * d).contains(&t) {
                            peak
                        } else {
                            peak / 10.0
                        }
                    }
                    Shape::Decay => peak * 0.5f64.powf(t / (d / 7.0)),
                    Shape::Opening => {
                        let open = 0.2 * d;
                        if t < open {
                            peak / 20.0 + (peak / 5.0 - peak / 20.0) * t / open
                        } else {
                            let floor = peak / 20.0;
                            floor + (peak - floor) * (-(t - open) / (d / 10.0)).exp()
                        }
                    }
                }
            })
            .collect();
        Ok(Self {
            bucket_secs: 1.0,
            counts,
        })
    }

    /// A recorded arrival series: one bucket a line, `count` or `label,count` (the last
    /// column is the count), a header line allowed, `bucket_secs` seconds a bucket.
    pub fn from_csv(text: &str, bucket_secs: f64) -> Result<Self, CurveError> {
        if bucket_secs <= 0.0 {
            return Err(CurveError::NotPositive("the bucket length"));
        }
        let mut counts = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let last = line.rsplit([',', ';', '\t']).next().unwrap_or("").trim();
            match last.parse::<f64>() {
                Ok(v) if v < 0.0 || !v.is_finite() => {
                    return Err(CurveError::Negative { line: i + 1 })
                }
                Ok(v) => counts.push(v),
                // A header: only on the first line that has content.
                Err(_) if counts.is_empty() && i == first_content_line(text) => {}
                Err(_) => {
                    return Err(CurveError::NotANumber {
                        line: i + 1,
                        text: last.to_owned(),
                    })
                }
            }
        }
        let c = Self {
            bucket_secs,
            counts,
        };
        if c.total() < 0.5 {
            return Err(CurveError::Empty);
        }
        Ok(c)
    }

    /// Multiplies every bucket's arrivals (a national curve replayed at a tenth, say).
    pub fn scaled(mut self, factor: f64) -> Self {
        for c in &mut self.counts {
            *c *= factor;
        }
        self
    }

    /// Replays the curve `factor` times faster: the same arrivals in less time.
    pub fn compressed(mut self, factor: f64) -> Self {
        if factor > 0.0 {
            self.bucket_secs /= factor;
        }
        self
    }

    pub fn total(&self) -> f64 {
        self.counts.iter().sum()
    }

    pub fn duration_secs(&self) -> f64 {
        self.bucket_secs * self.counts.len() as f64
    }

    pub fn peak_per_sec(&self) -> f64 {
        self.counts.iter().copied().fold(0.0, f64::max) / self.bucket_secs
    }

    /// Arrival instants (seconds from the start), sorted: each bucket gets its expected
    /// count (fractions carried to the next bucket, so totals match the curve), placed
    /// uniformly at random within the bucket.
    pub fn schedule(&self, seed: u64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(self.total().round() as usize);
        let mut carry = 0.0;
        for (i, c) in self.counts.iter().enumerate() {
            let want = c + carry;
            let n = want.floor();
            carry = want - n;
            let start = i as f64 * self.bucket_secs;
            let mut bucket: Vec<f64> = (0..n as usize)
                .map(|_| start + rng.gen::<f64>() * self.bucket_secs)
                .collect();
            bucket.sort_by(f64::total_cmp);
            out.extend(bucket);
        }
        if carry >= 0.5 {
            out.push(self.duration_secs());
        }
        out
    }
}

fn first_content_line(text: &str) -> usize {
    text.lines()
        .position(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_series_keeps_its_total_and_order() {
        let c = Curve::from_csv("minute,arrivals\n0,120\n1,60\n2,0\n3,30\n", 60.0).expect("csv");
        assert_eq!(c.counts, [120.0, 60.0, 0.0, 30.0]);
        let s = c.clone().compressed(60.0).schedule(1);
        assert_eq!(s.len(), 210);
        assert!(s.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(
            s[..120].iter().all(|t| *t < 1.0),
            "minute 0 in the first second"
        );
        assert!(s[180..].iter().all(|t| (3.0..4.0).contains(t)));
        assert_eq!(c.scaled(0.5).total(), 105.0);
    }

    #[test]
    fn bad_series_are_explained() {
        assert_eq!(
            Curve::from_csv("10\nx\n", 1.0),
            Err(CurveError::NotANumber {
                line: 2,
                text: "x".into()
            })
        );
        assert_eq!(
            Curve::from_csv("5\n-1\n", 1.0),
            Err(CurveError::Negative { line: 2 })
        );
        assert_eq!(Curve::from_csv("t,n\n", 1.0), Err(CurveError::Empty));
    }

    #[test]
    fn shapes_peak_where_they_say() {
        let o = Curve::shape(Shape::Opening, 100.0, 100.0).expect("shape");
        let peak_at = o
            .counts
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(peak_at, Some(20));
        assert!(o.counts[0] < 10.0 && o.counts[99] < 10.0);
        let r = Curve::shape(Shape::Ramp, 10.0, 10.0).expect("ramp");
        assert!(r.counts.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            Curve::shape(Shape::Plateau, 5.0, 4.0).expect("p").total(),
            20.0
        );
        assert!(Curve::shape(Shape::Spike, 0.0, 4.0).is_err());
        // Fractional rates still arrive: 0.3/s for 10 s is 3 people.
        assert_eq!(
            Curve::shape(Shape::Plateau, 0.3, 10.0)
                .expect("p")
                .schedule(1)
                .len(),
            3
        );
    }
}
