//! Outgoing mail. The embedded `log` mailer prints each message and writes it as one
//! `.eml` file under `{data_dir}/mail/`, which is also how tests read OTPs.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One plain-text message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Something that delivers mail.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Delivers one message; an error makes the mail job retry.
    async fn send(&self, mail: &Mail) -> anyhow::Result<()>;
}

/// Writes mail to the log and to `.eml` files.
#[derive(Debug, Clone)]
pub struct LogMailer {
    dir: PathBuf,
}

impl LogMailer {
    /// Mailer spooling into `dir`.
    pub fn new(dir: PathBuf) -> Self {
        LogMailer { dir }
    }
}

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let now = time::OffsetDateTime::now_utc();
        let date = now
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        let eml = format!(
            "From: Hashdrop <no-reply@hashdrop.invalid>\r\nTo: <{}>\r\nSubject: {}\r\nDate: {}\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
            mail.to,
            mail.subject,
            date,
            mail.body.replace('\n', "\r\n")
        );
        let name = format!(
            "{}-{}.eml",
            now.unix_timestamp_nanos(),
            crate::crypto::random_hex(4)
        );
        // Write then rename so a reader never sees half a message.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&tmp, eml.as_bytes()).await?;
        tokio::fs::rename(&tmp, self.dir.join(&name)).await?;
        tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.body, file = %name, "mail (log mailer)");
        Ok(())
    }
}
