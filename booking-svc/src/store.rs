//! All of booking-svc's SQL: one function per query, each with a cached prepared
//! statement, mapping rows to domain types. Transactions are opened by the callers (the
//! flow and the workers), never here, and nothing here calls another service.
//!
//! Columns with a domain type (migration V3) get their parameters cast to the domain's base
//! type (`$2::int4`), so a statement binds plain Rust values: the client would otherwise be
//! asked for the domain type itself.

use crate::domain::{
    Booking, BookingStatus, EmailKind, Event, emails::EmailPayload, paging::ListQuery, reassign::JobState,
};
use crate::error::Error;
use deadpool_postgres::GenericClient;
use platform::{db::Prepared, params};
use serde_json::Value;
use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};
use tokio_postgres::Row;
use uuid::Uuid;

type Result<T> = std::result::Result<T, Error>;

/// A stored W3C trace-context carrier.
pub type Carrier = HashMap<String, String>;

macro_rules! booking_columns {
    () => {
        "id, restaurant_id, guest_name, guest_email, guest_phone, party_size, start_time, duration_s, notes, \
         status, version, table_ids, created_at, updated_at"
    };
}

fn booking_from_row(row: &Row) -> Result<Booking> {
    let status: String = row.try_get(9)?;
    let duration_s: i32 = row.try_get(7)?;
    Ok(Booking {
        id: row.try_get(0)?,
        restaurant_id: row.try_get(1)?,
        guest_name: row.try_get(2)?,
        guest_email: row.try_get(3)?,
        guest_phone: row.try_get(4)?,
        party_size: row.try_get(5)?,
        start_time: row.try_get(6)?,
        duration: Duration::from_secs(u64::try_from(duration_s).map_err(|_| Error::corrupt("negative duration"))?),
        notes: row.try_get(8)?,
        status: BookingStatus::from_stored(&status).ok_or_else(|| Error::corrupt("unknown booking status"))?,
        version: row.try_get(10)?,
        table_ids: row.try_get(11)?,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn carrier_json(carrier: &Carrier) -> Value {
    serde_json::to_value(carrier).unwrap_or(Value::Object(Default::default()))
}

fn carrier_from(value: Value) -> Carrier {
    serde_json::from_value(value).unwrap_or_default()
}

fn duration_s(d: Duration) -> Result<i32> {
    i32::try_from(d.as_secs()).map_err(|_| Error::corrupt("duration out of range"))
}

// ---------------------------------------------------------------- bookings

/// The booking, locked `FOR UPDATE` until the transaction ends.
pub async fn lock_booking(db: &impl GenericClient, id: Uuid) -> Result<Option<Booking>> {
    let stmt = db
        .prepare_cached(concat!("SELECT ", booking_columns!(), " FROM booking.bookings WHERE id = $1 FOR UPDATE"))
        .await?;
    db.query_opt(&stmt, &[&id]).await?.as_ref().map(booking_from_row).transpose()
}

/// The booking as stored now.
pub async fn get_booking(db: &impl GenericClient, id: Uuid) -> Result<Option<Booking>> {
    let stmt =
        db.prepare_cached(concat!("SELECT ", booking_columns!(), " FROM booking.bookings WHERE id = $1")).await?;
    db.query_opt(&stmt, &[&id]).await?.as_ref().map(booking_from_row).transpose()
}

/// Inserts a new booking (its version requested at `updated_at`), handed off to the
/// background after `due_in` unless its request records the inline result first.
pub async fn insert_booking(
    db: &impl GenericClient,
    b: &Booking,
    due_in: Duration,
    suppress_emails: bool,
    carrier: &Carrier,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(concat!(
            "INSERT INTO booking.bookings (",
            booking_columns!(),
            ", version_at, handoff_due_at, handoff_suppress, handoff_trace) VALUES ($1, $2::text, $3, $4, $5, $6::int4, \
             $7, $8::int4, $9::text, $10::text, $11::int8, $12, $13, $14, $14, now() + $15::float8 * interval '1 second', $16, $17)"
        ))
        .await?;
    Ok(Prepared::new(
        stmt,
        params![
            b.id,
            b.restaurant_id.clone(),
            b.guest_name.clone(),
            b.guest_email.clone(),
            b.guest_phone.clone(),
            b.party_size,
            b.start_time,
            duration_s(b.duration)?,
            b.notes.clone(),
            b.status.as_str(),
            b.version,
            b.table_ids.clone(),
            b.created_at,
            b.updated_at,
            secs(due_in),
            suppress_emails,
            carrier_json(carrier),
        ],
    ))
}

/// Applies an edit in one statement, atomic on its own, if the booking is still at
/// `read_version` and not cancelled (always so when the row is locked; otherwise a
/// concurrent change is seen, the statement re-checking the row once it gets it): stores
/// the new version `b` (requested at `updated_at`), handed off to the background after
/// `due_in` unless its request records the inline result first, closes the booking's open
/// jobs of older versions as superseded, and appends `events` (at least one) to the
/// history, in order. Returns one row: 1 when it applied, 0 when not ([`written`]).
pub async fn apply_edit(
    db: &impl GenericClient,
    read_version: i64,
    b: &Booking,
    due_in: Duration,
    suppress_emails: bool,
    carrier: &Carrier,
    events: &[Event],
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "WITH updated AS ( \
               UPDATE booking.bookings SET party_size = $2::int4, start_time = $3, duration_s = $4::int4, notes = $5::text, \
                 status = $6::text, version = $7::int8, table_ids = $8, updated_at = $9, version_at = $9, \
                 handoff_due_at = now() + $10::float8 * interval '1 second', handoff_suppress = $11, handoff_trace = $12 \
               WHERE id = $1 AND version = $17::int8 AND status <> 'CANCELLED' \
               RETURNING id), \
             superseded AS ( \
               UPDATE booking.reassign_jobs j SET state = 'SUPERSEDED', closed_at = now(), lease_owner = NULL, lease_until = NULL \
               FROM updated WHERE j.booking_id = updated.id AND j.state = 'OPEN' AND j.version < $7), \
             events AS ( \
               INSERT INTO booking.history (booking_id, type, version, detail, later) \
               SELECT id, $13, $14, $15, $16 FROM updated) \
             SELECT count(*) FROM updated",
        )
        .await?;
    let (kind, version, detail, later) = history_row(events)?;
    Ok(Prepared::new(
        stmt,
        params![
            b.id,
            b.party_size,
            b.start_time,
            duration_s(b.duration)?,
            b.notes.clone(),
            b.status.as_str(),
            b.version,
            b.table_ids.clone(),
            b.updated_at,
            secs(due_in),
            suppress_emails,
            carrier_json(carrier),
            kind,
            version,
            detail,
            later,
            read_version,
        ],
    ))
}

/// Records an inline confirmation in one statement (atomic on its own), if the booking is
/// still PENDING at `version` and still handed to its request (the background has not
/// taken it over: `handoff_due_at` set, so the version has no job); otherwise nothing
/// changes. Every condition is on the booking's row, which the update locks: a concurrent
/// edit, cancel or takeover that commits first is seen, the statement re-checking the row
/// once it gets it. Status CONFIRMED with `table_ids`, the hand-off cleared, `events`
/// appended to the history and, with `email`, the email queued unless queued before (its
/// EMAIL_QUEUED event then follows `events`). Returns one row: 1 when it confirmed, 0 when
/// not ([`written`]).
#[allow(clippy::too_many_arguments)]
pub async fn confirm_inline(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    table_ids: &[String],
    now: SystemTime,
    events: &[Event],
    email: Option<(EmailKind, &EmailPayload, &Event)>,
    carrier: &Carrier,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "WITH confirmed AS ( \
               UPDATE booking.bookings SET status = 'CONFIRMED', table_ids = $3, updated_at = $4, handoff_due_at = NULL \
               WHERE id = $1 AND version = $2::int8 AND status = 'PENDING' AND handoff_due_at IS NOT NULL \
               RETURNING id, version), \
             queued AS ( \
               INSERT INTO booking.outbox (booking_id, version, kind, payload, trace_context) \
               SELECT id, version, $8::text, $9::jsonb, $10::jsonb FROM confirmed WHERE $8::text IS NOT NULL \
               ON CONFLICT (booking_id, kind, version) DO NOTHING RETURNING booking_id), \
             events AS ( \
               INSERT INTO booking.history (booking_id, type, version, detail, later) \
               SELECT $1, $5::text, $6::int8, $7::jsonb, $13::jsonb || COALESCE( \
                 (SELECT jsonb_agg(jsonb_build_object('type', $11::text, 'version', $2::bigint, 'detail', $12::jsonb)) \
                  FROM queued), '[]') \
               FROM confirmed) \
             SELECT count(*) FROM confirmed",
        )
        .await?;
    let (first_kind, first_version, first_detail, later) = history_row(events)?;
    let (kind, payload, queued_type, queued_detail) = match email {
        Some((kind, payload, event)) => (
            Some(kind.as_str()),
            Some(serde_json::to_value(payload).map_err(|e| Error::corrupt(format!("email payload: {e}")))?),
            Some(event.kind.as_str()),
            Some(event.detail.clone()),
        ),
        None => (None, None, None, None),
    };
    Ok(Prepared::new(
        stmt,
        params![
            booking_id,
            version,
            table_ids.to_vec(),
            now,
            first_kind,
            first_version,
            first_detail,
            kind,
            payload,
            carrier_json(carrier),
            queued_type,
            queued_detail,
            later,
        ],
    ))
}

/// Whether a guarded write ([`apply_edit`], [`confirm_inline`]) was made, from its rows
/// (one row, the count of the booking rows it wrote).
pub fn written(rows: &[Row]) -> Result<bool> {
    match rows.first() {
        Some(row) => Ok(row.try_get::<_, i64>(0)? == 1),
        None => Ok(false),
    }
}

/// The history row of `events` (at least one) written together: the first event's type,
/// version and detail, and the events after it, in order, as `later`.
fn history_row(events: &[Event]) -> Result<(&'static str, i64, Value, Value)> {
    let (first, rest) = events.split_first().ok_or_else(|| Error::corrupt("a history row without an event"))?;
    let later: Vec<LaterEvent> = rest
        .iter()
        .map(|e| LaterEvent { kind: e.kind.as_str().to_string(), version: e.version, detail: e.detail.clone() })
        .collect();
    let later = serde_json::to_value(later).map_err(|e| Error::corrupt(format!("history events: {e}")))?;
    Ok((first.kind.as_str(), first.version, first.detail.clone(), later))
}

/// Sets status and tables of the current version (confirm or cancel), which ends its
/// hand-off; returns the booking as stored and the time its version was requested.
pub async fn set_status(
    db: &impl GenericClient,
    id: Uuid,
    status: BookingStatus,
    table_ids: &[String],
    now: SystemTime,
) -> Result<(Booking, SystemTime)> {
    let stmt = db
        .prepare_cached(concat!(
            "UPDATE booking.bookings SET status = $2::text, table_ids = $3, updated_at = $4, handoff_due_at = NULL \
             WHERE id = $1 RETURNING ",
            booking_columns!(),
            ", version_at"
        ))
        .await?;
    let row = db.query_one(&stmt, &[&id, &status.as_str(), &table_ids, &now]).await?;
    Ok((booking_from_row(&row)?, row.try_get(14)?))
}

/// Sets status and tables of the current version (statement form of [`set_status`]).
pub async fn set_status_statement(
    db: &impl GenericClient,
    id: Uuid,
    status: BookingStatus,
    table_ids: &[String],
    now: SystemTime,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.bookings SET status = $2::text, table_ids = $3, updated_at = $4, handoff_due_at = NULL \
             WHERE id = $1",
        )
        .await?;
    Ok(Prepared::new(stmt, params![id, status.as_str(), table_ids.to_vec(), now]))
}

