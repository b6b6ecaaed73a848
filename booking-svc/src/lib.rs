//! booking-svc as a library: `run` starts the whole service.
//!
//! The binary and the tests start exactly the same thing on a given listener. It wires the
//! API, the flows, the change feed and the four workers (outbox, reassign dispatcher,
//! release, purge of rows past their retention); it holds no rule itself.

mod api;
pub mod crash;
pub mod domain;
mod error;
mod feed;
mod flow;
mod metrics;
mod outbox;
mod reassign;
mod release;
mod settings;
mod store;

pub use settings::Settings;

use platform::{
    db::Database,
    grpc::GrpcServer,
    proto::{
        assign::v1::assign_service_client::AssignServiceClient,
        booking::v1::booking_service_server::BookingServiceServer,
        notify::v1::notify_service_client::NotifyServiceClient,
    },
    purge::PurgeWorker,
    service::{ServiceParts, serve},
};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The schema this service owns.
pub const SCHEMA: &str = "booking";

/// Runs booking-svc on `listener` until `shutdown` is cancelled.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = settings.common.clone();
    let database = Database::connect_lazy(&common.database_url, common.db_pool_size as usize)?;
    let tls = platform::tls::ClientTls::from_settings(&common)?;
    let peer = |url: &str| {
        platform::balance::connect(url, settings.resolver.clone(), settings.resolve_interval(), tls.clone())
    };
    let assign = AssignServiceClient::new(peer(&settings.assign_url)?);
    let notify = NotifyServiceClient::new(peer(&settings.notify_url)?);
    let metrics = metrics::Metrics::new();
    #[cfg(feature = "crash-hook")]
    let crash = crash::CrashHook::new(settings.crash_at);
    #[cfg(not(feature = "crash-hook"))]
    let crash = crash::CrashHook::default();

    let (dispatcher, handle) = reassign::Dispatcher::new(
        database.clone(),
        assign.clone(),
        reassign::DispatcherSettings {
            lease: settings.job_lease(),
            reconnect: settings.backoff(),
            connect_timeout: settings.peer_timeout(),
            poll: settings.worker_poll(),
            max_jobs: settings.reassign_max_jobs as usize,
        },
        metrics.clone(),
        crash,
    );
    let flow = Arc::new(flow::Flow::new(
        database.clone(),
        assign.clone(),
        flow::InlineSettings {
            enabled: settings.inline_assign,
            timeout: settings.inline_assign_timeout(),
            margin: settings.inline_deadline_margin(),
            record_grace: settings.inline_record_grace(),
        },
        metrics.clone(),
        crash,
        handle,
    ));
    let outbox = outbox::OutboxWorker::new(
        database.clone(),
        notify,
        outbox::OutboxSettings {
            lease: settings.task_lease(),
            backoff: settings.backoff(),
            send_timeout: settings.peer_timeout(),
            poll: settings.worker_poll(),
            batch: 16,
        },
        metrics.clone(),
        crash,
    );
    let release = release::ReleaseWorker::new(
        database.clone(),
        assign,
        release::ReleaseSettings {
            lease: settings.task_lease(),
            backoff: settings.backoff(),
            timeout: settings.peer_timeout(),
            poll: settings.worker_poll(),
        },
        crash,
    );

    // A key answers its first result for its retention (a request repeating a purged key
    // is a new request); finished queue rows and, if set, ended bookings go after theirs.
    let purge = PurgeWorker::new(database.clone(), settings.retentions());

    let feed = Arc::new(feed::Feed::new(
        database.clone(),
        feed::FeedSettings {
            buffer: settings.feed_watcher_buffer as usize,
            poll: settings.worker_poll(),
            backoff: settings.backoff(),
        },
        shutdown.clone(),
    ));

    let server = GrpcServer::new((&common).into());
    let limits = server.limits();
    let api = api::Api::new(flow, metrics, feed);
    let server = server.add_service(BookingServiceServer::new(api).max_decoding_message_size(limits.max_message_bytes));
    let worker_shutdown = shutdown.clone();
    let workers = async move {
        tokio::join!(
            outbox.run(worker_shutdown.clone()),
            dispatcher.run(worker_shutdown.clone()),
            release.run(worker_shutdown.clone()),
            purge.run(worker_shutdown),
        );
    };
    let parts = ServiceParts {
        name: "booking-svc",
        server,
        database,
        schema: SCHEMA,
        migrations: embedded::migrations::runner,
        workers,
    };
    serve(parts, &common, listener, shutdown).await
}
