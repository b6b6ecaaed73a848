//! Every OpenTelemetry instrument of notify-svc, declared in one place.
//!
//! Owns metric names and attributes. Recording is all this module does; it never decides
//! anything.

use crate::domain::DeliveryState;
use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram},
};
use std::time::Duration;

/// How a SendOnce call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// First call for its key: recorded and being delivered.
    First,
    /// A later or concurrent call: got the recorded delivery back.
    Duplicate,
    /// First call, with suppress: recorded as SUPPRESSED.
    Suppressed,
    /// Same key, different recipient or details: refused.
    Mismatch,
    /// Malformed request.
    Invalid,
}

impl CallOutcome {
    fn name(self) -> &'static str {
        match self {
            CallOutcome::First => "first",
            CallOutcome::Duplicate => "duplicate",
            CallOutcome::Suppressed => "suppressed",
            CallOutcome::Mismatch => "mismatch",
            CallOutcome::Invalid => "invalid",
        }
    }
}

/// How one delivery attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Accepted by the mail server.
    Sent,
    /// Failed; will be retried.
    Transient,
    /// Refused for good.
    Permanent,
}

impl AttemptOutcome {
    fn name(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Transient => "transient",
            AttemptOutcome::Permanent => "permanent",
        }
    }
}

/// The instruments.
#[derive(Clone)]
pub struct Metrics {
    send_once_calls: Counter<u64>,
    deliveries_finished: Counter<u64>,
    delivery_attempts: Counter<u64>,
    attempt_duration: Histogram<f64>,
}

impl Metrics {
    /// Instruments from the global meter provider (a no-op one when nothing exports).
    pub fn new() -> Self {
        let meter = global::meter("notify-svc");
        Self {
            send_once_calls: meter
                .u64_counter("notify.send_once.calls")
                .with_description("SendOnce calls by outcome (first, duplicate, suppressed, mismatch, invalid)")
                .build(),
            deliveries_finished: meter
                .u64_counter("notify.deliveries.finished")
                .with_description("Deliveries that reached a final state (SENT, SUPPRESSED, FAILED)")
                .build(),
            delivery_attempts: meter
                .u64_counter("notify.delivery.attempts")
                .with_description("Delivery attempts by result (sent, transient, permanent)")
                .build(),
            attempt_duration: meter
                .f64_histogram("notify.delivery.attempt.duration")
                .with_unit("s")
                .with_description("Time to hand one message to the mail server")
                .build(),
        }
    }

    /// Counts one SendOnce call.
    pub fn send_once(&self, outcome: CallOutcome) {
        self.send_once_calls.add(1, &[KeyValue::new("outcome", outcome.name())]);
    }

    /// Counts a delivery reaching `state` (only final states are counted).
    pub fn finished(&self, state: DeliveryState) {
        if state != DeliveryState::Queued {
            self.deliveries_finished.add(1, &[KeyValue::new("state", state.name())]);
        }
    }

    /// Counts one attempt and its duration.
    pub fn attempt(&self, outcome: AttemptOutcome, took: Duration) {
        let attributes = [KeyValue::new("result", outcome.name())];
        self.delivery_attempts.add(1, &attributes);
        self.attempt_duration.record(took.as_secs_f64(), &attributes);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
