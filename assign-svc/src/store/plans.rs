//! The `assign.restaurants` and `assign.tables` tables: each restaurant's floor plan.
//!
//! A plan is replaced whole, in the caller's transaction under the restaurant's exclusive
//! lock. It must never check a plan: the rules live in `domain::plan`.

use super::rows::stored;
use crate::{
    domain::{CombineGroup, FloorPlan, RestaurantId, Seats, Table, TableId},
    error::Error,
};
use deadpool_postgres::{ClientWrapper, Transaction};
use std::time::SystemTime;

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
