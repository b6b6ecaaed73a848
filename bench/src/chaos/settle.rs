//! The settle after the load, and what the judge then reads from outside.
//!
//! With every fault over, the stack must come to rest on its own: no booking changes any
//! more, each is CONFIRMED or CANCELLED (the plans are ample, so a PENDING one is stuck),
//! notify-svc's deliveries are all final, the SMTP folder stops growing and booking-svc
//! has no work left (a read-only count of its queues, the one look past the API). Not at
//! rest within the timeout: stuck, a violation.

use super::{
    calls::{Clients, request},
    judge::{Delivery, FinalBooking, Mail, Status},
    log::Content,
    sink,
    stack::Stack,
    world::World,
};
use platform::proto::{
    booking::v1::{self as pb},
    notify::v1 as npb,
    std_duration, system_time,
};
use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};
use tokio::time::Instant;

/// How long to rest, polled once a second, before the stack counts as settled.
const QUIET_POLLS: usize = 3;

/// What the API and the SMTP server show once the stack is at rest.
pub struct Observed {
    /// GetBooking of every booking.
    pub finals: HashMap<String, FinalBooking>,
    /// ListBookings of every restaurant.
    pub listed: Vec<FinalBooking>,
    pub mails: Vec<Mail>,
    pub deliveries: HashMap<String, Vec<Delivery>>,
    /// What kept the stack from resting, if it did not within the timeout.
    pub stuck: Vec<String>,
    /// How long the settle took.
    pub took: Duration,
}

