//! The one gRPC server builder every service uses, and traced clients.
//!
//! [`GrpcServer`] adds gRPC health, reflection v1 and v1alpha (with every service's
//! descriptors, so grpcurl needs no .proto file) and composes the cross-cutting tower
//! layers once: per-call span with W3C context extraction, load shedding, a process-wide
//! concurrency limit, a per-request timeout, message size limits and graceful shutdown.
//! [`connect`] gives clients that inject the caller's trace context into every call, and
//! [`timeout_of`] reads how long a caller waits. Nothing here knows a domain rule.
//!
//! With a [`Transport`] holding TLS, the server accepts connections itself and hands tonic
//! `tokio_rustls` streams, so every request's extensions hold
//! `TlsConnectInfo<TcpConnectInfo>` (the caller's certificate chain in `peer_certs()`); in
//! plain text they hold `TcpConnectInfo`. A transport's `HEALTH_ADDR` serves only
//! `grpc.health.v1`, in plain text, from the same health reporter.

use crate::{
    auth::{Authz, AuthzLayer},
    settings::CommonSettings,
    tls::{ClientTls, HANDSHAKE_TIMEOUT, ServerTls},
};
use anyhow::Context as _;
use http::{HeaderMap, Request, Response};
use opentelemetry::{KeyValue, propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    server::NamedService,
    service::Routes,
    transport::{Endpoint, server::TcpIncoming},
};
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};
use tower::{Layer, Service, ServiceBuilder};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Service name of the gRPC health service.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Limits the server builder applies, from the shared settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Server-side limit per call (the client's shorter `grpc-timeout` wins).
    pub request_timeout: Duration,
    /// Calls served at once by the process; excess calls are shed (`RESOURCE_EXHAUSTED`).
    pub max_concurrent_requests: usize,
    /// Largest request message decoded, in bytes.
    pub max_message_bytes: usize,
    /// How long in-flight calls may run on after shutdown starts.
    pub shutdown_grace: Duration,
}

impl From<&CommonSettings> for ServerLimits {
    fn from(settings: &CommonSettings) -> Self {
        Self {
            request_timeout: settings.request_timeout(),
            max_concurrent_requests: settings.max_concurrent_requests as usize,
            max_message_bytes: settings.max_message_bytes as usize,
            shutdown_grace: settings.shutdown_grace(),
        }
    }
}

/// Flips every service of one server between `SERVING` and `NOT_SERVING`.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<&'static str>,
    serving: Arc<AtomicBool>,
}

impl Health {
    /// Reports the overall server (`""`) and each service as serving or not, to health
    /// checks and to the `grpc.health.serving` gauge.
    pub async fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status("", status).await;
        for service in &self.services {
            self.reporter.set_service_status(*service, status).await;
        }
    }
}

/// How a server meets its callers: TLS or plain text on the main listener, and the
/// optional plain-text health listener.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// TLS (mutual when it has a client CA); `None`: plain text.
    pub tls: Option<ServerTls>,
    /// Where `grpc.health.v1` alone is served in plain text, besides the main listener.
    pub health_addr: Option<SocketAddr>,
}

impl Transport {
    /// The transport the settings ask for (`TLS_*`, `HEALTH_ADDR`); fails naming the setting
    /// when a certificate file is missing or unusable.
    pub fn from_settings(common: &CommonSettings) -> anyhow::Result<Self> {
        Ok(Self { tls: ServerTls::from_settings(common)?, health_addr: common.health_addr })
    }
}

/// Builds and runs one gRPC server.
pub struct GrpcServer {
    routes: Routes,
    services: Vec<&'static str>,
    limits: ServerLimits,
    health: HealthReporter,
    health_service: HealthServer<HealthService>,
    transport: Transport,
    authz: Authz,
}

impl GrpcServer {
    /// A server with health (everything `NOT_SERVING` until [`Health::set_serving`]), in
    /// plain text until [`GrpcServer::transport`] says otherwise, letting every call
    /// through until [`GrpcServer::authorize`].
    pub fn new(limits: ServerLimits) -> Self {
        let health = HealthReporter::new();
        let health_service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
        Self {
            routes: Routes::new(health_service.clone()),
            services: Vec::new(),
            limits,
            health,
            health_service,
            transport: Transport::default(),
            authz: Authz::open("booking.internal"),
        }
    }

