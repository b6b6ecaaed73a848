//! Calls to the stack as a careful client makes them: a deadline on every attempt, a
//! random replica each time, and the failures that leave the outcome open told apart
//! from real answers.

use platform::{
    grpc::Channel,
    proto::{
        assign::v1::assign_service_client::AssignServiceClient,
        booking::v1::booking_service_client::BookingServiceClient,
        notify::v1::notify_service_client::NotifyServiceClient,
    },
};
use std::{
    collections::BTreeMap,
    future::Future,
    time::{Duration, Instant},
};
use tonic::{Code, Status};

/// Deadline of one attempt (longer than any freeze, so a frozen replica delays an answer
/// rather than losing it).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of every replica of each service.
#[derive(Clone)]
pub struct Clients {
    pub booking: Vec<BookingServiceClient<Channel>>,
    pub assign: Vec<AssignServiceClient<Channel>>,
    pub notify: Vec<NotifyServiceClient<Channel>>,
}

impl Clients {
    /// Lazily connecting clients of the replicas at these URLs.
    pub fn connect(booking: &[String], assign: &[String], notify: &[String]) -> anyhow::Result<Self> {
        let channels = |urls: &[String]| urls.iter().map(|u| platform::grpc::connect(u)).collect::<Result<Vec<_>, _>>();
        Ok(Self {
            booking: channels(booking)?.into_iter().map(BookingServiceClient::new).collect(),
            assign: channels(assign)?.into_iter().map(AssignServiceClient::new).collect(),
            notify: channels(notify)?.into_iter().map(NotifyServiceClient::new).collect(),
        })
    }
}

/// Whether a failed call leaves open whether it took effect (no decision came back): the
/// caller must find out, or retry a call that is safe to repeat.
pub fn ambiguous(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
            | Code::DataLoss
    )
}

/// A pause before the next attempt: 100 to 300 ms.
pub fn backoff(rng: &mut fastrand::Rng) -> Duration {
    Duration::from_millis(rng.u64(100..=300))
}

/// Runs one attempt under [`ATTEMPT_TIMEOUT`] (plus a second, should the deadline not be
/// enforced on the wire); returns its result and how long it took.
pub async fn timed<T>(call: impl Future<Output = Result<tonic::Response<T>, Status>>) -> (Result<T, Status>, Duration) {
    let started = Instant::now();
    let result = match tokio::time::timeout(ATTEMPT_TIMEOUT + Duration::from_secs(1), call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded("no answer within the attempt's deadline")),
    };
    (result, started.elapsed())
}

/// A request with the attempt's deadline.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(ATTEMPT_TIMEOUT);
    request
}

/// What the load did: operations by kind and how each ended, failed attempts by code.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ops: BTreeMap<(String, String), u64>,
    pub failures: BTreeMap<String, u64>,
}

impl Stats {
    /// Counts one operation of `kind` that ended as `answer`.
    pub fn op(&mut self, kind: &str, answer: &str) {
        *self.ops.entry((kind.to_string(), answer.to_string())).or_default() += 1;
    }

    /// Counts one failed attempt.
    pub fn failed(&mut self, code: Code) {
        *self.failures.entry(format!("{code:?}")).or_default() += 1;
    }

    pub fn merge(&mut self, other: Stats) {
        for (key, n) in other.ops {
            *self.ops.entry(key).or_default() += n;
        }
        for (key, n) in other.failures {
            *self.failures.entry(key).or_default() += n;
        }
    }
}
