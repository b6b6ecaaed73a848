//! The summary and the verdict: what the load did, the faults, the mails, and every
//! violation, as text (and as one JSON object with `--json`).

use super::{calls::Stats, faults::FaultReport, judge::Verdict, settle::Observed};
use serde_json::json;
use std::collections::BTreeMap;

/// Everything the summary shows.
pub struct Summary<'a> {
    pub seed: u64,
    pub replay: String,
    pub stats: &'a Stats,
    pub faults: &'a FaultReport,
    pub observed: &'a Observed,
    pub verdict: &'a Verdict,
    pub bookings: usize,
    pub outbox_lease_s: f64,
}

/// Prints the summary and the verdict line (and the JSON object when `json`).
pub fn print(summary: &Summary, json: bool) {
    let Summary { stats, faults, observed, verdict, .. } = summary;
    println!("\n== operations (by kind and how each ended) ==");
    let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((kind, answer), n) in &stats.ops {
        by_kind.entry(kind).or_default().push(format!("{answer} {n}"));
    }
    for (kind, answers) in &by_kind {
        println!("  {kind:<42} {}", answers.join(", "));
    }
    let total: u64 = stats.ops.values().sum();
    println!("  {total} operations on {} bookings", summary.bookings);
    let failures: Vec<String> = stats.failures.iter().map(|(code, n)| format!("{code} {n}")).collect();
    println!("  attempts without an answer, then retried or re-read: {}", none_if_empty(&failures));

    println!("\n== faults ==");
    let counts: Vec<String> = faults.counts.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    println!("  {} in all: {}", faults.log.len(), none_if_empty(&counts));

    println!("\n== mails ==");
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for mail in &observed.mails {
        *kinds.entry(&mail.kind).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  {} at the SMTP server: {}", observed.mails.len(), none_if_empty(&kinds));
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for delivery in observed.deliveries.values().flatten() {
        *states.entry(&delivery.state).or_default() += 1;
    }
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!("  deliveries in notify-svc: {}", none_if_empty(&states));
    let lags = &verdict.stale_lags;
    if lags.is_empty() {
        println!("  no mail about a superseded or cancelled version");
    } else {
        let max = lags.iter().copied().fold(f64::MIN, f64::max);
        let after = lags.iter().filter(|l| **l > 0.0).count();
        println!(
            "  {} mails about a version superseded (or cancelled) meanwhile: notify-svc recorded {after} of them after \
             the superseding write was acknowledged, at most {max:+.3}s after it (allowed: the outbox lease, {:.1}s)",
            lags.len(),
            summary.outbox_lease_s
        );
    }
    for excused in &verdict.excused {
        println!("  excused: {excused}");
    }
    println!("\n== settle ==\n  at rest after {:.1}s", observed.took.as_secs_f64());

    println!("\n{}", summary.replay);
    if verdict.passed() {
        println!("VERDICT: PASS");
    } else {
        println!("VERDICT: FAIL ({} violations)", verdict.violations.len());
        for violation in &verdict.violations {
            println!("  - {violation}");
        }
    }
    if json {
        let ops: BTreeMap<String, u64> = stats.ops.iter().map(|((k, a), n)| (format!("{k}: {a}"), *n)).collect();
        let object = json!({
            "seed": summary.seed,
            "verdict": if verdict.passed() { "PASS" } else { "FAIL" },
            "violations": verdict.violations,
            "excused": verdict.excused,
            "operations": ops,
            "operations_total": total,
            "failed_attempts": stats.failures,
            "faults": faults.counts,
            "fault_log": faults.log.iter().map(|(at, line)| json!({"at_s": at, "fault": line})).collect::<Vec<_>>(),
            "mails": observed.mails.len(),
            "stale_mails": lags.len(),
            "bookings": summary.bookings,
            "settle_s": observed.took.as_secs_f64(),
        });
        println!("{object}");
    }
}

fn none_if_empty(items: &[String]) -> String {
    if items.is_empty() { "none".to_string() } else { items.join(", ") }
}
