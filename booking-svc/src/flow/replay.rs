//! Idempotent replays of requests whose key was used before.
//!
//! The first answer is given again, or a refusal when the key came with other
//! parameters.

use super::{Answer, CREATE, EDIT, Flow, Result};
use crate::{
    domain::{
        requests::{EditRequest, NewBooking},
        values::IdempotencyKey,
    },
    error::Error,
    store,
};
use deadpool_postgres::GenericClient;

impl Flow {
    /// The first answer to a create whose idempotency key was used before, if it was; reads
    /// only. For a retry that is no longer valid as a new request (its start time has passed
    /// since it was first made): the first answer still stands.
    pub async fn replay_create(&self, request: &NewBooking) -> Result<Option<Answer>> {
        self.replay_if_used(CREATE, request.idempotency_key.as_ref(), &request.fingerprint()).await
    }

    /// The first answer to an edit whose idempotency key was used before, if it was (as
    /// [`Flow::replay_create`]).
    pub async fn replay_edit(&self, request: &EditRequest) -> Result<Option<Answer>> {
        self.replay_if_used(EDIT, request.idempotency_key.as_ref(), &request.fingerprint()).await
    }

    async fn replay_if_used(
        &self,
        rpc: &str,
        key: Option<&IdempotencyKey>,
        fingerprint: &str,
    ) -> Result<Option<Answer>> {
        let Some(key) = key else { return Ok(None) };
        let client = self.db.client().await?;
        match store::idempotency::find(&client, rpc, key.as_str()).await? {
            Some(used) => self.replay(&client, used, fingerprint).await.map(Some),
            None => Ok(None),
        }
    }

    /// The answer to a request whose idempotency key was used before.
    pub(super) async fn replay(
        &self,
        db: &impl GenericClient,
        used: store::idempotency::KeyUse,
        fingerprint: &str,
    ) -> Result<Answer> {
        if used.fingerprint != fingerprint {
            return Err(Error::KeyReused);
        }
        let booking = match used.response {
            Some(value) => serde_json::from_value(value).map_err(|e| Error::corrupt(format!("stored answer: {e}")))?,
            // The first request is still in flight, or was cut short after applying: its
            // effect is durable, so answer the booking as it is now.
            None => store::bookings::get(db, used.booking_id).await?.ok_or(Error::NotFound(used.booking_id))?,
        };
        tracing::info!(booking.id = %booking.id, "idempotent replay: answering the first result, doing nothing again");
        Ok(Answer::replay(booking))
    }
}
