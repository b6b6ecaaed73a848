//! Every SQL statement of assign-svc, one function per query, all prepared and cached.
//!
//! Owns the mapping between rows and domain types, and the NOTIFY payloads that carry
//! job updates (`assign_updates`) and wake-ups (`assign_wake`) to every replica. It must
//! never decide anything: the callers hold the rules and the transactions.

use crate::{
    domain::{
        AssignRequest, Assignment, BookingId, BookingState, CombineGroup, FloorPlan, JobState, JobView, LiveAssignment,
        PartySize, RestaurantId, Seats, Slot, Table, TableId, TableState, Version,
    },
    error::Error,
};
use deadpool_postgres::{ClientWrapper, GenericClient, Transaction};
use platform::{
    db::{IDLE_IN_TRANSACTION_TIMEOUT, Prepared},
    params,
};
use std::collections::HashMap;
use std::time::SystemTime;
use tokio_postgres::Row;
use uuid::Uuid;

/// NOTIFY channel of job updates; the payload is a [`JobPayload`] in JSON.
pub const UPDATES_CHANNEL: &str = "assign_updates";
/// NOTIFY channel that wakes schedulers (payload: the restaurant id).
pub const WAKE_CHANNEL: &str = "assign_wake";

/// Selects one `pg_notify` per row of the CTE named `$cte` (job rows), with the update as
/// JSON: booking `b`, version `v`, state `s`, attempts `a`, next attempt `n` (µs since the
/// epoch), last error `e` and the trace context `t` of the latest attempt.
macro_rules! notify_jobs_from {
    ($cte:literal) => {
        concat!(
            "SELECT pg_notify('assign_updates', json_build_object('b', booking_id, 'v', version, 's', state, ",
            "'a', attempts, 'n', (extract(epoch FROM next_attempt_at) * 1000000)::bigint, ",
            "'e', left(last_error, 1000), 't', attempt_trace_context)::text) FROM ",
            $cte
        )
    };
}

/// A job update as carried by NOTIFY.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct JobPayload {
    /// Booking id.
    pub b: Uuid,
    /// Version.
    pub v: i64,
    /// Stored job state.
    pub s: String,
    /// Attempts so far.
    pub a: i32,
    /// Next attempt, µs since the epoch.
    pub n: Option<i64>,
    /// Last error.
    pub e: Option<String>,
    /// W3C trace context of the attempt that produced the update.
    #[serde(default)]
    pub t: HashMap<String, String>,
}

/// A job claimed by this process under a lease.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// What to assign.
    pub request: AssignRequest,
    /// Attempts before this one.
    pub attempts: i32,
    /// Wake-up counter at claim time.
    pub wakes: i64,
    /// The lease.
    pub lease_id: Uuid,
    /// W3C trace context of the request that submitted the job.
    pub trace_context: HashMap<String, String>,
}

fn stored<T>(what: &str, parsed: Result<T, String>) -> Result<T, Error> {
    parsed.map_err(|reason| Error::Stored(format!("{what}: {reason}")))
}

fn slot_of(start: SystemTime, end: SystemTime) -> Result<Slot, Error> {
    Slot::from_bounds(start, end).ok_or_else(|| Error::Stored("empty time range".into()))
}

fn table_ids_of(ids: Vec<String>) -> Result<Vec<TableId>, Error> {
    ids.iter().map(|id| stored("table id", TableId::parse(id))).collect()
}

/// Starts the work of a transaction: sets its lock and statement timeouts to `millis`,
/// so PostgreSQL itself stops a statement that would outlive the caller's deadline, and
/// its idle timeout to the same, at most [`IDLE_IN_TRANSACTION_TIMEOUT`], so PostgreSQL
/// ends the session of a transaction left idle that long (its process frozen or stalled
/// between two round trips: what it holds is freed for the others, and it could not
/// commit in time anyway). With a restaurant, it also takes that restaurant's exclusive
/// lock until the end of the transaction (a floor plan replacement: it waits for the
/// assignments under way there, and they wait for it; see [`start_assignment`]).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn begin_work(tx: &Transaction<'_>, millis: u64, restaurant_id: Option<&RestaurantId>) -> Result<(), Error> {
    let (millis, idle) = timeouts(millis);
    match restaurant_id {
        Some(restaurant_id) => {
            let statement = tx
                .prepare_cached(
                    "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), \
                            set_config('idle_in_transaction_session_timeout', $3, true), \
                            pg_advisory_xact_lock(hashtextextended('assign.restaurant:' || $2, 0))",
                )
                .await?;
            tx.query_one(&statement, &[&millis, &restaurant_id.as_str(), &idle]).await?;
        }
        None => {
            let statement = tx
                .prepare_cached(
                    "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), \
                            set_config('idle_in_transaction_session_timeout', $2, true)",
                )
                .await?;
            tx.query_one(&statement, &[&millis, &idle]).await?;
        }
    }
    Ok(())
}

