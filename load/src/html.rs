//! The report as an HTML page a person would rather read than a table: the arrival curve
//! against completions, latency percentiles and queue length over time (SVG charts drawn
//! with plotters), then the tables.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use plotters::prelude::*;

use crate::report::{Latency, Report};

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Draws `series`, with a dashed vertical line at each fault's instant.
fn chart(title: &str, y_label: &str, series: &[Series<'_>], faults: &[f64]) -> String {
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (960, 320)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_max = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.0))
            .chain(faults.iter().copied())
            .fold(1.0, f64::max);
        let y_max = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1))
            .fold(1.0, f64::max)
            * 1.1;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        c.configure_mesh()
            .x_desc("seconds since the start")
            .y_desc(y_label)
            .draw()?;
        let fault_color = RGBColor(90, 90, 90);
        for (k, &at) in faults.iter().enumerate() {
            // Dashed: short segments up the chart.
            let steps = 40;
            let segments = (0..steps).step_by(2).map(move |i| {
                let y0 = y_max * i as f64 / steps as f64;
                let y1 = y_max * (i + 1) as f64 / steps as f64;
                PathElement::new(vec![(at, y0), (at, y1)], fault_color.stroke_width(1))
            });
            let drawn = c.draw_series(segments)?;
            if k == 0 {
                drawn
                    .label("faults")
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], fault_color));
            }
        }
        for (name, color, points) in series {
            let color = *color;
            c.draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg,
        Err(e) => format!("<p>chart not drawn: {e}</p>"),
    }
}

fn latency_cells(l: &Latency) -> Markup {
    html! {
        td { (format!("{:.1}", l.p50)) } td { (format!("{:.1}", l.p90)) }
        td { (format!("{:.1}", l.p99)) } td { (format!("{:.1}", l.p999)) }
        td { (format!("{:.1}", l.max)) }
    }
}