/// One page of a restaurant's bookings (one more than the page size, to know if more follow).
pub async fn list_bookings(db: &impl GenericClient, q: &ListQuery) -> Result<Vec<Booking>> {
    let stmt = db
        .prepare_cached(concat!(
            "SELECT ",
            booking_columns!(),
            " FROM booking.bookings WHERE restaurant_id = $1::text \
             AND ($2::timestamptz IS NULL OR start_time >= $2) \
             AND ($3::timestamptz IS NULL OR start_time < $3) \
             AND ($4::text IS NULL OR status = $4) \
             AND ($5::timestamptz IS NULL OR (start_time, id) > ($5, $6::uuid)) \
             ORDER BY start_time, id LIMIT $7"
        ))
        .await?;
    let status = q.status.map(|s| s.as_str());
    let (after_time, after_id) = match q.after {
        Some((t, id)) => (Some(t), Some(id)),
        None => (None, None),
    };
    let rows = db
        .query(&stmt, &[&q.restaurant_id.as_str(), &q.from, &q.to, &status, &after_time, &after_id, &(q.page_size + 1)])
        .await?;
    rows.iter().map(booking_from_row).collect()
}

// ---------------------------------------------------------------- history

/// Appends events to a booking's history, in order.
pub async fn append_history(db: &impl GenericClient, booking_id: Uuid, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    history_statement(db, booking_id, events).await?.query(db).await?;
    Ok(())
}

