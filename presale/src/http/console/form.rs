//! The license form a person fills in: Jalali dates in Tehran time (Persian, Arabic-Indic
//! or Latin digits) with the Gregorian equivalent beside each, the manufacturer, kind and
//! selection as choices, amounts in rials with the toman equivalent, the legal delivery
//! limit of the chosen kind, and every error next to its field in Persian and English.
//! "Check" shows what the form reads as without proposing; "Propose" records it for a
//! second issuer. A refused form comes back as it was typed.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use service_kit::clock::{format_gregorian, format_time, parse_jalali_tehran, JalaliTimeError};
use service_kit::digits::to_latin_digits;
use service_kit::Text;

use super::{fa, page, Staff};
use crate::app::Core as App;
use crate::domain::license::MONTH;
use crate::domain::{LicenseError, NewLicense, PresaleKind, SeedDelay, Selection};
use crate::error::msg::console as m;
use crate::error::Error;
use crate::http::pages::money;
use crate::store::commitments::{CommitmentError, Received};
use crate::store::proposals::{Change, ProposalError};
use crate::store::staff::Role;
use crate::transparency::seed::Commitment;

/// How a field is typed and read.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    /// A whole number; thousands separators allowed.
    Whole,
    /// Rials; shown back with separators and in toman.
    Rials,
    /// A Jalali date with an optional time; the time when none is typed.
    When((u8, u8)),
    /// One of the listed values.
    Choice(&'static [(&'static str, Text)]),
    /// One of the manufacturers presale serves.
    Manufacturer,
}

struct Field {
    name: &'static str,
    label: Text,
    kind: Kind,
    required: bool,
    /// What an example value looks like (Latin digits are accepted as well).
    example: &'static str,
}

const KINDS: &[(&str, Text)] = &[("regular", m::KIND_REGULAR), ("firm", m::KIND_FIRM)];
const YES_NO: &[(&str, Text)] = &[("no", m::NO), ("yes", m::YES)];
const HOLD_BEFORE: &[(&str, Text)] = &[
    ("entry", m::HOLD_BEFORE_ENTRY),
    ("apply", m::HOLD_BEFORE_APPLY),
];
const SELECTIONS: &[(&str, Text)] = &[
    ("queue", m::SELECTION_QUEUE),
    ("lottery", m::SELECTION_LOTTERY),
];

const fn field(
    name: &'static str,
    label: Text,
    kind: Kind,
    required: bool,
    example: &'static str,
) -> Field {
    Field {
        name,
        label,
        kind,
        required,
        example,
    }
}

