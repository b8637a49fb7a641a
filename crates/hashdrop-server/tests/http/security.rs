//! Regression tests for the holes reported in issue 11, one story per hole, each
//! over real HTTP against a real server (and real HAProxy where the hole is about
//! being behind it).

use std::collections::HashMap;
use std::time::Duration;

use crate::prelude::*;
use hashdrop_client::Client;
use reqwest::StatusCode;

/// Hole 1: behind HAProxy (`option forwardfor` appends its own `X-Forwarded-For` line) a
/// client that sends its own `X-Forwarded-For` must still be limited as itself.
mod forwarded_for {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spoofed_header_behind_haproxy_does_not_dodge_the_login_limit() {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.rate_limit.enabled = true;
            c.rate_limit.auth.per_key_per_minute = 5;
            c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })
        .await;
        let Some(proxy) = crate::common::HaproxyProcess::start(&app.base).await else {
            return;
        };
        // The client comes from another loopback address than the proxy, as a real
        // client comes from another host.
        let client = reqwest::Client::builder()
            .local_address(Some("127.0.0.2".parse().unwrap()))
            .build()
            .unwrap();
        let api = Client::with_http(proxy.base().parse().unwrap(), client);
        let login = credentials("nobody@example.com", "whatever1");
        let mut limited = 0;
        for i in 0..30 {
            let spoofed = forwarded_for(api.login(&login), &[&format!("198.51.100.{i}")]);
            let r = api.http().execute(spoofed).await.unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                limited += 1;
            }
        }
        // 5 tokens (plus at most a little refill while the 30 requests run).
        assert!(
            limited >= 23,
            "only {limited} of 30 logins were limited: the spoofed header chose the key"
        );
    }

    /// `trusted_proxies` takes CIDR ranges, and every `X-Forwarded-For` line counts:
    /// the key is the right-most address a trusted proxy vouches for, here the one
    /// the (simulated) proxy appended on its own line after the client's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trusted_proxies_accept_cidr_ranges_and_every_header_line() {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.rate_limit.enabled = true;
            c.rate_limit.auth.per_key_per_minute = 3;
            c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        })
        .await;
        let login = credentials("nobody@example.com", "whatever1");
        let mut limited = 0;
        for i in 0..10 {
            let client_line = format!("198.51.100.{i}");
            let lines = [client_line.as_str(), "203.0.113.7"];
            let r = app.send(forwarded_for(app.api.login(&login), &lines)).await;
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                limited += 1;
            }
        }
        assert!(limited >= 6, "only {limited} of 10 logins were limited");
    }
}

/// Hole 2: anonymous traffic on the health group must not make readiness answer 429.
mod probes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthz_flood_does_not_take_readyz_down() {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.rate_limit.enabled = true;
            c.rate_limit.health.global_per_minute = 20;
        })
        .await;
        for _ in 0..40 {
            status(app.api.healthz()).await;
            status(app.api.readyz()).await;
        }
        let s = status(app.api.readyz()).await;
        assert_eq!(s, StatusCode::OK, "readyz after a flood");
        let s = status(app.api.healthz()).await;
        assert_eq!(s, StatusCode::OK, "healthz after a flood");
    }
}

/// Hole 3: a presigned PUT URL is only good while its `pending` file exists.
async fn presigned_put_after_delete_is_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("put-after-delete@example.com").await;
    let p = app.presigned(&t.access_token, &presign_request(5)).await;
    expect(
        app.api_as(&t.access_token).delete_file(&p.file_id),
        StatusCode::NO_CONTENT,
        "delete",
    )
    .await;
    let r = app
        .put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "PUT for a deleted file");
    assert_eq!(error_code(r).await, "not_found");
    let path = app.data_dir.join("blobs").join(&p.object_key);
    assert!(!path.exists(), "no object stored for a deleted file");

    // And once uploaded, the object cannot be overwritten through the same URL.
    let p = app.presigned(&t.access_token, &presign_request(5)).await;
    let r = app
        .put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            b"HELLO".to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        std::fs::read(app.data_dir.join("blobs").join(&p.object_key)).unwrap(),
        b"hello"
    );
}

/// Hole 4: parallel deletes of one file release its quota once.
async fn parallel_deletes_release_quota_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("parallel-delete@example.com").await;
    let p = app
        .presigned(&t.access_token, &presign_request(50_000_000))
        .await;
    let api = app.api_as(&t.access_token);
    let answers =
        futures_util::future::join_all((0..8).map(|_| status(api.delete_file(&p.file_id)))).await;
    let ok = answers
        .iter()
        .filter(|s| **s == StatusCode::NO_CONTENT)
        .count();
    assert_eq!(ok, 1, "exactly one delete wins");
    assert_eq!(
        crate::common::usage(&app, "parallel-delete@example.com").await,
        (0, 0, 0),
        "quota released once"
    );
}