/// The statement appending `events` (at least one) to a booking's history, in order (one
/// row: see [`history_row`]).
pub async fn history_statement(db: &impl GenericClient, booking_id: Uuid, events: &[Event]) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO booking.history (booking_id, type, version, detail, later) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    let (kind, version, detail, later) = history_row(events)?;
    Ok(Prepared::new(stmt, params![booking_id, kind, version, detail, later]))
}

/// A stored history event.
pub struct StoredEvent {
    pub at: SystemTime,
    pub kind: String,
    pub version: i64,
    pub detail: Value,
}

/// A booking's history, oldest first (the events of each row in the order written).
pub async fn history(db: &impl GenericClient, booking_id: Uuid) -> Result<Vec<StoredEvent>> {
    let stmt = db
        .prepare_cached(
            "SELECT at, type, version, detail, later FROM booking.history WHERE booking_id = $1 ORDER BY id",
        )
        .await?;
    let rows = db.query(&stmt, &[&booking_id]).await?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let at: SystemTime = r.try_get(0)?;
        events.push(StoredEvent { at, kind: r.try_get(1)?, version: r.try_get(2)?, detail: r.try_get(3)? });
        let later: Vec<LaterEvent> = serde_json::from_value(r.try_get(4)?)
            .map_err(|e| Error::corrupt(format!("history: malformed later events: {e}")))?;
        events.extend(later.into_iter().map(|e| StoredEvent {
            at,
            kind: e.kind,
            version: e.version,
            detail: e.detail,
        }));
    }
    Ok(events)
}

/// An event of a history row after its first one, as stored in `later`.
#[derive(serde::Serialize, serde::Deserialize)]
struct LaterEvent {
    #[serde(rename = "type")]
    kind: String,
    version: i64,
    detail: Value,
}

