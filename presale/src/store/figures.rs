//! How a campaign is going, from its committed records: what the console's live dashboard
//! shows and what `/metrics` exports (one source for both). Every read is bounded by an
//! index range, whatever the campaign's size: the counts of the admitted by the live
//! admissions index, the series and the waits by ticket number (the latest tickets only),
//! and the replica keeps the result for two seconds (`app::Core::figures`), so open
//! dashboards and scrapes cost the database a few bounded reads a second at most.

use sqlx::Row;

use super::{Store, StoreError};

/// One minute of a campaign: joins, admissions and accepted applications in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Minute {
    /// The minute's start (Unix ms).
    pub at_ms: i64,
    pub joined: i64,
    pub admitted: i64,
    pub accepted: i64,
}

/// A campaign's figures at `now_ms` (the database's clock).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub now_ms: i64,
    /// Queue: tickets issued (pre-opening arrivals and joins since); lottery: entries.
    pub joined: i64,
    /// Tickets admitted so far.
    pub admitted: i64,
    /// Admitted and still within their time to apply.
    pub live: i64,
    /// Admitted, unused, and out of time: people who did not come back.
    pub abandoned: i64,
    pub accepted: i64,
    pub units: i64,
    /// Admissions in the last minute (the rate achieved).
    pub admitted_last_minute: i64,
    /// When the one waiting longest joined (a pre-opening arrival: the opening).
    pub oldest_waiting_ms: Option<i64>,
    /// Time from joining (or the opening, for a pre-opening arrival) to admission over
    /// the latest admissions: median and 90th percentile, ms.
    pub wait_p50_ms: Option<i64>,
    pub wait_p90_ms: Option<i64>,
    /// The last hour, minute by minute (minutes with nothing left out).
    pub series: Vec<Minute>,
    /// A lottery's list frozen, and its draw made.
    pub frozen: bool,
    pub drawn: bool,
}

/// The admissions the wait percentiles are taken over.
const RECENT: i64 = 5000;

/// The latest tickets the hour's series is counted over: a campaign admitting more than
/// this in an hour shows the latest part of the hour.
const SERIES_TICKETS: i64 = 200_000;

/// Adds a `(m, n)` row (minute number `m`, `n` events) to the series, in the field `pick`.
fn tally(
    series: &mut std::collections::BTreeMap<i64, Minute>,
    row: &sqlx::any::AnyRow,
    minute_ms: i64,
    pick: fn(&mut Minute) -> &mut i64,
) -> Result<(), StoreError> {
    let at = row.try_get::<i64, _>("m")? * minute_ms;
    let m = series.entry(at).or_insert(Minute {
        at_ms: at,
        ..Minute::default()
    });
    *pick(m) += row.try_get::<i64, _>("n")?;
    Ok(())
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}