pub fn render(r: &Report) -> String {
    let t = |f: fn(&crate::report::Point) -> f64| -> Vec<(f64, f64)> {
        r.timeline.iter().map(|p| (p.t as f64, f(p))).collect()
    };
    let faults: Vec<f64> = r.faults.iter().map(|f| f.at_secs).collect();
    let flow = chart(
        "Arrivals against completions (per second)",
        "citizens per second",
        &[
            ("arrivals", RGBColor(31, 119, 180), t(|p| p.arrivals as f64)),
            (
                "journeys ended",
                RGBColor(44, 160, 44),
                t(|p| p.completions as f64),
            ),
            (
                "applications accepted",
                RGBColor(255, 127, 14),
                t(|p| p.applied as f64),
            ),
            ("errors", RGBColor(214, 39, 40), t(|p| p.errors as f64)),
            (
                "of which refused with 503 + Retry-After",
                RGBColor(255, 187, 120),
                t(|p| p.shed as f64),
            ),
        ],
        &faults,
    );
    let latency = chart(
        "Latency of requests ending each second (from intended start)",
        "milliseconds",
        &[
            ("p50", RGBColor(31, 119, 180), t(|p| p.p50_ms)),
            ("p99", RGBColor(214, 39, 40), t(|p| p.p99_ms)),
        ],
        &faults,
    );
    let queue = chart(
        "Queue length and citizens in flight",
        "citizens",
        &[
            (
                "waiting in the queue",
                RGBColor(148, 103, 189),
                t(|p| p.waiting as f64),
            ),
            (
                "in flight",
                RGBColor(127, 127, 127),
                t(|p| p.in_flight as f64),
            ),
        ],
        &faults,
    );
    let a = &r.applications;
    let f = &r.fairness;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "emta load report: " (r.scenario) }
                style { (PreEscaped("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.held{background:#e6f4ea;padding:1em}.failed{background:#fce8e6;padding:1em}")) }
            }
            body {
                h1 { "Surge: " (r.scenario) }
                p { (r.arrivals.launched) " of " (r.arrivals.planned) " arrivals over " (format!("{:.0}", r.arrivals.duration_secs)) " s (peak " (format!("{:.1}", r.arrivals.peak_per_sec)) "/s); run took " (format!("{:.1}", r.elapsed_secs)) " s" @if r.interrupted { " — interrupted (partial report)" } "." }
                div class=(if r.verdict.held { "held" } else { "failed" }) {
                    strong { @if r.verdict.held { "Held" } @else { "Did not hold" } }
                    " (every step's p99 under " (r.verdict.p99_limit_ms) " ms, no errors but planned sold-out, no duplicates, first come first served)"
                    @if !r.verdict.reasons.is_empty() { ul { @for x in &r.verdict.reasons { li { (x) } } } }
                }
                @let ov = &r.overload;
                p { "Goodput " strong { (format!("{:.1}", ov.goodput_per_sec)) " journeys/s" } "; "
                    (ov.shed) " of " (ov.requests) " requests (" (format!("{:.1}", 100.0 * ov.shed_share)) "%) refused with 503 + Retry-After, the refusing request answered in p99 " (format!("{:.1}", ov.shed_ms.p99)) " ms (its step, with the redirects served before it, p99 " (format!("{:.1}", ov.shed_step_ms.p99)) " ms); what was served, p99 "
                    (format!("{:.0}", ov.accepted_p99_ms)) " ms at the slowest step (" (ov.accepted_p99_step) ")." }
                (PreEscaped(flow))
                (PreEscaped(latency))
                (PreEscaped(queue))
                @if !r.faults.is_empty() {
                    h2 { "Faults" }
                    p { "Dashed lines on the charts. Errors are the failed requests from the fault until the next one (a citizen who retries may still get through); recovered once they stopped for the rest of that window." }
                    table {
                        tr { th { "fault" } th { "at (s)" } th { "errors after it" } th { "refused (503 + Retry-After)" } th { "refusals answered, p99 (ms)" } th { "worst second's p99 (ms)" } th { "through on a retry" } th { "sign-ins started over" } th { "citizens failed" } th { "recovered after (s)" } th { "injected" } }
                        @for x in &r.faults {
                            tr { td { (x.name) } td { (format!("{:.1}", x.at_secs)) } td { (x.errors) } td { (x.shed) } td { (format!("{:.0}", x.shed_p99_ms)) } td { (format!("{:.0}", x.peak_p99_ms)) } td { (x.retried_ok) } td { (x.started_over) } td { (x.citizens_failed) } td { (x.recovered_after_secs.map(|v| format!("{v:.1}")).unwrap_or_else(|| "not in its window".into())) } td { (x.error.clone().unwrap_or_else(|| "yes".into())) } }
                        }
                    }
                }
                @if let Some(l) = &r.ledger {
                    h2 { "Ledger" }
                    p { "Everything the servers answered, checked against the campaign " (l.campaign) "'s audited transparency log. Each count must be 0." }
                    table {
                        tr { th { "tickets / admissions / applications acknowledged" } td { (l.tickets_acknowledged) " / " (l.admissions_acknowledged) " / " (l.applications_acknowledged) } }
                        tr { th { "sign-ins whose tokens were checked" } td { @match l.tokens_acknowledged { Some(t) => { (t) }, None => { "not checked (no IdP database)" } } } }
                        tr { th { "acknowledged and lost" } td { (l.lost) } }
                        tr { th { "issued twice" } td { (l.issued_twice) } }
                        tr { th { "admitted out of order" } td { (l.out_of_order) } }
                        tr { th { "oversold" } td { (l.oversold) } }
                        tr { th { "duplicate national IDs" } td { (l.duplicate_national_ids) } }
                    }
                    @if !l.findings.is_empty() { ul { @for x in &l.findings { li { (x) } } } }
                    @if !l.checked.is_empty() { p { "The log's audit checked: " } ul { @for x in &l.checked { li { (x) } } } }
                }
                h2 { "Steps" }
                p { "Latency in milliseconds from when each step was meant to start (the arrival instant for the first), so waiting behind a slow server counts." }
                table {
                    tr { th { "step" } th { "count" } th { "per s" } th { "p50" } th { "p90" } th { "p99" } th { "p99.9" } th { "max" } th { "errors" } th { "statuses" } }
                    @for s in &r.steps {
                        tr { td { (s.name) } td { (s.count) } td { (format!("{:.1}", s.per_sec)) } (latency_cells(&s.latency_ms)) td { (s.errors_total) @for (k, v) in &s.errors { br; (k) ": " (v) } } td { @for (k, v) in &s.statuses { (k) "×" (v) " " } } }
                    }
                }
                @if !r.client.is_empty() {
                    p { "On the citizens' devices (not server time):" }
                    table {
                        tr { th { "work" } th { "count" } th { "p50" } th { "p90" } th { "p99" } th { "p99.9" } th { "max" } }
                        @for c in &r.client { tr { td { (c.name) } td { (c.count) } (latency_cells(&c.latency_ms)) } }
                    }
                }
                p { "Load tool's own lag starting arrivals: p99 " (format!("{:.1}", r.arrivals.launch_lag_ms.p99)) " ms, max " (format!("{:.1}", r.arrivals.launch_lag_ms.max)) " ms." }
                h2 { "Outcomes" }
                table {
                    tr { th { "citizens" } td { (r.outcomes.total) } }
                    tr { th { "got an application" } td { (r.outcomes.applied) } }
                    tr { th { "told sold out" } td { @for (k, v) in &r.outcomes.sold_out { "at " (k) ": " (v) " " } } }
                    tr { th { "gave up" } td { (r.outcomes.gave_up) } }
                    tr { th { "refused by a rule" } td { @for (k, v) in &r.outcomes.refused { (k) ": " (v) " " } } }
                    tr { th { "entered a lottery" } td { (r.outcomes.entered_lottery) } }
                    tr { th { "failed" } td { @for (k, v) in &r.outcomes.failed { (k) " — " (v) br; } } }
                    tr { th { "interrupted" } td { @for (k, v) in &r.outcomes.interrupted { "at " (k) ": " (v) " " } } }
                }
                h2 { "Applications" }
                table {
                    tr { th { "accepted" } td { (a.accepted) } }
                    tr { th { "cap (units)" } td { (a.cap.map(|c| c.to_string()).unwrap_or_else(|| "?".into())) } }
                    tr { th { "eligible (applied or told sold out)" } td { (a.eligible) } }
                    tr { th { "expected = min(cap, eligible)" } td { (a.expected.map(|c| c.to_string()).unwrap_or_else(|| "?".into())) } }
                    tr { th { "duplicates (must be 0)" } td { (a.duplicates) } }
                    tr { th { "second devices refused as already applied" } td { (a.second_device_refused) } }
                    tr { th { "second devices given another place (must be 0)" } td { (a.second_device_mismatch) } }
                }
                h2 { "Fairness" }
                table {
                    tr { th { "joined after the opening (ticket known)" } td { (f.after_opening.n) } }
                    tr { th { "Kendall tau, arrival vs admission order" } td { (f.after_opening.kendall_tau.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into())) } }
                    tr { th { "discordant pairs (incl. requests in flight together)" } td { (f.after_opening.discordant_pairs) } }
                    tr { th { "admitted ahead of someone answered before they asked (must be 0)" } td { (f.after_opening.out_of_order) } }
                    tr { th { "joined before the opening (ticket known)" } td { (f.before_opening.n) } }
                    tr { th { "Spearman rho, arrival vs drawn order (≈ 0)" } td { (f.before_opening.spearman_rho.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into())) } }
                    tr { th { (format!("chi-square {}×{} independence, dof {}", f.before_opening.quantiles, f.before_opening.quantiles, f.before_opening.dof)) } td { (f.before_opening.chi_square.map(|v| format!("{v:.2}")).unwrap_or_else(|| "too few to test".into())) " p = " (f.before_opening.p_value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "—".into())) } }
                    tr { th { "distinct drawn tickets" } td { (f.before_opening.distinct_tickets) } }
                }
                @if !r.routed.is_empty() {
                    h2 { "Replicas" }
                    table {
                        @for (k, v) in &r.routed { tr { th { (k) } td { (v) } } }
                        tr { th { "sign-ins served by more than one IdP replica" } td { (r.logins_across_replicas) } }
                    }
                }
                h2 { "Run" }
                pre { (serde_json::to_string_pretty(&serde_json::json!({"target": r.target, "mix": r.mix, "campaign": r.campaign})).unwrap_or_default()) }
            }
        }
    };
    page.into_string()
}