    /// Serves with `transport` (TLS, health listener).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Checks every call with `authz` (identity and allow-list) before it reaches a service.
    pub fn authorize(mut self, authz: Authz) -> Self {
        self.authz = authz;
        self
    }

    /// The limits this server applies (services use `max_message_bytes` on their codecs).
    pub fn limits(&self) -> ServerLimits {
        self.limits
    }

    /// Adds a generated tonic service; its name is reported by health and reflection.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes = self.routes.add_service(service);
        self.services.push(S::NAME);
        self
    }

    /// The health handle for this server's services; starts `NOT_SERVING`. Registers the
    /// `grpc.health.serving` gauge that mirrors it.
    pub async fn health(&self) -> Health {
        let serving = Arc::new(AtomicBool::new(false));
        serving_gauge(serving.clone(), self.services.clone());
        let health = Health { reporter: self.health.clone(), services: self.services.clone(), serving };
        health.set_serving(false).await;
        health
    }

    /// Serves on `listener` until `shutdown` is cancelled, then stops accepting, lets
    /// in-flight calls finish for up to the grace period, and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        let services = self.services.clone();
        let reflection_builder = move |other_reflection: &'static [u8]| {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(other_reflection)
                .with_service_name(HEALTH_SERVICE)
                .with_service_name("grpc.reflection.v1.ServerReflection")
                .with_service_name("grpc.reflection.v1alpha.ServerReflection");
            for service in &services {
                builder = builder.with_service_name(*service);
            }
            builder
        };
        let reflection = reflection_builder(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET).build_v1()?;
        let reflection_alpha = reflection_builder(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET).build_v1alpha()?;
        let routes = self.routes.add_service(reflection).add_service(reflection_alpha);

        let limits = self.limits;
        let layers = ServiceBuilder::new()
            .layer(TraceLayer::server())
            .layer(AuthzLayer::new(self.authz.clone()))
            .load_shed()
            .concurrency_limit(limits.max_concurrent_requests)
            .into_inner();
        if let Some(addr) = self.transport.health_addr {
            let health_listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on '{addr}' for '--health-addr <HEALTH_ADDR>'"))?;
            let signal = shutdown.clone();
            let health_server = tonic::transport::Server::builder()
                .add_service(self.health_service.clone())
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(health_listener).with_nodelay(Some(true)),
                    async move { signal.cancelled().await },
                );
            tokio::spawn(async move {
                if let Err(error) = health_server.await {
                    tracing::error!(%error, "the health listener stopped");
                }
            });
        }
        let signal = shutdown.clone();
        let router = tonic::transport::Server::builder()
            .timeout(limits.request_timeout)
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .layer(layers)
            .add_routes(routes);
        let stop_accepting = shutdown.child_token();
        let _stop_accepting_on_return = stop_accepting.clone().drop_guard();
        let server: BoxFuture<Result<(), tonic::transport::Error>> = match &self.transport.tls {
            Some(tls) => Box::pin(
                router.serve_with_incoming_shutdown(tls_incoming(listener, tls.clone(), stop_accepting), async move {
                    signal.cancelled().await
                }),
            ),
            None => Box::pin(
                router.serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
                    signal.cancelled().await
                }),
            ),
        };
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => Ok(result?),
            _ = async { shutdown.cancelled().await; tokio::time::sleep(limits.shutdown_grace).await } => {
                tracing::warn!(grace = ?limits.shutdown_grace, "calls still running after the shutdown grace period; stopping anyway");
                Ok(())
            }
        }
    }
}

