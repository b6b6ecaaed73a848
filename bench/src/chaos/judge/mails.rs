//! Which mails a booking gets, judged from outside (the rule is written out in
//! `docs/architecture.md`, "Which mails a booking gets, judged from outside").
//!
//! Inputs: the owner's log (which versions it made, with or without `suppress_emails`,
//! how each was answered and when), the final booking, the SMTP server's folder and
//! notify-svc's deliveries (for `requested_at` and the final delivery states).

use super::{Evidence, Status, Verdict};
use crate::chaos::log::{Answer, BookingLog, Made};
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, SystemTime},
};

/// How far before the first copy's arrival and after it a crash must fall to explain a
/// duplicate: the SMTP server writes a message before it answers, and notify-svc records
/// the acceptance right after (retrying a failed record for up to a few seconds).
const CRASH_BEFORE: Duration = Duration::from_millis(100);
const CRASH_AFTER: Duration = Duration::from_secs(5);

const CANCELLED: &str = "BOOKING_CANCELLED";

type Key<'a> = (&'a str, &'a str, i64);

pub(super) fn judge(evidence: &Evidence, verdict: &mut Verdict) {
    let logs: HashMap<&str, &BookingLog> = evidence.logs.iter().map(|l| (l.id.as_str(), l)).collect();
    let mut at_smtp: BTreeMap<Key, Vec<&super::Mail>> = BTreeMap::new();
    for mail in evidence.mails {
        at_smtp.entry((&mail.booking, &mail.kind, mail.version)).or_default().push(mail);
    }
    let deliveries: HashMap<Key, &super::Delivery> =
        evidence.deliveries.values().flatten().map(|d| ((d.booking.as_str(), d.kind.as_str(), d.version), d)).collect();

    for (&key, copies) in &at_smtp {
        if copies.len() > 1 {
            duplicate(key, copies, evidence, verdict);
        }
        let (booking, kind, version) = key;
        let Some(log) = logs.get(booking) else {
            verdict.violations.push(format!("mail {} about a booking no client created", name(key)));
            continue;
        };
        if kind == CANCELLED {
            match log.cancel() {
                None => verdict.violations.push(format!("mail {}: the booking was never cancelled", name(key))),
                Some(cancel) if cancel.version != version => verdict.violations.push(format!(
                    "mail {}: the booking was cancelled at version {}",
                    name(key),
                    cancel.version
                )),
                Some(cancel) if cancel.suppressed => {
                    verdict.violations.push(format!("mail {}: the cancel was sent with suppress_emails", name(key)))
                }
                Some(_) => {}
            }
            continue;
        }
        let Some(pending) = is_pending(kind) else {
            verdict.violations.push(format!("mail {}: an unknown kind", name(key)));
            continue;
        };
        if kind.starts_with("BOOKING_") != (version == 1) {
            verdict.violations.push(format!("mail {}: this kind is not for version {version}", name(key)));
        }
        let Some(made) = log.version(version) else {
            verdict.violations.push(format!("mail {}: version {version} was never made", name(key)));
            continue;
        };
        if made.suppressed {
            verdict.violations.push(format!("mail {}: version {version} was made with suppress_emails", name(key)));
        }
        if pending && made.answer == Answer::Confirmed && !late(made, evidence) {
            verdict.violations.push(format!(
                "mail {}: version {version} was answered CONFIRMED within the hand-off window",
                name(key)
            ));
        }
        stale(key, log, made, deliveries.get(&key).copied(), evidence, verdict);
    }

    for log in evidence.logs {
        required(log, evidence, &at_smtp, verdict);
    }
    for delivery in deliveries.values() {
        let key = (delivery.booking.as_str(), delivery.kind.as_str(), delivery.version);
        let arrived = at_smtp.contains_key(&key);
        match (delivery.state.as_str(), arrived) {
            ("SENT", false) => verdict
                .violations
                .push(format!("mail {}: notify-svc says SENT, the SMTP server never got it", name(key))),
            ("SUPPRESSED", true) => verdict
                .violations
                .push(format!("mail {}: notify-svc says SUPPRESSED, the SMTP server got it", name(key))),
            ("FAILED", _) => verdict.violations.push(format!("mail {}: notify-svc gave it up (FAILED)", name(key))),
            _ => {}
        }
    }
}

/// `Some(true)` for the pending kinds, `Some(false)` for the confirmations.
fn is_pending(kind: &str) -> Option<bool> {
    match kind {
        "BOOKING_PENDING" | "MODIFICATION_REQUESTED" => Some(true),
        "BOOKING_CONFIRMED" | "MODIFICATION_CONFIRMED" => Some(false),
        _ => None,
    }
}