/// The lock and statement timeout (`millis`, at least 1) and the idle timeout (the same,
/// at most [`IDLE_IN_TRANSACTION_TIMEOUT`]) of a transaction, as PostgreSQL settings.
fn timeouts(millis: u64) -> (String, String) {
    let millis = millis.max(1);
    let idle = millis.min(u64::try_from(IDLE_IN_TRANSACTION_TIMEOUT.as_millis()).unwrap_or(u64::MAX));
    (millis.to_string(), idle.to_string())
}

fn booking_state(booking_id: BookingId, row: &Row) -> Result<BookingState, Error> {
    let held = match row.try_get::<_, Option<i64>>("assigned_version")? {
        None => None,
        Some(version) => Some(Assignment {
            booking_id,
            version: stored("assigned version", Version::parse(version))?,
            table_ids: table_ids_of(row.try_get::<_, Option<Vec<String>>>("table_ids")?.unwrap_or_default())?,
            slot: match (row.try_get("start_time")?, row.try_get("end_time")?) {
                (Some(start), Some(end)) => slot_of(start, end)?,
                _ => return Err(Error::Stored("assignment without a time range".into())),
            },
        }),
    };
    let held_restaurant = match row.try_get::<_, Option<String>>("restaurant_id")? {
        Some(id) => Some(stored("restaurant id", RestaurantId::parse(&id))?),
        None => None,
    };
    Ok(BookingState {
        newest_version: row.try_get("newest_version")?,
        released_version: row.try_get("released_version")?,
        held,
        held_restaurant,
    })
}

/// Locks the booking's row (creating it when new) and reads its state.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock_booking(tx: &Transaction<'_>, booking_id: BookingId) -> Result<BookingState, Error> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO assign.bookings AS b (booking_id) VALUES ($1) \
             ON CONFLICT (booking_id) DO UPDATE SET booking_id = EXCLUDED.booking_id \
             RETURNING newest_version, released_version, assigned_version, restaurant_id, table_ids, \
                       lower(during) AS start_time, upper(during) AS end_time",
        )
        .await?;
    let row = tx.query_one(&statement, &[&booking_id.uuid()]).await?;
    booking_state(booking_id, &row)
}

/// Starts an assignment transaction in one statement: the timeouts of [`begin_work`], the
/// restaurant's lock shared (so a floor plan replacement, which takes it exclusively,
/// waits for the assignments under way and they for it), then the exclusive lock of each
/// day the slot touches in that restaurant (`days`, first and last: [`Slot::days`]), then
/// [`lock_booking`]; read its row with [`booking_state_of`].
///
/// Assignments whose slots overlap share a day, so they take turns: each reads what the
/// previous one committed, and the deterministic best fit never sends two of them racing
/// for the same table. Assignments on other days of the restaurant go on meanwhile. Every
/// transaction takes its locks in the same order (restaurant, days ascending, booking),
/// so none waits on another in a cycle; the exclusion constraint stays the guarantee.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn start_assignment(
    client: &ClientWrapper,
    millis: u64,
    restaurant_id: &RestaurantId,
    days: (i64, i64),
    booking_id: BookingId,
) -> Result<Prepared, Error> {
    // The day keys have a prefix of their own, so no restaurant id can name a day's lock.
    let statement = client
        .prepare_cached(
            "WITH work AS ( \
               SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true), \
                      set_config('idle_in_transaction_session_timeout', $6, true), \
                      pg_advisory_xact_lock_shared(hashtextextended('assign.restaurant:' || $2, 0)), \
                      pg_advisory_xact_lock(hashtextextended('assign.restaurant-day:' || $4::int8 || ':' || $2, 0)), \
                      pg_advisory_xact_lock(hashtextextended('assign.restaurant-day:' || $5::int8 || ':' || $2, 0))) \
             INSERT INTO assign.bookings AS b (booking_id) SELECT $3 FROM work \
             ON CONFLICT (booking_id) DO UPDATE SET booking_id = EXCLUDED.booking_id \
             RETURNING newest_version, released_version, assigned_version, restaurant_id, table_ids, \
                       lower(during) AS start_time, upper(during) AS end_time",
        )
        .await?;
    let (first_day, last_day) = days;
    let (millis, idle) = timeouts(millis);
    Ok(Prepared::new(
        statement,
        params![millis, restaurant_id.as_str().to_string(), booking_id.uuid(), first_day, last_day, idle],
    ))
}

