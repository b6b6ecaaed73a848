//! Floor plans: a restaurant's tables, and which live assignments a new plan would break.
//!
//! Owns the plan-level rules (1 to 500 tables, unique ids) and the validity of an
//! assignment under a plan. It must never store anything or know proto field names
//! beyond the `(field, reason)` pairs it reports.

use super::types::{BookingId, CombineGroup, PartySize, RestaurantId, Seats, TableId};
use std::collections::{BTreeMap, HashSet};

/// Most tables in one plan.
pub const MAX_TABLES: usize = 500;

/// One table of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// Table id, unique within the plan.
    pub id: TableId,
    /// Seats.
    pub seats: Seats,
    /// Group it may be joined within ("" for none).
    pub combine_group: CombineGroup,
}

/// A restaurant's complete set of tables, ordered by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloorPlan {
    restaurant_id: RestaurantId,
    tables: Vec<Table>,
}

impl FloorPlan {
    /// A plan from tables given in request order; on error, the `(field, reason)` pairs
    /// naming each duplicate (`tables[i].id`) or the count (`tables`).
    pub fn new(restaurant_id: RestaurantId, tables: Vec<Table>) -> Result<Self, Vec<(String, String)>> {
        let errors = plan_violations(tables.len(), tables.iter().map(|t| &t.id).enumerate());
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut tables = tables;
        tables.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Self { restaurant_id, tables })
    }

    /// A plan as stored (already checked when it was put).
    pub fn from_stored(restaurant_id: RestaurantId, mut tables: Vec<Table>) -> Self {
        tables.sort_by(|a, b| a.id.cmp(&b.id));
        Self { restaurant_id, tables }
    }

    /// Its restaurant.
    pub fn restaurant_id(&self) -> &RestaurantId {
        &self.restaurant_id
    }

    /// Its tables, ordered by id.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// Whether `table_ids` seat `party` under this plan: the tables exist and seat the
    /// party, and several tables share one non-empty group.
    pub fn seats(&self, table_ids: &[TableId], party: PartySize) -> bool {
        let by_id: BTreeMap<&TableId, &Table> = self.tables.iter().map(|t| (&t.id, t)).collect();
        let Some(found) = table_ids.iter().map(|id| by_id.get(id).copied()).collect::<Option<Vec<&Table>>>() else {
            return false;
        };
        let Some(first) = found.first() else { return false };
        let joinable = found.len() == 1
            || found.iter().all(|t| t.combine_group.is_joinable() && t.combine_group == first.combine_group);
        joinable && found.iter().map(|t| t.seats.get()).sum::<u32>() >= party.get()
    }
}

/// The plan-level problems of `count` tables whose ids (with their index in the
/// request) are `ids`: a count outside 1 to 500 (`tables`) and each repeated id
/// (`tables[i].id`).
pub fn plan_violations<'a>(count: usize, ids: impl IntoIterator<Item = (usize, &'a TableId)>) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if count == 0 || count > MAX_TABLES {
        errors.push(("tables".to_string(), format!("a plan has 1 to 500 tables (got {count})")));
    }
    let mut seen = HashSet::new();
    for (index, id) in ids {
        if !seen.insert(id) {
            errors.push((format!("tables[{index}].id"), format!("table id '{id}' appears twice")));
        }
    }
    errors
}

/// An assignment that has not ended yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveAssignment {
    /// Booking holding the tables.
    pub booking_id: BookingId,
    /// Its party.
    pub party_size: PartySize,
    /// Tables held.
    pub table_ids: Vec<TableId>,
}

/// The bookings whose live assignment `plan` would no longer seat, ordered by id.
pub fn invalidated_bookings(plan: &FloorPlan, live: &[LiveAssignment]) -> Vec<BookingId> {
    let mut broken: Vec<BookingId> =
        live.iter().filter(|a| !plan.seats(&a.table_ids, a.party_size)).map(|a| a.booking_id).collect();
    broken.sort();
    broken.dedup();
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(id: &str, seats: i32, group: &str) -> Table {
        Table {
            id: TableId::parse(id).expect("id"),
            seats: Seats::parse(seats).expect("seats"),
            combine_group: CombineGroup::parse(group).expect("group"),
        }
    }

    fn plan(tables: Vec<Table>) -> FloorPlan {
        FloorPlan::new(RestaurantId::parse("r").expect("id"), tables).expect("valid plan")
    }

    fn live(booking: u128, party: i32, tables: &[&str]) -> LiveAssignment {
        LiveAssignment {
            booking_id: BookingId::from_uuid(uuid::Uuid::from_u128(booking)),
            party_size: PartySize::parse(party).expect("party"),
            table_ids: tables.iter().map(|t| TableId::parse(t).expect("id")).collect(),
        }
    }

    #[test]
    fn plans_need_one_to_500_unique_tables_and_come_out_sorted() {
        let restaurant = RestaurantId::parse("r").expect("id");
        let errors = FloorPlan::new(restaurant.clone(), vec![]).expect_err("empty");
        assert_eq!(errors[0].0, "tables");
        let errors = FloorPlan::new(restaurant.clone(), vec![table("a", 2, ""), table("b", 2, ""), table("a", 4, "")])
            .expect_err("duplicate");
        assert_eq!(errors, vec![("tables[2].id".to_string(), "table id 'a' appears twice".to_string())]);
        let many = (0..501).map(|i| table(&format!("t{i}"), 2, "")).collect();
        assert_eq!(FloorPlan::new(restaurant.clone(), many).expect_err("too many")[0].0, "tables");
        let ordered = plan(vec![table("b", 2, ""), table("a", 2, "")]);
        assert_eq!(ordered.tables()[0].id.as_str(), "a");
    }

    #[test]
    fn names_assignments_a_new_plan_no_longer_seats() {
        let assignments = [
            live(1, 4, &["t1"]),       // t1 removed
            live(2, 6, &["t2"]),       // t2 shrinks to 4
            live(3, 6, &["t3", "t4"]), // t3 and t4 split into different groups
            live(4, 3, &["t5"]),       // t5 unchanged: fine
            live(5, 6, &["t6", "t7"]), // same group, still 8 seats: fine
        ];
        let new_plan = plan(vec![
            table("t2", 4, ""),
            table("t3", 4, "a"),
            table("t4", 4, "b"),
            table("t5", 4, ""),
            table("t6", 4, "c"),
            table("t7", 4, "c"),
        ]);
        let broken: Vec<u128> =
            invalidated_bookings(&new_plan, &assignments).into_iter().map(|b| b.uuid().as_u128()).collect();
        assert_eq!(broken, vec![1, 2, 3]);
    }
}
