//! booking-svc's OpenTelemetry instruments, declared in one place.
//!
//! Meter `booking-svc`. Other modules report through these methods; none creates an
//! instrument itself. The gauges read values the workers refresh (they never query on the
//! export path).
//!
//! Attributes are closed sets of names (outcomes, results, kinds): never a booking id, a
//! restaurant or anything about a guest. The deploy/ dashboard and alert rules read these
//! names as the collector's Prometheus exporter renders them (`booking.edits` counted in
//! `{edit}` becomes `booking_edits_total`, `booking.outbox.oldest_age` in seconds becomes
//! `booking_outbox_oldest_age_seconds`); a test holds them together.

use crate::domain::inline::Outcome;
use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram, ObservableGauge},
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

#[derive(Default)]
struct Gauges {
    outbox_depth: AtomicU64,
    outbox_oldest_age_ms: AtomicU64,
    jobs_waiting: AtomicU64,
    pending_oldest_age_ms: AtomicU64,
}

/// The service's instruments.
pub struct Metrics {
    edits: Counter<u64>,
    inline_attempts: Counter<u64>,
    confirmation_latency: Histogram<f64>,
    background_confirmations: Counter<u64>,
    emails: Counter<u64>,
    gauges: Arc<Gauges>,
    _outbox_depth: ObservableGauge<u64>,
    _outbox_age: ObservableGauge<f64>,
    _jobs_waiting: ObservableGauge<u64>,
    _pending_age: ObservableGauge<f64>,
}

impl Metrics {
    /// Registers the instruments with the global meter provider.
    pub fn new() -> Arc<Self> {
        let meter = global::meter("booking-svc");
        let gauges = Arc::new(Gauges::default());
        let g = gauges.clone();
        let outbox_depth = meter
            .u64_observable_gauge("booking.outbox.depth")
            .with_description("Emails queued in the outbox, not yet handed to notify-svc")
            .with_callback(move |o| o.observe(g.outbox_depth.load(Ordering::Relaxed), &[]))
            .build();
        let g = gauges.clone();
        let outbox_age = meter
            .f64_observable_gauge("booking.outbox.oldest_age")
            .with_unit("s")
            .with_description("Age of the oldest queued email")
            .with_callback(move |o| o.observe(g.outbox_oldest_age_ms.load(Ordering::Relaxed) as f64 / 1000.0, &[]))
            .build();
        let g = gauges.clone();
        let jobs_waiting = meter
            .u64_observable_gauge("booking.reassign.jobs_waiting")
            .with_description("Open reassign jobs: booking versions waiting for tables")
            .with_callback(move |o| o.observe(g.jobs_waiting.load(Ordering::Relaxed), &[]))
            .build();
        let g = gauges.clone();
        let pending_age = meter
            .f64_observable_gauge("booking.pending.oldest_age")
            .with_unit("s")
            .with_description(
                "How long the longest-waiting open reassign job (a pending booking version) has waited since it was \
                 handed to the background; 0 when none waits",
            )
            .with_callback(move |o| o.observe(g.pending_oldest_age_ms.load(Ordering::Relaxed) as f64 / 1000.0, &[]))
            .build();
        Arc::new(Self {
            edits: meter
                .u64_counter("booking.edits")
                .with_unit("{edit}")
                .with_description(
                    "EditBooking calls answered, by outcome (CONFIRMED inline, PENDING, UNCHANGED); refusals count \
                     only in rpc.server.duration",
                )
                .build(),
            inline_attempts: meter
                .u64_counter("booking.inline.attempts")
                .with_description("Inline assignment attempts by result")
                .build(),
            confirmation_latency: meter
                .f64_histogram("booking.confirmation.latency")
                .with_unit("s")
                .with_description("From a create or edit to the confirmation of that version, by path")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
                ])
                .build(),
            background_confirmations: meter
                .u64_counter("booking.reassign.confirmations")
                .with_description("Bookings confirmed by the background reassign dispatcher")
                .build(),
            emails: meter
                .u64_counter("booking.outbox.emails")
                .with_description("Outbox emails by kind and result (dispatched, dropped, failed, retried)")
                .build(),
            gauges,
            _outbox_depth: outbox_depth,
            _outbox_age: outbox_age,
            _jobs_waiting: jobs_waiting,
            _pending_age: pending_age,
        })
    }

    /// One EditBooking call was answered with `outcome` (idempotent replays included).
    pub fn edit_answered(&self, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Confirmed => "CONFIRMED",
            Outcome::Pending => "PENDING",
            Outcome::Unchanged => "UNCHANGED",
        };
        self.edits.add(1, &[KeyValue::new("outcome", outcome)]);
    }

    /// One inline attempt finished with `result`.
    pub fn inline_attempt(&self, result: &'static str) {
        self.inline_attempts.add(1, &[KeyValue::new("result", result)]);
    }

    /// A version was confirmed `latency` after it was requested, `via` inline or background.
    pub fn confirmed(&self, via: &'static str, latency: Duration) {
        self.confirmation_latency.record(latency.as_secs_f64(), &[KeyValue::new("via", via)]);
        if via == "background" {
            self.background_confirmations.add(1, &[]);
        }
    }

    /// An outbox email reached `result`.
    pub fn email(&self, kind: &'static str, result: &'static str) {
        self.emails.add(1, &[KeyValue::new("kind", kind), KeyValue::new("result", result)]);
    }

    /// The outbox holds `depth` queued emails, the oldest `oldest_age` old.
    pub fn set_outbox(&self, depth: i64, oldest_age: Duration) {
        self.gauges.outbox_depth.store(depth.max(0) as u64, Ordering::Relaxed);
        self.gauges.outbox_oldest_age_ms.store(oldest_age.as_millis() as u64, Ordering::Relaxed);
    }

    /// `n` reassign jobs are open, the oldest handed over `oldest_age` ago.
    pub fn set_jobs_waiting(&self, n: i64, oldest_age: Duration) {
        self.gauges.jobs_waiting.store(n.max(0) as u64, Ordering::Relaxed);
        self.gauges.pending_oldest_age_ms.store(oldest_age.as_millis() as u64, Ordering::Relaxed);
    }
}
