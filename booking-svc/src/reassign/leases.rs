//! The leases on reassign jobs: claiming, renewing, forgetting.
//!
//! A job is leased to one process at a time (`SKIP LOCKED`), so replicas share the jobs and
//! a dead replica's jobs are taken over once its leases run out. A job this process no
//! longer holds is forgotten.

use super::{Dispatcher, Tracked};
use crate::{error::Error, store};
use platform::proto::{
    assign::v1::{AssignRequest, reassign_request::Command as StreamCommand},
    duration, timestamp,
};
use std::{collections::HashMap, time::Duration};
use uuid::Uuid;

impl Dispatcher {
    /// Claims due jobs and submits them; returns when to look again.
    pub(super) async fn claim(&mut self) -> tokio::time::Instant {
        let poll = tokio::time::Instant::now() + self.settings.poll;
        match self.try_claim().await {
            Ok(Some(next)) => poll.min(tokio::time::Instant::now() + next.max(Duration::from_millis(10))),
            Ok(None) => poll,
            Err(error) => {
                tracing::warn!(%error, "claiming reassign jobs failed");
                tokio::time::Instant::now() + self.settings.reconnect.base.max(Duration::from_millis(100))
            }
        }
    }

    async fn try_claim(&mut self) -> Result<Option<Duration>, Error> {
        let room = self.settings.max_jobs.saturating_sub(self.tracked.len()) as i64;
        let client = self.db.client().await?;
        if room > 0 {
            // Hand-offs whose requests died before recording become jobs to recover.
            let adopted = store::jobs::adopt_handoffs(&client, room).await?;
            if adopted > 0 {
                tracing::debug!(adopted, "took over hand-offs whose requests did not record in time");
            }
            let jobs = store::jobs::claim(&client, self.owner, room, self.settings.lease).await?;
            drop(client);
            for job in jobs {
                if !job.recorded
                    && let Err(error) = self.recover(&job).await
                {
                    tracing::warn!(booking.id = %job.booking_id, %error, "could not recover an interrupted request; will retry");
                    continue;
                }
                let request = AssignRequest {
                    booking_id: job.booking_id.to_string(),
                    version: job.version,
                    restaurant_id: job.restaurant_id.clone(),
                    party_size: job.party_size,
                    start_time: Some(timestamp(job.start_time)),
                    duration: Some(duration(job.duration)),
                };
                tracing::debug!(booking.id = %job.booking_id, booking.version = job.version, "submitting reassign job");
                self.tracked.insert(
                    job.booking_id,
                    Tracked {
                        version: job.version,
                        request: request.clone(),
                        attempts: job.attempts,
                        created_at: job.created_at,
                        carrier: job.carrier.clone(),
                    },
                );
                let carrier = job.carrier;
                self.send(StreamCommand::Submit(request), carrier);
            }
            let client = self.db.client().await?;
            return store::jobs::next_due(&client, self.owner).await;
        }
        // Full: look again at the next poll (or when a tracked job finishes).
        Ok(None)
    }

    /// Extends the leases of tracked jobs and forgets those no longer held (closed by an
    /// edit or cancel, or taken over after this process stalled past its lease).
    pub(super) async fn renew(&mut self) {
        if self.tracked.is_empty() {
            return;
        }
        let held = match self.db.client().await {
            Ok(client) => store::jobs::renew(&client, self.owner, self.settings.lease).await,
            Err(error) => Err(error.into()),
        };
        match held {
            Ok(held) => {
                let held: HashMap<Uuid, i64> = held.into_iter().collect();
                self.tracked.retain(|id, t| held.get(id) == Some(&t.version));
            }
            Err(error) => tracing::warn!(%error, "renewing reassign leases failed"),
        }
    }

    pub(super) async fn refresh_gauge(&self) {
        if let Ok(client) = self.db.client().await
            && let Ok((n, oldest_age)) = store::jobs::count_open(&client).await
        {
            self.metrics.set_jobs_waiting(n, std::time::Duration::from_secs_f64(oldest_age.max(0.0)));
        }
    }
}