/// The form, in the order a person fills it in.
const FIELDS: &[Field] = &[
    field(
        "license_no",
        m::F_LICENSE_NO,
        Kind::Text,
        true,
        "MIMT-1405-0001",
    ),
    field(
        "manufacturer",
        m::F_MANUFACTURER,
        Kind::Manufacturer,
        true,
        "",
    ),
    field("model", m::F_MODEL, Kind::Text, true, "Shahin"),
    field("kind", m::F_KIND, Kind::Choice(KINDS), true, ""),
    field(
        "selection",
        m::F_SELECTION,
        Kind::Choice(SELECTIONS),
        true,
        "",
    ),
    field("units", m::F_UNITS, Kind::Whole, true, "۱۰۰۰"),
    field(
        "unit_price",
        m::F_UNIT_PRICE,
        Kind::Rials,
        true,
        "۸٬۰۰۰٬۰۰۰٬۰۰۰",
    ),
    field(
        "down_payment",
        m::F_DOWN_PAYMENT,
        Kind::Rials,
        true,
        "۱٬۰۰۰٬۰۰۰٬۰۰۰",
    ),
    field(
        "opens_at",
        m::F_OPENS_AT,
        Kind::When((9, 0)),
        true,
        "۱۴۰۵/۱۰/۰۱ ۰۹:۰۰",
    ),
    field(
        "closes_at",
        m::F_CLOSES_AT,
        Kind::When((23, 59)),
        true,
        "۱۴۰۵/۱۰/۰۳ ۲۳:۵۹",
    ),
    field(
        "delivery_deadline",
        m::F_DELIVERY,
        Kind::When((23, 59)),
        true,
        "۱۴۰۶/۰۷/۰۱",
    ),
    field("admission_per_min", m::F_RATE, Kind::Whole, true, "۶۰۰۰"),
    field("max_active", m::F_MAX_ACTIVE, Kind::Whole, true, "۲۰۰۰۰"),
    field(
        "apply_window_min",
        m::F_APPLY_WINDOW,
        Kind::Whole,
        true,
        "۱۰",
    ),
    field("min_age", m::F_MIN_AGE, Kind::Whole, false, "۱۸"),
    field("round", m::F_ROUND, Kind::Text, false, "1405-domestic-1"),
    field(
        "exclusion_months",
        m::F_EXCLUSION_MONTHS,
        Kind::Whole,
        false,
        "۴۸",
    ),
    field(
        "exclusion_manufacturers",
        m::F_EXCLUSION_MAKERS,
        Kind::Text,
        false,
        "saipa,iran-khodro",
    ),
    field(
        "driving_licence",
        m::F_DRIVING_LICENCE,
        Kind::Choice(YES_NO),
        false,
        "",
    ),
    field(
        "no_vehicle_months",
        m::F_VEHICLE_MONTHS,
        Kind::Whole,
        false,
        "۴۸",
    ),
    field(
        "hold_banks",
        m::F_HOLD_BANKS,
        Kind::Text,
        false,
        "melli,mellat",
    ),
    field(
        "hold_amount",
        m::F_HOLD_AMOUNT,
        Kind::Rials,
        false,
        "۱٬۰۰۰٬۰۰۰٬۰۰۰",
    ),
    field(
        "hold_title",
        m::F_HOLD_TITLE,
        Kind::Text,
        false,
        "پیش‌فروش ۱۴۰۵ — نوبت اول",
    ),
    field(
        "hold_before",
        m::F_HOLD_BEFORE,
        Kind::Choice(HOLD_BEFORE),
        false,
        "",
    ),
    field(
        "seed_reveal_secs",
        m::F_SEED_REVEAL,
        Kind::Whole,
        false,
        "۶۰",
    ),
    field(
        "seed_iterations",
        m::F_SEED_STEPS,
        Kind::Whole,
        false,
        "۴۰۰۰۰",
    ),
];

/// What the person typed, field by field (kept as typed, to show back).
pub(super) type Typed = BTreeMap<String, String>;

/// Each field's error.
pub(super) type Errors = BTreeMap<&'static str, Text>;

/// What the form reads as, field by field, for the hints beside each.
#[derive(Default)]
struct Read {
    times: BTreeMap<&'static str, i64>,
    amounts: BTreeMap<&'static str, i64>,
    kind: Option<PresaleKind>,
}