/// The booking's state from the rows of [`start_assignment`].
pub fn booking_state_of(booking_id: BookingId, rows: &[Row]) -> Result<BookingState, Error> {
    match rows.first() {
        Some(row) => booking_state(booking_id, row),
        None => Err(Error::Stored("starting an assignment returned no booking row".into())),
    }
}

/// The tables of a restaurant's plan, each with whether another booking holds it during
/// the request's slot (read them with [`tables_of`]). None when the restaurant has no plan.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn tables_for(client: &ClientWrapper, request: &AssignRequest) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(
            "SELECT t.table_id, t.seats, t.combine_group, (busy.table_id IS NOT NULL) AS busy \
             FROM assign.tables t \
             LEFT JOIN (SELECT DISTINCT r.table_id FROM assign.reservations r \
                        WHERE r.restaurant_id = $1 AND r.during && tstzrange($3, $4) AND r.booking_id <> $2) busy \
               ON busy.table_id = t.table_id \
             WHERE t.restaurant_id = $1",
        )
        .await?;
    Ok(Prepared::new(
        statement,
        params![
            request.restaurant_id.as_str().to_string(),
            request.booking_id.uuid(),
            request.slot.start(),
            request.slot.end()
        ],
    ))
}

/// The tables from the rows of [`tables_for`].
pub fn tables_of(rows: &[Row]) -> Result<Vec<TableState>, Error> {
    rows.iter()
        .map(|row| {
            Ok(TableState {
                id: stored("table id", TableId::parse(row.try_get("table_id")?))?,
                seats: stored("seats", Seats::parse(row.try_get("seats")?))?,
                group: stored("combine group", CombineGroup::parse(row.try_get("combine_group")?))?,
                free: !row.try_get::<_, bool>("busy")?,
            })
        })
        .collect()
}

/// Reserves `table_ids` for the request and records them as the booking's assignment,
/// finishes its waiting jobs of this version (`assigned`, counting the attempt when
/// `by_job`) and of older versions (`superseded`), and notifies their updates. With
/// `replaces` (where the booking's previous tables were: restaurant and slot), first
/// deletes those reservations, in the same statement, and answers (see
/// [`freed_capacity_wanted`]) whether jobs wait for capacity there. Fails with an
/// exclusion violation (23P01) when another transaction holds one of the tables.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn record_assignment(
    client: &ClientWrapper,
    request: &AssignRequest,
    table_ids: &[TableId],
    by_job: bool,
    replaces: Option<(&RestaurantId, Slot)>,
) -> Result<Prepared, Error> {
    // The old reservations are deleted before any new one is inserted (the insert waits
    // for the count of deleted rows), so a new table overlapping the booking's own old
    // one is no conflict.
    let statement = client
        .prepare_cached(concat!(
            "WITH freed AS ( \
               DELETE FROM assign.reservations WHERE booking_id = $1 AND $9::text IS NOT NULL RETURNING 1), \
             reserved AS ( \
               INSERT INTO assign.reservations (restaurant_id, table_id, booking_id, version, during) \
               SELECT $3, t, $1, $2, tstzrange($5, $6) FROM unnest($7::text[]) AS t \
               WHERE (SELECT count(*) FROM freed) >= 0 RETURNING 1), \
             booking AS ( \
               UPDATE assign.bookings SET newest_version = GREATEST(newest_version, $2), assigned_version = $2, \
                 restaurant_id = $3, party_size = $4, during = tstzrange($5, $6), table_ids = $7, assigned_at = now() \
               WHERE booking_id = $1 RETURNING 1), \
             finished AS ( \
               UPDATE assign.jobs SET state = CASE WHEN version = $2 THEN 'assigned' ELSE 'superseded' END, \
                 attempts = attempts + CASE WHEN $8 AND version = $2 THEN 1 ELSE 0 END, \
                 last_error = CASE WHEN version = $2 THEN NULL ELSE last_error END, \
                 finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND state = 'waiting' AND version <= $2 \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context), \
             notified AS (",
            notify_jobs_from!("finished"),
            ") \
             SELECT (SELECT count(*) FROM notified) AS notified, (SELECT count(*) FROM reserved) AS reserved, \
               EXISTS (SELECT 1 FROM assign.jobs WHERE $9::text IS NOT NULL AND restaurant_id = $9 \
                         AND state = 'waiting' AND booking_id <> $1 AND during && tstzrange($10, $11)) AS wanted"
        ))
        .await?;
    let ids: Vec<String> = table_ids.iter().map(|id| id.as_str().to_string()).collect();
    let (old_restaurant, old_start, old_end) = match replaces {
        Some((restaurant, slot)) => (Some(restaurant.as_str().to_string()), Some(slot.start()), Some(slot.end())),
        None => (None, None, None),
    };
    Ok(Prepared::new(
        statement,
        params![
            request.booking_id.uuid(),
            request.version.get(),
            request.restaurant_id.as_str().to_string(),
            request.party_size.get() as i32,
            request.slot.start(),
            request.slot.end(),
            ids,
            by_job,
            old_restaurant,
            old_start,
            old_end,
        ],
    ))
}

