//! Wake-ups across processes: the `LISTEN` session of a worker and the coalesced
//! `NOTIFY`s that [`super::Database::wake`] asks for.

use super::{DbError, WAKE_COALESCE};
use deadpool_postgres::{Object, WeakPool};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// One LISTEN session: returns `Ok` on shutdown, `Err` when the connection is lost.
pub(super) async fn listen_once<F>(
    url: &str,
    channel: &str,
    on_event: &mut F,
    shutdown: &CancellationToken,
) -> anyhow::Result<()>
where
    F: FnMut(Option<String>) + Send,
{
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    if tx.send(notification.payload().to_string()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    on_event(None);
    let result = loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(payload) => on_event(Some(payload)),
                None => break Err(anyhow::anyhow!("LISTEN connection closed")),
            },
            _ = shutdown.cancelled() => break Ok(()),
        }
    };
    driver.abort();
    result
}

/// Sends the `NOTIFY`s that [`Database::wake`] asked for, at most one per channel per
/// [`WAKE_COALESCE`], each batch in a tiny transaction of its own (asynchronous commit is
/// harmless there: a notification carries no data, and the work it announces was
/// committed durably before). Ends when the pool is gone.
pub(super) async fn notify_others(pool: WeakPool, instance: String, mut wakes: mpsc::UnboundedReceiver<&'static str>) {
    let mut channels: Vec<&'static str> = Vec::new();
    while let Some(first) = wakes.recv().await {
        channels.clear();
        channels.push(first);
        while let Ok(channel) = wakes.try_recv() {
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        let Some(pool) = pool.upgrade() else { return };
        let mut sql = String::from("BEGIN; SET LOCAL synchronous_commit TO off;");
        for channel in &channels {
            sql.push_str(&format!(" SELECT pg_notify({}, {});", quote(channel), quote(&instance)));
        }
        sql.push_str(" COMMIT;");
        let sent = async {
            let client = pool.get().await?;
            if let Err(error) = client.batch_execute(&sql).await {
                // It may have stopped inside the transaction: never hand it out again.
                drop(Object::take(client));
                return Err(DbError::from(error));
            }
            Ok::<_, DbError>(())
        }
        .await;
        drop(pool);
        if let Err(error) = sent {
            tracing::debug!(%error, ?channels, "could not NOTIFY other processes; they find the work when they poll");
        }
        tokio::time::sleep(WAKE_COALESCE).await;
    }
}

/// A SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
