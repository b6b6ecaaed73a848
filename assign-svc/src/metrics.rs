//! Every OpenTelemetry instrument of assign-svc, declared in one place.
//!
//! Owns metric names, units and attribute keys. It must never decide anything or touch
//! the database: callers record what happened.

use opentelemetry::{
    KeyValue, global,
    metrics::{Counter, Histogram, ObservableGauge},
};
use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// The instruments, created once the meter provider is installed.
#[derive(Clone)]
pub struct Metrics {
    assign_outcomes: Counter<u64>,
    assign_duration: Histogram<f64>,
    reassign_attempts: Counter<u64>,
    jobs_waiting: Arc<AtomicI64>,
    _jobs_waiting_gauge: ObservableGauge<i64>,
}

impl Metrics {
    /// Creates the instruments on the global meter `assign-svc`.
    pub fn new() -> Self {
        let meter = global::meter("assign-svc");
        let jobs_waiting = Arc::new(AtomicI64::new(0));
        let observed = jobs_waiting.clone();
        Self {
            assign_outcomes: meter
                .u64_counter("assign.outcomes")
                .with_description(
                    "Assign calls by outcome (assigned, no_capacity, aborted, deadline_exceeded, invalid, error)",
                )
                .build(),
            assign_duration: meter
                .f64_histogram("assign.duration")
                .with_unit("s")
                .with_description("Time to answer an Assign call")
                .build(),
            reassign_attempts: meter
                .u64_counter("assign.reassign.attempts")
                .with_description("Reassign job attempts by result (assigned, retrying, gave_up, superseded, error)")
                .build(),
            jobs_waiting,
            _jobs_waiting_gauge: meter
                .i64_observable_gauge("assign.reassign.jobs_waiting")
                .with_description("Reassign jobs waiting for tables")
                .with_callback(move |gauge| gauge.observe(observed.load(Ordering::Relaxed), &[]))
                .build(),
        }
    }

    /// One Assign call answered with `outcome` after `seconds`.
    pub fn assign_answered(&self, outcome: &'static str, seconds: f64) {
        let attributes = [KeyValue::new("outcome", outcome)];
        self.assign_outcomes.add(1, &attributes);
        self.assign_duration.record(seconds, &attributes);
    }

    /// One reassign attempt ended with `result`.
    pub fn reassign_attempted(&self, result: &'static str) {
        self.reassign_attempts.add(1, &[KeyValue::new("result", result)]);
    }

    /// The number of waiting jobs, as last counted.
    pub fn set_jobs_waiting(&self, waiting: i64) {
        self.jobs_waiting.store(waiting, Ordering::Relaxed);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