/// From the rows of [`record_assignment`]: whether jobs wait where the booking's previous
/// tables were freed (then they should be woken once the transaction committed).
pub fn freed_capacity_wanted(rows: &[Row]) -> Result<bool, Error> {
    match rows.first() {
        Some(row) => Ok(row.try_get("wanted")?),
        None => Ok(false),
    }
}

/// Records `version` as the newest seen for the booking and supersedes its older waiting
/// job (notifying the update).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn record_newest_version(
    client: &ClientWrapper,
    booking_id: BookingId,
    version: Version,
) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH booking AS ( \
               UPDATE assign.bookings SET newest_version = GREATEST(newest_version, $2) WHERE booking_id = $1 \
               RETURNING 1), \
             superseded AS ( \
               UPDATE assign.jobs SET state = 'superseded', finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND state = 'waiting' AND version < $2 \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context) ",
            notify_jobs_from!("superseded")
        ))
        .await?;
    Ok(Prepared::new(statement, params![booking_id.uuid(), version.get()]))
}

/// Whether this process still holds a claimed job's lease and the job still waits (a row
/// when it does). Takes
/// no lock (job rows are only locked by the last statements of a transaction, so wake-ups
/// never wait in a cycle); the recording statements check the lease again.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn job_still_leased(
    client: &ClientWrapper,
    booking_id: BookingId,
    version: Version,
    lease_id: Uuid,
) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(
            "SELECT 1 FROM assign.jobs WHERE booking_id = $1 AND version = $2 AND lease_id = $3 AND state = 'waiting'",
        )
        .await?;
    Ok(Prepared::new(statement, params![booking_id.uuid(), version.get(), lease_id]))
}

/// Records a failed attempt of a leased job: one more attempt, `last_error`, and either
/// the next attempt at `retry_at` (or now, when freed capacity woke the job since it was
/// claimed) or, with `retry_at` None, `gave_up`. Notifies the update. False when the
/// lease was lost meanwhile.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn record_job_failure(
    tx: &Transaction<'_>,
    job: &ClaimedJob,
    retry_at: Option<SystemTime>,
    last_error: &str,
) -> Result<bool, Error> {
    let rows = record_job_failure_statement(tx, job, retry_at, last_error).await?.query(tx).await?;
    Ok(!rows.is_empty())
}

/// The statement of [`record_job_failure`] (a row when it was recorded).
pub async fn record_job_failure_statement(
    client: &impl GenericClient,
    job: &ClaimedJob,
    retry_at: Option<SystemTime>,
    last_error: &str,
) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH failed AS ( \
               UPDATE assign.jobs SET attempts = attempts + 1, last_error = $4, \
                 state = CASE WHEN $5::timestamptz IS NULL THEN 'gave_up' ELSE 'waiting' END, \
                 next_attempt_at = CASE WHEN $5::timestamptz IS NULL THEN next_attempt_at \
                                        WHEN wakes <> $6 THEN now() ELSE $5 END, \
                 finished_at = CASE WHEN $5::timestamptz IS NULL THEN now() END, \
                 lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND version = $2 AND lease_id = $3 AND state = 'waiting' \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context) ",
            notify_jobs_from!("failed")
        ))
        .await?;
    Ok(Prepared::new(
        statement,
        params![
            job.request.booking_id.uuid(),
            job.request.version.get(),
            job.lease_id,
            last_error.to_string(),
            retry_at,
            job.wakes
        ],
    ))
}

