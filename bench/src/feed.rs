//! Change-feed watchers for `booking-bench --watchers N`: they read WatchBookingChanges from
//! now on while the edits run, and measure each change's lag.
//!
//! The lag of a change is the time from when it was written (its `time`: the transaction
//! commits a moment later) to when a watcher received it, both read from this machine's
//! clock, so it is meant for a stack on the same machine. Only changes received while the
//! benchmark measures count. A watcher the feed ends (too slow, or a replica shutting down)
//! counts as an error and stops.

use hdrhistogram::Histogram;
use platform::proto::{
    booking::v1::{WatchBookingChangesRequest, booking_service_client::BookingServiceClient},
    system_time,
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};
use tokio::{sync::watch, task::JoinHandle};

/// The running watchers.
pub struct Watchers {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    lags: Arc<Mutex<Histogram<u64>>>,
    received: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// What the watchers measured.
#[derive(Debug, Clone)]
pub struct FeedFigures {
    pub watchers: usize,
    /// Changes received while measuring, by all watchers together.
    pub received: u64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// Why watchers ended early.
    pub errors: Vec<String>,
}

impl Watchers {
    /// Opens `count` watchers on `booking_url` (each from now, every restaurant; over TLS
    /// with `tls` when given); their positions are fixed when this returns. Lags count while
    /// `measuring` is set.
    pub async fn start(
        booking_url: &str,
        tls: Option<&platform::tls::ClientTls>,
        count: usize,
        measuring: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        // Lags in microseconds, 1 µs to 60 s, 3 significant digits.
        let lags = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
        let received = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = watch::Sender::new(false);
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let mut client = BookingServiceClient::new(platform::grpc::connect_with(booking_url, tls)?);
            let mut stream = client.watch_booking_changes(WatchBookingChangesRequest::default()).await?.into_inner();
            let (lags, received, errors, measuring) =
                (lags.clone(), received.clone(), errors.clone(), measuring.clone());
            let mut stopped = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                let mut local = Histogram::<u64>::new_from(&*lags.lock().unwrap_or_else(|e| e.into_inner()));
                let flush = |local: &mut Histogram<u64>| {
                    let _ = lags.lock().unwrap_or_else(|e| e.into_inner()).add(&*local);
                    local.reset();
                };
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        _ = stopped.changed() => break,
                    };
                    match message {
                        Ok(Some(change)) => {
                            if !measuring.load(Ordering::Relaxed) {
                                continue;
                            }
                            let Some(written) = change.time.as_ref().and_then(system_time) else { continue };
                            let lag = SystemTime::now().duration_since(written).unwrap_or_default();
                            let _ = local.record(lag.as_micros().max(1) as u64);
                            received.fetch_add(1, Ordering::Relaxed);
                            if local.len() >= 1_000 {
                                flush(&mut local);
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            errors.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                                "{:?}: {}",
                                status.code(),
                                status.message()
                            ));
                            break;
                        }
                    }
                }
                flush(&mut local);
            }));
        }
        Ok(Self { tasks, stop, lags, received, errors })
    }

    /// Stops the watchers and reads what they measured.
    pub async fn finish(self) -> FeedFigures {
        let watchers = self.tasks.len();
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let lags = self.lags.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ms = |q: f64| lags.value_at_quantile(q) as f64 / 1000.0;
        FeedFigures {
            watchers,
            received: self.received.load(Ordering::Relaxed),
            lag_p50_ms: ms(0.50),
            lag_p99_ms: ms(0.99),
            lag_max_ms: lags.max() as f64 / 1000.0,
            errors: self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}
