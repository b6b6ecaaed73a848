//! The hub: this process's one reader of the changes table, and the fan-out to its watchers.
//!
//! The reader runs while at least one watcher is interested. It passes over the table when
//! a writer's commit wakes it (in-process at once, from other replicas by `NOTIFY`), asks
//! the sequencer how far positions are final, and hands each published change to every
//! live watcher whose filter it matches, through that watcher's bounded queue. A queue
//! found full marks its watcher as lagging and drops it: the hub never waits for a watcher
//! and never buffers more than the queues hold. The hub never writes a change.

use super::{FeedSettings, Published, sequencer::Sequencer};
use crate::{
    domain::values::RestaurantId,
    error::Error,
    store::{self, changes::StoredChange},
};
use platform::db::Database;
use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{
    sync::{Notify, mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// Changes read per pass.
const PASS_LIMIT: i64 = 512;
/// Least time between two passes under a stream of wake-ups (they batch what committed).
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(2);
/// First and longest delay before passing again while a missing position holds others back.
const GAP_RETRY: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(50));

/// A watcher's live queue, as the hub holds it.
struct Slot {
    restaurant: Option<RestaurantId>,
    queue: mpsc::Sender<Arc<Published>>,
    lagging: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    /// Every position below is published; `None` while the reader does not follow.
    head: Option<i64>,
    slots: Vec<Slot>,
    interest: usize,
}

/// A watcher's end of the fan-out.
pub(super) struct Subscription {
    /// The first position it receives (every later published change it matches follows).
    pub from: i64,
    pub queue: mpsc::Receiver<Arc<Published>>,
    /// Set when the hub dropped it for falling behind.
    pub lagging: Arc<AtomicBool>,
}

/// See the module documentation.
pub(super) struct Hub {
    db: Database,
    settings: FeedSettings,
    state: Mutex<State>,
    /// Wakes the reader when interest appears.
    interested: Notify,
    /// Whether the reader follows the table (`head` is set).
    ready: watch::Sender<bool>,
    started: AtomicBool,
    shutdown: CancellationToken,
}

/// Keeps the reader running while held (one per watcher).
pub(super) struct Interest(Arc<Hub>);

impl Drop for Interest {
    fn drop(&mut self) {
        self.0.state().interest -= 1;
    }
}

impl Hub {
    pub fn new(db: Database, settings: FeedSettings, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            db,
            settings,
            state: Mutex::default(),
            interested: Notify::new(),
            ready: watch::Sender::new(false),
            started: AtomicBool::new(false),
            shutdown,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Interest in the feed: the reader runs (started on first use) while any is held.
    pub fn interest(self: &Arc<Self>) -> Interest {
        self.state().interest += 1;
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().run());
        }
        self.interested.notify_one();
        Interest(self.clone())
    }

    /// The published head (every position below it is published), once the reader
    /// follows; `Unavailable` if it cannot within `wait`. Call with interest held.
    pub async fn head(&self, wait: Duration) -> Result<i64, Error> {
        let mut ready = self.ready.subscribe();
        match tokio::time::timeout(wait, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => self.state().head.ok_or(Error::FeedUnavailable),
            _ => Err(Error::FeedUnavailable),
        }
    }

    /// A live queue of the changes published from now on (of `restaurant`'s bookings, or
    /// all), holding at most the configured buffer. Call with interest held.
    pub async fn subscribe(&self, restaurant: Option<RestaurantId>, wait: Duration) -> Result<Subscription, Error> {
        self.head(wait).await?;
        let mut state = self.state();
        let from = state.head.ok_or(Error::FeedUnavailable)?;
        let (queue, receiver) = mpsc::channel(self.settings.buffer.max(1));
        let lagging = Arc::new(AtomicBool::new(false));
        state.slots.push(Slot { restaurant, queue, lagging: lagging.clone() });
        Ok(Subscription { from, queue: receiver, lagging })
    }

    /// The reader: parked while nobody is interested, else following the table.
    async fn run(self: Arc<Self>) {
        let wake = self.db.listen(store::changes::CHANNEL, self.shutdown.clone());
        let mut failures = 0u32;
        while !self.shutdown.is_cancelled() {
            if self.state().interest == 0 {
                tokio::select! {
                    _ = self.interested.notified() => {}
                    _ = self.shutdown.cancelled() => break,
                }
                continue;
            }
            let sequencer = match self.start().await {
                Ok(sequencer) => sequencer,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "change feed reader cannot start; retrying");
                    self.pause(self.settings.backoff.delay(failures)).await;
                    continue;
                }
            };
            failures = 0;
            self.follow(sequencer, &wake).await;
        }
        self.park(&mut self.state());
        tracing::info!("change feed reader stopped");
    }

    /// Sleeps for `delay`, or until shutdown.
    async fn pause(&self, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }

    /// Stops following: no head, no live queue (their watchers end).
    fn park(&self, state: &mut State) {
        state.head = None;
        state.slots.clear();
        self.ready.send_replace(false);
    }

    /// Follows the table from `sequencer`'s position until nobody is interested or
    /// shutdown, then parks; a failed pass is retried with backoff (the watchers wait
    /// meanwhile).
    async fn follow(&self, mut sequencer: Sequencer, wake: &Notify) {
        self.state().head = Some(sequencer.next());
        self.ready.send_replace(true);
        let mut gap_retry = GAP_RETRY.0;
        let mut failures = 0u32;
        let mut last_pass = Instant::now();
        loop {
            {
                // Under the lock that interest is taken under: a watcher arriving now
                // finds the reader following, or parked and about to start again.
                let mut state = self.state();
                if self.shutdown.is_cancelled() || state.interest == 0 {
                    return self.park(&mut state);
                }
            }
            tokio::time::sleep_until(last_pass + MIN_PASS_INTERVAL).await;
            last_pass = Instant::now();
            let pass = match self.read(sequencer.next()).await {
                Ok(pass) => {
                    failures = 0;
                    pass
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "change feed pass failed; retrying");
                    self.pause(self.settings.backoff.delay(failures)).await;
                    continue;
                }
            };
            let positions: Vec<i64> = pass.changes.iter().map(|c| c.position).collect();
            let complete = positions.len() < PASS_LIMIT as usize;
            let published = sequencer.advance(&positions, pass.xmin, pass.fence, complete);
            let mut changes = pass.changes;
            changes.truncate(published);
            self.publish(changes, sequencer.next());
            if !complete && published == positions.len() {
                continue;
            }
            let wait = if sequencer.is_waiting() {
                gap_retry = if published > 0 { GAP_RETRY.0 } else { (gap_retry * 2).min(GAP_RETRY.1) };
                gap_retry
            } else {
                self.settings.poll
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// One pass over the table from `from`.
    async fn read(&self, from: i64) -> Result<store::changes::Pass, Error> {
        let client = self.db.client().await?;
        store::changes::pass(&client, from, PASS_LIMIT).await
    }

    /// Where "now" is when the reader starts: after every position handed out so far, once
    /// each transaction that could still commit one has ended.
    async fn start(&self) -> Result<Sequencer, Error> {
        let client = self.db.client().await?;
        let issued = store::changes::last_issued(&client).await?;
        let fence = store::changes::fence(&client).await?;
        let mut delay = GAP_RETRY.0;
        while store::changes::xmin(&client).await? < fence {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return Err(Error::FeedUnavailable),
            }
            delay = (delay * 2).min(GAP_RETRY.1);
        }
        Ok(Sequencer::new(issued + 1))
    }

    /// Hands `changes` (published, in order) to every matching watcher and moves the head
    /// to `head`. A watcher whose queue is full is dropped as lagging; one gone is dropped.
    fn publish(&self, changes: Vec<StoredChange>, head: i64) {
        let changes: Vec<Arc<Published>> = changes.into_iter().map(Published::new).collect();
        let mut state = self.state();
        state.slots.retain(|slot| {
            for change in &changes {
                if slot.restaurant.as_ref().is_some_and(|r| *r != change.stored.booking.restaurant_id) {
                    continue;
                }
                match slot.queue.try_send(change.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        slot.lagging.store(true, Ordering::Release);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            !slot.queue.is_closed()
        });
        state.head = Some(head);
    }
}