async fn verify(app: &TestApp, email: &str, otp: &str) -> reqwest::Response {
    let verify = verify_request(email, otp);
    app.api.verify(&verify).response().await.expect("request")
}

fn wrong_code(otp: &str, i: usize) -> String {
    (0..)
        .map(|n: usize| format!("{:06}", n + i * 10))
        .find(|g| g != otp)
        .unwrap()
}

/// Hole 5: registering again does not hand out new guesses nor change the password.
async fn reregister_keeps_attempts_and_password(b: Backend) {
    let app = TestApp::spawn(b).await;
    let email = "rereg@example.com";
    assert_eq!(
        app.register(email, "first password").await.status(),
        StatusCode::CREATED
    );
    let otp1 = app.otp_for(email).await;
    for i in 0..3 {
        let r = verify(&app, email, &wrong_code(&otp1, i)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Someone registers the same unverified address again with another password.
    assert_eq!(
        app.register(email, "attacker password").await.status(),
        StatusCode::CREATED
    );
    let otp2 = poll(Duration::from_secs(10), || async {
        let o = app.otp_for(email).await;
        (o != otp1).then_some(o)
    })
    .await
    .unwrap_or(otp1.clone());
    // The cap (5) counts the guesses made before: two more are evaluated, then 429.
    for i in 3..5 {
        let r = verify(&app, email, &wrong_code(&otp2, i)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let r = verify(&app, email, &wrong_code(&otp2, 5)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "6th guess");

    // A second account: re-registration with another password, then the mailbox
    // owner verifies. The password is still the first one.
    let email = "rereg2@example.com";
    assert_eq!(
        app.register(email, "first password").await.status(),
        StatusCode::CREATED
    );
    let otp1 = app.otp_for(email).await;
    assert_eq!(
        app.register(email, "attacker password").await.status(),
        StatusCode::CREATED
    );
    let otp = poll(Duration::from_secs(10), || async {
        let o = app.otp_for(email).await;
        (o != otp1).then_some(o)
    })
    .await
    .unwrap_or(otp1);
    assert_eq!(
        verify(&app, email, &otp).await.status(),
        StatusCode::NO_CONTENT
    );
    let login = |pw: &str| app.api.login(&credentials(email, pw));
    let s = status(login("attacker password")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "attacker password");
    expect(login("first password"), StatusCode::OK, "owner's password").await;
}

/// Hole 6: `verify` answers alike for an unknown, a verified and an unverified account.
async fn verify_does_not_reveal_accounts(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.user("verified@example.com").await;
    assert_eq!(
        app.register("pending@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::CREATED
    );
    let otp = app.otp_for("pending@example.com").await;
    let mut answers = Vec::new();
    for (email, code) in [
        ("verified@example.com", "000000".to_string()),
        ("unknown@example.com", "000000".to_string()),
        ("pending@example.com", wrong_code(&otp, 0)),
    ] {
        let r = verify(&app, email, &code).await;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        answers.push((email, status, body));
    }
    for (email, status, body) in &answers {
        assert_eq!(
            (*status, body),
            (answers[2].1, &answers[2].2),
            "{email} answers like a wrong code"
        );
    }
    assert_eq!(answers[2].1, StatusCode::UNAUTHORIZED);
}

/// Hole 7: strings in request bodies are bounded and checked before anything is stored.
async fn presign_rejects_bad_mime_types(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("mime@example.com").await;
    let api = app.api_as(&t.access_token);
    let with_mime = |m: &str| PresignRequest {
        mime_type: Some(m.into()),
        ..presign_request(5)
    };
    for bad in [
        "a/".to_string() + &"b".repeat(1_000_000),
        "text/".to_string() + &"x".repeat(300),
        "text".into(),
        "text/plain\r\nX-Injected: 1".into(),
        "<script>/x".into(),
        "".into(),
    ] {
        let what = format!("{:.40}", bad);
        let e = refused(
            api.presign(&with_mime(&bad)),
            StatusCode::BAD_REQUEST,
            &what,
        )
        .await;
        assert_eq!(e.code(), "bad_request");
    }
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files")
        .fetch_one(&app.sql().await)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing stored for refused presigns");
    for good in [
        "application/octet-stream",
        "text/plain",
        "application/vnd.ms-excel",
        "image/svg+xml",
    ] {
        expect(api.presign(&with_mime(good)), StatusCode::OK, good).await;
    }
}

/// Hole 8: the data dir and everything secret in it is private to the server's user,
/// even when it runs under umask 000.
mod file_modes {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_files_are_private_under_umask_000() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let port = crate::common::free_port();
        let mut child = crate::common::ChildGuard(
            std::process::Command::new("sh")
                .arg("-c")
                .arg("umask 000; exec \"$0\" --listen \"$1\" --data-dir \"$2\"")
                .arg(env!("CARGO_BIN_EXE_hashdrop-server"))
                .arg(format!("127.0.0.1:{port}"))
                .arg(&data)
                .env("HASHDROP_AUTH__ARGON2_M_COST_KIB", "64")
                .env("HASHDROP_AUTH__ARGON2_T_COST", "1")
                .env("HASHDROP_JOBS__POLL_INTERVAL_MS", "50")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn hashdrop-server"),
        );
        let api = Client::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        poll(Duration::from_secs(20), || async {
            let r = api.healthz().response().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await
        .expect("server up");
        // A mail (OTP) and a blob, so every kind of file exists.
        let creds = credentials("modes@example.com", "long enough pw");
        expect(api.register(&creds), StatusCode::CREATED, "register").await;
        let mail_dir = data.join("mail");
        let eml = poll(Duration::from_secs(10), || async {
            std::fs::read_dir(&mail_dir)
                .ok()?
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                .map(|e| e.path())
        })
        .await
        .expect("mail written");
        let text = std::fs::read_to_string(&eml).unwrap();
        let i = text.find("code is: ").unwrap() + 9;
        let otp = &text[i..i + 6];
        let verify = verify_request("modes@example.com", otp);
        expect(api.verify(&verify), StatusCode::NO_CONTENT, "verify").await;
        let t = expect(api.login(&creds), StatusCode::OK, "login").await;
        let p = expect(
            api.with_token(t.access_token).presign(&presign_request(5)),
            StatusCode::OK,
            "presign",
        )
        .await;
        let r = api
            .http()
            .put(&p.upload_resource.as_ref().expect("one PUT").url)
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let blob = data.join("blobs").join(&p.object_key);

        let mut modes = HashMap::new();
        for dir in [
            data.clone(),
            data.join("blobs"),
            blob.parent().unwrap().to_path_buf(),
            mail_dir.clone(),
        ] {
            modes.insert(dir.display().to_string(), (mode(&dir), 0o700));
        }
        for file in [
            eml,
            blob,
            data.join("secrets.toml"),
            data.join("hashdrop.db"),
            data.join("hashdrop.db-wal"),
        ] {
            modes.insert(file.display().to_string(), (mode(&file), 0o600));
        }
        child.stop();
        let wrong: Vec<String> = modes
            .iter()
            .filter(|(_, (got, want))| got != want)
            .map(|(p, (got, want))| format!("{p}: {got:o}, want {want:o}"))
            .collect();
        assert!(wrong.is_empty(), "modes: {wrong:#?}");
    }
}

/// Hole 9: `HEAD` on a download link is not a download.
async fn head_does_not_count_as_download(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.limits.daily_downloads_per_file = 3).await;
    let t = app.user("head@example.com").await;
    let p = app.upload(&t.access_token, b"hello").await;
    let link = app.details(&t.access_token, &p.file_id).await.download_url;
    for _ in 0..3 {
        let r = app.client.head(&link).send().await.unwrap();
        assert!(r.status().is_success(), "HEAD answers {}", r.status());
        assert!(
            r.headers().get("location").is_none(),
            "HEAD hands out no blob URL"
        );
    }
    for i in 0..3 {
        let s = status(app.api.download(&link)).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "download {i}");
    }
    assert_eq!(
        status(app.api.download(&link)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = app.client.head(&link).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "HEAD tells the limit"
    );
}

crate::both_backends!(
    presigned_put_after_delete_is_refused,
    parallel_deletes_release_quota_once,
    reregister_keeps_attempts_and_password,
    verify_does_not_reveal_accounts,
    presign_rejects_bad_mime_types,
    head_does_not_count_as_download,
);

// ---------------------------------------------------------------- review items

/// R1. The OTP lives only in the mail: not in a finished job's payload (jobs are
/// kept for days) nor in the log line of the log mailer (checked next to its code).
async fn otp_is_not_kept_in_finished_jobs(b: Backend) {
    let app = TestApp::spawn(b).await;
    assert_eq!(
        app.register("jobs-otp@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::CREATED
    );
    let otp = app.otp_for("jobs-otp@example.com").await;
    let payloads = poll(Duration::from_secs(10), || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT state, payload FROM jobs WHERE kind = 'send_mail'")
                .fetch_all(&app.sql().await)
                .await
                .ok()?;
        rows.iter()
            .all(|(s, _)| s == "done")
            .then_some(rows)
            .filter(|r| !r.is_empty())
    })
    .await
    .expect("mail job done");
    for (_, payload) in payloads {
        assert!(
            !payload.contains(&otp),
            "finished job keeps the code: {payload}"
        );
    }
}

/// R2. Registering sends mail: a handful per IP and hour, not ten a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_is_limited_per_ip_per_hour() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.rate_limit.enabled = true).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = app
            .register(&format!("many{i}@example.com"), "long enough pw")
            .await;
        statuses.push(r.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

/// R2. Password guessing against one account from many addresses is throttled
/// per account (keyed by the normalized email), whatever the client IPs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_throttled_per_account() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limit.enabled = true;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let mut limited = 0;
    for i in 0..20 {
        let email = if i % 2 == 0 {
            "Victim@Example.com"
        } else {
            " victim@example.com"
        };
        let guess = credentials(email, &format!("guess number {i}"));
        let ip = format!("198.51.100.{i}");
        let r = app.send(forwarded_for(app.api.login(&guess), &[&ip])).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 guesses were throttled");
    // Another account is not affected.
    let other = credentials("other@example.com", "whatever1");
    let r = app
        .send(forwarded_for(app.api.login(&other), &["198.51.100.99"]))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// R3. With `metrics_token` set, `/metrics` wants it as a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_require_the_configured_token() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        crate::common::merge_toml(c, "metrics_token = \"scrape-secret-123\"")
    })
    .await;
    let e = refused(app.api.metrics(None), StatusCode::UNAUTHORIZED, "no token").await;
    assert_eq!(e.code(), "unauthorized");
    assert_eq!(
        status(app.api.metrics(Some("wrong-secret"))).await,
        StatusCode::UNAUTHORIZED
    );
    let text = expect(
        app.api.metrics(Some("scrape-secret-123")),
        StatusCode::OK,
        "metrics with the token",
    )
    .await;
    assert!(text.contains("hashdrop_"));
}

/// R4. A blob PUT whose client stops sending is cut off, and leaves no `.part` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_blob_put_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        crate::common::merge_toml(c, "[limits]\nupload_idle_timeout_secs = 1")
    })
    .await;
    let t = app.user("stall@example.com").await;
    let p = app.presigned(&t.access_token, &presign_request(10)).await;
    let url = reqwest::Url::parse(&p.upload_resource.as_ref().expect("one PUT").url).unwrap();
    let mut sock = tokio::net::TcpStream::connect(url.socket_addrs(|| None).unwrap()[0])
        .await
        .unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        url.path(),
        url.query().unwrap()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(8), sock.read(&mut answer))
        .await
        .expect("the server answers a stalled upload")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let dir = app
        .data_dir
        .join("blobs")
        .join(p.object_key.split('/').next().unwrap());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// R4. `.part-*` files a crash left behind are swept once old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_part_files_are_swept() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let dir = app.data_dir.join("blobs").join("usrh-crashed");
    std::fs::create_dir_all(&dir).unwrap();
    let stale = dir.join("0a1b.part-123456");
    let fresh = dir.join("0a1c.part-654321");
    let object = dir.join("0a1d");
    for p in [&stale, &fresh, &object] {
        std::fs::write(p, b"x").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for p in [&stale, &object] {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let n = hashdrop_server::service::cleaners::run(
        &app.state,
        hashdrop_server::domain::job::Cleaner::StaleUploadParts,
    )
    .await
    .expect("cleaner runs");
    assert_eq!(n, 1);
    assert!(!stale.exists(), "stale part removed");
    assert!(fresh.exists(), "an upload in progress is kept");
    assert!(object.exists(), "objects are never touched");
}

/// R6. Downloads are served as opaque attachments, whatever type the uploader
/// claimed (local store here; the S3 variant is in tests/s3.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_blob_get_is_an_opaque_attachment() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let t = app.user("html@example.com").await;
    let p = app
        .upload_with(&t.access_token, b"<script>alert(1)</script>", |p| {
            p.mime_type = Some("text/html".into())
        })
        .await;
    let link = app.details(&t.access_token, &p.file_id).await.download_url;
    let loc = expect(app.api.download(&link), StatusCode::SEE_OTHER, "download").await;
    let r = app.client.get(loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h.get("content-disposition")
            .is_some_and(|v| v.to_str().unwrap().starts_with("attachment")),
        "{h:?}"
    );
}

crate::both_backends!(otp_is_not_kept_in_finished_jobs);
