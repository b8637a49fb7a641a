//! Operational behaviour: job retries and `jobs retry`, backup + restore, graceful
//! shutdown, configuration layering.

use std::process::Command;
use std::time::Duration;

use crate::prelude::*;
use hashdrop_client::Client;
use hashdrop_server::domain::job::{Job, KIND_SEND_MAIL};
use hashdrop_server::store::jobs;
use reqwest::StatusCode;

crate::both_backends!(
    failing_job_goes_dead_and_jobs_retry_revives_it,
    graceful_shutdown_finishes_in_flight_request
);

/// A request that never finishes does not keep the server alive past
/// `shutdown_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_stuck_request() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |c| c.shutdown_timeout_secs = 1).await;
    let t = app.user("stuck@example.com").await;
    let p = app.presigned(&t.access_token, &presign_request(2000)).await;
    let (tx, put) = start_stalled_upload(&app, &p, 10).await;
    let started = std::time::Instant::now();
    app.stop().await; // would hang without the timeout: the body never ends
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(15),
        "waited {waited:?}"
    );
    drop(tx);
    let _ = put.await;
}

fn server_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hashdrop-server"));
    // The child must not inherit layering inputs from the developer's shell.
    for (k, _) in std::env::vars() {
        if k.starts_with("HASHDROP_") {
            c.env_remove(k);
        }
    }
    c.env("HASHDROP_LOG", "warn");
    c
}

async fn job_row(app: &TestApp, id: i64) -> jobs::JobRow {
    jobs::list(&app.state.db, None)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.id == id)
        .expect("job listed")
}

