//! The Reassign dispatcher, which carries the jobs of bookings that wait for tables.
//!
//! One long-lived `assign.v1.AssignService/Reassign` stream per process. The dispatcher
//! turns hand-offs that came due (a create or edit whose request did not record its inline
//! result in time) into jobs, claims due jobs with a lease each, recovers those whose
//! request died, submits them (again after every reconnect), and records every update in
//! the history; on ASSIGNED for the current version it confirms the booking and queues the
//! confirmation email in one transaction. One module per concern: `stream`, `leases`,
//! `recover` and `apply`.
//!
//! The job table (with the hand-offs in the booking rows) is the source of truth; the
//! stream is only transport. It never holds a transaction while waiting on the stream.
//!
//! Over the balanced channel to several assign-svc replicas the stream is one call, so it
//! lives on one replica: that is enough, as every replica's scheduler works the shared
//! job table and each replica forwards the updates of all of them. When that replica dies
//! or drains, the stream ends and is opened again (with backoff) on a replica that serves.

mod apply;
mod leases;
mod recover;
mod stream;

use crate::{crash::CrashHook, metrics::Metrics, store::Carrier};
use platform::{
    backoff::Backoff,
    db::Database,
    grpc::Channel,
    proto::assign::v1::{AssignRequest, ReassignRequest, assign_service_client::AssignServiceClient},
};
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the rest of the process asks of the dispatcher.
#[derive(Debug)]
enum Command {
    /// The booking was cancelled: stop tracking it and tell assign-svc.
    Cancel(Uuid),
}

/// A cheap handle to the dispatcher of this process.
#[derive(Clone, Debug)]
pub struct DispatcherHandle(mpsc::UnboundedSender<Command>);

impl DispatcherHandle {
    /// Stops tracking `booking_id` and sends `cancel` on the stream (best effort: the
    /// durable release task ends the job in assign-svc in any case).
    pub fn cancel(&self, booking_id: Uuid) {
        let _ = self.0.send(Command::Cancel(booking_id));
    }
}

/// Settings of the dispatcher.
#[derive(Clone, Copy, Debug)]
pub struct DispatcherSettings {
    pub lease: Duration,
    pub reconnect: Backoff,
    pub connect_timeout: Duration,
    pub poll: Duration,
    pub max_jobs: usize,
}

/// A job this process has claimed and submits.
struct Tracked {
    version: i64,
    request: AssignRequest,
    attempts: i32,
    created_at: SystemTime,
    carrier: Carrier,
}

/// The dispatcher's state; run with [`Dispatcher::run`].
pub struct Dispatcher {
    db: Database,
    client: AssignServiceClient<Channel>,
    settings: DispatcherSettings,
    metrics: Arc<Metrics>,
    crash: CrashHook,
    owner: Uuid,
    commands: mpsc::UnboundedReceiver<Command>,
    tracked: HashMap<Uuid, Tracked>,
    outgoing: Option<mpsc::UnboundedSender<ReassignRequest>>,
}

impl Dispatcher {
    /// A dispatcher and the handle the flows use to reach it.
    pub fn new(
        db: Database,
        client: AssignServiceClient<Channel>,
        settings: DispatcherSettings,
        metrics: Arc<Metrics>,
        crash: CrashHook,
    ) -> (Self, DispatcherHandle) {
        let (tx, commands) = mpsc::unbounded_channel();
        let owner = Uuid::new_v4();
        let dispatcher =
            Self { db, client, settings, metrics, crash, owner, commands, tracked: HashMap::new(), outgoing: None };
        (dispatcher, DispatcherHandle(tx))
    }
}
