//! The change feed behind WatchBookingChanges.
//!
//! Every change of a booking's state is a row of `booking.changes`, written with the change
//! itself; its id is its position in the feed. One module per concern: `sequencer` decides
//! how far positions are final (ids commit out of order), `hub` is this process's one
//! reader of the table and its fan-out to the watchers, `watcher` is one call (catch-up,
//! then live), `cursor` the opaque text a client resumes from.
//!
//! The feed reads the database, never in-process events, so a watcher sees the changes
//! made through every replica, and every replica publishes the same sequence: a cursor
//! from one resumes on any other. Memory per watcher is bounded by its queues; a watcher
//! that falls further behind is ended with its cursor, never buffered without bound.

mod cursor;
mod hub;
mod sequencer;
mod watcher;

pub use cursor::Cursor;

use crate::{domain::values::RestaurantId, error::Error, store, store::changes::StoredChange};
use platform::{backoff::Backoff, db::Database, proto::booking::v1 as pb};
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Changes (or the closing error) queued for one call beyond its live queue.
const CALL_QUEUE: usize = 16;

/// Settings of the feed.
#[derive(Clone, Copy, Debug)]
pub struct FeedSettings {
    /// Changes a watcher's live queue holds: a watcher further behind is ended.
    pub buffer: usize,
    /// Longest pause of the reader with no wake-up.
    pub poll: Duration,
    /// Retry delays of the reader after a database failure.
    pub backoff: Backoff,
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the changes not yet published when the call is answered.
    Now,
    /// With the first change retained.
    Oldest,
    /// Right after the change a cursor names.
    After(Cursor),
}

/// A parsed WatchBookingChanges request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRequest {
    pub start: Start,
    /// Only this restaurant's bookings.
    pub restaurant: Option<RestaurantId>,
}

/// A change as the watchers share it: read once, and put in its wire form once, by the
/// first call that sends it.
pub struct Published {
    pub stored: StoredChange,
    pub message: OnceLock<pb::BookingChange>,
}

impl Published {
    fn new(stored: StoredChange) -> Arc<Self> {
        Arc::new(Self { stored, message: OnceLock::new() })
    }
}

/// What a watch streams: changes in feed order, then at most one error that ends it.
pub type Item = Result<Arc<Published>, Error>;

/// The feed of this process, shared by all calls.
pub struct Feed {
    hub: Arc<hub::Hub>,
    db: Database,
    settings: FeedSettings,
    shutdown: CancellationToken,
}

impl Feed {
    pub fn new(db: Database, settings: FeedSettings, shutdown: CancellationToken) -> Self {
        Self { hub: hub::Hub::new(db.clone(), settings, shutdown.clone()), db, settings, shutdown }
    }

    /// Starts a watch: its changes arrive on the returned queue. From now, the position is
    /// fixed before this returns; a cursor this feed never issued is refused.
    #[tracing::instrument(skip_all, fields(feed.start = ?request.start))]
    pub async fn watch(&self, request: WatchRequest) -> Result<mpsc::Receiver<Item>, Error> {
        let interest = self.hub.interest();
        let (from, live) = match request.start {
            Start::Now => {
                let subscription = self.hub.subscribe(request.restaurant.clone(), watcher::HUB_WAIT).await?;
                (subscription.from, Some(subscription))
            }
            Start::Oldest => (1, None),
            Start::After(cursor) => {
                let client = self.db.client().await?;
                if cursor.position() > store::changes::last_issued(&client).await? {
                    return Err(Error::CursorAhead);
                }
                (cursor.position() + 1, None)
            }
        };
        let (out, calls) = mpsc::channel(CALL_QUEUE);
        let watcher = watcher::Watcher {
            hub: self.hub.clone(),
            db: self.db.clone(),
            restaurant: request.restaurant,
            out,
            shutdown: self.shutdown.clone(),
            _interest: interest,
            from,
            slack: (self.settings.buffer / 2).max(1) as i64,
        };
        tokio::spawn(watcher.run(live));
        Ok(calls)
    }
}
