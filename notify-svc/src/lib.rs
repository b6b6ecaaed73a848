//! notify-svc as a library: `run` starts the whole service on a given listener, so the
//! binary and the tests start exactly the same thing.

mod api;
mod settings;

pub use settings::Settings;

use platform::{
    db::Database,
    grpc::GrpcServer,
    proto::notify::v1::notify_service_server::NotifyServiceServer,
    service::{ServiceParts, serve},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The schema this service owns.
pub const SCHEMA: &str = "notify";

/// Runs notify-svc on `listener` until `shutdown` is cancelled.
pub async fn run(settings: Settings, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let common = settings.common.clone();
    let database = Database::connect_lazy(&common.database_url, common.db_pool_size as usize)?;
    let server = GrpcServer::new((&common).into());
    let limits = server.limits();
    let api = api::Api::new(database.clone());
    let server = server.add_service(NotifyServiceServer::new(api).max_decoding_message_size(limits.max_message_bytes));
    let parts =
        ServiceParts { server, database, schema: SCHEMA, migrations: embedded::migrations::runner, workers: async {} };
    serve(parts, &common, listener, shutdown).await
}