/// Accepts TCP connections on `listener` and completes their TLS handshakes (each in its
/// own task, bounded by [`HANDSHAKE_TIMEOUT`]) until `stop`; refused handshakes (no or a
/// wrong client certificate) are logged and dropped.
fn tls_incoming(
    listener: TcpListener,
    tls: ServerTls,
    stop: CancellationToken,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> {
    let (connections, incoming) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let connections = connections.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = connections.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::info!(%peer, %error, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}

/// A client channel whose calls carry the caller's W3C trace context and open a client span.
pub type Channel = Traced<tonic::transport::Channel>;

/// A lazily connecting plain-text channel to `url` (`http://host:port`); connection
/// failures surface per call as `UNAVAILABLE`, and the channel reconnects by itself. One
/// connection to whatever `host` resolves to first: [`crate::balance::connect`] spreads
/// calls over every address instead.
pub fn connect(url: &str) -> anyhow::Result<Channel> {
    connect_with(url, None)
}

/// [`connect`], over TLS with `tls` when given (whatever the URL's scheme): the server's
/// certificate must chain to `tls`'s CA and name `url`'s host.
pub fn connect_with(url: &str, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    Ok(TraceLayer::client().layer(secure_endpoint(url, tls)?.connect_lazy()))
}

/// [`endpoint`] for `url`, over TLS with `tls` when given: the scheme becomes `https` and
/// the server's certificate must name `url`'s host.
pub fn secure_endpoint(url: &str, tls: Option<&ClientTls>) -> anyhow::Result<Endpoint> {
    let Some(tls) = tls else { return endpoint(url) };
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let mut parts = uri.into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    let url = http::Uri::from_parts(parts)?.to_string();
    tls.apply(endpoint(&url)?, &host)
}

/// The connection settings of every client (connect timeout, no Nagle, HTTP/2 keep-alive,
/// so a peer that froze is noticed within seconds) for `url`.
pub fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true))
}

/// The caller's timeout from its `grpc-timeout` metadata, if it sent a valid one.
pub fn timeout_of(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    metadata.get("grpc-timeout").and_then(|value| value.to_str().ok()).and_then(parse_timeout)
}

/// When the caller stops waiting, from its `grpc-timeout` metadata.
pub fn deadline_of(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    timeout_of(metadata).and_then(|timeout| Instant::now().checked_add(timeout))
}

/// Parses a `grpc-timeout` value: 1 to 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = value.get(..value.len() - unit.len_utf8())?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    match unit {
        'H' => Some(Duration::from_secs(amount * 3600)),
        'M' => Some(Duration::from_secs(amount * 60)),
        'S' => Some(Duration::from_secs(amount)),
        'm' => Some(Duration::from_millis(amount)),
        'u' => Some(Duration::from_micros(amount)),
        'n' => Some(Duration::from_nanos(amount)),
        _ => None,
    }
}

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

/// The `grpc.health.serving` gauge: 1 while the server reports `SERVING` (its database
/// answers and its schema is migrated), 0 while `NOT_SERVING`, one series per gRPC service
/// (`rpc.service`). Observed on every export, so a running server always has it; the alert
/// on a service not serving reads both its value and its absence.
fn serving_gauge(serving: Arc<AtomicBool>, services: Vec<&'static str>) {
    opentelemetry::global::meter("booking-platform")
        .u64_observable_gauge("grpc.health.serving")
        .with_description("1 while the server reports SERVING on grpc.health.v1, 0 while NOT_SERVING, per gRPC service")
        .with_callback(move |observer| {
            let value = u64::from(serving.load(Ordering::Relaxed));
            for service in &services {
                observer.observe(value, &[KeyValue::new("rpc.service", *service)]);
            }
        })
        .build();
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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

    use proptest::prelude::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_timeout("800m"), Some(Duration::from_millis(800)));
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("250000u"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "5", "5x", "123456789m", "-5S", "+5S", "5.0S", "10 m", "5é"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_the_callers_timeout_from_the_metadata() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(timeout_of(&metadata), None);
        metadata.insert("grpc-timeout", tonic::metadata::MetadataValue::from_static("200m"));
        assert_eq!(timeout_of(&metadata), Some(Duration::from_millis(200)));
        let deadline = deadline_of(&metadata).expect("a deadline");
        assert!(deadline > Instant::now() && deadline <= Instant::now() + Duration::from_millis(200));
    }

    proptest! {
        #[test]
        fn any_grpc_timeout_text_is_safe(value in "\\PC{0,12}") {
            let _ = parse_timeout(&value);
        }
    }

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
