//! The SQL of the ledger, `notify.deliveries`.
//!
//! One function per query, each a single prepared statement, rows mapped to domain values
//! here and nowhere else. The ledger is a leased queue ([`platform::queue`]) for claiming
//! due deliveries and telling when the next one is due; recording an attempt's result is
//! the ledger's own (it is fenced by the attempt number, returns the delivery and wakes the
//! other replicas).
//!
//! It never sends mail and never holds a transaction open: every statement commits on its
//! own, so no lock outlives a query (leases in `locked_until` do the rest).

use crate::{
    domain::{Delivery, DeliveryKey, DeliveryState, Details, Kind, Recipient, SendRequest},
    error::Error,
};
use deadpool_postgres::Client;
use platform::{
    purge::{Purge, PurgeTable},
    queue::{LeasedQueue, QueueTable, qualified},
};
use std::{sync::LazyLock, time::Duration};
use tokio_postgres::Row;
use uuid::Uuid;

/// Deletes final deliveries past their retention, counted from the first SendOnce of
/// their key ([`platform::purge`]); a SendOnce for a purged key is a new one.
pub static PURGE: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "notify.deliveries",
        key: &["booking_id", "kind", "version"],
        age: "requested_at",
        finished: Some("state <> 'QUEUED'"),
        with: &[],
    })
});

/// The PostgreSQL channel a `NOTIFY` goes to when a delivery waits for a retry.
pub const CHANNEL: &str = "notify_deliveries";

/// The ledger columns every query returns, in [`delivery`]'s terms.
macro_rules! columns {
    () => {
        "booking_id, kind, version, recipient_email, recipient_name, details, state, message_id, attempts, \
         requested_at, stamp, sent_at, last_error, next_attempt_at"
    };
}

/// The ledger as a queue of QUEUED deliveries, due at `next_attempt_at`; a claim returns
/// [`columns!`].
static QUEUE: LazyLock<LeasedQueue> = LazyLock::new(|| {
    LeasedQueue::new(QueueTable {
        table: "notify.deliveries",
        key: &["booking_id", "kind", "version"],
        state: "state",
        open: "QUEUED",
        due: "next_attempt_at",
        returning: &qualified(columns!()),
        join: None,
    })
});

/// What recording a SendOnce request found.
#[derive(Debug)]
pub enum Recorded {
    /// This call recorded the key (QUEUED and leased to it, or SUPPRESSED).
    New(Delivery),
    /// The key was recorded before (or concurrently); this is that delivery.
    Existing(Delivery),
}

