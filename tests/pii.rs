//! Guests' personal data never leaves in telemetry: a full flow (create, an edit confirmed
//! inline, an edit, a cancel, every mail sent) with recognisable guest data, all three
//! services logging at trace and exporting spans and metrics, and none of the data in any
//! log line or any export. Real PostgreSQL, real gRPC, real SMTP.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::proto::booking::v1::{self as pb, Outcome};
use std::{
    io::Write,
    sync::{Arc, Mutex},
};
use support::stack::{Options, Stack, create_request, edit_request, slot};

/// Every log line written, in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;
    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

const NAME: &str = "Zebulon Quixotevich";
const EMAIL: &str = "zebulon.quixotevich@pii-probe.example";
const PHONE: &str = "+44 7700 900123";
const NOTES: &str = "kumquat allergy, table by the aquarium";
const NEW_NOTES: &str = "bringing a zanzibar cake";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_guest_data_in_logs_spans_or_metrics() {
    let collector = support::otlp::Collector::start().await;
    let mut common = platform::settings::CommonSettings::with_database_url(support::db::admin_url());
    common.otel_endpoint = Some(collector.endpoint.clone());
    common.rust_log = "trace".into();
    common.log_format = platform::settings::LogFormat::Json;
    let lines = Lines::default();
    let telemetry = platform::telemetry::init_with_writer(&common, "pii", lines.clone()).unwrap();

    let stack = Stack::start(Options::default()).await;
    let mut client = stack.booking();
    let mut create = create_request(slot(1, 19), 2);
    create.guest = Some(pb::Guest { name: NAME.into(), email: EMAIL.into(), phone: PHONE.into() });
    create.notes = NOTES.into();
    let created = client.create_booking(create).await.unwrap().into_inner();
    assert_eq!(created.outcome(), Outcome::Confirmed);
    let id = created.booking.unwrap().id;
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;
    let edit = pb::EditBookingRequest { party_size: Some(3), notes: Some(NEW_NOTES.into()), ..edit_request(&id) };
    client.edit_booking(edit).await.unwrap();
    stack.wait_for_mail(&id, "MODIFICATION_CONFIRMED", 2).await;
    let list = pb::ListBookingsRequest { restaurant_id: support::stack::RESTAURANT.into(), ..Default::default() };
    assert_eq!(client.list_bookings(list).await.unwrap().into_inner().bookings.len(), 1);
    client.cancel_booking(pb::CancelBookingRequest { booking_id: id.clone(), ..Default::default() }).await.unwrap();
    stack.wait_for_mail(&id, "BOOKING_CANCELLED", 2).await;
    stack.settle(&[&id]).await;
    // The mails did carry the data: the probe is recognisable where it belongs.
    assert!(stack.smtp.count_key(&id, "BOOKING_CONFIRMED", 1) > 0);

    drop(stack);
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
    let logged = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
    let exported = collector.raw_exports().join("\n");
    assert!(logged.lines().count() > 1000, "trace logging captured: {} lines", logged.lines().count());
    assert!(exported.contains("grpc.server") || exported.contains("CreateBooking"), "spans exported");

    let needles =
        ["Zebulon", "Quixotevich", "pii-probe", "7700 900123", "7700900123", "kumquat", "aquarium", "zanzibar"];
    let mut leaks = Vec::new();
    for needle in needles {
        for line in logged.lines().filter(|line| line.contains(needle)) {
            leaks.push(format!("log: {}", line.chars().take(400).collect::<String>()));
        }
        if let Some(at) = exported.find(needle) {
            let start = exported.floor_char_boundary(at.saturating_sub(300));
            leaks.push(format!("export: ...{}...", &exported[start..exported.ceil_char_boundary(at + 100)]));
        }
    }
    leaks.dedup();
    assert!(leaks.is_empty(), "{} leaks of guest data:\n{}", leaks.len(), leaks.join("\n"));
}
