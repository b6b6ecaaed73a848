//! The restaurants, their floor plans, and the floor-plan changes made during the load.
//!
//! Every plan is ample: each restaurant has at least twice as many table groups as it
//! can have live bookings, and every group seats the largest party, so every booking
//! always fits however the others sit (a PENDING booking after the settle is stuck, not
//! waiting for room). Tables come in combination groups of two (parties above six need
//! both), plus a few two-seat tables. The superset plan adds four-seat tables; going
//! back from it is refused while a live booking sits on one, which is a legitimate
//! answer.

use super::calls::{Clients, Stats, ambiguous, backoff, timed};
use platform::proto::assign::v1::{PutFloorPlanRequest, Table};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tonic::Code;

/// Largest party a client books.
pub const MAX_PARTY: i32 = 12;

/// The restaurants and how bookings are spread over them.
#[derive(Clone, Debug)]
pub struct World {
    pub restaurants: Vec<String>,
    /// Table groups per restaurant.
    groups: usize,
}

impl World {
    /// A world for `bookings` live bookings: one restaurant per 32 (at least 3).
    pub fn new(bookings: usize) -> Self {
        let count = bookings.div_ceil(32).max(3);
        let per_restaurant = bookings.div_ceil(count);
        Self { restaurants: (0..count).map(|n| format!("chaos-{n}")).collect(), groups: 2 * per_restaurant + 2 }
    }

    /// The restaurant of global booking slot `slot`: slots are spread round robin, and a
    /// slot holds one live booking at a time (a cancelled one is replaced by a new one).
    pub fn restaurant(&self, slot: usize) -> &str {
        &self.restaurants[slot % self.restaurants.len()]
    }

    /// The base plan: `groups` pairs of six-seat tables, each pair a combination group,
    /// and a two-seat table for every other pair.
    pub fn base_plan(&self) -> Vec<Table> {
        let mut tables = Vec::new();
        for g in 0..self.groups {
            for side in ["a", "b"] {
                tables.push(Table {
                    id: format!("g{g:02}{side}"),
                    seats: MAX_PARTY / 2,
                    combine_group: format!("g{g:02}"),
                });
            }
            if g % 2 == 0 {
                tables.push(Table { id: format!("s{g:02}"), seats: 2, combine_group: String::new() });
            }
        }
        tables
    }

    /// The base plan plus four four-seat tables.
    pub fn superset_plan(&self) -> Vec<Table> {
        let mut tables = self.base_plan();
        tables.extend((1..=4).map(|n| Table { id: format!("x{n}"), seats: 4, combine_group: String::new() }));
        tables
    }
}

/// A start time: 1 to 3 days after the next midnight UTC, 10:00 to 21:45, on a quarter.
pub fn random_start(rng: &mut fastrand::Rng) -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let midnight = (now / 86_400 + 1) * 86_400;
    let at = midnight + rng.u64(1..=3) * 86_400 + rng.u64(10..=21) * 3_600 + rng.u64(0..4) * 900;
    SystemTime::UNIX_EPOCH + Duration::from_secs(at)
}

/// A party: mostly 1 to 6 (one table), a fifth 7 to 12 (a combination).
pub fn random_party(rng: &mut fastrand::Rng) -> i32 {
    if rng.u8(0..100) < 20 { rng.i32(MAX_PARTY / 2 + 1..=MAX_PARTY) } else { rng.i32(1..=MAX_PARTY / 2) }
}

/// Puts the base plan of every restaurant (before the load and the faults).
pub async fn put_base_plans(world: &World, clients: &Clients) -> anyhow::Result<()> {
    for restaurant in &world.restaurants {
        let request = PutFloorPlanRequest { restaurant_id: restaurant.clone(), tables: world.base_plan() };
        clients.assign[0].clone().put_floor_plan(request).await?;
    }
    Ok(())
}

/// Floor-plan changes until `load_end`: a random restaurant goes to the superset plan, or
/// back to the base plan, through a random assign-svc replica, retried until answered.
/// Returns what was answered; an answer the contract does not allow goes to `anomalies`.
pub async fn change_plans(
    world: World,
    clients: Clients,
    seed: u64,
    load_end: Instant,
    hard_end: Instant,
) -> (Stats, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut retry = fastrand::Rng::with_seed(seed.rotate_left(17) ^ 0x5eed);
    let mut superset = vec![false; world.restaurants.len()];
    let mut stats = Stats::default();
    let mut anomalies = Vec::new();
    loop {
        let pause = Duration::from_millis(rng.u64(1_000..=4_000));
        let r = rng.usize(0..world.restaurants.len());
        tokio::time::sleep(pause).await;
        if Instant::now() >= load_end {
            break;
        }
        let to_superset = !superset[r];
        let tables = if to_superset { world.superset_plan() } else { world.base_plan() };
        let kind = if to_superset { "floor plan: superset" } else { "floor plan: back to base" };
        let request = PutFloorPlanRequest { restaurant_id: world.restaurants[r].clone(), tables };
        loop {
            let mut client = clients.assign[retry.usize(0..clients.assign.len())].clone();
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(super::calls::ATTEMPT_TIMEOUT);
            let (result, _) = timed(client.put_floor_plan(call)).await;
            match result {
                Ok(_) => {
                    superset[r] = to_superset;
                    stats.op(kind, "applied");
                }
                Err(status) if status.code() == Code::FailedPrecondition => {
                    stats.op(kind, "refused (live assignments)")
                }
                Err(status) if ambiguous(status.code()) && Instant::now() < hard_end => {
                    stats.failed(status.code());
                    tokio::time::sleep(backoff(&mut retry)).await;
                    continue;
                }
                Err(status) => {
                    stats.op(kind, "error");
                    anomalies.push(format!(
                        "PutFloorPlan of {} answered {:?}: {}",
                        request.restaurant_id,
                        status.code(),
                        status.message()
                    ));
                }
            }
            break;
        }
    }
    (stats, anomalies)
}