// ---------------------------------------------------------------- idempotency

/// What an idempotency key already stands for.
pub struct KeyUse {
    pub fingerprint: String,
    pub booking_id: Uuid,
    /// The booking as first answered; `None` while the first request is in flight (or
    /// was cut short by a crash).
    pub response: Option<Value>,
}

/// Takes `key` for this request, or returns what it was used for before. Blocks while a
/// concurrent transaction holds the same key, so two concurrent first uses cannot both win.
pub async fn claim_key(
    db: &impl GenericClient,
    rpc: &str,
    key: &str,
    fingerprint: &str,
    booking_id: Uuid,
) -> Result<Option<KeyUse>> {
    let insert = db
        .prepare_cached(
            "INSERT INTO booking.idempotency (rpc, key, fingerprint, booking_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (rpc, key) DO NOTHING",
        )
        .await?;
    if db.execute(&insert, &[&rpc, &key, &fingerprint, &booking_id]).await? == 1 {
        return Ok(None);
    }
    match key_use(db, rpc, key).await? {
        Some(used) => Ok(Some(used)),
        None => Err(Error::corrupt(format!("idempotency key {rpc}/{key} neither claimed nor found"))),
    }
}

/// What `key` was used for, if it was (reads only).
pub async fn key_use(db: &impl GenericClient, rpc: &str, key: &str) -> Result<Option<KeyUse>> {
    let select = db
        .prepare_cached("SELECT fingerprint, booking_id, response FROM booking.idempotency WHERE rpc = $1 AND key = $2")
        .await?;
    let Some(row) = db.query_opt(&select, &[&rpc, &key]).await? else { return Ok(None) };
    Ok(Some(KeyUse { fingerprint: row.try_get(0)?, booking_id: row.try_get(1)?, response: row.try_get(2)? }))
}

/// Deletes up to `limit` idempotency keys older than `retention`, oldest first; returns how
/// many.
pub async fn purge_keys(db: &impl GenericClient, retention: Duration, limit: i64) -> Result<u64> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM booking.idempotency WHERE (rpc, key) IN ( \
               SELECT rpc, key FROM booking.idempotency \
               WHERE created_at < now() - $1::float8 * interval '1 second' ORDER BY created_at LIMIT $2)",
        )
        .await?;
    Ok(db.execute(&stmt, &[&secs(retention), &limit]).await?)
}

/// Stores the answer given for a key.
pub async fn save_key_response(db: &impl GenericClient, rpc: &str, key: &str, response: &Value) -> Result<()> {
    key_response_statement(db, rpc, key, response).await?.query(db).await?;
    Ok(())
}

/// The statement storing the answer given for a key.
pub async fn key_response_statement(
    db: &impl GenericClient,
    rpc: &str,
    key: &str,
    response: &Value,
) -> Result<Prepared> {
    let stmt = db.prepare_cached("UPDATE booking.idempotency SET response = $3 WHERE rpc = $1 AND key = $2").await?;
    Ok(Prepared::new(stmt, params![rpc.to_string(), key.to_string(), response.clone()]))
}

// ---------------------------------------------------------------- reassign jobs

/// The request of `version` records that the booking stays PENDING: if the version is
/// still handed to it, the hand-off ends and the version's job is written, recorded and
/// due at once (with the hand-off's email and trace settings). Returns whether it was
/// (`false`: the background took the version over, or it is not current). Call with the
/// booking row locked.
pub async fn job_from_handoff(db: &impl GenericClient, booking_id: Uuid, version: i64) -> Result<bool> {
    let stmt = db
        .prepare_cached(
            "WITH ended AS ( \
               UPDATE booking.bookings SET handoff_due_at = NULL \
               WHERE id = $1 AND version = $2::int8 AND handoff_due_at IS NOT NULL \
               RETURNING id, version, handoff_suppress, handoff_trace) \
             INSERT INTO booking.reassign_jobs (booking_id, version, state, due_at, recorded, suppress_emails, trace_context) \
             SELECT id, version, 'OPEN', now(), true, handoff_suppress, handoff_trace FROM ended",
        )
        .await?;
    Ok(db.execute(&stmt, &[&booking_id, &version]).await? == 1)
}

/// Takes over up to `limit` hand-offs that came due (their requests died or stalled before
/// recording the inline result): each ends, and its version gets an open job, due at once
/// and not yet recorded, which the dispatcher then claims and recovers. `SKIP LOCKED`:
/// replicas, and requests recording right now, are not waited for. Returns how many.
pub async fn adopt_handoffs(db: &impl GenericClient, limit: i64) -> Result<u64> {
    let stmt = db
        .prepare_cached(
            "WITH due AS ( \
               SELECT id FROM booking.bookings WHERE handoff_due_at <= now() \
               ORDER BY handoff_due_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
             ended AS ( \
               UPDATE booking.bookings b SET handoff_due_at = NULL FROM due WHERE b.id = due.id \
               RETURNING b.id, b.version, b.handoff_suppress, b.handoff_trace) \
             INSERT INTO booking.reassign_jobs (booking_id, version, state, due_at, recorded, suppress_emails, trace_context) \
             SELECT id, version, 'OPEN', now(), false, handoff_suppress, handoff_trace FROM ended \
             ON CONFLICT (booking_id, version) DO NOTHING",
        )
        .await?;
    Ok(db.execute(&stmt, &[&limit]).await?)
}

