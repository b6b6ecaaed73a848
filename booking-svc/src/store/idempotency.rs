//! The idempotency table: which request each key stood for and the answer it got.

use super::Result;
use crate::error::Error;
use deadpool_postgres::GenericClient;
use platform::{
    db::Prepared,
    params,
    purge::{Purge, PurgeTable},
};
use serde_json::Value;
use std::sync::LazyLock;
use uuid::Uuid;

/// Deletes keys past their retention, oldest first ([`platform::purge`]); a key ends its
/// life when its retention has passed since it was first used.
pub static PURGE: LazyLock<Purge> = LazyLock::new(|| {
    Purge::new(PurgeTable {
        table: "booking.idempotency",
        key: &["rpc", "key"],
        age: "created_at",
        finished: None,
        with: &[],
    })
});

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
pub async fn claim(
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
    // The key may be purged (its retention over) between the conflict and the read: then
    // it is free again, and this request takes it as new. Twice in a row would take a purge
    // at each try, which the purge's interval makes impossible; a third miss is an error.
    for _ in 0..3 {
        if db.execute(&insert, &[&rpc, &key, &fingerprint, &booking_id]).await? == 1 {
            return Ok(None);
        }
        if let Some(used) = find(db, rpc, key).await? {
            return Ok(Some(used));
        }
    }
    Err(Error::corrupt(format!("idempotency key {rpc}/{key} neither claimed nor found")))
}

/// What `key` was used for, if it was (reads only).
pub async fn find(db: &impl GenericClient, rpc: &str, key: &str) -> Result<Option<KeyUse>> {
    let select = db
        .prepare_cached("SELECT fingerprint, booking_id, response FROM booking.idempotency WHERE rpc = $1 AND key = $2")
        .await?;
    let Some(row) = db.query_opt(&select, &[&rpc, &key]).await? else { return Ok(None) };
    Ok(Some(KeyUse { fingerprint: row.try_get(0)?, booking_id: row.try_get(1)?, response: row.try_get(2)? }))
}

/// Stores the answer given for a key.
pub async fn save_response(db: &impl GenericClient, rpc: &str, key: &str, response: &Value) -> Result<()> {
    response_statement(db, rpc, key, response).await?.query(db).await?;
    Ok(())
}

/// The statement storing the answer given for a key.
pub async fn response_statement(db: &impl GenericClient, rpc: &str, key: &str, response: &Value) -> Result<Prepared> {
    let stmt = db.prepare_cached("UPDATE booking.idempotency SET response = $3 WHERE rpc = $1 AND key = $2").await?;
    Ok(Prepared::new(stmt, params![rpc.to_string(), key.to_string(), response.clone()]))
}
