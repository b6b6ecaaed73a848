//! The poll loop that every background worker runs.
//!
//! A worker does its work in passes ([`Worker::pass`]); this loop only decides when the
//! next pass runs. After a pass that did work: at once. After an idle pass: when the next
//! work is due ([`Worker::next_due`]), never later than the poll interval, sooner when a
//! wake-up arrives (an in-process [`Notify`], which [`crate::db::Database::listen`] also
//! fires on a PostgreSQL `NOTIFY`). After a failed pass: a backoff that grows with the
//! consecutive failures, is reset by any good pass and is capped by the poll interval.
//!
//! Shutdown is noticed between passes: the pass in hand always finishes. A periodic side
//! task (a gauge refresh) runs between passes as [`Worker::housekeeping`]. The loop never
//! knows what a worker does, and a worker never sleeps on its own.

use crate::backoff::Backoff;
use std::{
    fmt::Display,
    future::Future,
    time::{Duration, Instant},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What one pass did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It claimed and handled work: more may be due, so the next pass runs at once.
    Worked,
    /// Nothing was due: the next pass waits for [`Worker::next_due`] or a wake-up.
    Idle,
}

/// A background worker driven by [`run`].
pub trait Worker: Sync {
    /// Why a pass failed (logged; the loop backs off and tries again).
    type Error: Display + Send;

    /// The worker's name in logs ("outbox", "release", …).
    const NAME: &'static str;

    /// Claims and handles one batch of due work.
    fn pass(&self) -> impl Future<Output = Result<Outcome, Self::Error>> + Send;

    /// How long until work is due again after an idle pass (`None`: nothing waits; the
    /// loop then waits the poll interval). An error counts as a failed pass.
    fn next_due(&self) -> impl Future<Output = Result<Option<Duration>, Self::Error>> + Send;

    /// A side task run between passes, at most once per [`Schedule::housekeeping_every`].
    fn housekeeping(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// When a worker's passes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    poll: Duration,
    backoff: Backoff,
    min_idle: Duration,
    first_pass_after: Duration,
    housekeeping_every: Option<Duration>,
}

impl Schedule {
    /// Passes at most `poll` apart when idle, and `backoff` (capped by `poll`) after
    /// failures; the first pass at once, no shortest idle pause, no housekeeping.
    pub const fn new(poll: Duration, backoff: Backoff) -> Self {
        Self { poll, backoff, min_idle: Duration::ZERO, first_pass_after: Duration::ZERO, housekeeping_every: None }
    }

    /// Waits at least `min_idle` after an idle pass (work that is due but held by another
    /// replica's claim for a moment must not make the loop spin).
    pub const fn with_min_idle(mut self, min_idle: Duration) -> Self {
        self.min_idle = min_idle;
        self
    }

    /// Runs the first pass only `delay` after start.
    pub const fn with_first_pass_after(mut self, delay: Duration) -> Self {
        self.first_pass_after = delay;
        self
    }

    /// Runs [`Worker::housekeeping`] after a pass when `period` has passed since it last
    /// ran (and after the first pass).
    pub const fn with_housekeeping_every(mut self, period: Duration) -> Self {
        self.housekeeping_every = Some(period);
        self
    }

    /// The pause after an idle pass, given when work is due next.
    pub fn idle_wait(&self, next_due: Option<Duration>) -> Duration {
        next_due.unwrap_or(self.poll).min(self.poll).max(self.min_idle)
    }

    /// The pause after the `failures`-th failed pass in a row.
    pub fn error_wait(&self, failures: u32) -> Duration {
        self.backoff.delay(failures).min(self.poll)
    }
}

/// Runs `worker`'s passes on `schedule` until `shutdown` is cancelled; `wake` cuts an
/// idle or error pause short. The pass in hand finishes first.
pub async fn run<W: Worker>(worker: &W, schedule: Schedule, wake: &Notify, shutdown: &CancellationToken) {
    drive(worker, schedule, shutdown, &Pauses { wake, shutdown }).await;
}

/// The time the loop sees: real pauses in [`run`], simulated ones in the tests.
trait Clock: Sync {
    fn now(&self) -> Instant;
    /// Returns after `wait`, a wake-up or shutdown, whichever comes first.
    fn pause(&self, wait: Duration) -> impl Future<Output = ()> + Send;
}

struct Pauses<'a> {
    wake: &'a Notify,
    shutdown: &'a CancellationToken,
}

impl Clock for Pauses<'_> {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn pause(&self, wait: Duration) -> impl Future<Output = ()> + Send {
        crate::shutdown::pause(self.wake, wait, self.shutdown)
    }
}