/// Closes every open job of a booking; returns how many.
pub async fn close_open_jobs(db: &impl GenericClient, booking_id: Uuid, state: JobState) -> Result<u64> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET state = $2::text, closed_at = now(), lease_owner = NULL, lease_until = NULL \
             WHERE booking_id = $1 AND state = 'OPEN'",
        )
        .await?;
    Ok(db.execute(&stmt, &[&booking_id, &state.as_str()]).await?)
}

/// A job as the flow needs it.
pub struct Job {
    pub open: bool,
    pub recorded: bool,
    pub suppress_emails: bool,
    pub attempts: i32,
}

/// The job of one booking version (call with the booking row locked).
pub async fn job(db: &impl GenericClient, booking_id: Uuid, version: i64) -> Result<Option<Job>> {
    let stmt = db
        .prepare_cached(
            "SELECT state, recorded, suppress_emails, attempts FROM booking.reassign_jobs \
             WHERE booking_id = $1 AND version = $2",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&booking_id, &version]).await? else { return Ok(None) };
    let state: String = row.try_get(0)?;
    Ok(Some(Job {
        open: state == JobState::Open.as_str(),
        recorded: row.try_get(1)?,
        suppress_emails: row.try_get(2)?,
        attempts: row.try_get(3)?,
    }))
}

/// Closes the job of one version if it is open (statement form of [`close_job`]).
pub async fn close_job_statement(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    state: JobState,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET state = $3::text, closed_at = now(), lease_owner = NULL, lease_until = NULL \
             WHERE booking_id = $1 AND version = $2 AND state = 'OPEN'",
        )
        .await?;
    Ok(Prepared::new(stmt, params![booking_id, version, state.as_str()]))
}

/// Closes the job of one version if it is open; returns whether it was.
pub async fn close_job(db: &impl GenericClient, booking_id: Uuid, version: i64, state: JobState) -> Result<bool> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET state = $3::text, closed_at = now(), lease_owner = NULL, lease_until = NULL \
             WHERE booking_id = $1 AND version = $2 AND state = 'OPEN'",
        )
        .await?;
    Ok(db.execute(&stmt, &[&booking_id, &version, &state.as_str()]).await? == 1)
}

/// Marks the job's inline result as recorded and, when `due_now`, makes it due at once;
/// returns whether it was recorded before (`None`: no open job). Call with the booking
/// row locked.
pub async fn mark_job_recorded(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    due_now: bool,
) -> Result<Option<bool>> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs j SET recorded = true, \
             due_at = CASE WHEN $3 THEN LEAST(j.due_at, now()) ELSE j.due_at END \
             FROM booking.reassign_jobs old \
             WHERE j.booking_id = $1 AND j.version = $2 AND j.state = 'OPEN' \
               AND old.booking_id = j.booking_id AND old.version = j.version \
             RETURNING old.recorded",
        )
        .await?;
    Ok(db.query_opt(&stmt, &[&booking_id, &version, &due_now]).await?.map(|r| r.try_get(0)).transpose()?)
}

/// Records a background attempt on the job.
pub async fn record_job_attempt(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    attempts: i32,
    next_attempt_at: Option<SystemTime>,
    last_error: &str,
) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET attempts = GREATEST(attempts, $3), next_attempt_at = $4, last_error = $5 \
             WHERE booking_id = $1 AND version = $2",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &version, &attempts, &next_attempt_at, &last_error]).await?;
    Ok(())
}

/// A job claimed by this process, with what a submit needs.
pub struct ClaimedJob {
    pub booking_id: Uuid,
    pub version: i64,
    pub recorded: bool,
    pub attempts: i32,
    pub created_at: SystemTime,
    pub carrier: Carrier,
    pub restaurant_id: String,
    pub party_size: i32,
    pub start_time: SystemTime,
    pub duration: Duration,
}

/// Claims up to `limit` due open jobs nobody holds (or whose lease ran out) for `owner`
/// for `lease`; `SKIP LOCKED` lets replicas claim side by side.
pub async fn claim_jobs(db: &impl GenericClient, owner: Uuid, limit: i64, lease: Duration) -> Result<Vec<ClaimedJob>> {
    let stmt = db
        .prepare_cached(
            "WITH due AS ( \
               SELECT booking_id, version FROM booking.reassign_jobs \
               WHERE state = 'OPEN' AND due_at <= now() AND (lease_until IS NULL OR lease_until <= now()) \
               ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE booking.reassign_jobs j SET lease_owner = $1, lease_until = now() + $3::float8 * interval '1 second' \
             FROM due, booking.bookings b \
             WHERE j.booking_id = due.booking_id AND j.version = due.version AND b.id = j.booking_id \
             RETURNING j.booking_id, j.version, j.recorded, j.attempts, j.created_at, j.trace_context, \
               b.restaurant_id, b.party_size, b.start_time, b.duration_s",
        )
        .await?;
    let rows = db.query(&stmt, &[&owner, &limit, &secs(lease)]).await?;
    rows.iter()
        .map(|r| {
            let duration_s: i32 = r.try_get(9)?;
            Ok(ClaimedJob {
                booking_id: r.try_get(0)?,
                version: r.try_get(1)?,
                recorded: r.try_get(2)?,
                attempts: r.try_get(3)?,
                created_at: r.try_get(4)?,
                carrier: carrier_from(r.try_get(5)?),
                restaurant_id: r.try_get(6)?,
                party_size: r.try_get(7)?,
                start_time: r.try_get(8)?,
                duration: Duration::from_secs(u64::try_from(duration_s).unwrap_or(0)),
            })
        })
        .collect()
}