/// Ends a leased job in a final state without counting an attempt (e.g. `superseded`
/// when a newer version turned up), notifying the update.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn finish_job(client: &ClientWrapper, job: &ClaimedJob, state: JobState) -> Result<Prepared, Error> {
    let statement = client
        .prepare_cached(concat!(
            "WITH finished AS ( \
               UPDATE assign.jobs SET state = $4, finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND version = $2 AND lease_id = $3 AND state = 'waiting' \
               RETURNING booking_id, version, state, attempts, next_attempt_at, last_error, attempt_trace_context) ",
            notify_jobs_from!("finished")
        ))
        .await?;
    Ok(Prepared::new(
        statement,
        params![job.request.booking_id.uuid(), job.request.version.get(), job.lease_id, state.as_str()],
    ))
}

/// Makes the waiting jobs of a restaurant due now (only those overlapping `slot`, when
/// given), bumping their wake-up counter, and wakes the schedulers of every replica when
/// there were any.
/// Locks the jobs in booking order and must run outside other transactions.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn wake_jobs(client: &ClientWrapper, restaurant_id: &RestaurantId, slot: Option<Slot>) -> Result<u64, Error> {
    let statement = client
        .prepare_cached(
            "WITH woken AS ( \
               UPDATE assign.jobs SET next_attempt_at = LEAST(next_attempt_at, now()), wakes = wakes + 1 \
               WHERE booking_id IN ( \
                 SELECT booking_id FROM assign.jobs \
                 WHERE restaurant_id = $1 AND state = 'waiting' \
                   AND ($2::timestamptz IS NULL OR during && tstzrange($2, $3)) \
                 ORDER BY booking_id FOR UPDATE) \
               RETURNING 1) \
             SELECT count(*) AS woken FROM woken",
        )
        .await?;
    let (start, end) = (slot.map(|s| s.start()), slot.map(|s| s.end()));
    let row = client.query_one(&statement, &[&restaurant_id.as_str(), &start, &end]).await?;
    let woken = row.try_get::<_, i64>("woken")?.max(0) as u64;
    if woken > 0 {
        let notify = client.prepare_cached("SELECT pg_notify('assign_wake', $1)").await?;
        client.query_one(&notify, &[&restaurant_id.as_str()]).await?;
    }
    Ok(woken)
}

fn claimed_job(row: &Row) -> Result<ClaimedJob, Error> {
    let start: SystemTime = row.try_get("start_time")?;
    let end: SystemTime = row.try_get("end_time")?;
    Ok(ClaimedJob {
        request: AssignRequest {
            booking_id: BookingId::from_uuid(row.try_get("booking_id")?),
            version: stored("version", Version::parse(row.try_get("version")?))?,
            restaurant_id: stored("restaurant id", RestaurantId::parse(row.try_get("restaurant_id")?))?,
            party_size: stored("party size", PartySize::parse(row.try_get("party_size")?))?,
            slot: slot_of(start, end)?,
        },
        attempts: row.try_get("attempts")?,
        wakes: row.try_get("wakes")?,
        lease_id: row.try_get("lease_id")?,
        trace_context: carrier_from(row.try_get("trace_context")?),
    })
}

/// A stored trace-context carrier (a JSON object of strings).
fn carrier_from(value: serde_json::Value) -> HashMap<String, String> {
    match value {
        serde_json::Value::Object(map) => {
            map.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string()))).collect()
        }
        _ => HashMap::new(),
    }
}

fn carrier_json(carrier: &HashMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(carrier.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect())
}

/// Remembers the trace context of the attempt a leased job is making, so the update it
/// publishes carries it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn set_attempt_context(
    client: &ClientWrapper,
    job: &ClaimedJob,
    carrier: &HashMap<String, String>,
) -> Result<(), Error> {
    let statement = client
        .prepare_cached("UPDATE assign.jobs SET attempt_trace_context = $3 WHERE booking_id = $1 AND lease_id = $2")
        .await?;
    client.execute(&statement, &[&job.request.booking_id.uuid(), &job.lease_id, &carrier_json(carrier)]).await?;
    Ok(())
}

