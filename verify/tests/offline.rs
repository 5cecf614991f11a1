//! The `emta-verify` binary on a saved log (what an outside auditor runs offline): a log
//! consistent with its signed checkpoint passes, a record changed after signing is a
//! finding, and a saved log is never checked against a key it carries itself.

use std::process::Command;

use emta_verify::cli::SavedLog;
use emta_verify::seed::Contribution;
use emta_verify::terms::{NewLicense, PresaleKind, SeedDelay, Selection};
use emta_verify::{Event, LogKey, MemoryTree};

fn license() -> NewLicense {
    NewLicense {
        license_no: "MIMT-OFF-1".into(),
        manufacturer: "saipa".into(),
        model: "Shahin".into(),
        units: 10,
        unit_price: 8_000_000_000,
        down_payment: 1_000_000_000,
        kind: PresaleKind::Firm,
        delivery_deadline: 1_900_000_000,
        opens_at: 1_800_000_000,
        closes_at: 1_800_003_600,
        selection: Selection::Queue,
        admission_per_min: 600,
        max_active: 100,
        apply_window_secs: 600,
        min_age: Some(18),
        round: None,
        exclusion: None,
        parties: ["ministry", "saipa"]
            .map(|p| Contribution::generate(p).commitment())
            .to_vec(),
        seed_delay: Some(SeedDelay::RECOMMENDED),
        registration: None,
    }
}

/// A campaign's log of `records`, with one checkpoint over all of them.
fn saved(campaign: &str, records: Vec<String>, key: &LogKey) -> SavedLog {
    let mut tree = MemoryTree::default();
    for r in &records {
        tree.push(r.as_bytes());
    }
    let checkpoint = key.sign(campaign, tree.size(), tree.root(), 1_800_000_000_000);
    SavedLog {
        campaign: campaign.into(),
        checkpoints: vec![checkpoint],
        records,
    }
}

fn run(file: &std::path::Path, campaign: &str, key: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emta-verify"));
    cmd.arg(file).arg(campaign);
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    let out = cmd.output().expect("emta-verify runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_saved_log_is_audited_offline_and_a_changed_record_is_a_finding() {
    let dir = std::env::temp_dir().join(format!("emta-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = LogKey::from_seed(&[9; 32]);
    let campaign = "l-offline";
    let records = vec![
        Event::License {
            id: campaign.into(),
            terms: Box::new(license()),
            at_ms: 1_799_000_000_000,
        }
        .line(),
        Event::Ticket {
            holder: "h-1".into(),
            arrival: None,
            ticket: Some(1),
        }
        .line(),
    ];
    let good = dir.join("good.json");
    let log = saved(campaign, records.clone(), &key);
    std::fs::write(&good, serde_json::to_vec(&log).expect("json")).expect("write");
    let (ok, out) = run(&good, campaign, Some(key.verifier_key()));
    assert!(ok, "{out}");
    assert!(
        out.contains("everything recomputed from the log matches"),
        "{out}"
    );

    // A record changed after the checkpoint was signed.
    let mut forged = log.clone();
    forged.records[1] = forged.records[1].replace("h-1", "h-2");
    let bad = dir.join("forged.json");
    std::fs::write(&bad, serde_json::to_vec(&forged).expect("json")).expect("write");
    let (ok, out) = run(&bad, campaign, Some(key.verifier_key()));
    assert!(!ok, "a changed record passed: {out}");

    // Signed by another key than the one pinned.
    let other = LogKey::from_seed(&[8; 32]);
    let (ok, out) = run(&good, campaign, Some(other.verifier_key()));
    assert!(!ok, "another key passed: {out}");
    // No key: a file brings no key of its own to trust.
    let (ok, out) = run(&good, campaign, None);
    assert!(!ok && out.contains("--key"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