/// Extends every open job leased by `owner`; returns the jobs still held.
pub async fn renew_jobs(db: &impl GenericClient, owner: Uuid, lease: Duration) -> Result<Vec<(Uuid, i64)>> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET lease_until = now() + $2::float8 * interval '1 second' \
             WHERE lease_owner = $1 AND state = 'OPEN' RETURNING booking_id, version",
        )
        .await?;
    let rows = db.query(&stmt, &[&owner, &secs(lease)]).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Gives up every lease of `owner` (on shutdown), so another replica takes the jobs at once.
pub async fn drop_leases(db: &impl GenericClient, owner: Uuid) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.reassign_jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND state = 'OPEN'",
        )
        .await?;
    db.execute(&stmt, &[&owner]).await?;
    Ok(())
}

/// How long until an open job not held by `owner` can be claimed, or a hand-off comes due
/// (`None`: neither waits).
pub async fn next_job_due(db: &impl GenericClient, owner: Uuid) -> Result<Option<Duration>> {
    let stmt = db
        .prepare_cached(
            "SELECT EXTRACT(EPOCH FROM LEAST( \
               (SELECT min(GREATEST(due_at, COALESCE(lease_until, due_at))) FROM booking.reassign_jobs \
                WHERE state = 'OPEN' AND lease_owner IS DISTINCT FROM $1), \
               (SELECT min(handoff_due_at) FROM booking.bookings WHERE handoff_due_at IS NOT NULL)) - now())::float8",
        )
        .await?;
    let seconds: Option<f64> = db.query_one(&stmt, &[&owner]).await?.try_get(0)?;
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Open jobs (waiting for tables), and how long ago the oldest was opened in seconds (0
/// when none is open).
pub async fn open_jobs(db: &impl GenericClient) -> Result<(i64, f64)> {
    let stmt = db
        .prepare_cached(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM booking.reassign_jobs WHERE state = 'OPEN'",
        )
        .await?;
    let row = db.query_one(&stmt, &[]).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

// ---------------------------------------------------------------- outbox

/// Queues one email unless its (booking, kind, version) is already queued; returns
/// whether it was new.
pub async fn enqueue_email(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    kind: EmailKind,
    payload: &EmailPayload,
    carrier: &Carrier,
) -> Result<bool> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO booking.outbox (booking_id, version, kind, payload, trace_context) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (booking_id, kind, version) DO NOTHING",
        )
        .await?;
    let payload = serde_json::to_value(payload).map_err(|e| Error::corrupt(format!("email payload: {e}")))?;
    Ok(db.execute(&stmt, &[&booking_id, &version, &kind.as_str(), &payload, &carrier_json(carrier)]).await? == 1)
}

/// Queues one email unless its (booking, kind, version) is already queued, and when it
/// was new appends `event` (the EMAIL_QUEUED event) to the history, in one statement.
pub async fn enqueue_email_statement(
    db: &impl GenericClient,
    booking_id: Uuid,
    version: i64,
    kind: EmailKind,
    payload: &EmailPayload,
    carrier: &Carrier,
    event: &Event,
) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "WITH queued AS ( \
               INSERT INTO booking.outbox (booking_id, version, kind, payload, trace_context) VALUES ($1, $2, $3, $4, $5) \
               ON CONFLICT (booking_id, kind, version) DO NOTHING RETURNING booking_id) \
             INSERT INTO booking.history (booking_id, type, version, detail) SELECT booking_id, $6, $7, $8 FROM queued",
        )
        .await?;
    let payload = serde_json::to_value(payload).map_err(|e| Error::corrupt(format!("email payload: {e}")))?;
    Ok(Prepared::new(
        stmt,
        params![
            booking_id,
            version,
            kind.as_str(),
            payload,
            carrier_json(carrier),
            event.kind.as_str(),
            event.version,
            event.detail.clone()
        ],
    ))
}

/// An email claimed for dispatch, with the booking's state at claim time.
pub struct ClaimedEmail {
    pub id: i64,
    pub booking_id: Uuid,
    pub version: i64,
    pub kind: EmailKind,
    pub payload: EmailPayload,
    pub attempts: i32,
    pub carrier: Carrier,
    pub current_version: i64,
    pub current_status: BookingStatus,
}