/// Claims up to `limit` due jobs whose lease is free (skipping rows other replicas are
/// claiming), leasing them to this process for `lease_ms`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn claim_due_jobs(client: &ClientWrapper, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedJob>, Error> {
    let statement = client
        .prepare_cached(
            "WITH due AS ( \
               SELECT booking_id FROM assign.jobs \
               WHERE state = 'waiting' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now()) \
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             UPDATE assign.jobs j SET lease_id = gen_random_uuid(), locked_until = now() + $2 * interval '1 millisecond' \
             FROM due WHERE j.booking_id = due.booking_id \
             RETURNING j.booking_id, j.version, j.restaurant_id, j.party_size, lower(j.during) AS start_time, \
                       upper(j.during) AS end_time, j.attempts, j.wakes, j.lease_id, j.trace_context",
        )
        .await?;
    let rows = client.query(&statement, &[&limit, &(lease_ms as f64)]).await?;
    rows.iter().map(claimed_job).collect()
}

/// How many jobs wait, and in how many seconds the earliest of them is due (lease expiry
/// included; negative when overdue; `None` when no job waits), by the database's clock.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn waiting_jobs(client: &ClientWrapper) -> Result<(i64, Option<f64>), Error> {
    // No GREATEST(0, …) around the minimum: GREATEST ignores NULL, which would turn "no
    // job waits" into "one is due now" and make an idle scheduler spin.
    let statement = client
        .prepare_cached(
            "SELECT count(*) AS waiting, \
               extract(epoch FROM min(GREATEST(next_attempt_at, COALESCE(locked_until, next_attempt_at))) \
                                  - clock_timestamp())::float8 AS due_in \
             FROM assign.jobs WHERE state = 'waiting'",
        )
        .await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok((row.try_get("waiting")?, row.try_get("due_in")?))
}

fn job_view(row: &Row) -> Result<JobView, Error> {
    let state: String = row.try_get("state")?;
    Ok(JobView {
        version: row.try_get("version")?,
        state: JobState::parse(&state).ok_or_else(|| Error::Stored(format!("job state '{state}'")))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
    })
}

/// A booking's job as an update payload (to resend after missed notifications).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn job_payload(client: &ClientWrapper, booking_id: BookingId) -> Result<Option<JobPayload>, Error> {
    let statement = client
        .prepare_cached(
            "SELECT version, state, attempts, (extract(epoch FROM next_attempt_at) * 1000000)::bigint AS next_us, \
                    last_error, attempt_trace_context FROM assign.jobs WHERE booking_id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&booking_id.uuid()]).await? else { return Ok(None) };
    Ok(Some(JobPayload {
        b: booking_id.uuid(),
        v: row.try_get("version")?,
        s: row.try_get("state")?,
        a: row.try_get("attempts")?,
        n: row.try_get("next_us")?,
        e: row.try_get("last_error")?,
        t: carrier_from(row.try_get("attempt_trace_context")?),
    }))
}

/// Locks and reads a booking's job, if it has one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn lock_job(tx: &Transaction<'_>, booking_id: BookingId) -> Result<Option<JobView>, Error> {
    let statement = tx
        .prepare_cached(
            "SELECT version, state, attempts, next_attempt_at, last_error FROM assign.jobs WHERE booking_id = $1 \
             FOR UPDATE",
        )
        .await?;
    tx.query_opt(&statement, &[&booking_id.uuid()]).await?.as_ref().map(job_view).transpose()
}

