//! assign-svc as a library: `run` starts the whole service on a given listener.
//!
//! The binary and the tests start exactly the same thing. This module wires the parts
//! together (API, transactions, stream hub, scheduler, metrics); it must never hold a
//! rule or a query itself.

mod api;
mod assigner;
mod domain;
mod error;
mod metrics;
mod reassign;
mod settings;
mod store;

pub use settings::Settings;

use platform::{
    db::Database,
    grpc::GrpcServer,
    proto::assign::v1::assign_service_server::AssignServiceServer,
    purge::PurgeWorker,
    service::{ServiceParts, serve},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The schema this service owns.
pub const SCHEMA: &str = "assign";

/// Runs assign-svc on `listener` until `shutdown` is cancelled.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = settings.common.clone();
    let database = Database::connect_lazy(&common.database_url, common.db_pool_size as usize)?;
    let server = GrpcServer::new((&common).into());
    let limits = server.limits();
    let metrics = metrics::Metrics::new();
    let assigner = assigner::Assigner::new(database.clone());
    let hub = reassign::hub::Hub::new(database.clone());
    let api = api::Api::new(assigner.clone(), hub.clone(), metrics.clone(), limits.request_timeout, shutdown.clone());
    let server = server.add_service(AssignServiceServer::new(api).max_decoding_message_size(limits.max_message_bytes));
    let scheduler = reassign::scheduler::Scheduler {
        database: database.clone(),
        assigner,
        policy: domain::RetryPolicy { backoff: settings.reassign_backoff() },
        lease: settings.reassign_lease(),
        concurrency: settings.reassign_concurrency,
        metrics,
    };
    let purge = PurgeWorker::new(database.clone(), settings.retentions());
    let worker_shutdown = shutdown.clone();
    let workers = async move {
        tokio::join!(
            hub.run(worker_shutdown.clone()),
            scheduler.run(worker_shutdown.clone()),
            purge.run(worker_shutdown)
        );
    };
    let parts = ServiceParts {
        name: "assign-svc",
        server,
        database,
        schema: SCHEMA,
        migrations: embedded::migrations::runner,
        workers,
    };
    serve(parts, &common, listener, shutdown).await
}