fn confirmation(version: i64) -> &'static str {
    if version == 1 { "BOOKING_CONFIRMED" } else { "MODIFICATION_CONFIRMED" }
}

fn pending(version: i64) -> &'static str {
    if version == 1 { "BOOKING_PENDING" } else { "MODIFICATION_REQUESTED" }
}

/// Answered after the hand-off window: the background may have taken the version over
/// (and queued its pending mail) before the request recorded its result.
fn late(made: &Made, evidence: &Evidence) -> bool {
    made.latency.is_none_or(|l| l > evidence.rules.handoff_window)
}

/// No key twice, except a copy explained by the documented window (a crash between the
/// SMTP server's acceptance and notify-svc's record): then every copy carries the same
/// Message-ID, and a crash that can cut that exchange fell right around the first copy.
fn duplicate(key: Key, copies: &[&super::Mail], evidence: &Evidence, verdict: &mut Verdict) {
    let first = copies.iter().map(|m| m.received_at).min().unwrap_or(SystemTime::UNIX_EPOCH);
    let same_id = copies.iter().all(|m| m.message_id == copies[0].message_id && !m.message_id.is_empty());
    let crash = evidence.crashes.iter().find(|c| c.at + CRASH_BEFORE >= first && c.at <= first + CRASH_AFTER);
    match crash {
        Some(crash) if same_id => verdict.excused.push(format!(
            "mail {} arrived {} times with one Message-ID: {} {:.2}s after the first copy (a crash between the SMTP \
             server's acceptance and notify-svc's record, the documented at-least-once window)",
            name(key),
            copies.len(),
            crash.what,
            signed_secs(crash.at, first)
        )),
        _ => verdict.violations.push(format!(
            "mail {} arrived {} times{}",
            name(key),
            copies.len(),
            if same_id { "" } else { " with different Message-IDs" }
        )),
    }
}

/// A mail about a version that was superseded (or whose booking was cancelled) must have
/// been recorded by notify-svc no later than the superseding write's acknowledgement plus
/// the outbox lease: the outbox decides staleness when it claims an email, and a claim
/// lives at most one lease.
fn stale(
    key: Key,
    log: &BookingLog,
    made: &Made,
    delivery: Option<&super::Delivery>,
    evidence: &Evidence,
    verdict: &mut Verdict,
) {
    let superseded_at = match log.version(made.version + 1) {
        Some(next) => next.acked_at,
        None => match log.cancel() {
            Some(cancel) => cancel.acked_at,
            None => return,
        },
    };
    let Some(requested_at) = delivery.and_then(|d| d.requested_at) else {
        verdict.violations.push(format!("mail {}: superseded, and notify-svc lists no delivery for it", name(key)));
        return;
    };
    let lag = signed_secs(requested_at, superseded_at);
    verdict.stale_lags.push(lag);
    if requested_at > superseded_at + evidence.rules.outbox_lease {
        verdict.violations.push(format!(
            "mail {}: stale: notify-svc recorded it {lag:.3}s after the superseding write was acknowledged (allowed: \
             the outbox lease, {:?})",
            name(key),
            evidence.rules.outbox_lease
        ));
    }
}

/// The mails a booking must have: one confirmation of its final confirmed version (and
/// its pending mail when that version was answered PENDING), or its cancel mail.
fn required(log: &BookingLog, evidence: &Evidence, at_smtp: &BTreeMap<Key, Vec<&super::Mail>>, verdict: &mut Verdict) {
    let id = log.id.as_str();
    let has = |kind: &str, version: i64| at_smtp.contains_key(&(id, kind, version));
    if let Some(cancel) = log.cancel() {
        if !cancel.suppressed && !has(CANCELLED, cancel.version) {
            verdict.violations.push(format!("mail {}: missing", name((id, CANCELLED, cancel.version))));
        }
        return;
    }
    let confirmed = evidence.finals.get(id).is_some_and(|f| f.status == Status::Confirmed);
    let Some(last) = log.last_version() else { return };
    if !confirmed || last.suppressed {
        return;
    }
    let v = last.version;
    if !has(confirmation(v), v) {
        verdict
            .violations
            .push(format!("mail {}: missing (the booking ends CONFIRMED at it)", name((id, confirmation(v), v))));
    }
    if last.answer == Answer::Pending && !has(pending(v), v) {
        verdict
            .violations
            .push(format!("mail {}: missing (the version was answered PENDING)", name((id, pending(v), v))));
    }
}

fn name((booking, kind, version): Key) -> String {
    format!("{booking}:{kind}:{version}")
}

/// `a - b` in seconds, negative when `a` is earlier.
fn signed_secs(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
