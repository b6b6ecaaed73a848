//! The mail transport: lettre's pooled async SMTP client when `SMTP_URL` is set, `.eml`
//! files in `MAIL_DIR` otherwise. Sorts every failure into transient (retry later) or
//! permanent (a 5xx answer).
//!
//! It sends exactly what it is given and never touches the ledger; it never retries by
//! itself and is never cancelled half-way through an SMTP transaction by this crate.

use crate::domain::AttemptFailure;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, transport::smtp::PoolConfig,
};
use std::{path::Path, time::Duration};

/// Where messages go.
#[derive(Clone)]
pub enum Mailer {
    /// A pooled SMTP client.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a folder.
    Files(AsyncFileTransport<Tokio1Executor>),
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

    /// Writes `.eml` files into `dir`, creating it when missing.
    pub fn files(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create MAIL_DIR '{}': {e}", dir.display()))?;
        Ok(Mailer::Files(AsyncFileTransport::new(dir)))
    }

    /// Sends one message, waiting for the server's final answer.
    #[tracing::instrument(skip_all, fields(mail.transport = self.name()))]
    pub async fn send(&self, message: Message) -> Result<(), AttemptFailure> {
        match self {
            Mailer::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|error| {
                let reason = error_chain(&error);
                if error.is_permanent() { AttemptFailure::Permanent(reason) } else { AttemptFailure::Transient(reason) }
            }),
            Mailer::Files(files) => {
                files.send(message).await.map(drop).map_err(|error| AttemptFailure::Transient(error_chain(&error)))
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Mailer::Smtp(_) => "smtp",
            Mailer::Files(_) => "file",
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