async fn drive<W: Worker>(worker: &W, schedule: Schedule, shutdown: &CancellationToken, clock: &impl Clock) {
    if !schedule.first_pass_after.is_zero() {
        clock.pause(schedule.first_pass_after).await;
    }
    let mut failures = 0u32;
    let mut housekept: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let outcome = match worker.pass().await {
            Ok(Outcome::Worked) => Ok(None),
            Ok(Outcome::Idle) => worker.next_due().await.map(Some),
            Err(error) => Err(error),
        };
        let wait = match outcome {
            Ok(None) => {
                failures = 0;
                Duration::ZERO
            }
            Ok(Some(next_due)) => {
                failures = 0;
                schedule.idle_wait(next_due)
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let wait = schedule.error_wait(failures);
                tracing::warn!(worker = W::NAME, %error, failures, retry_in = ?wait, "worker pass failed");
                wait
            }
        };
        if let Some(period) = schedule.housekeeping_every
            && housekept.is_none_or(|at| clock.now().saturating_duration_since(at) >= period)
        {
            housekept = Some(clock.now());
            worker.housekeeping().await;
        }
        if !wait.is_zero() {
            clock.pause(wait).await;
        }
    }
    tracing::info!(worker = W::NAME, "worker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::VecDeque, sync::Mutex};

    const POLL: Duration = Duration::from_secs(1);
    const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));

    /// A worker that plays a script of pass results, then cancels `shutdown` during the
    /// pass after the last one (which still finishes).
    struct Scripted {
        passes: Mutex<VecDeque<Result<Outcome, &'static str>>>,
        next_due: Result<Option<Duration>, &'static str>,
        shutdown: CancellationToken,
        ran: Mutex<u32>,
        housekeeping: Mutex<u32>,
    }

    impl Scripted {
        fn new(passes: Vec<Result<Outcome, &'static str>>, next_due: Option<Duration>) -> Self {
            Self {
                passes: Mutex::new(passes.into()),
                next_due: Ok(next_due),
                shutdown: CancellationToken::new(),
                ran: Mutex::new(0),
                housekeeping: Mutex::new(0),
            }
        }
    }

    impl Worker for Scripted {
        type Error = &'static str;
        const NAME: &'static str = "scripted";

        async fn pass(&self) -> Result<Outcome, &'static str> {
            *self.ran.lock().unwrap() += 1;
            let next = self.passes.lock().unwrap().pop_front();
            match next {
                Some(result) => result,
                None => {
                    self.shutdown.cancel();
                    Ok(Outcome::Worked)
                }
            }
        }

        async fn next_due(&self) -> Result<Option<Duration>, &'static str> {
            self.next_due
        }

        async fn housekeeping(&self) {
            *self.housekeeping.lock().unwrap() += 1;
        }
    }

    /// Simulated time: every pause returns at once, is recorded, and moves the clock.
    struct Simulated {
        start: Instant,
        elapsed: Mutex<Duration>,
        pauses: Mutex<Vec<Duration>>,
    }

    impl Simulated {
        fn new() -> Self {
            Self { start: Instant::now(), elapsed: Mutex::new(Duration::ZERO), pauses: Mutex::new(Vec::new()) }
        }

        fn pauses(&self) -> Vec<Duration> {
            self.pauses.lock().unwrap().clone()
        }
    }

    impl Clock for Simulated {
        fn now(&self) -> Instant {
            self.start + *self.elapsed.lock().unwrap()
        }

        fn pause(&self, wait: Duration) -> impl Future<Output = ()> + Send {
            *self.elapsed.lock().unwrap() += wait;
            self.pauses.lock().unwrap().push(wait);
            std::future::ready(())
        }
    }

    async fn play(worker: &Scripted, schedule: Schedule) -> Simulated {
        let clock = Simulated::new();
        drive(worker, schedule, &worker.shutdown, &clock).await;
        clock
    }

    fn within(wait: Duration, failures: u32) -> bool {
        let ceiling = BACKOFF.ceiling(failures).min(POLL);
        wait >= ceiling / 2 && wait <= ceiling
    }

    #[tokio::test]
    async fn goes_again_at_once_after_work_and_waits_for_the_next_due_time_when_idle() {
        let worker = Scripted::new(vec![Ok(Outcome::Worked), Ok(Outcome::Worked), Ok(Outcome::Idle)], None);
        let clock = play(&worker, Schedule::new(POLL, BACKOFF)).await;
        assert_eq!(clock.pauses(), [POLL], "no pause after work; the poll interval when nothing waits");
    }

    #[tokio::test]
    async fn the_next_due_time_is_capped_by_the_poll_interval_and_floored_by_the_shortest_idle() {
        let soon = Scripted::new(vec![Ok(Outcome::Idle)], Some(Duration::from_millis(300)));
        assert_eq!(play(&soon, Schedule::new(POLL, BACKOFF)).await.pauses(), [Duration::from_millis(300)]);
        let late = Scripted::new(vec![Ok(Outcome::Idle)], Some(Duration::from_secs(60)));
        assert_eq!(play(&late, Schedule::new(POLL, BACKOFF)).await.pauses(), [POLL]);
        let now = Scripted::new(vec![Ok(Outcome::Idle)], Some(Duration::ZERO));
        let schedule = Schedule::new(POLL, BACKOFF).with_min_idle(Duration::from_millis(10));
        assert_eq!(play(&now, schedule).await.pauses(), [Duration::from_millis(10)]);
    }

    #[tokio::test]
    async fn failures_back_off_more_each_time_and_any_good_pass_resets_the_count() {
        let script = vec![Err("down"), Err("down"), Err("down"), Ok(Outcome::Worked), Err("down"), Ok(Outcome::Idle)];
        let worker = Scripted::new(script, Some(Duration::from_secs(60)));
        let pauses = play(&worker, Schedule::new(POLL, BACKOFF)).await.pauses();
        assert_eq!(pauses.len(), 5, "{pauses:?}");
        assert!(within(pauses[0], 1) && within(pauses[1], 2) && within(pauses[2], 3), "{pauses:?}");
        assert!(within(pauses[3], 1), "the count starts again after a good pass: {pauses:?}");
        assert_eq!(pauses[4], POLL);
    }

    #[tokio::test]
    async fn not_knowing_when_work_is_due_counts_as_a_failure() {
        let mut worker = Scripted::new(vec![Ok(Outcome::Idle), Ok(Outcome::Idle)], None);
        worker.next_due = Err("down");
        let pauses = play(&worker, Schedule::new(POLL, BACKOFF)).await.pauses();
        assert_eq!(pauses.len(), 2, "{pauses:?}");
        assert!(within(pauses[0], 1) && within(pauses[1], 2), "{pauses:?}");
    }

    #[tokio::test]
    async fn failures_back_off_no_longer_than_the_poll_interval() {
        let worker = Scripted::new(vec![Err("down"); 12], None);
        let pauses = play(&worker, Schedule::new(POLL, BACKOFF)).await.pauses();
        assert_eq!(pauses.len(), 12);
        assert!(pauses.iter().all(|p| *p <= POLL), "{pauses:?}");
        assert!(pauses[11] >= POLL / 2, "{pauses:?}");
    }

    #[tokio::test]
    async fn shutdown_lets_the_pass_in_hand_finish_then_stops() {
        let worker = Scripted::new(vec![Ok(Outcome::Worked)], None);
        play(&worker, Schedule::new(POLL, BACKOFF)).await;
        assert_eq!(*worker.ran.lock().unwrap(), 2, "the pass during which shutdown came finished; none followed");

        let stopped = Scripted::new(vec![Ok(Outcome::Worked)], None);
        stopped.shutdown.cancel();
        play(&stopped, Schedule::new(POLL, BACKOFF)).await;
        assert_eq!(*stopped.ran.lock().unwrap(), 0, "no pass starts after shutdown");
    }

    #[tokio::test]
    async fn the_first_pass_may_wait() {
        let worker = Scripted::new(vec![Ok(Outcome::Idle)], None);
        let schedule = Schedule::new(POLL, BACKOFF).with_first_pass_after(Duration::from_secs(7));
        assert_eq!(play(&worker, schedule).await.pauses(), [Duration::from_secs(7), POLL]);
    }

    #[tokio::test]
    async fn housekeeping_runs_after_the_first_pass_then_at_most_once_per_period() {
        // Three passes at the same instant (work), one idle pause of a second, two more.
        let script = vec![Ok(Outcome::Worked), Ok(Outcome::Worked), Ok(Outcome::Idle), Ok(Outcome::Worked)];
        let worker = Scripted::new(script, Some(Duration::from_secs(1)));
        let schedule = Schedule::new(POLL, BACKOFF).with_housekeeping_every(Duration::from_secs(1));
        play(&worker, schedule).await;
        assert_eq!(*worker.housekeeping.lock().unwrap(), 2);

        let none = Scripted::new(vec![Ok(Outcome::Idle)], None);
        play(&none, Schedule::new(POLL, BACKOFF)).await;
        assert_eq!(*none.housekeeping.lock().unwrap(), 0, "no housekeeping unless scheduled");
    }
}