async fn failing_job_goes_dead_and_jobs_retry_revives_it(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.jobs.max_attempts = 3).await;
    // Break the mailer: its spool path is a file, so every send fails.
    let mail = app.data_dir.join("mail");
    std::fs::write(&mail, b"not a directory").unwrap();
    assert_eq!(
        app.register("j@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::CREATED
    );
    let id = poll(Duration::from_secs(15), || async {
        jobs::list(&app.state.db, Some("dead"))
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.kind == KIND_SEND_MAIL)
            .map(|j| j.id)
    })
    .await
    .expect("mail job ends dead");
    let row = job_row(&app, id).await;
    assert_eq!(row.attempts, 3);
    assert!(row.last_error.is_some());

    // `jobs list` shows it, `jobs retry` revives it; with the mailer fixed it succeeds.
    let base_args = |c: &mut Command| {
        c.arg("--data-dir")
            .arg(&app.data_dir)
            .arg("--database-url")
            .arg(&app.database_url);
    };
    let mut list = server_bin();
    base_args(&mut list);
    let out = list
        .args(["jobs", "list", "--state", "dead"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("send_mail") && text.contains("dead"),
        "{text}"
    );

    std::fs::remove_file(&mail).unwrap();
    let mut retry = server_bin();
    base_args(&mut retry);
    let out = retry
        .args(["jobs", "retry", &id.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.state.jobs_notify.notify_one();
    let done = poll(Duration::from_secs(15), || async {
        (job_row(&app, id).await.state == "done").then_some(())
    })
    .await;
    assert!(done.is_some(), "revived job completes");
    assert_eq!(app.otp_for("j@example.com").await.len(), 6);

    // Retrying a job that is not dead fails loudly.
    let mut again = server_bin();
    base_args(&mut again);
    let out = again
        .args(["jobs", "retry", &id.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

async fn graceful_shutdown_finishes_in_flight_request(b: Backend) {
    let mut app = TestApp::spawn_with(b, |c| c.shutdown_grace_ms = 400).await;
    let t = app.user("g@example.com").await;
    let p = app.presigned(&t.access_token, &presign_request(2000)).await;
    // An upload whose body is still arriving when shutdown starts.
    let (tx, put) = start_stalled_upload(&app, &p, 1000).await;

    app.begin_shutdown();
    // While draining, readiness says 503.
    let fresh = Client::new(app.base.parse().unwrap());
    let not_ready = poll(Duration::from_secs(5), || async {
        match fresh.readyz().response().await {
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(not_ready.is_some(), "readyz 503 while draining");

    tx.send(Ok(vec![2u8; 1000])).await.unwrap();
    drop(tx);
    let r = put.await.unwrap().expect("in-flight upload answered");
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
    assert_eq!(
        app.state.blobs.size(&p.object_key).await.unwrap(),
        Some(2000)
    );
    // The listener is closed afterwards.
    assert!(fresh.healthz().response().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_and_restore_round_trip() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let keep = app.user("keep@example.com").await;
    app.upload(&keep.access_token, b"kept").await;
    // The scheduled path: a backup job run by the worker.
    {
        let now = hashdrop_server::domain::time::now_ms();
        jobs::enqueue_once(&app.state.db, &Job::Backup, "backup:test", 3, now)
            .await
            .unwrap();
    }
    app.state.jobs_notify.notify_one();
    let blobs = app.state.blobs.clone();
    let key = poll(Duration::from_secs(15), || {
        let blobs = blobs.clone();
        async move { blobs.list("backups").await.unwrap().pop() }
    })
    .await
    .expect("backup stored in the blob store");
    // Changes after the snapshot are lost by a restore.
    app.user("late@example.com").await;
    app.stop().await;
    let tmp = app.take_data_dir().unwrap();

    let mut restore = server_bin();
    let out = restore
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["restore", "--from", &key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cfg = crate::common::test_config(tmp.path());
    let app2 = TestApp::start(cfg, Backend::Sqlite).await;
    let login = |email: &str| app2.api.login(&credentials(email, "correct horse battery"));
    let t = expect(login("keep@example.com"), StatusCode::OK, "login").await;
    let files = expect(
        app2.api_as(&t.access_token).list_all(),
        StatusCode::OK,
        "list",
    )
    .await;
    assert_eq!(files.len(), 1);
    assert_eq!(
        status(login("late@example.com")).await,
        StatusCode::UNAUTHORIZED
    );
    drop(app2);
    drop(tmp);
}

#[test]
fn config_layers_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hashdrop.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1111\"\npublic_url = \"https://file.example\"\n[limits]\nuser_files = 7\n",
    )
    .unwrap();
    let show = |f: &dyn Fn(&mut Command)| {
        let mut c = server_bin();
        f(&mut c);
        let out = c.arg("show-config").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = show(&|_| {});
    assert_eq!(v["listen"], "127.0.0.1:8080");
    assert_eq!(v["data_dir"], "./hashdrop-data");
    let v = show(&|c| {
        c.env("HASHDROP_CONFIG", &file);
    });
    assert_eq!(v["listen"], "127.0.0.1:1111");
    assert_eq!(v["limits"]["user_files"], 7);
    let v = show(&|c| {
        c.env("HASHDROP_CONFIG", &file)
            .env("HASHDROP_LISTEN", "127.0.0.1:2222")
            .env("HASHDROP_LIMITS__USER_FILES", "9")
            .env("HASHDROP_UNRELATED_CLI_SETTING", "ignored");
    });
    assert_eq!(v["listen"], "127.0.0.1:2222");
    assert_eq!(v["limits"]["user_files"], 9);
    assert_eq!(v["public_url"], "https://file.example");
    let v = show(&|c| {
        c.env("HASHDROP_CONFIG", &file)
            .env("HASHDROP_LISTEN", "127.0.0.1:2222")
            .args([
                "--listen",
                "127.0.0.1:3333",
                "--public-url",
                "https://flag.example",
            ]);
    });
    assert_eq!(v["listen"], "127.0.0.1:3333");
    assert_eq!(v["public_url"], "https://flag.example");

    let out = server_bin().arg("example-config").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[limits]") && text.contains("HASHDROP_"));
    let out = server_bin().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "--data-dir",
        "--config",
        "--public-url",
        "HASHDROP_LISTEN",
    ] {
        assert!(help.contains(needle), "--help mentions {needle}");
    }
}

/// The server binary on `--listen 127.0.0.1:0` over `dir`, stdout piped, after `tweak`;
/// returns the child and the URL its first line announces.
fn spawn_binary(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut Command),
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut command = server_bin();
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("HASHDROP_AUTH__ARGON2_M_COST_KIB", "64")
        .stdout(std::process::Stdio::piped());
    tweak(&mut command);
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("hashdrop-server listening on ")
        .expect("address line")
        .to_string();
    (child, url)
}

/// The binary on `--listen 127.0.0.1:0`: prints its address, serves, and exits
/// cleanly on SIGTERM.
#[test]
fn binary_serves_on_port_zero_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = spawn_binary(dir.path(), |c| {
        c.env("HASHDROP_LOG", "info")
            .stderr(std::process::Stdio::piped());
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Client::new(url.parse().unwrap());
        let mut probe = api.readyz().into_request().unwrap();
        probe
            .headers_mut()
            .insert("x-request-id", "probe-4711".parse().unwrap());
        let r = api.http().execute(probe).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-request-id"], "probe-4711");
    });
    assert!(
        dir.path().join("secrets.toml").exists(),
        "secrets generated"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "clean exit on SIGTERM: {:?}",
        out.status
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.lines()
            .any(|l| l.contains("request_id=probe-4711") && l.contains("request finished")),
        "request id on the request's log line:\n{logs}"
    );
    assert!(logs.contains("shutdown complete"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_keep_only_the_newest() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.backup.keep = 2).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        let key = hashdrop_server::service::ops::backup_now(&app.state)
            .await
            .unwrap();
        made.push(key);
        // Distinct millisecond stamps: wait for the clock, not a fixed time.
        let last = hashdrop_server::domain::time::now_ms();
        poll(Duration::from_secs(1), || async {
            (hashdrop_server::domain::time::now_ms() > last).then_some(())
        })
        .await;
    }
    let listed = app.state.blobs.list("backups").await.unwrap();
    assert_eq!(listed, made[1..].to_vec());
}

/// Committed data survives SIGKILL (SQLite WAL, synchronous=NORMAL).
#[test]
fn sigkill_loses_no_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let start = || spawn_binary(dir.path(), |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    let creds = credentials("k@example.com", "long enough pw");
    let (mut child, url) = start();
    let mail_dir = dir.path().join("mail");
    let otp = rt.block_on(async {
        let api = Client::new(url.parse().unwrap());
        expect(api.register(&creds), StatusCode::CREATED, "register").await;
        poll(Duration::from_secs(10), || {
            let d = mail_dir.clone();
            async move {
                let e = std::fs::read_dir(&d)
                    .ok()?
                    .flatten()
                    .find(|e| e.file_name().to_string_lossy().ends_with(".eml"))?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                let i = text.find("code is: ")? + "code is: ".len();
                Some(text[i..i + 6].to_string())
            }
        })
        .await
        .expect("mail written")
    });
    child.kill().unwrap(); // SIGKILL: no shutdown path runs
    child.wait().unwrap();

    let (mut child, url) = start();
    rt.block_on(async {
        // The account and its OTP were committed before the kill, so verifying with
        // the code from the first run works, and so does logging in.
        let api = Client::new(url.parse().unwrap());
        let verify = verify_request("k@example.com", &otp);
        expect(api.verify(&verify), StatusCode::NO_CONTENT, "verify").await;
        expect(api.login(&creds), StatusCode::OK, "login").await;
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

type BodySender = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;
type PendingPut = tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>;

/// Starts a PUT to `p`'s upload URL that sends `first` bytes and then waits for more on
/// the returned sender; returns once the server is inside the handler (its temp file
/// exists).
async fn start_stalled_upload(
    app: &TestApp,
    p: &PresignResponse,
    first: usize,
) -> (BodySender, PendingPut) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let client = app.client.clone();
    let url = p.upload_resource.as_ref().expect("one PUT").url.clone();
    let put = tokio::spawn(async move { client.put(&url).body(body).send().await });
    tx.send(Ok(vec![1u8; first])).await.unwrap();
    let blobs_dir = app.data_dir.join("blobs");
    let in_flight = poll(Duration::from_secs(5), || {
        let d = blobs_dir.clone();
        async move {
            let prefix = std::fs::read_dir(&d).ok()?.next()?.ok()?.path();
            std::fs::read_dir(prefix).ok()?.next().map(|_| ())
        }
    })
    .await;
    assert!(in_flight.is_some(), "upload in flight");
    (tx, put)
}

crate::both_backends!(
    health_readiness_version_metrics_openapi,
    admin_reset_is_dev_only,
    readiness_fails_without_blob_store,
    malformed_input_is_json_400_everywhere,
);

async fn health_readiness_version_metrics_openapi(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app.api.healthz().response().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "OK");

    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ready.checks.database, "ok");
    assert_eq!(ready.checks.blob_store, "ok");
    assert_eq!(ready.checks.cache, "disabled");
    assert_eq!(ready.checks.rate_limit, "disabled");
    assert_eq!(ready.status, "ready");
    assert!(!ready.draining);

    let v = expect(app.api.cli_version(), StatusCode::OK, "cli version").await;
    assert!(!v.compatible_version.is_empty());

    let text = expect(app.api.metrics(None), StatusCode::OK, "metrics").await;
    assert!(text.contains("hashdrop_http_requests_total"), "{text}");

    let doc = expect(app.api.openapi(), StatusCode::OK, "openapi").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/files/presign",
        "/files/download/{user_hash}/{file_id}",
        "/api/share/{file_id}",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }

    let r = app.page("/no/such/route").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
}

async fn admin_reset_is_dev_only(b: Backend) {
    let app = TestApp::spawn(b).await;
    assert_eq!(status(app.api.admin_reset()).await, StatusCode::FORBIDDEN);
    let dev = TestApp::spawn_with(b, |c| c.dev_mode = true).await;
    let t = dev.user("r@example.com").await;
    dev.upload(&t.access_token, b"z").await;
    expect(dev.api.admin_reset(), StatusCode::NO_CONTENT, "reset").await;
    let login = credentials("r@example.com", "correct horse battery");
    assert_eq!(
        status(dev.api.login(&login)).await,
        StatusCode::UNAUTHORIZED
    );
}

/// Every route in the OpenAPI table is served (no fallback 404, no 405), so the
/// document cannot list a route the router lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_table_matches_router() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for route in hashdrop_server::http::openapi::ROUTES {
        let (method, path) = (route.method, route.path);
        let concrete = path
            .replace("{user_hash}", "usrh-00")
            .replace("{file_id}", "00000000-0000-0000-0000-000000000000")
            .replace("{prefix}", "usrh-00")
            .replace("{name}", "x");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .client
            .request(m, app.url(&concrete))
            .send()
            .await
            .unwrap();
        assert_ne!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        if r.status() == StatusCode::NOT_FOUND {
            if let Ok(b) = r.json::<ErrorBody>().await {
                assert_ne!(b.error, "no such route", "{method} {path}");
            }
        }
    }
}

async fn readiness_fails_without_blob_store(b: Backend) {
    let app = TestApp::spawn(b).await;
    std::fs::remove_dir_all(app.data_dir.join("blobs")).unwrap();
    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.checks.blob_store, "error");
    assert_eq!(ready.checks.database, "ok");
    // Liveness is unaffected.
    assert_eq!(status(app.api.healthz()).await, StatusCode::OK);
}

async fn malformed_input_is_json_400_everywhere(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("bad@example.com").await;
    let api = app.api_as(&t.access_token);
    // Every endpoint with a JSON body, as the client sends it (the account ones with
    // the token), each body then swapped for one that does not fit.
    let creds = credentials("bad@example.com", "correct horse battery");
    let verify = verify_request("bad@example.com", "0");
    let json_endpoints = || {
        [
            app.api.register(&creds).into_request(),
            app.api.verify(&verify).into_request(),
            app.api.login(&creds).into_request(),
            api.delete_account(&creds).into_request(),
            app.api.refresh("r").into_request(),
            app.api.revoke("r").into_request(),
            api.presign(&presign_request(1)).into_request(),
            api.complete(&complete_request("f")).into_request(),
        ]
    };
    for body in ["{", "[]", "{\"unexpected\": true}"] {
        for request in json_endpoints() {
            let mut request = request.unwrap();
            let what = format!("{} {} {body}", request.method(), request.url().path());
            *request.body_mut() = Some(body.into());
            let r = app.send(request).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
            assert_eq!(error_code(r).await, "bad_request", "{what}");
        }
    }
    // The id-taking endpoints without their id, with and without the token.
    for (with_token, without_token) in [
        (
            without_query(api.details("x")),
            without_query(app.api.details("x")),
        ),
        (
            without_query(api.file_hash("x")),
            without_query(app.api.file_hash("x")),
        ),
        (
            without_query(api.salt("x")),
            without_query(app.api.salt("x")),
        ),
        (
            without_query(api.resolve("x")),
            without_query(app.api.resolve("x")),
        ),
    ] {
        let path = with_token.url().path().to_string();
        let r = app.send(with_token).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} without id");
        assert_eq!(
            app.send(without_token).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(status(api.salt("xyz")).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        status(app.api.share_info("not-a-uuid")).await,
        StatusCode::BAD_REQUEST
    );
    // Query strings that do not parse are JSON 400s too, on the blob routes as well
    // (signed blob URLs come from the server, so these are written out by hand).
    let mut twice = api.details("a").into_request().unwrap();
    twice.url_mut().set_query(Some("id=a&id=b"));
    let blob = |method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&t.access_token)
            .build()
            .unwrap()
    };
    for request in [
        blob(Method::GET, "/blob/usrh-x/y?exp=soon&sig=00"),
        blob(Method::PUT, "/blob/usrh-x/y?sig=00"),
        twice,
    ] {
        let what = format!("{} {}", request.method(), request.url());
        let r = app.send(request).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(error_code(r).await, "bad_request", "{what}");
    }
}