impl Store {
    /// The figures of campaign `license_id`; None if there is no such license.
    pub async fn figures(&self, license_id: &str) -> Result<Option<Figures>, StoreError> {
        let now_ms: i64 = sqlx::query(&format!("SELECT {} AS now_ms", self.now_ms_sql()))
            .fetch_one(self.pool())
            .await?
            .try_get("now_ms")?;
        let Some(l) = sqlx::query(
            "SELECT units, accepted, selection, frozen_at_ms FROM licenses WHERE id = $1",
        )
        .bind(license_id)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let mut f = Figures {
            now_ms,
            units: l.try_get("units")?,
            accepted: l.try_get("accepted")?,
            frozen: l.try_get::<Option<i64>, _>("frozen_at_ms")?.is_some(),
            ..Figures::default()
        };
        let hour_ago = now_ms - 3_600_000;

        let mut series: std::collections::BTreeMap<i64, Minute> = Default::default();
        if l.try_get::<String, _>("selection")? == "lottery" {
            f.joined =
                sqlx::query("SELECT COUNT(*) AS n FROM lottery_entries WHERE license_id = $1")
                    .bind(license_id)
                    .fetch_one(self.pool())
                    .await?
                    .try_get("n")?;
            f.drawn = sqlx::query("SELECT 1 AS one FROM lottery_draws WHERE license_id = $1")
                .bind(license_id)
                .fetch_optional(self.pool())
                .await?
                .is_some();
            // The latest entries only (a range of the entry-number index).
            for r in sqlx::query(
                "SELECT entered_at / 60 AS m, COUNT(*) AS n FROM lottery_entries \
                 WHERE license_id = $1 AND entry_no > $2 AND entered_at > $3 GROUP BY entered_at / 60",
            )
            .bind(license_id)
            .bind(f.joined - SERIES_TICKETS)
            .bind(hour_ago / 1000)
            .fetch_all(self.pool())
            .await?
            {
                tally(&mut series, &r, 60_000, |m| &mut m.joined)?;
            }
        } else if let Some(q) = sqlx::query(
            "SELECT early, late, serving, opens_at_ms FROM queue_campaigns WHERE license_id = $1",
        )
        .bind(license_id)
        .fetch_optional(self.pool())
        .await?
        {
            let (early, late, serving): (i64, i64, i64) = (
                q.try_get("early")?,
                q.try_get("late")?,
                q.try_get("serving")?,
            );
            let opens_at_ms: i64 = q.try_get("opens_at_ms")?;
            f.joined = early + late;
            f.admitted = serving;
            // Both on the live admissions index (license, released, deadline).
            // On the queue's clock, as an application is judged.
            let queue_time = self.queue_time_sql();
            let counts = sqlx::query(&format!(
                "SELECT \
                 (SELECT COUNT(*) FROM queue_admissions WHERE license_id = $1 \
                  AND released = 0 AND deadline_ms > {queue_time}) AS live, \
                 (SELECT COUNT(*) FROM queue_admissions WHERE license_id = $1 \
                  AND released = 0 AND deadline_ms <= {queue_time}) AS abandoned"
            ))
            .bind(license_id)
            .fetch_one(self.pool())
            .await?;
            f.live = counts.try_get("live")?;
            f.abandoned = counts.try_get("abandoned")?;
            // The one waiting longest: a pre-opening arrival waits from the opening; after
            // them, the lowest ticket not yet admitted.
            f.oldest_waiting_ms = if serving < early {
                Some(opens_at_ms)
            } else if serving < early + late {
                sqlx::query(
                    "SELECT joined_at_ms FROM queue_tickets WHERE license_id = $1 AND number = $2",
                )
                .bind(license_id)
                .bind(serving + 1)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.try_get("joined_at_ms"))
                .transpose()?
            } else {
                None
            };
            // From joining (or the opening) to admission, over the latest admissions.
            let mut waits: Vec<i64> = sqlx::query(
                "SELECT a.admitted_at_ms - COALESCE(t.joined_at_ms, $2) AS wait \
                 FROM queue_admissions a LEFT JOIN queue_tickets t \
                 ON t.license_id = a.license_id AND t.number = a.ticket \
                 WHERE a.license_id = $1 ORDER BY a.ticket DESC LIMIT $3",
            )
            .bind(license_id)
            .bind(opens_at_ms)
            .bind(RECENT)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("wait").map(|w| w.max(0)))
            .collect::<Result<_, _>>()?;
            waits.sort_unstable();
            f.wait_p50_ms = percentile(&waits, 0.5);
            f.wait_p90_ms = percentile(&waits, 0.9);
            // Per minute in SQL, over the latest tickets only (a range of the ticket-number
            // index; a pre-opening arrival's number is negative, and its join is before the
            // hour of a long campaign anyway).
            for (sql, floor, which) in [
                (
                    "SELECT joined_at_ms / 60000 AS m, COUNT(*) AS n FROM queue_tickets \
                     WHERE license_id = $1 AND number > $2 AND joined_at_ms > $3 GROUP BY joined_at_ms / 60000",
                    late + early - SERIES_TICKETS,
                    0,
                ),
                (
                    "SELECT admitted_at_ms / 60000 AS m, COUNT(*) AS n FROM queue_admissions \
                     WHERE license_id = $1 AND ticket > $2 AND admitted_at_ms > $3 GROUP BY admitted_at_ms / 60000",
                    serving - SERIES_TICKETS,
                    1,
                ),
            ] {
                for r in sqlx::query(sql)
                    .bind(license_id)
                    .bind(floor)
                    .bind(hour_ago)
                    .fetch_all(self.pool())
                    .await?
                {
                    if which == 0 {
                        tally(&mut series, &r, 60_000, |m| &mut m.joined)?;
                    } else {
                        tally(&mut series, &r, 60_000, |m| &mut m.admitted)?;
                    }
                }
            }
            // The rate achieved: admissions in the last minute, bounded by the rate's worth
            // of the latest tickets.
            f.admitted_last_minute = sqlx::query(
                "SELECT COUNT(*) AS n FROM queue_admissions \
                 WHERE license_id = $1 AND ticket > $2 AND admitted_at_ms > $3",
            )
            .bind(license_id)
            .bind(serving - SERIES_TICKETS)
            .bind(now_ms - 60_000)
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        }
        // Applications are bounded by the cap.
        for r in sqlx::query(
            "SELECT created_at / 60 AS m, COUNT(*) AS n FROM applications \
             WHERE license_id = $1 AND created_at > $2 GROUP BY created_at / 60",
        )
        .bind(license_id)
        .bind(hour_ago / 1000)
        .fetch_all(self.pool())
        .await?
        {
            tally(&mut series, &r, 60_000, |m| &mut m.accepted)?;
        }
        f.series = series.into_values().collect();
        Ok(Some(f))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_of_a_few_waits() {
        let w = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(super::percentile(&w, 0.5), Some(60));
        assert_eq!(super::percentile(&w, 0.9), Some(90));
        assert_eq!(super::percentile(&[], 0.5), None);
    }
}
