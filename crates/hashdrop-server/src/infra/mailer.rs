//! Outgoing mail. The embedded `log` mailer prints each message and writes it as one
//! `.eml` file under `{data_dir}/mail/`, which is also how tests read OTPs.

use std::path::PathBuf;

use async_trait::async_trait;

pub use crate::domain::job::Mail;

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
        // The spool holds OTPs: private directory, private files.
        crate::infra::private_fs::create_dir_async(&self.dir).await?;
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
            crate::infra::crypto::random_hex(4)
        );
        // Write then rename so a reader never sees half a message.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        crate::infra::private_fs::write_new(&tmp, eml.as_bytes()).await?;
        tokio::fs::rename(&tmp, self.dir.join(&name)).await?;
        // Never the body: it carries the OTP, and logs outlive it and reach more people.
        tracing::info!(to = %mail.to, subject = %mail.subject, file = %name, "mail (log mailer)");
        Ok(())
    }
}

/// TLS mode of an SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on localhost or a private network only).
    None,
    /// Plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// Where and how to reach an SMTP relay, parsed from
/// `smtp://[user:pass@]host:port?tls=none|starttls|tls`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Relay host name (also the name its certificate must carry).
    pub host: String,
    /// Relay port; defaults to 465 with `tls=tls`, else 587.
    pub port: u16,
    /// TLS mode; defaults to `starttls`.
    pub tls: SmtpTls,
    /// `(user, password)` for AUTH, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password must not reach a log line.
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl SmtpSettings {
    /// Parses a `smtp://` mailer URL.
    pub fn parse(s: &str) -> anyhow::Result<SmtpSettings> {
        // Errors never quote the URL: it may hold a password.
        let url = url::Url::parse(s).map_err(|e| anyhow::anyhow!("invalid smtp:// URL: {e}"))?;
        anyhow::ensure!(url.scheme() == "smtp", "mailer URL must start with smtp://");
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow::anyhow!("smtp:// URL needs a host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let mut tls = SmtpTls::StartTls;
        for (k, v) in url.query_pairs() {
            match (k.as_ref(), v.as_ref()) {
                ("tls", "none") => tls = SmtpTls::None,
                ("tls", "starttls") => tls = SmtpTls::StartTls,
                ("tls", "tls") => tls = SmtpTls::Tls,
                ("tls", _) => anyhow::bail!("smtp:// tls= must be none, starttls or tls"),
                _ => anyhow::bail!("unknown smtp:// URL parameter {k:?}"),
            }
        }
        let port = url.port().unwrap_or(match tls {
            SmtpTls::Tls => 465,
            _ => 587,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| anyhow::anyhow!("smtp:// credentials are not UTF-8"))
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            Some((
                decode(url.username())?,
                decode(url.password().unwrap_or(""))?,
            ))
        };
        Ok(SmtpSettings {
            host,
            port,
            tls,
            credentials,
        })
    }
}

/// Delivers through an SMTP relay (lettre, tokio, rustls). A failed delivery is an
/// error, so the mail job retries with the queue's backoff and nothing is lost while
/// the relay is down.
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
    settings: SmtpSettings,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("settings", &self.settings)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `url` sending as `from` (`Name <addr@host>` or `addr@host`).
    pub fn new(url: &str, from: &str) -> anyhow::Result<SmtpMailer> {
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        let settings = SmtpSettings::parse(url)?;
        let from: lettre::message::Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid mail_from {from:?}: {e}"))?;
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(TlsParameters::new(settings.host.clone())?),
            SmtpTls::Tls => Tls::Wrapper(TlsParameters::new(settings.host.clone())?),
        };
        let mut builder =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&settings.host)
                .port(settings.port)
                .tls(tls)
                // A hung relay must fail the job (and retry it), not hold the worker.
                .timeout(Some(std::time::Duration::from_secs(15)));
        if let Some((user, pass)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(SmtpMailer {
            transport: builder.build(),
            from,
            settings,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        use lettre::AsyncTransport;
        let to: lettre::message::Mailbox = mail
            .to
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid recipient: {e}"))?;
        let msg = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.body.clone())?;
        self.transport.send(msg).await.map_err(|e| {
            anyhow::anyhow!(
                "smtp delivery to {}:{} failed: {e}",
                self.settings.host,
                self.settings.port
            )
        })?;
        tracing::info!(to = %mail.to, subject = %mail.subject, "mail sent (smtp)");
        Ok(())
    }
}

/// Builds the mailer named by `mailer`: `log` or `smtp://...`.
pub fn from_config(cfg: &crate::config::Config) -> anyhow::Result<std::sync::Arc<dyn Mailer>> {
    if cfg.mailer == "log" {
        Ok(std::sync::Arc::new(LogMailer::new(
            cfg.data_dir.join("mail"),
        )))
    } else if cfg.mailer.starts_with("smtp://") {
        Ok(std::sync::Arc::new(SmtpMailer::new(
            &cfg.mailer,
            &cfg.mail_from,
        )?))
    } else {
        anyhow::bail!("unsupported mailer (want \"log\" or smtp://host:port?tls=...)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log sink for one test: everything the subscriber writes, in memory.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs are shipped and kept far longer than an OTP lives, and read by more
    /// people: the log mailer's line names the message, never its body.
    #[tokio::test]
    async fn log_mailer_keeps_the_body_out_of_the_log() {
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        LogMailer::new(dir.path().join("mail"))
            .send(&Mail {
                to: "a@example.com".into(),
                subject: "Your Hashdrop verification code".into(),
                body: "Your Hashdrop verification code is: 493817\n".into(),
            })
            .await
            .unwrap();
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("mail (log mailer)"), "{text}");
        assert!(!text.contains("493817"), "the code reached the log: {text}");
    }

    #[test]
    fn smtp_url_parses_and_defaults() {
        let s = SmtpSettings::parse("smtp://relay.example.com").unwrap();
        assert_eq!(
            (s.port, s.tls, s.credentials),
            (587, SmtpTls::StartTls, None)
        );
        let s = SmtpSettings::parse("smtp://me%40x.org:p%3Ass@h:2525?tls=none").unwrap();
        assert_eq!(s.host, "h");
        assert_eq!((s.port, s.tls), (2525, SmtpTls::None));
        assert_eq!(
            s.credentials,
            Some(("me@x.org".to_string(), "p:ss".to_string()))
        );
        assert_eq!(SmtpSettings::parse("smtp://h?tls=tls").unwrap().port, 465);
        assert!(SmtpSettings::parse("smtp://h?tls=maybe").is_err());
        assert!(SmtpSettings::parse("smtp://h?other=1").is_err());
        assert!(SmtpSettings::parse("smtps://h").is_err());
        let debug = format!("{:?}", SmtpSettings::parse("smtp://u:secret@h").unwrap());
        assert!(!debug.contains("secret"), "{debug}");
    }
}