/// Claims up to `limit` due emails for `lease` (`SKIP LOCKED`: replicas share the work).
pub async fn claim_emails(db: &impl GenericClient, limit: i64, lease: Duration) -> Result<Vec<ClaimedEmail>> {
    let stmt = db
        .prepare_cached(
            "WITH due AS ( \
               SELECT id FROM booking.outbox \
               WHERE state = 'QUEUED' AND due_at <= now() AND (locked_until IS NULL OR locked_until <= now()) \
               ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE booking.outbox o SET locked_until = now() + $2::float8 * interval '1 second', attempts = o.attempts + 1 \
             FROM due, booking.bookings b WHERE o.id = due.id AND b.id = o.booking_id \
             RETURNING o.id, o.booking_id, o.version, o.kind, o.payload, o.attempts, o.trace_context, b.version, b.status",
        )
        .await?;
    let rows = db.query(&stmt, &[&limit, &secs(lease)]).await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get(3)?;
            let status: String = r.try_get(8)?;
            Ok(ClaimedEmail {
                id: r.try_get(0)?,
                booking_id: r.try_get(1)?,
                version: r.try_get(2)?,
                kind: EmailKind::from_stored(&kind).ok_or_else(|| Error::corrupt("unknown email kind"))?,
                payload: serde_json::from_value(r.try_get(4)?)
                    .map_err(|e| Error::corrupt(format!("email payload: {e}")))?,
                attempts: r.try_get(5)?,
                carrier: carrier_from(r.try_get(6)?),
                current_version: r.try_get(7)?,
                current_status: BookingStatus::from_stored(&status)
                    .ok_or_else(|| Error::corrupt("unknown booking status"))?,
            })
        })
        .collect()
}

/// A dispatched email's end: its final state and the history event that says so.
pub struct FinishedEmail {
    pub id: i64,
    pub booking_id: Uuid,
    pub state: &'static str,
    pub error: Option<String>,
    pub event: Event,
}

/// Ends the lives of dispatched emails in one statement: each row still queued gets its
/// final state (`DONE`, `DROPPED` or `FAILED`) and its event is appended to its booking's
/// history; rows no longer queued are left alone, without an event.
pub async fn finish_emails(db: &impl GenericClient, finished: &[FinishedEmail]) -> Result<()> {
    if finished.is_empty() {
        return Ok(());
    }
    let stmt = db
        .prepare_cached(
            "WITH input AS ( \
               SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::jsonb[]) \
               WITH ORDINALITY AS i(id, booking_id, state, error, type, version, detail, n)), \
             done AS ( \
               UPDATE booking.outbox o SET state = input.state, finished_at = now(), locked_until = NULL, \
                 last_error = COALESCE(input.error, o.last_error) \
               FROM input WHERE o.id = input.id AND o.state = 'QUEUED' RETURNING o.id) \
             INSERT INTO booking.history (booking_id, type, version, detail) \
             SELECT input.booking_id, input.type, input.version, input.detail FROM input JOIN done USING (id) ORDER BY input.n",
        )
        .await?;
    let ids: Vec<i64> = finished.iter().map(|f| f.id).collect();
    let bookings: Vec<Uuid> = finished.iter().map(|f| f.booking_id).collect();
    let states: Vec<&str> = finished.iter().map(|f| f.state).collect();
    let errors: Vec<Option<&str>> = finished.iter().map(|f| f.error.as_deref()).collect();
    let types: Vec<&str> = finished.iter().map(|f| f.event.kind.as_str()).collect();
    let versions: Vec<i64> = finished.iter().map(|f| f.event.version).collect();
    let details: Vec<&Value> = finished.iter().map(|f| &f.event.detail).collect();
    db.execute(&stmt, &[&ids, &bookings, &states, &errors, &types, &versions, &details]).await?;
    Ok(())
}

/// Puts an email back for another try after `delay`.
pub async fn retry_email(db: &impl GenericClient, id: i64, delay: Duration, error: &str) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.outbox SET due_at = now() + $2::float8 * interval '1 second', locked_until = NULL, last_error = $3 \
             WHERE id = $1 AND state = 'QUEUED'",
        )
        .await?;
    db.execute(&stmt, &[&id, &secs(delay), &error]).await?;
    Ok(())
}