/// Creates or replaces the booking's job with a fresh one for the request, due now, and
/// records its version as the newest seen.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn put_job(
    tx: &Transaction<'_>,
    request: &AssignRequest,
    trace_context: &HashMap<String, String>,
) -> Result<(), Error> {
    let statement = tx
        .prepare_cached(
            "WITH booking AS ( \
               UPDATE assign.bookings SET newest_version = GREATEST(newest_version, $2) WHERE booking_id = $1 \
               RETURNING 1) \
             INSERT INTO assign.jobs AS j (booking_id, version, restaurant_id, party_size, during, state, attempts, \
                                          next_attempt_at, last_error, wakes, lease_id, locked_until, submitted_at, \
                                          finished_at, trace_context, attempt_trace_context) \
             VALUES ($1, $2, $3, $4, tstzrange($5, $6), 'waiting', 0, now(), NULL, 0, NULL, NULL, now(), NULL, $7, '{}') \
             ON CONFLICT (booking_id) DO UPDATE SET version = EXCLUDED.version, restaurant_id = EXCLUDED.restaurant_id, \
               party_size = EXCLUDED.party_size, during = EXCLUDED.during, state = 'waiting', attempts = 0, \
               next_attempt_at = now(), last_error = NULL, lease_id = NULL, locked_until = NULL, \
               submitted_at = now(), finished_at = NULL, trace_context = EXCLUDED.trace_context, \
               attempt_trace_context = '{}'",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &request.booking_id.uuid(),
            &request.version.get(),
            &request.restaurant_id.as_str(),
            &(request.party_size.get() as i32),
            &request.slot.start(),
            &request.slot.end(),
            &carrier_json(trace_context),
        ],
    )
    .await?;
    Ok(())
}

/// Puts a cancelled job of this version back to waiting, due now, attempts kept.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn reopen_job(tx: &Transaction<'_>, booking_id: BookingId, version: Version) -> Result<(), Error> {
    let statement = tx
        .prepare_cached(
            "UPDATE assign.jobs SET state = 'waiting', next_attempt_at = now(), finished_at = NULL, lease_id = NULL, \
               locked_until = NULL WHERE booking_id = $1 AND version = $2",
        )
        .await?;
    tx.execute(&statement, &[&booking_id.uuid(), &version.get()]).await?;
    Ok(())
}

/// Notifies a `superseded` update for a job version that a submit just replaced.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn notify_superseded(
    tx: &Transaction<'_>,
    booking_id: BookingId,
    version: i64,
    attempts: i32,
) -> Result<(), Error> {
    let statement = tx
        .prepare_cached(
            "SELECT pg_notify('assign_updates', json_build_object('b', $1::uuid, 'v', $2::bigint, 's', 'superseded', \
               'a', $3::int, 'n', NULL, 'e', NULL)::text)",
        )
        .await?;
    tx.query_one(&statement, &[&booking_id.uuid(), &version, &attempts]).await?;
    Ok(())
}

/// Wakes the schedulers of every replica (on commit).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn notify_wake(tx: &Transaction<'_>, restaurant_id: &RestaurantId) -> Result<(), Error> {
    let statement = tx.prepare_cached("SELECT pg_notify('assign_wake', $1)").await?;
    tx.query_one(&statement, &[&restaurant_id.as_str()]).await?;
    Ok(())
}

/// Ends the booking's waiting job (the stream's client stopped caring); its tables stay.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn cancel_job(client: &ClientWrapper, booking_id: BookingId) -> Result<bool, Error> {
    let statement = client
        .prepare_cached(
            "UPDATE assign.jobs SET state = 'cancelled', finished_at = now(), lease_id = NULL, locked_until = NULL \
             WHERE booking_id = $1 AND state = 'waiting'",
        )
        .await?;
    Ok(client.execute(&statement, &[&booking_id.uuid()]).await? > 0)
}

/// Releases a booking: drops its reservations and assignment, records the newest version
/// seen as released, and ends its job. Returns the tables freed and where they were.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn release(tx: &Transaction<'_>, booking_id: BookingId) -> Result<u64, Error> {
    let statement = tx
        .prepare_cached(
            "WITH freed AS (DELETE FROM assign.reservations WHERE booking_id = $1 RETURNING 1), \
             booking AS ( \
               UPDATE assign.bookings SET released_version = newest_version, assigned_version = NULL, \
                 restaurant_id = NULL, party_size = NULL, during = NULL, table_ids = NULL, assigned_at = NULL \
               WHERE booking_id = $1 RETURNING 1), \
             job AS ( \
               UPDATE assign.jobs SET state = 'released', finished_at = now(), lease_id = NULL, locked_until = NULL \
               WHERE booking_id = $1 AND state = 'waiting' RETURNING 1) \
             SELECT (SELECT count(*) FROM freed) AS freed",
        )
        .await?;
    let row = tx.query_one(&statement, &[&booking_id.uuid()]).await?;
    Ok(row.try_get::<_, i64>("freed")?.max(0) as u64)
}

