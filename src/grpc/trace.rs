//! The trace layer of both ends of a call: a span per call with the caller's W3C
//! context, and the call's duration.

use super::{BoxFuture, HEALTH_SERVICE};
use http::{HeaderMap, Request, Response};
use opentelemetry::{KeyValue, propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::{
    sync::OnceLock,
    task::{Context, Poll},
    time::Instant,
};
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Splits `/pkg.Service/Method` into `("pkg.Service", "Method")`.
fn rpc_names(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// The gRPC status code of a response when it is known from its headers (a
/// "trailers-only" error response); a normal response reports in trailers, i.e. OK here.
fn header_status(headers: &HeaderMap) -> i64 {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Which end of a call a trace layer sits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

impl Side {
    /// The span's `otel.kind`.
    fn kind(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }

    /// The status recorded when the inner service fails without a response: a server
    /// that fails is an internal error, a channel that fails an unavailable peer.
    fn failed(self) -> i64 {
        match self {
            Side::Server => tonic::Code::Internal as i64,
            Side::Client => tonic::Code::Unavailable as i64,
        }
    }

    /// The RPC latency histogram of this side (OpenTelemetry RPC conventions), created on
    /// first use so that it binds to the meter provider installed at start-up.
    fn duration(self) -> &'static opentelemetry::metrics::Histogram<f64> {
        static SERVER: OnceLock<opentelemetry::metrics::Histogram<f64>> = OnceLock::new();
        static CLIENT: OnceLock<opentelemetry::metrics::Histogram<f64>> = OnceLock::new();
        let (cell, name) = match self {
            Side::Server => (&SERVER, "rpc.server.duration"),
            Side::Client => (&CLIENT, "rpc.client.duration"),
        };
        cell.get_or_init(|| {
            opentelemetry::global::meter("booking-platform")
                .f64_histogram(name)
                .with_unit("ms")
                .with_description("Duration of gRPC calls until the response headers")
                .build()
        })
    }
}

/// The body of both trace layers: opens the call's span with the RPC attributes (its
/// parent the caller's context from the metadata on a server; its context injected into
/// the metadata on a client), calls `inner` inside it, then records the status on the span
/// and the duration in the side's histogram.
fn traced<S, B, RB>(side: Side, inner: &mut S, mut request: Request<B>) -> BoxFuture<Result<S::Response, S::Error>>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    let (service, method) = {
        let (service, method) = rpc_names(request.uri().path());
        (service.to_string(), method.to_string())
    };
    macro_rules! rpc_span {
        ($name:literal) => {
            tracing::info_span!(
                $name,
                otel.name = %format!("{service}/{method}"),
                otel.kind = side.kind(),
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
            )
        };
    }
    let span = match side {
        Side::Server => rpc_span!("grpc.server"),
        Side::Client => rpc_span!("grpc.client"),
    };
    match side {
        Side::Server => {
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
            if parent.span().span_context().is_valid() {
                let _ = span.set_parent(parent);
            }
        }
        Side::Client => {
            let context = span.context();
            if context.span().span_context().is_valid() {
                TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(request.headers_mut()));
            }
        }
    }
    let future = {
        let _entered = span.enter();
        inner.call(request)
    };
    let recorder = span.clone();
    let started = Instant::now();
    Box::pin(
        async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => header_status(response.headers()),
                Err(_) => side.failed(),
            };
            recorder.record("rpc.grpc.status_code", code);
            if code != 0 {
                recorder.record("otel.status_code", "ERROR");
            }
            let attributes = [
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", method),
                KeyValue::new("rpc.grpc.status_code", code),
            ];
            side.duration().record(started.elapsed().as_secs_f64() * 1000.0, &attributes);
            result
        }
        .instrument(span),
    )
}

/// The trace layer of both ends of a call: one span per call (`rpc.system`,
/// `rpc.service`, `rpc.method`, `rpc.grpc.status_code`) and the call's duration. On a
/// server ([`TraceLayer::server`]) the span's parent is the caller's W3C context from the
/// metadata, and health checks are not traced; on a client ([`TraceLayer::client`]) the
/// span's context is injected into the metadata.
#[derive(Clone, Copy, Debug)]
pub struct TraceLayer {
    side: Side,
}

impl TraceLayer {
    /// The layer of a server.
    pub const fn server() -> Self {
        Self { side: Side::Server }
    }

    /// The layer of a client channel.
    pub const fn client() -> Self {
        Self { side: Side::Client }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced { side: self.side, inner }
    }
}

/// A service wrapped by a [`TraceLayer`].
#[derive(Clone, Debug)]
pub struct Traced<S> {
    side: Side,
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for Traced<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.side == Side::Server && rpc_names(request.uri().path()).0 == HEALTH_SERVICE {
            return Box::pin(self.inner.call(request));
        }
        traced(self.side, &mut self.inner, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_rpc_paths() {
        assert_eq!(rpc_names("/booking.v1.BookingService/EditBooking"), ("booking.v1.BookingService", "EditBooking"));
        assert_eq!(rpc_names("/odd"), ("odd", ""));
    }

    #[test]
    fn reads_trailers_only_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_status(&headers), 0);
        headers.insert("grpc-status", http::HeaderValue::from_static("4"));
        assert_eq!(header_status(&headers), 4);
    }
}
