//! notify-svc as a library: `run` starts the whole service on a given listener.
//!
//! The binary and the tests start exactly the same thing. Booking emails, exactly once
//! per `(booking_id, kind, version)`: a ledger in the `notify` schema decides who sends,
//! lettre delivers (SMTP or `.eml` files), a worker retries transient failures. This
//! module only wires the parts together.

mod api;
mod calendar;
mod domain;
mod error;
mod local_time;
mod mailer;
mod message;
mod metrics;
mod sender;
mod settings;
mod store;
mod worker;

pub use settings::Settings;

use domain::RetryPolicy;
use platform::{
    backoff::Backoff,
    db::Database,
    grpc::GrpcServer,
    proto::notify::v1::notify_service_server::NotifyServiceServer,
    service::{ServiceParts, serve},
};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The schema this service owns.
pub const SCHEMA: &str = "notify";

/// Runs notify-svc on `listener` until `shutdown` is cancelled. Fails at once when the
/// sender address or the mail folder is unusable.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = settings.common.clone();
    let database = Database::connect_lazy(&common.database_url, common.db_pool_size as usize)?;
    let from: lettre::message::Mailbox =
        settings.mail_from.parse().map_err(|e| anyhow::anyhow!("MAIL_FROM is not an email address: {e}"))?;
    let mailer = match &settings.smtp_url {
        Some(url) => {
            mailer::Mailer::smtp(url, Duration::from_millis(settings.smtp_timeout_ms), settings.smtp_pool_size)?
        }
        None => mailer::Mailer::files(&settings.mail_dir)?,
    };
    let policy = RetryPolicy {
        backoff: Backoff::new(
            Duration::from_millis(settings.retry_base_ms),
            Duration::from_millis(settings.retry_cap_ms),
        ),
        max_attempts: settings.max_attempts,
    };
    let lease = Duration::from_millis(settings.delivery_lease_ms);
    let metrics = metrics::Metrics::new();
    let sender = sender::Sender::new(database.clone(), mailer, message::Composer::new(from), policy, metrics.clone());

    let server = GrpcServer::new((&common).into());
    let limits = server.limits();
    let api =
        api::Api::new(database.clone(), sender.clone(), metrics, Duration::from_millis(settings.send_wait_ms), lease);
    let server = server.add_service(NotifyServiceServer::new(api).max_decoding_message_size(limits.max_message_bytes));

    let worker = worker::Worker::new(
        database.clone(),
        sender.clone(),
        worker::WorkerSettings {
            lease,
            batch: settings.worker_batch,
            poll: Duration::from_millis(settings.worker_poll_ms),
        },
    );
    let purge = platform::purge::PurgeWorker::new(database.clone(), settings.retentions());
    let workers = {
        let database = database.clone();
        let shutdown = shutdown.clone();
        async move {
            let wake = database.listen(store::CHANNEL, shutdown.clone());
            tokio::join!(
                async {
                    worker.run(wake, shutdown.clone()).await;
                    sender.idle().await;
                },
                purge.run(shutdown.clone()),
            );
        }
    };
    let parts = ServiceParts {
        name: "notify-svc",
        server,
        database,
        schema: SCHEMA,
        migrations: embedded::migrations::runner,
        workers,
    };
    serve(parts, &common, listener, shutdown).await
}
