//! The mail transport.
//!
//! lettre's pooled async SMTP client when `SMTP_URL` is set, `.eml` files in `MAIL_DIR`
//! otherwise. Sorts every failure into transient (retry later) or permanent (a 5xx
//! answer).
//!
//! A file appears in `MAIL_DIR` whole: lettre writes it in the folder's hidden `.partial`
//! folder, then it is renamed into place (atomic within one file system), so whoever
//! polls the folder never reads a message that is not whole yet.
//!
//! It sends exactly what it is given and never touches the ledger; it never retries by
//! itself and is never cancelled half-way through an SMTP transaction by this crate.

use crate::domain::AttemptFailure;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, transport::smtp::PoolConfig,
};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// The subfolder of `MAIL_DIR` where a message file is written before it is moved in.
const PARTIAL: &str = ".partial";

/// Where messages go.
#[derive(Clone)]
pub enum Mailer {
    /// A pooled SMTP client.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a folder, each written aside and then moved in.
    Files { writer: AsyncFileTransport<Tokio1Executor>, partial: PathBuf, dir: PathBuf },
}

impl Mailer {
    /// An SMTP client for a lettre URL (`smtp://host:port`, `smtps://user:pass@host`)
    /// with a per-command `timeout` and at most `pool_size` open connections.
    pub fn smtp(url: &str, timeout: Duration, pool_size: u32) -> anyhow::Result<Self> {
        let transport: AsyncSmtpTransport<Tokio1Executor> = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(pool_size))
            .build();
        Ok(Mailer::Smtp(transport))
    }

    /// Writes `.eml` files into `dir`, creating it (and its `.partial` folder) when missing.
    pub fn files(dir: &Path) -> anyhow::Result<Self> {
        let partial = dir.join(PARTIAL);
        std::fs::create_dir_all(&partial)
            .map_err(|e| anyhow::anyhow!("cannot create MAIL_DIR '{}': {e}", partial.display()))?;
        Ok(Mailer::Files { writer: AsyncFileTransport::new(&partial), partial, dir: dir.to_path_buf() })
    }

    /// Sends one message, waiting for the server's final answer.
    #[tracing::instrument(skip_all, fields(mail.transport = self.name()))]
    pub async fn send(&self, message: Message) -> Result<(), AttemptFailure> {
        match self {
            Mailer::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|error| {
                let reason = error_chain(&error);
                if error.is_permanent() { AttemptFailure::Permanent(reason) } else { AttemptFailure::Transient(reason) }
            }),
            Mailer::Files { writer, partial, dir } => {
                let id = writer.send(message).await.map_err(|error| AttemptFailure::Transient(error_chain(&error)))?;
                let name = format!("{id}.eml");
                // A failed move leaves the message in `.partial`, where no reader looks, and
                // the delivery is tried again: nothing is seen twice.
                tokio::fs::rename(partial.join(&name), dir.join(&name)).await.map_err(|error| {
                    AttemptFailure::Transient(format!("moving {name} into {}: {error}", dir.display()))
                })
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Mailer::Smtp(_) => "smtp",
            Mailer::Files { .. } => "file",
        }
    }
}

/// The error and its sources on one line (lettre puts the useful part in the source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
