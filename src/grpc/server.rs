//! The server builder: health, reflection, the tower layers, TLS or plain text, the
//! plain-text health listener, graceful shutdown.

use super::{BoxFuture, HEALTH_SERVICE, trace::TraceLayer};
use crate::{
    auth::{Authz, AuthzLayer},
    settings::CommonSettings,
    tls::{HANDSHAKE_TIMEOUT, ServerTls},
};
use anyhow::Context as _;
use http::{Request, Response};
use opentelemetry::KeyValue;
use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{body::Body, server::NamedService, service::Routes, transport::server::TcpIncoming};
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};
use tower::{Service, ServiceBuilder};

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