pub(super) fn whole(s: &str) -> Option<i64> {
    let s: String = to_latin_digits(s.trim())
        .chars()
        .filter(|c| !matches!(c, ',' | '٬' | '،' | ' ' | '\u{200c}'))
        .collect();
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn time_error(e: JalaliTimeError) -> Text {
    match e {
        JalaliTimeError::Format => m::E_DATE_FORMAT,
        JalaliTimeError::Year => m::E_DATE_YEAR,
        JalaliTimeError::NoSuchDay => m::E_DATE_NO_DAY,
        JalaliTimeError::Time => m::E_DATE_TIME,
    }
}

/// Reads the typed form into a license, or says what is wrong with each field. `makers`
/// are the manufacturers one may choose.
#[cfg(test)]
fn parse(typed: &Typed, makers: &[String], parties: &Parties) -> Result<NewLicense, Errors> {
    read(typed, makers, parties).0
}

/// The seed's parties recorded for the typed license number and manufacturer (see
/// [`crate::store::commitments`]): never typed into this form.
pub(super) type Parties = Result<Vec<Commitment>, CommitmentError>;

fn commitment_error(e: &CommitmentError) -> Text {
    match e {
        CommitmentError::NoManufacturer => m::E_NO_MAKER_COMMITMENT,
        CommitmentError::NoMinistry => m::E_NO_MINISTRY_COMMITMENT,
        CommitmentError::Dependent => m::E_COMMITMENT_DEPENDENT,
        CommitmentError::Malformed | CommitmentError::Exists | CommitmentError::Mismatch => {
            m::E_PARTIES
        }
    }
}

fn read(typed: &Typed, makers: &[String], parties: &Parties) -> (Result<NewLicense, Errors>, Read) {
    let mut errors = Errors::new();
    let mut r = Read::default();
    let text = |k: &str| {
        typed
            .get(k)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mut numbers: BTreeMap<&'static str, i64> = BTreeMap::new();
    for f in FIELDS {
        let v = text(f.name);
        if v.is_empty() {
            if f.required {
                errors.insert(f.name, m::E_REQUIRED);
            }
            continue;
        }
        match f.kind {
            Kind::Text => {}
            Kind::Whole | Kind::Rials => match whole(&v) {
                Some(n) => {
                    numbers.insert(f.name, n);
                    if matches!(f.kind, Kind::Rials) {
                        r.amounts.insert(f.name, n);
                    }
                }
                None => {
                    errors.insert(f.name, m::E_WHOLE);
                }
            },
            Kind::When(default) => match parse_jalali_tehran(&v, default) {
                Ok(t) => {
                    r.times.insert(f.name, t);
                }
                Err(e) => {
                    errors.insert(f.name, time_error(e));
                }
            },
            Kind::Choice(options) => {
                if !options.iter().any(|(value, _)| *value == v) {
                    errors.insert(f.name, m::E_CHOICE);
                }
            }
            Kind::Manufacturer => {
                if !makers.contains(&v) {
                    errors.insert(f.name, m::E_MANUFACTURER);
                }
            }
        }
    }
    r.kind = PresaleKind::parse(&text("kind"));
    for name in [
        "units",
        "unit_price",
        "down_payment",
        "admission_per_min",
        "max_active",
        "apply_window_min",
        "seed_reveal_secs",
        "seed_iterations",
    ] {
        if numbers.get(name).is_some_and(|n| *n <= 0) {
            errors.insert(name, m::E_POSITIVE);
        }
    }
    let window = numbers.get("apply_window_min").copied().unwrap_or(0);
    if window > 30 * 24 * 60 {
        errors.insert("apply_window_min", m::E_APPLY_WINDOW);
    }
    if let (Some(o), Some(c)) = (r.times.get("opens_at"), r.times.get("closes_at")) {
        if c <= o {
            errors.insert("closes_at", m::E_WINDOW);
        }
    }
    if let Err(e) = parties {
        errors.insert("seed", commitment_error(e));
    }
    if !errors.is_empty() {
        return (Err(errors), r);
    }
    let n = |k: &str| numbers.get(k).copied().unwrap_or(0);
    let opt = |k: &str| numbers.get(k).copied();
    let maker = text("manufacturer");
    let license = NewLicense {
        license_no: text("license_no"),
        manufacturer: maker.clone(),
        model: text("model"),
        units: n("units"),
        unit_price: n("unit_price"),
        down_payment: n("down_payment"),
        kind: r.kind.unwrap_or(PresaleKind::Regular),
        delivery_deadline: r.times.get("delivery_deadline").copied().unwrap_or(0),
        opens_at: r.times.get("opens_at").copied().unwrap_or(0),
        closes_at: r.times.get("closes_at").copied().unwrap_or(0),
        selection: Selection::parse(&text("selection")).unwrap_or(Selection::Queue),
        admission_per_min: n("admission_per_min"),
        max_active: n("max_active"),
        apply_window_secs: window * 60,
        min_age: opt("min_age"),
        round: Some(text("round")).filter(|r| !r.is_empty()),
        exclusion: opt("exclusion_months").map(|months| crate::domain::Exclusion {
            manufacturers: text("exclusion_manufacturers")
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
            months,
        }),
        parties: parties.clone().unwrap_or_default(),
        seed_delay: Some(SeedDelay {
            reveal_secs: opt("seed_reveal_secs").unwrap_or(SeedDelay::RECOMMENDED.reveal_secs),
            iterations: opt("seed_iterations")
                .map_or(SeedDelay::RECOMMENDED.iterations, |n| n.max(0) as u64),
        }),
        registration: Some(crate::domain::Registration {
            driving_licence: text("driving_licence") == "yes",
            no_vehicle_months: opt("no_vehicle_months"),
            hold: Some(text("hold_banks"))
                .filter(|b| !b.is_empty())
                .map(|banks| crate::domain::HoldTerms {
                    banks: banks
                        .split(',')
                        .map(|b| b.trim().to_owned())
                        .filter(|b| !b.is_empty())
                        .collect(),
                    amount: n("hold_amount"),
                    title: text("hold_title"),
                    before: if text("hold_before") == "apply" {
                        crate::domain::HoldBefore::Apply
                    } else {
                        crate::domain::HoldBefore::Entry
                    },
                }),
        })
        .filter(|r| r.asks_registries() || r.hold.is_some()),
    };
    match crate::domain::Validate::validate(&license) {
        Ok(()) => (Ok(license), r),
        Err(e) => {
            let (name, text) = field_of(&e);
            (Err(Errors::from([(name, text)])), r)
        }
    }
}

/// The field a license's refusal is about, and what to say there.
pub(super) fn field_of(e: &LicenseError) -> (&'static str, Text) {
    match e {
        LicenseError::NotPositive => ("units", m::E_POSITIVE),
        LicenseError::DownPayment => ("down_payment", m::E_DOWN_PAYMENT),
        LicenseError::Window => ("closes_at", m::E_WINDOW),
        LicenseError::Deadline(months) if *months <= 9 => ("delivery_deadline", m::E_DEADLINE_FIRM),
        LicenseError::Deadline(_) => ("delivery_deadline", m::E_DEADLINE_REGULAR),
        LicenseError::LicenseNo => ("license_no", m::E_LICENSE_NO),
        LicenseError::Exists => ("license_no", m::E_LICENSE_EXISTS),
        LicenseError::Parties => ("seed", m::E_PARTIES),
        LicenseError::Times => ("opens_at", m::E_TIMES),
        LicenseError::MinAge => ("min_age", m::E_MIN_AGE),
        LicenseError::Exclusion => ("exclusion_months", m::E_EXCLUSION),
        LicenseError::SeedDelay => ("seed_reveal_secs", m::E_SEED_DELAY),
        LicenseError::VehicleMonths => ("no_vehicle_months", m::E_VEHICLE_MONTHS),
        LicenseError::Hold => ("hold_banks", m::E_HOLD),
    }
}

/// What a blank form starts with: the ministry's usual terms.
fn defaults() -> Typed {
    [
        ("kind", "regular"),
        ("selection", "queue"),
        ("apply_window_min", "10"),
        ("min_age", "18"),
        ("seed_reveal_secs", "60"),
        ("seed_iterations", "40000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The manufacturers one may choose (id, Persian and English names): the IdP's
/// registered, active manufacturers, read over its ministry API; without the ministry's
/// client configured, the storefronts this service serves.
pub(super) async fn makers(app: &App) -> Result<Vec<(String, String, String)>, Error> {
    match &app.ministry {
        Some(ministry) => Ok(ministry
            .manufacturers()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the IdP's manufacturer list");
                Error::Busy { retry_after: 5 }
            })?
            .into_iter()
            .map(|m| (m.id, m.name_fa, m.name))
            .collect()),
        None => Ok(app
            .rp
            .storefronts()
            .into_iter()
            .map(|s| (s.cfg.id.clone(), s.cfg.name_fa.clone(), s.cfg.name.clone()))
            .collect()),
    }
}

/// The hint beside a field: what it reads as.
fn hint(f: &Field, r: &Read) -> Option<Markup> {
    match f.kind {
        Kind::When(_) => r.times.get(f.name).map(|t| {
            html! {
                span lang="fa" dir="rtl" { (format_time(*t)) " به وقت تهران" }
                small.other lang="en" dir="ltr" { (format_gregorian(*t)) " Tehran time (UTC+03:30)" }
            }
        }),
        Kind::Rials => r.amounts.get(f.name).map(|a| {
            html! {
                span lang="fa" dir="rtl" { (money(*a)) " ریال = " (money(a / 10)) " تومان" }
                small.other lang="en" dir="ltr" { (money(*a)) " rials = " (money(a / 10)) " toman" }
            }
        }),
        Kind::Choice(_) if f.name == "kind" => r.kind.map(|k| {
            let months = k.max_delivery_months();
            let by = r.times.get("closes_at").map(|c| c + months * MONTH);
            html! {
                span lang="fa" dir="rtl" {
                    "سقف قانونی تحویل: " (months) " ماه پس از پایان ثبت‌نام"
                    @if let Some(by) = by { "، تا " (format_time(by)) }
                }
                small.other lang="en" dir="ltr" {
                    "Legal delivery limit: " (months) " months after registration closes"
                    @if let Some(by) = by { ", by " (format_gregorian(by)) }
                }
            }
        }),
        _ => None,
    }
}

/// The form with what was typed, its errors beside their fields, and the hints.
#[allow(clippy::too_many_arguments)]
fn render(
    staff: &Staff,
    makers: &[(String, String, String)],
    typed: &Typed,
    errors: &Errors,
    r: &Read,
    received: &[Received],
    status: StatusCode,
) -> Response {
    let value = |k: &str| typed.get(k).cloned().unwrap_or_default();
    let body = html! {
        p { (fa(m::PROPOSE_EXPLAINED)) }
        @if !errors.is_empty() {
            div.error role="alert" id="form-errors" {
                (fa(m::FORM_HAS_ERRORS))
                ul {
                    @for (name, _) in errors {
                        @let label = FIELDS.iter().find(|f| f.name == *name).map_or(m::SEED_COMMITMENTS, |f| f.label);
                        li { a href=(format!("#{name}")) { (label.fa) " / " (label.en) } }
                    }
                }
            }
        }
        form.license method="post" action="/ministry/licenses" novalidate {
            input type="hidden" name="csrf" value=(staff.csrf);
            @for f in FIELDS {
                @let err = errors.get(f.name);
                @let described = format!("{}-hint {}-error", f.name, f.name);
                div.field {
                    label for=(f.name) {
                        (fa(f.label))
                        @if !f.required { small.optional { " (" (fa(m::OPTIONAL)) ")" } }
                    }
                    @match f.kind {
                        Kind::Choice(options) => {
                            select id=(f.name) name=(f.name) aria-describedby=(described) aria-invalid=[err.map(|_| "true")] {
                                @for (v, label) in options {
                                    option value=(v) selected[value(f.name) == *v] { (label.fa) " / " (label.en) }
                                }
                            }
                        }
                        Kind::Manufacturer => {
                            select id=(f.name) name=(f.name) aria-describedby=(described) aria-invalid=[err.map(|_| "true")] {
                                option value="" { "—" }
                                @for (id, name_fa, name_en) in makers {
                                    option value=(id) selected[value(f.name) == *id] { (name_fa) " / " (name_en) " (" (id) ")" }
                                }
                            }
                        }
                        _ => {
                            input id=(f.name) type="text" name=(f.name) value=(value(f.name))
                                placeholder=(f.example)
                                inputmode=[matches!(f.kind, Kind::Whole | Kind::Rials).then_some("numeric")]
                                aria-describedby=(described) aria-invalid=[err.map(|_| "true")];
                        }
                    }
                    @if let Some(e) = err {
                        p.error id=(format!("{}-error", f.name)) { (fa(*e)) }
                    }
                    @if let Some(h) = hint(f, r) {
                        p.hint id=(format!("{}-hint", f.name)) { (h) }
                    }
                }
            }
            fieldset.field #seed aria-describedby="seed-error" {
                legend { (fa(m::SEED_COMMITMENTS)) }
                p.hint { (fa(m::SEED_COMMITMENTS_EXPLAINED)) " " a href="/ministry/commitments" { (fa(m::COMMITMENTS)) } }
                @if received.is_empty() { p { (fa(m::NONE)) } }
                ul.list {
                    @for c in received {
                        li lang="en" dir="ltr" {
                            strong { (c.party) } " · " code.hash { (c.commitment) }
                            " · via " (c.via.as_str()) " by " (c.made_by) " · " (format_time(c.made_at))
                        }
                    }
                }
                @if let Some(e) = errors.get("seed") {
                    p.error id="seed-error" { (fa(*e)) }
                }
            }
            div.actions {
                button.secondary type="submit" name="check" value="1" { (fa(m::CHECK)) }
                button type="submit" { (fa(m::PROPOSE)) }
            }
        }
    };
    page(staff, status, m::PROPOSE_LICENSE, body)
}

pub(super) async fn blank(State(app): State<App>, staff: Staff) -> Result<Response, Error> {
    staff.is(Role::Issuer)?;
    let makers = makers(&app).await?;
    Ok(render(
        &staff,
        &makers,
        &defaults(),
        &Errors::new(),
        &Read::default(),
        &[],
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
pub(super) struct Submitted {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    check: Option<String>,
    #[serde(flatten)]
    fields: Typed,
}

pub(super) async fn submit(
    State(app): State<App>,
    staff: Staff,
    Form(f): Form<Submitted>,
) -> Result<Response, Error> {
    staff.may(Role::Issuer, &f.csrf)?;
    let makers = makers(&app).await?;
    let ids: Vec<String> = makers.iter().map(|(id, _, _)| id.clone()).collect();
    let typed = |k: &str| {
        f.fields
            .get(k)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (license_no, maker) = (typed("license_no"), typed("manufacturer"));
    let received = app.store.commitments_for(&license_no).await?;
    let parties = app
        .store
        .recorded_parties(&license_no, &maker, &staff.username)
        .await?;
    let (parsed, r) = read(&f.fields, &ids, &parties);
    let show =
        |errors: &Errors, status| render(&staff, &makers, &f.fields, errors, &r, &received, status);
    let license = match parsed {
        Err(errors) => {
            let status = if f.check.is_some() {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return Ok(show(&errors, status));
        }
        Ok(_) if f.check.is_some() => return Ok(show(&Errors::new(), StatusCode::OK)),
        Ok(l) => l,
    };
    let change = Change::Issue {
        license: Box::new(license),
    };
    match app
        .store
        .propose(&change, &staff.username, service_kit::clock::now())
        .await?
    {
        Ok(id) => Ok(Redirect::to(&format!("/ministry/proposals/{id}")).into_response()),
        Err(ProposalError::License(e)) => {
            let (name, text) = field_of(&e);
            let status = if e == LicenseError::Exists {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(show(&Errors::from([(name, text)]), status))
        }
        Err(ProposalError::Commitments(e)) => Ok(show(
            &Errors::from([("seed", commitment_error(&e))]),
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
        Err(e) => Err(super::proposals::refused(e)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{parse, Parties, Typed};
    use crate::error::msg::console as m;
    use crate::store::commitments::CommitmentError;
    use crate::transparency::seed::Commitment;

    fn makers() -> Vec<String> {
        vec!["saipa".into(), "iran-khodro".into()]
    }

    fn plausible() -> Typed {
        [
            ("license_no", "MIMT-1405-0001"),
            ("manufacturer", "saipa"),
            ("model", "Shahin"),
            ("units", "۱٬۰۰۰"),
            ("unit_price", "8,000,000,000"),
            ("down_payment", "۱۰۰۰۰۰۰۰۰۰"),
            ("kind", "firm"),
            ("selection", "queue"),
            ("opens_at", "۱۴۰۵/۱۰/۰۱ ۰۹:۰۰"),
            ("closes_at", "١٤٠٥/١٠/٠٣"),
            ("delivery_deadline", "1406/06/01"),
            ("admission_per_min", "6000"),
            ("max_active", "20000"),
            ("apply_window_min", "10"),
            ("min_age", "18"),
            ("exclusion_months", "48"),
            ("exclusion_manufacturers", "saipa,iran-khodro"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The commitments recorded for the license, as the store would find them.
    fn recorded() -> Parties {
        Ok(vec![
            Commitment {
                party: "ministry".into(),
                commitment: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU".into(),
            },
            Commitment {
                party: "saipa".into(),
                commitment: "ypeBEsobvcr6wjGzmiPcTaeG7_gUfE5yuYB3ha_uSLs".into(),
            },
        ])
    }

    fn with(k: &str, v: &str) -> Typed {
        let mut f = plausible();
        f.insert(k.to_owned(), v.to_owned());
        f
    }

    #[test]
    fn a_form_typed_in_persian_and_arabic_indic_digits_is_a_license() {
        let l = parse(&plausible(), &makers(), &recorded()).expect("valid");
        assert_eq!(l.units, 1000);
        assert_eq!(l.unit_price, 8_000_000_000);
        assert_eq!(l.down_payment, 1_000_000_000);
        assert_eq!(l.apply_window_secs, 600);
        // 1405/10/01 09:00 Tehran; the close without a time is the day's last minute.
        assert_eq!(
            service_kit::clock::format_time(l.opens_at),
            "1405/10/01 09:00"
        );
        assert_eq!(
            service_kit::clock::format_time(l.closes_at),
            "1405/10/03 23:59"
        );
        assert_eq!(l.parties.len(), 2);
        assert_eq!(l.parties[1].party, "saipa");
    }

    #[test]
    fn each_mistake_is_told_beside_its_field() {
        let cases: &[(&str, &str, &str, service_kit::Text)] = &[
            ("opens_at", "1405/12/30", "opens_at", m::E_DATE_NO_DAY),
            ("opens_at", "1405/07/31", "opens_at", m::E_DATE_NO_DAY),
            ("opens_at", "2026/12/01", "opens_at", m::E_DATE_YEAR),
            ("opens_at", "1405-10-01 25:00", "opens_at", m::E_DATE_TIME),
            ("opens_at", "next week", "opens_at", m::E_DATE_FORMAT),
            // A window that closes before it opens.
            ("closes_at", "۱۴۰۵/۰۹/۳۰", "closes_at", m::E_WINDOW),
            // The close at the very minute of the opening is no window either.
            ("closes_at", "1405/10/01 09:00", "closes_at", m::E_WINDOW),
            ("units", "۰", "units", m::E_POSITIVE),
            ("units", "ten", "units", m::E_WHOLE),
            ("units", "-5", "units", m::E_WHOLE),
            ("units", "", "units", m::E_REQUIRED),
            ("kind", "immediate-ish", "kind", m::E_CHOICE),
            (
                "manufacturer",
                "brokers-inc",
                "manufacturer",
                m::E_MANUFACTURER,
            ),
            (
                "down_payment",
                "9000000000",
                "down_payment",
                m::E_DOWN_PAYMENT,
            ),
            // A firm presale delivers within nine months of the close.
            (
                "delivery_deadline",
                "1406/08/01",
                "delivery_deadline",
                m::E_DEADLINE_FIRM,
            ),
            (
                "delivery_deadline",
                "1405/10/02",
                "delivery_deadline",
                m::E_DEADLINE_FIRM,
            ),
            ("license_no", "a b", "license_no", m::E_LICENSE_NO),
            ("min_age", "200", "min_age", m::E_MIN_AGE),
            (
                "apply_window_min",
                "50000",
                "apply_window_min",
                m::E_APPLY_WINDOW,
            ),
        ];
        for (k, v, field, text) in cases {
            let errors =
                parse(&with(k, v), &makers(), &recorded()).expect_err(&format!("{k}={v} refused"));
            assert_eq!(errors.get(field), Some(text), "{k}={v}: {errors:?}");
        }
        // The seed's parties are what was recorded, never typed here: without the
        // manufacturer's or the ministry's commitment the form says which is missing.
        for (missing, text) in [
            (CommitmentError::NoManufacturer, m::E_NO_MAKER_COMMITMENT),
            (CommitmentError::NoMinistry, m::E_NO_MINISTRY_COMMITMENT),
        ] {
            let errors = parse(&plausible(), &makers(), &Err(missing)).expect_err("no seed");
            assert_eq!(errors.get("seed"), Some(&text));
        }
        // A regular presale may deliver in twelve months: the same date is accepted.
        let mut f = with("delivery_deadline", "1406/08/01");
        f.insert("kind".into(), "regular".into());
        assert!(parse(&f, &makers(), &recorded()).is_ok());
        // Esfand 30 of a leap year is a day (1403 is leap).
        let mut f = with("opens_at", "1403/12/30 10:00");
        f.insert("closes_at".into(), "1404/01/02".into());
        f.insert("delivery_deadline".into(), "1404/06/01".into());
        assert!(
            parse(&f, &makers(), &recorded()).is_ok(),
            "{:?}",
            parse(&f, &makers(), &recorded()).err()
        );
    }

    fn value(plausible: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            40 => proptest::sample::select(plausible).prop_map(str::to_owned),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => proptest::sample::select(vec![i64::MAX.to_string(), "-1".into(), "0".into()]),
            1 => "[0-9۰-۹,/: ]{1,20}",
            1 => "\\PC{0,12}",
        ]
    }

    proptest! {
        /// Any form is refused with a reason beside a field or accepted, never a panic,
        /// and what is accepted keeps every later computation in range.
        #[test]
        fn any_license_form_is_refused_or_sound(
            units in value(&["100", "۱۰۰"]),
            opens in value(&["1405/10/01 09:00", "۱۴۰۵/۱۰/۰۱"]),
            closes in value(&["1405/10/03", "1405/10/01 08:00"]),
            delivery in value(&["1406/06/01", "1499/01/01"]),
            window in value(&["10", "43200", "43201"]),
            age in value(&["18", ""]),
            months in value(&["", "48", "121"]),
        ) {
            let mut f = plausible();
            for (k, v) in [("units", units), ("opens_at", opens), ("closes_at", closes),
                           ("delivery_deadline", delivery), ("apply_window_min", window),
                           ("min_age", age), ("exclusion_months", months)] {
                f.insert(k.into(), v);
            }
            match parse(&f, &makers(), &recorded()) {
                Err(errors) => prop_assert!(!errors.is_empty()),
                Ok(l) => {
                    prop_assert_eq!(crate::domain::Validate::validate(&l), Ok(()));
                    prop_assert!(l.closes_at.checked_add(l.apply_window_secs).is_some());
                    prop_assert!(l.closes_at > l.opens_at);
                }
            }
        }
    }
}
