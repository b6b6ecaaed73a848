//! The faults, injected at random moments from one seeded RNG until the load ends.
//!
//! Any replica may be SIGKILLed (and started again on its port a little later), frozen
//! with SIGSTOP then thawed with SIGCONT, or restarted (SIGTERM, then started again); the
//! SMTP server may refuse temporarily (451) or be killed and started again on its port
//! with its folder; the PostgreSQL connections of one replica, or of the whole stack, may
//! be cut with `pg_terminate_backend`. Never a permanent SMTP refusal: a 5xx legitimately
//! loses a mail. Faults on different targets overlap; a target under a fault is waited for.
//!
//! All choices (which fault, which target, how long) are drawn before waiting for the
//! target, so a seed replays the same faults in the same order.

use super::{
    judge::Crash,
    sink::Sink,
    stack::{Replica, Stack},
    stamp,
};
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};
use tokio::{sync::OwnedMutexGuard, task::JoinSet, time::Instant};

/// Longest freeze. It stays below every lease a frozen process may hold (WORKER_LEASE_MS
/// and REASSIGN_LEASE_MS 3 s, DELIVERY_LEASE_MS 10 s) and below PostgreSQL's
/// idle_in_transaction_session_timeout (5 s). A process thawed after its lease ran out
/// would act on a claim another replica has taken over meanwhile: that is another fault
/// (a pause longer than a lease), and the judge's staleness bound ("the superseding write's
/// acknowledgement plus one outbox lease") assumes a claim lives at most one lease.
const MAX_FREEZE_MS: u64 = 2_000;

/// What the faults did.
#[derive(Debug, Default)]
pub struct FaultReport {
    /// Faults by kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// Every fault with its time since the start (seconds).
    pub log: Vec<(f64, String)>,
    /// Crashes that can cut an SMTP exchange (for the judge).
    pub crashes: Vec<Crash>,
    /// A replica or the SMTP server that did not come back.
    pub problems: Vec<String>,
}

/// What a recovery reports.
type Recovered = (Option<Crash>, Option<String>);

/// Injects faults from `seed` until `load_end`, then waits until every target is back.
pub async fn inject(stack: &Stack, seed: u64, started: Instant, load_end: Instant) -> FaultReport {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = FaultReport::default();
    let mut recoveries: JoinSet<Recovered> = JoinSet::new();
    let note = |report: &mut FaultReport, kind: &'static str, line: String| {
        let at = started.elapsed().as_secs_f64();
        stamp(started, &format!("fault: {line}"));
        *report.counts.entry(kind).or_default() += 1;
        report.log.push((at, line));
    };
    loop {
        let gap = Duration::from_millis(rng.u64(300..=2_000));
        let roll = rng.u8(0..100);
        let target = rng.usize(0..stack.replicas.len() + 1);
        let down = Duration::from_millis(rng.u64(200..=3_000));
        let frozen = Duration::from_millis(rng.u64(100..=MAX_FREEZE_MS));
        let length = Duration::from_millis(rng.u64(1_000..=5_000));
        tokio::time::sleep(gap).await;
        if Instant::now() >= load_end {
            break;
        }
        match roll {
            0..45 => {
                let replica = &stack.replicas[target % stack.replicas.len()];
                let Some(mut guard) = until(load_end, replica.clone().lock_owned()).await else { break };
                let pid = guard.pid().unwrap_or_default();
                let name = guard.name.clone();
                if roll < 20 {
                    guard.kill().await;
                    note(
                        &mut report,
                        "SIGKILL",
                        format!("SIGKILL {name} (pid {pid}), started again in {:.2}s", down.as_secs_f64()),
                    );
                    if guard.is_notify() {
                        report.crashes.push(Crash { at: SystemTime::now(), what: format!("SIGKILL of {name}") });
                    }
                    recoveries.spawn(start_again(guard, down, started));
                } else {
                    guard.signal("-STOP").await;
                    note(
                        &mut report,
                        "SIGSTOP/SIGCONT",
                        format!("SIGSTOP {name} (pid {pid}), SIGCONT in {:.2}s", frozen.as_secs_f64()),
                    );
                    recoveries.spawn(async move {
                        tokio::time::sleep(frozen).await;
                        guard.signal("-CONT").await;
                        stamp(started, &format!("back:  {} thawed", guard.name));
                        (None, None)
                    });
                }
            }
            45..60 => {
                let replica = &stack.replicas[target % stack.replicas.len()];
                let Some(guard) = until(load_end, replica.clone().lock_owned()).await else { break };
                let line =
                    format!("SIGTERM {} (pid {}), then started again", guard.name, guard.pid().unwrap_or_default());
                note(&mut report, "restart (SIGTERM)", line);
                recoveries.spawn(restart(guard, started));
            }
            60..80 => {
                let Some(sink) = until(load_end, stack.sink.clone().lock_owned()).await else { break };
                if roll < 70 {
                    note(
                        &mut report,
                        "SMTP temporary refusals",
                        format!("SMTP server answers 451 for {:.2}s", length.as_secs_f64()),
                    );
                    recoveries.spawn(refuse_for(sink, length, started));
                } else {
                    report.crashes.push(Crash { at: SystemTime::now(), what: "SIGKILL of the SMTP server".into() });
                    note(
                        &mut report,
                        "SMTP outage",
                        format!("SMTP server killed, started again in {:.2}s", length.as_secs_f64()),
                    );
                    recoveries.spawn(down_for(sink, length, started));
                }
            }
            _ => {
                // One replica's connections, or (the last draw) every connection.
                let application = stack.urls.get(target).map(|(name, _)| name.clone());
                let line = match stack.database.terminate(application.as_deref()).await {
                    Ok(n) => format!(
                        "pg_terminate_backend: {n} connections of {}",
                        application.as_deref().unwrap_or("the whole stack")
                    ),
                    Err(error) => format!("pg_terminate_backend failed: {error}"),
                };
                note(&mut report, "pg_terminate_backend", line);
            }
        }
    }
    while let Some(done) = recoveries.join_next().await {
        match done {
            Ok((crash, problem)) => {
                report.crashes.extend(crash);
                report.problems.extend(problem);
            }
            Err(error) => report.problems.push(format!("a recovery task failed: {error}")),
        }
    }
    report
}