/// Records the key of `request`, or returns the delivery already recorded for it. A new
/// QUEUED row starts with attempt 1 leased for `lease`, so that its first sender owns it.
/// Usually one round trip; a second one when a concurrent caller won the insert.
#[tracing::instrument(skip_all, fields(booking.id = %request.key.booking_id, notification.kind = %request.key.kind, booking.version = request.key.version))]
pub async fn record(client: &Client, request: &SendRequest, lease: Duration) -> Result<Recorded, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH inserted AS (",
            " INSERT INTO notify.deliveries (booking_id, kind, version, recipient_email, recipient_name, details,",
            "  state, message_id, attempts, next_attempt_at, locked_until, stamp)",
            " VALUES ($1, $2, $3, $4, $5, $6, $7::text, $8, $9,",
            "  CASE WHEN $7::text = 'QUEUED' THEN now() END,",
            "  CASE WHEN $7::text = 'QUEUED' THEN now() + $10::int8 * interval '1 millisecond' END,",
            // The invitation's DTSTAMP: now, a second later per rank, and at least a
            // second after (before) every invitation of this version of a lower (higher)
            // rank already recorded, so that a calendar ends on the newest state whatever
            // order the kinds of one version are requested and arrive in.
            "  (SELECT LEAST(GREATEST(",
            "     date_trunc('second', now()) + notify.invitation_rank($2) * interval '1 second',",
            "     max(d.stamp) FILTER (WHERE notify.invitation_rank(d.kind) < notify.invitation_rank($2))",
            "       + interval '1 second'),",
            "     min(d.stamp) FILTER (WHERE notify.invitation_rank(d.kind) > notify.invitation_rank($2))",
            "       - interval '1 second')",
            "   FROM notify.deliveries d WHERE d.booking_id = $1 AND d.version = $3))",
            " ON CONFLICT (booking_id, kind, version) DO NOTHING",
            " RETURNING ",
            columns!(),
            ")",
            " SELECT true AS inserted, ",
            columns!(),
            " FROM inserted",
            " UNION ALL",
            " SELECT false AS inserted, ",
            columns!(),
            " FROM notify.deliveries",
            " WHERE booking_id = $1 AND kind = $2 AND version = $3 AND NOT EXISTS (SELECT 1 FROM inserted)"
        ))
        .await?;
    let key = &request.key;
    let (state, attempts) =
        if request.suppress { (DeliveryState::Suppressed, 0i32) } else { (DeliveryState::Queued, 1i32) };
    let details = serde_json::to_value(&request.details)
        .map_err(|e| Error::Internal(format!("details of {key} cannot be stored: {e}")))?;
    let rows = client
        .query(
            &statement,
            &[
                &key.booking_id,
                &key.kind.name(),
                &key.version,
                &request.recipient.email(),
                &request.recipient.name(),
                &details,
                &state.name(),
                &key.message_id(),
                &attempts,
                &millis(lease),
            ],
        )
        .await?;
    match rows.first() {
        Some(row) => {
            let inserted: bool = row.try_get("inserted")?;
            let delivery = delivery(row)?;
            Ok(if inserted { Recorded::New(delivery) } else { Recorded::Existing(delivery) })
        }
        // A concurrent first caller committed after this statement's snapshot was taken:
        // its row is visible to a new statement.
        None => match get(client, key).await? {
            Some(delivery) => Ok(Recorded::Existing(delivery)),
            None => Err(Error::Internal(format!("{key} neither inserted nor found"))),
        },
    }
}

/// The delivery of `key`, if recorded.
#[tracing::instrument(skip_all, fields(booking.id = %key.booking_id, notification.kind = %key.kind, booking.version = key.version))]
pub async fn get(client: &Client, key: &DeliveryKey) -> Result<Option<Delivery>, Error> {
    let statement = client
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM notify.deliveries WHERE booking_id = $1 AND kind = $2 AND version = $3"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&key.booking_id, &key.kind.name(), &key.version]).await?;
    row.as_ref().map(delivery).transpose()
}

/// Every delivery of a booking, oldest request first.
#[tracing::instrument(skip_all, fields(booking.id = %booking_id))]
pub async fn list(client: &Client, booking_id: Uuid) -> Result<Vec<Delivery>, Error> {
    let statement = client
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM notify.deliveries WHERE booking_id = $1 ORDER BY requested_at, version, kind"
        ))
        .await?;
    client.query(&statement, &[&booking_id]).await?.iter().map(delivery).collect()
}

/// Claims up to `limit` due QUEUED deliveries whose lease is free (skipping rows another
/// replica is claiming right now): each gets its next attempt number and a lease of
/// `lease`. Commits before returning, so the caller sends without holding a lock.
#[tracing::instrument(skip_all, fields(claimed = tracing::field::Empty))]
pub async fn claim_due(client: &Client, limit: u32, lease: Duration) -> Result<Vec<Delivery>, Error> {
    let rows = QUEUE.claim(client, i64::from(limit), lease).await?;
    tracing::Span::current().record("claimed", rows.len());
    rows.iter().map(delivery).collect()
}

/// How long until the earliest QUEUED delivery can be claimed (its due time or the end
/// of its lease, whichever is later); `None` when nothing is queued.
#[tracing::instrument(skip_all)]
pub async fn next_due_in(client: &Client) -> Result<Option<Duration>, Error> {
    Ok(QUEUE.next_due(client).await?)
}

