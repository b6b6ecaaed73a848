//! One watcher: catches up from its cursor, then forwards the hub's live changes to its call.
//!
//! Behind the hub's head, it reads the changes table page by page (every position below
//! the head is final), waiting on its client between pages, so a slow client slows only
//! its own reads. Close to the head it subscribes, reads the few changes between, and from
//! then on forwards what the hub hands it, skipping what it sent already. It ends its call
//! with RESOURCE_EXHAUSTED when the hub dropped it for lagging, and with UNAVAILABLE on
//! shutdown, each with the cursor of the last change sent. It never holds a database
//! connection while waiting on its client.

use super::{Cursor, Item, Published, hub::Interest, hub::Subscription};
use crate::{domain::values::RestaurantId, error::Error, feed::hub::Hub, store};
use platform::db::Database;
use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Changes read per catch-up page.
const PAGE: i64 = 256;
/// How long a watcher waits for the hub to follow the table before giving up.
pub(super) const HUB_WAIT: Duration = Duration::from_secs(10);
/// How long a closing status waits for room in a call's queue once shutdown began.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What a step of the watcher leads to.
enum Next {
    Continue,
    /// The call ended (client gone, or its closing status sent).
    Stop,
}

pub(super) struct Watcher {
    pub hub: Arc<Hub>,
    pub db: Database,
    pub restaurant: Option<RestaurantId>,
    pub out: mpsc::Sender<Item>,
    pub shutdown: CancellationToken,
    /// Keeps the hub's reader running while this watcher lives.
    pub _interest: Interest,
    /// The first position not yet examined: every change below it was sent, or is not
    /// this watcher's.
    pub from: i64,
    /// How far behind the head a watcher may subscribe (the rest it reads first).
    pub slack: i64,
}

impl Watcher {
    /// Runs the watcher until its call ends; `live` when it subscribed already (from now).
    pub async fn run(mut self, live: Option<Subscription>) {
        let subscription = match live {
            Some(subscription) => subscription,
            None => match self.catch_up().await {
                Ok(Some(subscription)) => subscription,
                Ok(None) => return,
                Err(error) => return self.close(error).await,
            },
        };
        self.forward(subscription).await;
    }

    /// Reads up to the hub's head, then subscribes and reads what lies between; `None`
    /// when the call ended meanwhile.
    async fn catch_up(&mut self) -> Result<Option<Subscription>, Error> {
        loop {
            let head = self.hub.head(HUB_WAIT).await?;
            if head - self.from <= self.slack {
                break;
            }
            if let Next::Stop = self.copy(head).await? {
                return Ok(None);
            }
        }
        let subscription = self.hub.subscribe(self.restaurant.clone(), HUB_WAIT).await?;
        match self.copy(subscription.from).await? {
            Next::Continue => Ok(Some(subscription)),
            Next::Stop => Ok(None),
        }
    }

    /// Sends the changes at positions in `[from, until)`, page by page.
    async fn copy(&mut self, until: i64) -> Result<Next, Error> {
        while self.from < until {
            let page = {
                let client = self.db.client().await?;
                store::changes::page(&client, self.from, until, self.restaurant.as_ref(), PAGE).await?
            };
            let full = page.len() as i64 == PAGE;
            for change in page {
                if let Next::Stop = self.send(Published::new(change)).await {
                    return Ok(Next::Stop);
                }
            }
            if !full {
                self.from = until;
            }
        }
        Ok(Next::Continue)
    }

    /// Forwards the hub's changes until the call ends.
    async fn forward(&mut self, mut subscription: Subscription) {
        loop {
            if subscription.lagging.load(Ordering::Acquire) {
                return self.close(Error::FeedLagging { cursor: self.cursor() }).await;
            }
            let change = tokio::select! {
                change = subscription.queue.recv() => change,
                _ = self.shutdown.cancelled() => None,
                _ = self.out.closed() => return,
            };
            match change {
                Some(change) if change.stored.position < self.from => {}
                Some(change) => {
                    if let Next::Stop = self.send(change).await {
                        return;
                    }
                }
                None if subscription.lagging.load(Ordering::Acquire) => {
                    return self.close(Error::FeedLagging { cursor: self.cursor() }).await;
                }
                None => return self.close(Error::FeedClosing { cursor: self.cursor() }).await,
            }
        }
    }

    /// Sends one change to the call (waiting for room), or ends the call on shutdown.
    async fn send(&mut self, change: Arc<Published>) -> Next {
        let position = change.stored.position;
        tokio::select! {
            sent = self.out.send(Ok(change)) => {
                if sent.is_err() {
                    return Next::Stop;
                }
                self.from = position + 1;
                Next::Continue
            }
            _ = self.shutdown.cancelled() => {
                self.close(Error::FeedClosing { cursor: self.cursor() }).await;
                Next::Stop
            }
        }
    }

    /// The cursor of the last change sent (or of where the watcher started).
    fn cursor(&self) -> String {
        Cursor::after(self.from - 1).encode()
    }

    /// Ends the call with `error`, once its queue has room (a client that reads nothing
    /// holds only what the queue holds; past shutdown, it waits a little while at most).
    async fn close(&self, error: Error) {
        tokio::select! {
            _ = self.out.send(Err(error)) => {}
            _ = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(CLOSE_WAIT).await;
            } => {}
        }
    }
}
