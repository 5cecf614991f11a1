//! Fairness of admission: how far admission order departs from arrival order for those
//! who joined after the opening (first come, first served must hold), and whether the
//! order drawn for those who joined before it is independent of when they came.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::record::JoinRecord;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AfterOpening {
    /// Joins after the opening whose ticket is known.
    pub n: usize,
    /// Kendall's tau between arrival order (join sent) and ticket order; 1 is perfect
    /// first come, first served. `None` below two joins.
    pub kendall_tau: Option<f64>,
    /// Pairs admitted in the opposite order of their arrival (includes pairs whose
    /// requests overlapped in flight, where either order is fair).
    pub discordant_pairs: u64,
    /// Citizens whose ticket is ahead of someone whose join had already been answered
    /// before theirs was sent: unfair by any reading. Must be 0.
    pub out_of_order: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BeforeOpening {
    /// Joins before the opening whose ticket is known (seen after the opening).
    pub n: usize,
    /// Spearman's rho between arrival rank and ticket; near 0 when the shuffle ignores
    /// arrival time.
    pub spearman_rho: Option<f64>,
    /// Chi-square test of independence of arrival quantile and ticket quantile (k x k).
    pub chi_square: Option<f64>,
    pub quantiles: usize,
    pub dof: usize,
    /// Above 0.001 is consistent with a uniform shuffle.
    pub p_value: Option<f64>,
    /// No two early joiners share a ticket.
    pub distinct_tickets: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fairness {
    pub after_opening: AfterOpening,
    pub before_opening: BeforeOpening,
}

pub fn assess(joins: &[JoinRecord]) -> Fairness {
    let after: Vec<&JoinRecord> = joins
        .iter()
        .filter(|j| !j.early && j.ticket.is_some())
        .collect();
    let before: Vec<&JoinRecord> = joins
        .iter()
        .filter(|j| j.early && j.ticket.is_some())
        .collect();
    Fairness {
        after_opening: after_opening(&after),
        before_opening: before_opening(&before),
    }
}

fn ticket(j: &JoinRecord) -> i64 {
    j.ticket.unwrap_or(i64::MAX)
}

fn after_opening(joins: &[&JoinRecord]) -> AfterOpening {
    let mut by_sent = joins.to_vec();
    by_sent.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    let mut tickets: Vec<i64> = by_sent.iter().map(|j| ticket(j)).collect();
    let n = tickets.len();
    let discordant = inversions(&mut tickets);
    let pairs = (n as u64) * (n as u64).saturating_sub(1) / 2;
    let kendall_tau = (pairs > 0).then(|| 1.0 - 2.0 * discordant as f64 / pairs as f64);

    // Sweep: answered joins in answer order; for each join (in send order) the highest
    // ticket among joins answered before it was sent.
    let mut by_done = joins.to_vec();
    by_done.sort_by(|a, b| a.done.total_cmp(&b.done));
    let (mut i, mut max_before) = (0, i64::MIN);
    let mut out_of_order = 0;
    for b in &by_sent {
        while i < by_done.len() && by_done[i].done < b.sent {
            max_before = max_before.max(ticket(by_done[i]));
            i += 1;
        }
        if ticket(b) < max_before {
            out_of_order += 1;
        }
    }
    AfterOpening {
        n,
        kendall_tau,
        discordant_pairs: discordant,
        out_of_order,
    }
}

/// Counts inversions (pairs i < j with v[i] > v[j]) by merge sort; sorts `v`.
fn inversions(v: &mut [i64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = inversions(&mut v[..mid]) + inversions(&mut v[mid..]);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if v[i] <= v[j] {
            merged.push(v[i]);
            i += 1;
        } else {
            merged.push(v[j]);
            count += (mid - i) as u64;
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..mid]);
    merged.extend_from_slice(&v[j..n]);
    v.copy_from_slice(&merged);
    count
}

fn before_opening(joins: &[&JoinRecord]) -> BeforeOpening {
    let n = joins.len();
    let mut by_sent = joins.to_vec();
    by_sent.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    // Ticket rank of each, in arrival order.
    let mut order: Vec<(i64, usize)> = by_sent
        .iter()
        .enumerate()
        .map(|(arrival, j)| (ticket(j), arrival))
        .collect();
    order.sort_unstable();
    let distinct_tickets = order.windows(2).all(|w| w[0].0 != w[1].0);
    let mut rank = vec![0usize; n];
    for (r, (_, arrival)) in order.iter().enumerate() {
        rank[*arrival] = r;
    }
    let spearman_rho = (n >= 3).then(|| {
        let d2: f64 = rank
            .iter()
            .enumerate()
            .map(|(a, r)| {
                let d = a as f64 - *r as f64;
                d * d
            })
            .sum();
        let nf = n as f64;
        1.0 - 6.0 * d2 / (nf * (nf * nf - 1.0))
    });
    let k = (((n / 5) as f64).sqrt().floor() as usize).clamp(2, 10);
    let (chi_square, p_value, dof) = if n >= 5 * k * k {
        let mut cells = vec![0f64; k * k];
        for (a, r) in rank.iter().enumerate() {
            cells[(a * k / n) * k + r * k / n] += 1.0;
        }
        let rows: Vec<f64> = (0..k)
            .map(|i| cells[i * k..(i + 1) * k].iter().sum())
            .collect();
        let cols: Vec<f64> = (0..k)
            .map(|j| (0..k).map(|i| cells[i * k + j]).sum())
            .collect();
        let mut chi = 0.0;
        for i in 0..k {
            for j in 0..k {
                let e = rows[i] * cols[j] / n as f64;
                if e > 0.0 {
                    chi += (cells[i * k + j] - e).powi(2) / e;
                }
            }
        }
        let dof = (k - 1) * (k - 1);
        let p = ChiSquared::new(dof as f64).ok().map(|d| 1.0 - d.cdf(chi));
        (Some(chi), p, dof)
    } else {
        (None, None, 0)
    };
    BeforeOpening {
        n,
        spearman_rho,
        chi_square,
        quantiles: k,
        dof,
        p_value,
        distinct_tickets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    fn j(sent: f64, done: f64, early: bool, ticket: i64) -> JoinRecord {
        JoinRecord {
            citizen: 0,
            sent,
            done,
            early,
            ticket: Some(ticket),
        }
    }

    #[test]
    fn first_come_first_served_scores_one() {
        let joins: Vec<_> = (0..100)
            .map(|i| j(i as f64, i as f64 + 0.5, false, i + 1))
            .collect();
        let f = assess(&joins).after_opening;
        assert_eq!(f.n, 100);
        assert_eq!(f.kendall_tau, Some(1.0));
        assert_eq!((f.discordant_pairs, f.out_of_order), (0, 0));
    }

    #[test]
    fn overlapping_requests_may_swap_but_a_jump_is_caught() {
        // Two joins in flight together (0.0-1.0 and 0.5-1.2) may land in either order.
        let mut joins = vec![j(0.0, 1.0, false, 2), j(0.5, 1.2, false, 1)];
        let f = assess(&joins).after_opening;
        assert_eq!((f.discordant_pairs, f.out_of_order), (1, 0));
        // A join sent after another was answered must not get an earlier ticket.
        joins.push(j(2.0, 2.1, false, 0));
        let f = assess(&joins).after_opening;
        assert_eq!(f.out_of_order, 1);
        assert!(f.kendall_tau.is_some_and(|t| t < 0.0));
    }

    #[test]
    fn a_shuffle_passes_and_arrival_order_fails() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut tickets: Vec<i64> = (1..=2000).collect();
        tickets.shuffle(&mut rng);
        let shuffled: Vec<_> = tickets
            .iter()
            .enumerate()
            .map(|(i, t)| j(i as f64, i as f64, true, *t))
            .collect();
        let b = assess(&shuffled).before_opening;
        assert!(b.distinct_tickets);
        assert_eq!((b.quantiles, b.dof), (10, 81));
        assert!(b.p_value.is_some_and(|p| p > 0.001), "{b:?}");
        assert!(b.spearman_rho.is_some_and(|r| r.abs() < 0.1));

        let in_order: Vec<_> = (0..2000)
            .map(|i| j(i as f64, i as f64, true, i + 1))
            .collect();
        let b = assess(&in_order).before_opening;
        assert!(b.p_value.is_some_and(|p| p < 1e-9), "{b:?}");
        assert_eq!(b.spearman_rho, Some(1.0));
    }
}