/// The assignment a booking holds, if any.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn assignment_of(client: &ClientWrapper, booking_id: BookingId) -> Result<Option<Assignment>, Error> {
    let statement = client
        .prepare_cached(
            "SELECT newest_version, released_version, assigned_version, restaurant_id, table_ids, \
                    lower(during) AS start_time, \
                    upper(during) AS end_time FROM assign.bookings WHERE booking_id = $1",
        )
        .await?;
    match client.query_opt(&statement, &[&booking_id.uuid()]).await? {
        Some(row) => Ok(booking_state(booking_id, &row)?.held),
        None => Ok(None),
    }
}

/// The live (not yet ended) assignments of a restaurant, found by their reservations.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn live_assignments(
    tx: &Transaction<'_>,
    restaurant_id: &RestaurantId,
) -> Result<Vec<LiveAssignment>, Error> {
    let statement = tx
        .prepare_cached(
            "SELECT b.booking_id, b.party_size, b.table_ids FROM assign.bookings b \
             WHERE b.assigned_version IS NOT NULL AND b.booking_id IN ( \
               SELECT r.booking_id FROM assign.reservations r \
               WHERE r.restaurant_id = $1 AND r.during && tstzrange(now(), NULL))",
        )
        .await?;
    let rows = tx.query(&statement, &[&restaurant_id.as_str()]).await?;
    rows.iter()
        .map(|row| {
            Ok(LiveAssignment {
                booking_id: BookingId::from_uuid(row.try_get("booking_id")?),
                party_size: stored("party size", PartySize::parse(row.try_get("party_size")?))?,
                table_ids: table_ids_of(row.try_get("table_ids")?)?,
            })
        })
        .collect()
}

/// Replaces a restaurant's tables with the plan's; returns when the plan was stored.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn replace_plan(tx: &Transaction<'_>, plan: &FloorPlan) -> Result<SystemTime, Error> {
    let upsert = tx
        .prepare_cached(
            "INSERT INTO assign.restaurants (restaurant_id, updated_at) VALUES ($1, clock_timestamp()) \
             ON CONFLICT (restaurant_id) DO UPDATE SET updated_at = clock_timestamp() RETURNING updated_at",
        )
        .await?;
    let delete = tx.prepare_cached("DELETE FROM assign.tables WHERE restaurant_id = $1").await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO assign.tables (restaurant_id, table_id, seats, combine_group) \
             SELECT $1, t.id, t.seats, t.grp FROM unnest($2::text[], $3::int[], $4::text[]) AS t(id, seats, grp)",
        )
        .await?;
    let restaurant = plan.restaurant_id().as_str();
    let ids: Vec<&str> = plan.tables().iter().map(|t| t.id.as_str()).collect();
    let seats: Vec<i32> = plan.tables().iter().map(|t| t.seats.get() as i32).collect();
    let groups: Vec<&str> = plan.tables().iter().map(|t| t.combine_group.as_str()).collect();
    let row = tx.query_one(&upsert, &[&restaurant]).await?;
    tx.execute(&delete, &[&restaurant]).await?;
    tx.execute(&insert, &[&restaurant, &ids, &seats, &groups]).await?;
    Ok(row.try_get("updated_at")?)
}

/// A restaurant's stored plan and when it was last replaced.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn plan_of(
    client: &ClientWrapper,
    restaurant_id: &RestaurantId,
) -> Result<Option<(FloorPlan, SystemTime)>, Error> {
    let statement = client
        .prepare_cached(
            "SELECT r.updated_at, t.table_id, t.seats, t.combine_group FROM assign.restaurants r \
             JOIN assign.tables t USING (restaurant_id) WHERE r.restaurant_id = $1 ORDER BY t.table_id",
        )
        .await?;
    let rows = client.query(&statement, &[&restaurant_id.as_str()]).await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let updated_at: SystemTime = first.try_get("updated_at")?;
    let tables = rows
        .iter()
        .map(|row| {
            Ok(Table {
                id: stored("table id", TableId::parse(row.try_get("table_id")?))?,
                seats: stored("seats", Seats::parse(row.try_get("seats")?))?,
                combine_group: stored("combine group", CombineGroup::parse(row.try_get("combine_group")?))?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Some((FloorPlan::from_stored(restaurant_id.clone(), tables), updated_at)))
}
