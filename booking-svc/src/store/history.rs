//! The history table: a booking's events, append-only.
//!
//! Events written together share one row: the first in the row's own columns, the ones
//! after it, in order, in `later`. Nothing here updates or deletes an event.

use super::{Result, detail_json};
use crate::domain::Event;
use crate::error::Error;
use deadpool_postgres::GenericClient;
use platform::{db::Prepared, params};
use serde_json::Value;
use std::time::SystemTime;
use uuid::Uuid;

/// Appends events to a booking's history, in order.
pub async fn append(db: &impl GenericClient, booking_id: Uuid, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    statement(db, booking_id, events).await?.query(db).await?;
    Ok(())
}

/// The statement appending `events` (at least one) to a booking's history, in order (one
/// row: see [`row`]).
pub async fn statement(db: &impl GenericClient, booking_id: Uuid, events: &[Event]) -> Result<Prepared> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO booking.history (booking_id, type, version, detail, later) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    let (kind, version, detail, later) = row(events)?;
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
pub async fn read(db: &impl GenericClient, booking_id: Uuid) -> Result<Vec<StoredEvent>> {
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

/// The history row of `events` (at least one) written together: the first event's type,
/// version and detail, and the events after it, in order, as `later`.
pub(super) fn row(events: &[Event]) -> Result<(&'static str, i64, Value, Value)> {
    let (first, rest) = events.split_first().ok_or_else(|| Error::corrupt("a history row without an event"))?;
    let later: Vec<LaterEvent> = rest
        .iter()
        .map(|e| Ok(LaterEvent { kind: e.kind().as_str().to_string(), version: e.version, detail: detail_json(e)? }))
        .collect::<Result<_>>()?;
    let later = serde_json::to_value(later).map_err(|e| Error::corrupt(format!("history events: {e}")))?;
    Ok((first.kind().as_str(), first.version, detail_json(first)?, later))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Detail, EmailKind,
        history::Confirmation,
        inline::{InlineAttempt, InlineResult},
    };
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn events_written_together_read_back_in_order_from_one_row() {
        let attempt = InlineAttempt { result: InlineResult::Assigned(vec!["t1".into()]), elapsed: Duration::ZERO };
        let events = [
            Event::new(3, Detail::inline_attempt(&attempt, None)),
            Event::new(3, Detail::Confirmed(Confirmation::Inline { table_ids: vec!["t1".into()] })),
            Event::new(3, Detail::EmailQueued { kind: EmailKind::ModificationConfirmed }),
        ];
        let (kind, version, detail, later) = row(&events).expect("row");
        assert_eq!((kind, version), ("INLINE_ATTEMPT", 3));
        assert_eq!(
            detail,
            json!({ "result": "ASSIGNED", "elapsed_ms": 0.0, "email_sent": false, "table_ids": ["t1"] })
        );
        let read: Vec<(String, i64, Value)> = serde_json::from_value::<Vec<LaterEvent>>(later)
            .expect("later events")
            .into_iter()
            .map(|e| (e.kind, e.version, e.detail))
            .collect();
        let expected = vec![
            ("CONFIRMED".to_string(), 3, json!({ "table_ids": ["t1"], "via": "inline" })),
            ("EMAIL_QUEUED".to_string(), 3, json!({ "kind": "MODIFICATION_CONFIRMED" })),
        ];
        assert_eq!(read, expected);
    }

    #[test]
    fn a_single_event_has_nothing_later_and_no_event_is_no_row() {
        let (_, _, _, later) = row(&[Event::new(2, Detail::edit_unchanged())]).expect("row");
        assert_eq!(later, json!([]));
        assert!(row(&[]).is_err());
        assert!(serde_json::from_value::<Vec<LaterEvent>>(json!([{ "type": "EDITED" }])).is_err(), "version missing");
    }
}