/// `future`'s output, unless `end` comes first.
async fn until<T>(end: Instant, future: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        value = future => Some(value),
        _ = tokio::time::sleep_until(end) => None,
    }
}

async fn start_again(mut replica: OwnedMutexGuard<Replica>, after: Duration, started: Instant) -> Recovered {
    tokio::time::sleep(after).await;
    match replica.start().await {
        Ok(()) => {
            stamp(
                started,
                &format!("back:  {} started again (pid {})", replica.name, replica.pid().unwrap_or_default()),
            );
            (None, None)
        }
        Err(error) => (None, Some(format!("{} did not start again: {error:#}", replica.name))),
    }
}

async fn restart(mut replica: OwnedMutexGuard<Replica>, started: Instant) -> Recovered {
    let clean = replica.terminate(Duration::from_secs(15)).await;
    let crash = (!clean && replica.is_notify()).then(|| Crash {
        at: SystemTime::now(),
        what: format!("SIGKILL of {} (no exit 15 s after SIGTERM)", replica.name),
    });
    if !clean {
        stamp(started, &format!("fault: {} did not exit within 15 s of SIGTERM: SIGKILLed", replica.name));
    }
    let (_, problem) = start_again(replica, Duration::ZERO, started).await;
    (crash, problem)
}

async fn refuse_for(sink: OwnedMutexGuard<Sink>, length: Duration, started: Instant) -> Recovered {
    let refused = sink.accept(false);
    tokio::time::sleep(length).await;
    let accepted = sink.accept(true);
    stamp(started, "back:  SMTP server accepts again");
    match refused.and(accepted) {
        Ok(()) => (None, None),
        Err(error) => (None, Some(format!("cannot switch the SMTP server's mode: {error}"))),
    }
}

async fn down_for(mut sink: OwnedMutexGuard<Sink>, length: Duration, started: Instant) -> Recovered {
    sink.kill().await;
    tokio::time::sleep(length).await;
    match sink.start().await {
        Ok(()) => {
            stamp(started, "back:  SMTP server started again");
            (None, None)
        }
        Err(error) => (None, Some(format!("the SMTP server did not start again: {error:#}"))),
    }
}