/// Records that attempt `attempt` delivered `key`. A success is recorded even if the
/// lease passed meanwhile, as long as the row is still QUEUED. `None` when it is not.
#[tracing::instrument(skip_all, fields(booking.id = %key.booking_id, notification.kind = %key.kind, booking.version = key.version))]
pub async fn record_sent(client: &Client, key: &DeliveryKey) -> Result<Option<Delivery>, Error> {
    let statement = client
        .prepare_cached(concat!(
            "UPDATE notify.deliveries",
            " SET state = 'SENT', sent_at = now(), last_error = NULL, next_attempt_at = NULL, locked_until = NULL",
            " WHERE booking_id = $1 AND kind = $2 AND version = $3 AND state = 'QUEUED'",
            " RETURNING ",
            columns!()
        ))
        .await?;
    let row = client.query_opt(&statement, &[&key.booking_id, &key.kind.name(), &key.version]).await?;
    row.as_ref().map(delivery).transpose()
}

/// Records that attempt `attempt` of `key` failed transiently: QUEUED again, due after
/// `after`, lease released, and a `NOTIFY` so every worker recomputes its next wake-up.
/// `None` when the attempt no longer owns the row (a later attempt claimed it).
#[tracing::instrument(skip_all, fields(booking.id = %key.booking_id, notification.kind = %key.kind, booking.version = key.version))]
pub async fn record_retry(
    client: &Client,
    key: &DeliveryKey,
    attempt: u32,
    after: Duration,
    error: &str,
) -> Result<Option<Delivery>, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH updated AS (",
            " UPDATE notify.deliveries",
            " SET last_error = $5, locked_until = NULL, next_attempt_at = now() + $6::int8 * interval '1 millisecond'",
            " WHERE booking_id = $1 AND kind = $2 AND version = $3 AND state = 'QUEUED' AND attempts = $4",
            " RETURNING ",
            columns!(),
            ")",
            " SELECT ",
            columns!(),
            ", pg_notify('notify_deliveries', '')::text AS woken FROM updated"
        ))
        .await?;
    let row = client
        .query_opt(
            &statement,
            &[&key.booking_id, &key.kind.name(), &key.version, &attempt_number(attempt), &error, &millis(after)],
        )
        .await?;
    row.as_ref().map(delivery).transpose()
}

/// Records that attempt `attempt` of `key` failed for good: FAILED with `error`.
/// `None` when the attempt no longer owns the row.
#[tracing::instrument(skip_all, fields(booking.id = %key.booking_id, notification.kind = %key.kind, booking.version = key.version))]
pub async fn record_failed(
    client: &Client,
    key: &DeliveryKey,
    attempt: u32,
    error: &str,
) -> Result<Option<Delivery>, Error> {
    let statement = client
        .prepare_cached(concat!(
            "UPDATE notify.deliveries",
            " SET state = 'FAILED', last_error = $5, next_attempt_at = NULL, locked_until = NULL",
            " WHERE booking_id = $1 AND kind = $2 AND version = $3 AND state = 'QUEUED' AND attempts = $4",
            " RETURNING ",
            columns!()
        ))
        .await?;
    let row = client
        .query_opt(&statement, &[&key.booking_id, &key.kind.name(), &key.version, &attempt_number(attempt), &error])
        .await?;
    row.as_ref().map(delivery).transpose()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn attempt_number(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

/// Maps a row of [`columns!`] to a delivery.
fn delivery(row: &Row) -> Result<Delivery, Error> {
    let booking_id: Uuid = row.try_get("booking_id")?;
    let kind_name: &str = row.try_get("kind")?;
    let kind = Kind::from_name(kind_name).ok_or_else(|| Error::Internal(format!("unknown kind {kind_name:?}")))?;
    let version: i64 = row.try_get("version")?;
    let key = DeliveryKey { booking_id, kind, version };
    let state_name: &str = row.try_get("state")?;
    let state = DeliveryState::from_name(state_name)
        .ok_or_else(|| Error::Internal(format!("{key}: unknown state {state_name:?}")))?;
    let details: Details = serde_json::from_value(row.try_get("details")?)
        .map_err(|e| Error::Internal(format!("{key}: unreadable details: {e}")))?;
    let attempts: i32 = row.try_get("attempts")?;
    Ok(Delivery {
        key,
        recipient: Recipient::from_stored(row.try_get("recipient_email")?, row.try_get("recipient_name")?),
        details,
        state,
        message_id: row.try_get("message_id")?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        requested_at: row.try_get("requested_at")?,
        stamp: row.try_get("stamp")?,
        sent_at: row.try_get("sent_at")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    })
}