/// One look at the stack.
#[derive(PartialEq)]
struct Look {
    listed: Vec<(String, i64, String, Vec<String>)>,
    deliveries: Vec<(String, String, i64, String)>,
    mails: usize,
    open_work: Vec<(&'static str, i64)>,
}

/// Waits (at most `timeout`) until the stack is at rest, then reads everything the judge
/// needs about `ids`.
pub async fn settle(stack: &Stack, clients: &Clients, world: &World, ids: &[String], timeout: Duration) -> Observed {
    let started = Instant::now();
    let mut previous: Option<Look> = None;
    let mut quiet = 0;
    let mut last_error = None;
    let stuck = loop {
        let look = look(stack, clients, world, ids).await;
        let reasons = match &look {
            Ok((look, _, _)) => unsettled(look),
            Err(error) => {
                last_error = Some(format!("{error:#}"));
                vec![format!("the API did not answer: {error:#}")]
            }
        };
        let look = look.ok().map(|(look, _, _)| look);
        quiet = if reasons.is_empty() && look.is_some() && look == previous { quiet + 1 } else { 0 };
        if quiet >= QUIET_POLLS {
            break Vec::new();
        }
        if started.elapsed() >= timeout {
            let mut reasons = reasons;
            if reasons.is_empty() {
                reasons.push("bookings, deliveries or mails still changing".into());
            }
            break reasons.into_iter().map(|r| format!("stuck after a {timeout:?} settle: {r}")).collect();
        }
        previous = look;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let took = started.elapsed();
    let (listed, deliveries) = match look(stack, clients, world, ids).await {
        Ok((_, listed, deliveries)) => (listed, deliveries),
        Err(error) => {
            last_error = Some(format!("{error:#}"));
            (Vec::new(), HashMap::new())
        }
    };
    let mut finals = HashMap::new();
    for id in ids {
        if let Some(booking) = get(clients, id).await {
            finals.insert(id.clone(), booking);
        }
    }
    let mut stuck = stuck;
    if let Some(error) = last_error.filter(|_| listed.is_empty()) {
        stuck.push(format!("could not read the final state: {error}"));
    }
    Observed { finals, listed, mails: sink::mails(&stack.mail_dir), deliveries, stuck, took }
}

/// Why `look` is not at rest yet.
fn unsettled(look: &Look) -> Vec<String> {
    let mut reasons = Vec::new();
    let pending: Vec<&str> = look.listed.iter().filter(|b| b.2 == "PENDING").map(|b| b.0.as_str()).collect();
    if !pending.is_empty() {
        reasons.push(format!(
            "{} bookings PENDING (e.g. {})",
            pending.len(),
            pending[..pending.len().min(5)].join(", ")
        ));
    }
    let queued: Vec<String> =
        look.deliveries.iter().filter(|d| d.3 == "QUEUED").map(|d| format!("{}:{}:{}", d.0, d.1, d.2)).collect();
    if !queued.is_empty() {
        reasons.push(format!("{} deliveries QUEUED (e.g. {})", queued.len(), queued[..queued.len().min(5)].join(", ")));
    }
    for (what, n) in &look.open_work {
        if *n > 0 {
            reasons.push(format!("{n} {what}"));
        }
    }
    reasons
}

type Lists = (Look, Vec<FinalBooking>, HashMap<String, Vec<Delivery>>);

async fn look(stack: &Stack, clients: &Clients, world: &World, ids: &[String]) -> anyhow::Result<Lists> {
    let mut listed = Vec::new();
    for restaurant in &world.restaurants {
        let mut token = String::new();
        loop {
            let message = pb::ListBookingsRequest {
                restaurant_id: restaurant.clone(),
                page_size: 500,
                page_token: token.clone(),
                ..Default::default()
            };
            let page = clients.booking[0].clone().list_bookings(request(message)).await?.into_inner();
            listed.extend(page.bookings.iter().map(final_booking));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
    }
    let mut deliveries = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let mut notify = clients.notify[i % clients.notify.len()].clone();
        let list = notify.list_deliveries(request(npb::ListDeliveriesRequest { booking_id: id.clone() })).await?;
        deliveries.insert(id.clone(), list.into_inner().deliveries.iter().map(delivery).collect::<Vec<_>>());
    }
    let mut look = Look {
        listed: listed
            .iter()
            .map(|b| (b.id.clone(), b.version, format!("{:?}", b.status).to_uppercase(), b.tables.clone()))
            .collect(),
        deliveries: deliveries
            .values()
            .flatten()
            .map(|d: &Delivery| (d.booking.clone(), d.kind.clone(), d.version, d.state.clone()))
            .collect(),
        mails: sink::count(&stack.mail_dir),
        open_work: stack.database.open_work().await?,
    };
    look.listed.sort();
    look.deliveries.sort();
    Ok((look, listed, deliveries))
}

async fn get(clients: &Clients, id: &str) -> Option<FinalBooking> {
    for attempt in 0..20 {
        let mut client = clients.booking[attempt % clients.booking.len()].clone();
        match client.get_booking(request(pb::GetBookingRequest { booking_id: id.to_string() })).await {
            Ok(answer) => return answer.into_inner().booking.as_ref().map(final_booking),
            Err(status) if status.code() == tonic::Code::NotFound => return None,
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    None
}

fn final_booking(b: &pb::Booking) -> FinalBooking {
    let status = match pb::BookingStatus::try_from(b.status) {
        Ok(pb::BookingStatus::Pending) => Status::Pending,
        Ok(pb::BookingStatus::Confirmed) => Status::Confirmed,
        Ok(pb::BookingStatus::Cancelled) => Status::Cancelled,
        _ => Status::Unknown,
    };
    FinalBooking {
        id: b.id.clone(),
        restaurant: b.restaurant_id.clone(),
        status,
        version: b.version,
        content: Content {
            party: b.party_size,
            start: b.start_time.as_ref().and_then(system_time).unwrap_or(SystemTime::UNIX_EPOCH),
            notes: b.notes.clone(),
        },
        duration: b.duration.as_ref().and_then(std_duration).unwrap_or_default(),
        tables: b.table_ids.clone(),
    }
}

fn delivery(d: &npb::Delivery) -> Delivery {
    let kind = npb::NotificationKind::try_from(d.kind)
        .map(|k| k.as_str_name().trim_start_matches("NOTIFICATION_KIND_").to_string())
        .unwrap_or_else(|_| format!("KIND_{}", d.kind));
    let state = npb::DeliveryState::try_from(d.state)
        .map(|s| s.as_str_name().trim_start_matches("DELIVERY_STATE_").to_string())
        .unwrap_or_else(|_| format!("STATE_{}", d.state));
    Delivery {
        booking: d.booking_id.clone(),
        kind,
        version: d.version,
        state,
        requested_at: d.requested_at.as_ref().and_then(system_time),
    }
}