/// How long until a queued email can be claimed (`None`: nothing queued).
pub async fn next_email_due(db: &impl GenericClient) -> Result<Option<Duration>> {
    let stmt = db
        .prepare_cached(
            "SELECT EXTRACT(EPOCH FROM min(GREATEST(due_at, COALESCE(locked_until, due_at))) - now())::float8 \
             FROM booking.outbox WHERE state = 'QUEUED'",
        )
        .await?;
    let seconds: Option<f64> = db.query_one(&stmt, &[]).await?.try_get(0)?;
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Queued emails and the age of the oldest, in seconds.
pub async fn outbox_depth(db: &impl GenericClient) -> Result<(i64, f64)> {
    let stmt = db
        .prepare_cached(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM booking.outbox WHERE state = 'QUEUED'",
        )
        .await?;
    let row = db.query_one(&stmt, &[]).await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

// ---------------------------------------------------------------- release tasks

/// Writes (or re-opens) the task that releases a cancelled booking's tables.
pub async fn enqueue_release(db: &impl GenericClient, booking_id: Uuid, carrier: &Carrier) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO booking.release_tasks (booking_id, trace_context) VALUES ($1, $2) \
             ON CONFLICT (booking_id) DO UPDATE SET state = 'OPEN', due_at = now(), locked_until = NULL, finished_at = NULL",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &carrier_json(carrier)]).await?;
    Ok(())
}

/// A release task claimed by this process.
pub struct ClaimedRelease {
    pub booking_id: Uuid,
    pub attempts: i32,
    pub carrier: Carrier,
}

/// Claims up to `limit` due release tasks for `lease`.
pub async fn claim_releases(db: &impl GenericClient, limit: i64, lease: Duration) -> Result<Vec<ClaimedRelease>> {
    let stmt = db
        .prepare_cached(
            "WITH due AS ( \
               SELECT booking_id FROM booking.release_tasks \
               WHERE state = 'OPEN' AND due_at <= now() AND (locked_until IS NULL OR locked_until <= now()) \
               ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE booking.release_tasks r SET locked_until = now() + $2::float8 * interval '1 second', attempts = r.attempts + 1 \
             FROM due WHERE r.booking_id = due.booking_id RETURNING r.booking_id, r.attempts, r.trace_context",
        )
        .await?;
    let rows = db.query(&stmt, &[&limit, &secs(lease)]).await?;
    rows.iter()
        .map(|r| {
            Ok(ClaimedRelease {
                booking_id: r.try_get(0)?,
                attempts: r.try_get(1)?,
                carrier: carrier_from(r.try_get(2)?),
            })
        })
        .collect()
}

/// Ends a release task in `state` (`DONE` or `FAILED`).
pub async fn finish_release(db: &impl GenericClient, booking_id: Uuid, state: &str, error: Option<&str>) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.release_tasks SET state = $2, finished_at = now(), locked_until = NULL, last_error = $3 \
             WHERE booking_id = $1 AND state = 'OPEN'",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &state, &error]).await?;
    Ok(())
}

/// Puts a release task back for another try after `delay`.
pub async fn retry_release(db: &impl GenericClient, booking_id: Uuid, delay: Duration, error: &str) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE booking.release_tasks SET due_at = now() + $2::float8 * interval '1 second', locked_until = NULL, \
             last_error = $3 WHERE booking_id = $1 AND state = 'OPEN'",
        )
        .await?;
    db.execute(&stmt, &[&booking_id, &secs(delay), &error]).await?;
    Ok(())
}

/// How long until a release task can be claimed (`None`: none open).
pub async fn next_release_due(db: &impl GenericClient) -> Result<Option<Duration>> {
    let stmt = db
        .prepare_cached(
            "SELECT EXTRACT(EPOCH FROM min(GREATEST(due_at, COALESCE(locked_until, due_at))) - now())::float8 \
             FROM booking.release_tasks WHERE state = 'OPEN'",
        )
        .await?;
    let seconds: Option<f64> = db.query_one(&stmt, &[]).await?.try_get(0)?;
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

// ---------------------------------------------------------------- wake-ups

/// Channel woken when an email becomes due.
pub const OUTBOX_CHANNEL: &str = "booking_outbox";
/// Channel woken when a reassign job becomes due.
pub const REASSIGN_CHANNEL: &str = "booking_reassign";
/// Channel woken when a release task is written.
pub const RELEASE_CHANNEL: &str = "booking_release";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventType;
    use serde_json::json;

    #[test]
    fn events_written_together_read_back_in_order_from_one_row() {
        let events = [
            Event::new(EventType::InlineAttempt, 3, json!({ "result": "ASSIGNED" })),
            Event::new(EventType::Confirmed, 3, json!({ "table_ids": ["t1"] })),
            Event::new(EventType::EmailQueued, 3, json!({ "kind": "MODIFICATION_CONFIRMED" })),
        ];
        let (kind, version, detail, later) = history_row(&events).expect("row");
        assert_eq!((kind, version, &detail), ("INLINE_ATTEMPT", 3, &events[0].detail));
        let read: Vec<(String, i64, Value)> = serde_json::from_value::<Vec<LaterEvent>>(later)
            .expect("later events")
            .into_iter()
            .map(|e| (e.kind, e.version, e.detail))
            .collect();
        let expected: Vec<(String, i64, Value)> =
            events[1..].iter().map(|e| (e.kind.as_str().to_string(), e.version, e.detail.clone())).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn a_single_event_has_nothing_later_and_no_event_is_no_row() {
        let (_, _, _, later) = history_row(&[Event::new(EventType::Edited, 2, json!({}))]).expect("row");
        assert_eq!(later, json!([]));
        assert!(history_row(&[]).is_err());
        assert!(serde_json::from_value::<Vec<LaterEvent>>(json!([{ "type": "EDITED" }])).is_err(), "version missing");
    }
}
