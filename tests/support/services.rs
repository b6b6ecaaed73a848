//! The services started in-process on random loopback ports, exactly as their binaries
//! start them (`run(settings, listener, shutdown)`), and typed clients for them (over TLS
//! when given a [`ClientTls`]).

use platform::proto::{
    assign::v1::assign_service_client::AssignServiceClient, booking::v1::booking_service_client::BookingServiceClient,
    notify::v1::notify_service_client::NotifyServiceClient,
};
use platform::tls::ClientTls;
use std::{future::Future, net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A service running in this test process.
pub struct Running {
    pub addr: SocketAddr,
    pub url: String,
    /// How its clients reach it: over TLS when set.
    pub tls: Option<ClientTls>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Starts `run` on a fresh loopback port; returns once health reports `SERVING`.
    pub async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::start_tls(run, None).await
    }

    /// [`Running::start`] for a server that callers reach over TLS with `tls`.
    pub async fn start_tls<F, Fut>(run: F, tls: Option<ClientTls>) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let mut running = Self::start_unready(run).await;
        running.tls = tls;
        wait_serving_with(&running.url, running.tls.as_ref(), Duration::from_secs(30)).await;
        running
    }

    /// Starts `run` without waiting for health.
    pub async fn start_unready<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run(listener, shutdown.clone()));
        Self { addr, url: format!("http://{addr}"), tls: None, shutdown, handle: Some(handle) }
    }

    /// Triggers graceful shutdown (as SIGTERM does) without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }

    /// A traced channel to this service.
    pub fn channel(&self) -> platform::grpc::Channel {
        platform::grpc::connect_with(&self.url, self.tls.as_ref()).expect("channel")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// assign-svc on `database_url`.
pub async fn assign(database_url: &str) -> Running {
    assign_with(assign_svc::Settings::for_database(database_url)).await
}

/// assign-svc with explicit settings.
pub async fn assign_with(settings: assign_svc::Settings) -> Running {
    Running::start(move |l, s| assign_svc::run(settings, l, s)).await
}

/// notify-svc with explicit settings (see `notify_svc::Settings::for_database`).
pub async fn notify_with(settings: notify_svc::Settings) -> Running {
    Running::start(move |l, s| notify_svc::run(settings, l, s)).await
}

/// booking-svc with explicit settings (see `booking_svc::Settings::for_database`).
pub async fn booking_with(settings: booking_svc::Settings) -> Running {
    Running::start(move |l, s| booking_svc::run(settings, l, s)).await
}

/// A booking client for `url`.
pub fn booking_client(url: &str) -> BookingServiceClient<platform::grpc::Channel> {
    BookingServiceClient::new(platform::grpc::connect(url).expect("channel"))
}

/// An assign client for `url`.
pub fn assign_client(url: &str) -> AssignServiceClient<platform::grpc::Channel> {
    AssignServiceClient::new(platform::grpc::connect(url).expect("channel"))
}

/// A notify client for `url`.
pub fn notify_client(url: &str) -> NotifyServiceClient<platform::grpc::Channel> {
    NotifyServiceClient::new(platform::grpc::connect(url).expect("channel"))
}

/// The health status of `service` ("" for the whole server), `None` when unreachable.
pub async fn health(url: &str, service: &str) -> Option<ServingStatus> {
    health_with(url, service, None).await
}

/// [`health`] over TLS with `tls` when given.
pub async fn health_with(url: &str, service: &str, tls: Option<&ClientTls>) -> Option<ServingStatus> {
    let channel = platform::grpc::secure_endpoint(url, tls)
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: service.to_string() }).await.ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Waits until the server at `url` reports `SERVING`.
pub async fn wait_serving(url: &str, timeout: Duration) {
    wait_serving_with(url, None, timeout).await
}

/// [`wait_serving`] over TLS with `tls` when given.
pub async fn wait_serving_with(url: &str, tls: Option<&ClientTls>, timeout: Duration) {
    super::eventually(timeout, &format!("{url} to report SERVING"), || async {
        (health_with(url, "", tls).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await
}
