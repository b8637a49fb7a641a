//! The SMTP mailer against a real SMTP server (Python's aiosmtpd, recording every
//! message it accepts into a directory), through the durable mail job.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::prelude::*;
use hashdrop_server::domain::job::KIND_SEND_MAIL;
use hashdrop_server::store::jobs;
use reqwest::StatusCode;

const SERVER_PY: &str = r#"
import os, sys, time
from aiosmtpd.controller import Controller

out, port = sys.argv[1], int(sys.argv[2])

class Record:
    async def handle_DATA(self, server, session, envelope):
        name = "%d-%s" % (time.time_ns(), os.getpid())
        tmp = os.path.join(out, "." + name)
        with open(tmp, "wb") as f:
            f.write(("X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(("X-Envelope-From: %s\r\n" % envelope.mail_from).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(out, name + ".eml"))
        return "250 OK"

controller = Controller(Record(), hostname="127.0.0.1", port=port)
controller.start()
while True:
    time.sleep(3600)
"#;

/// The Python with aiosmtpd, or `None` with a notice (a failure under
/// HASHDROP_TEST_REQUIRE_SERVICES=1).
fn smtp_python() -> Option<PathBuf> {
    let python = std::env::var("HASHDROP_TEST_SMTP_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/var/tmp/hashdrop-venv/bin/python".into());
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python.into());
    }
    crate::common::service_missing(&format!(
        "smtp test: no Python with aiosmtpd at {python} (scripts/install-deps.sh installs it)"
    ));
    None
}

/// An aiosmtpd process on `port`, writing each accepted message to `dir`.
struct SmtpServer {
    child: Child,
}

impl SmtpServer {
    async fn start(python: &Path, dir: &Path, port: u16) -> SmtpServer {
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SERVER_PY).unwrap();
        let out = dir.join("inbox");
        std::fs::create_dir_all(&out).unwrap();
        let child = Command::new(python)
            .arg(&script)
            .arg(&out)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        poll(Duration::from_secs(15), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
        .expect("aiosmtpd accepts connections");
        SmtpServer { child }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn inbox(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir.join("inbox")) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, text)| text).collect()
}

fn code_in(mail: &str) -> String {
    let i = mail.find("code is: ").expect("code in mail") + "code is: ".len();
    mail[i..i + 6].to_string()
}

fn smtp_config(c: &mut hashdrop_server::Config, port: u16) {
    c.mailer = format!("smtp://127.0.0.1:{port}?tls=none");
    c.mail_from = "Hashdrop Test <no-reply@hashdrop.test>".into();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otp_mail_goes_out_over_smtp_and_verifies_the_account() {
    let Some(python) = smtp_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let _smtp = SmtpServer::start(&python, dir.path(), port).await;
    let app = TestApp::spawn_with(Backend::Sqlite, |c| smtp_config(c, port)).await;

    let email = "smtp-user@example.com";
    let pw = "correct horse battery";
    assert_eq!(app.register(email, pw).await.status(), StatusCode::CREATED);
    let mail = poll(Duration::from_secs(15), || async {
        inbox(dir.path()).pop()
    })
    .await
    .expect("mail delivered to the SMTP server");
    assert!(mail.contains(&format!("X-Envelope-To: {email}")), "{mail}");
    assert!(
        mail.contains("X-Envelope-From: no-reply@hashdrop.test"),
        "{mail}"
    );
    assert!(mail.contains(&format!("To: {email}")), "{mail}");
    assert!(
        mail.contains("Subject: Your Hashdrop verification code"),
        "{mail}"
    );
    let code = code_in(&mail);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code:?}");
    // No log-mailer spool: the mail went out over SMTP only.
    assert!(!app.data_dir.join("mail").exists());

    app.verify_and_login(email, &code, pw).await;
    assert_eq!(inbox(dir.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_mail_job_retries_and_is_delivered_once_when_up() {
    let Some(python) = smtp_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port(); // nothing listens here yet
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        smtp_config(c, port);
        c.jobs.max_attempts = 1000;
        c.jobs.backoff_base_ms = 50;
        c.jobs.backoff_max_ms = 200;
    })
    .await;
    let email = "retry@example.com";
    assert_eq!(
        app.register(email, "long enough pw").await.status(),
        StatusCode::CREATED
    );
    let job = poll(Duration::from_secs(15), || async {
        jobs::list(&app.state.db, None)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.kind == KIND_SEND_MAIL && j.attempts >= 2)
    })
    .await
    .expect("the mail job fails and is retried");
    assert!(
        job.last_error.as_deref().unwrap_or("").contains("smtp"),
        "{job:?}"
    );
    assert_ne!(job.state, "dead");

    let _smtp = SmtpServer::start(&python, dir.path(), port).await;
    let mail = poll(Duration::from_secs(15), || async {
        inbox(dir.path()).pop()
    })
    .await
    .expect("delivered once the relay is up");
    assert!(mail.contains(&format!("X-Envelope-To: {email}")), "{mail}");
    let done = poll(Duration::from_secs(10), || async {
        jobs::list(&app.state.db, Some("done"))
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.id == job.id)
    })
    .await
    .expect("job done");
    assert!(done.attempts > job.attempts);
    // Give a duplicate every chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inbox(dir.path()).len(), 1, "delivered exactly once");
}
