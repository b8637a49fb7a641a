//! The S3 blob store against a real S3 implementation (s3s + s3s-fs, with SigV4 and
//! presigned-URL checks) served in-process on 127.0.0.1:0, so no outside service is
//! needed. Each scenario that touches the database runs on SQLite and PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::prelude::*;
use hashdrop_server::Config;
use hashdrop_wire::*;
use reqwest::StatusCode;
use rusty_s3::S3Action;
use tokio::task::JoinHandle;

const BUCKET: &str = "hashdrop-test";
const ACCESS_KEY: &str = "HDTESTACCESSKEY";
const SECRET_KEY: &str = "hdtest-secret-key-0123456789";

/// An s3s-fs server over a temp dir. Stopping it closes the listener and every open
/// connection (the server's pooled keep-alive ones included), like a crash.
pub(crate) struct S3Server {
    pub(crate) addr: SocketAddr,
    root: tempfile::TempDir,
    task: Option<JoinHandle<()>>,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
}

impl S3Server {
    pub(crate) async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("s3 root");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind s3");
        let mut s = S3Server {
            addr: listener.local_addr().unwrap(),
            root,
            task: None,
            crash: None,
        };
        s.serve(listener);
        s.create_bucket().await;
        s
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let fs = s3s_fs::FileSystem::new(self.root.path()).expect("s3s-fs");
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let (crash, mut crashed) = tokio::sync::oneshot::channel::<()>();
        self.crash = Some(crash);
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let sock = tokio::select! {
                    _ = &mut crashed => break,
                    accepted = listener.accept() => match accepted {
                        Ok((sock, _)) => sock,
                        Err(_) => continue,
                    },
                };
                let svc = service.clone();
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
            // Every connection closed before the task ends (and drops the listener):
            // a request sent after `stop` returns can reach nothing.
            conns.shutdown().await;
        }));
    }

    /// Through the S3 API, so the bucket is what a real store would have.
    async fn create_bucket(&self) {
        let bucket = rusty_s3::Bucket::new(
            format!("http://{}/", self.addr).parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            BUCKET,
            "us-east-1",
        )
        .unwrap();
        let creds = rusty_s3::Credentials::new(ACCESS_KEY, SECRET_KEY);
        let url = bucket.create_bucket(&creds).sign(Duration::from_secs(60));
        let r = reqwest::Client::new().put(url).send().await.unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Closes the listener and every connection, and returns once they are closed
    /// (an aborted task is dropped later, on some worker thread: a keep-alive
    /// connection could still answer a request sent just after `abort`).
    async fn stop(&mut self) {
        if let Some(crash) = self.crash.take() {
            let _ = crash.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Serves again on the same port and data.
    async fn restart(&mut self) {
        self.stop().await;
        let addr = self.addr;
        let listener = poll(Duration::from_secs(5), || async move {
            tokio::net::TcpListener::bind(addr).await.ok()
        })
        .await
        .expect("rebind the s3 port");
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!(
            "s3://{BUCKET}?endpoint=http://{}&region=us-east-1&path_style=true",
            self.addr
        )
    }

    pub(crate) fn configure(&self, c: &mut Config) {
        c.blob_store = Some(self.url());
        c.s3.access_key_id = Some(ACCESS_KEY.into());
        c.s3.secret_access_key = Some(SECRET_KEY.into());
    }

    /// Where s3s-fs keeps an object: read directly, as independent evidence.
    pub(crate) fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Every regular file in the bucket other than s3s-fs's own metadata.
    pub(crate) fn objects(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        let base = self.root.path().join(BUCKET);
        walk(&base, &base, &mut out);
        out.retain(|k| !k.starts_with(".") && !k.contains("/."));
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn app_on(s3: &S3Server, b: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(b, |c| {
        s3.configure(c);
        tweak(c);
    })
    .await
}

crate::both_backends!(
    full_flow_on_s3,
    store_outage_is_a_fast_503_and_writes_nothing
);

async fn full_flow_on_s3(b: Backend) {
    let s3 = S3Server::start().await;
    let app = app_on(&s3, b, |_| {}).await;

    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (ready.status.as_str(), ready.checks.blob_store.as_str()),
        ("ready", "ok")
    );

    let t = app.user("s3@example.com").await;
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let p = app.upload(&t.access_token, &data).await;
    // The upload URL points at the store, never at this server.
    assert!(
        p.upload_resource
            .as_ref()
            .expect("one PUT")
            .url
            .starts_with(&format!("http://{}/{BUCKET}/", s3.addr)),
        "{}",
        p.upload_resource.as_ref().expect("one PUT").url
    );
    assert_eq!(std::fs::read(s3.object_path(&p.object_key)).unwrap(), data);
    let d = app.details(&t.access_token, &p.file_id).await;
    assert_eq!(d.status, "uploaded");
    assert_eq!(d.encrypted_size_bytes, data.len() as u64);

    // The counted download answers 303 to a presigned GET on the store.
    let loc = expect(
        app.api.download(&d.download_url),
        StatusCode::SEE_OTHER,
        "download",
    )
    .await
    .to_string();
    assert!(loc.starts_with(&format!("http://{}/", s3.addr)), "{loc}");
    // The share page may connect to this server and to the store's origin, no other.
    let page = app.client.get(&d.share_url).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!("connect-src 'self' http://{};", s3.addr)),
        "{csp}"
    );
    let got = app.client.get(&loc).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);
    // Range works on the same URL (the web page and resumable downloads need it).
    let part = app.get_range(&loc, "bytes=100-199").await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &data[100..200]);

    // With S3 the server serves no bytes itself.
    let r = app.page(&format!("/blob/{}", p.object_key)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .put_blob(&app.url(&format!("/blob/{}", p.object_key)), "x")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Delete: the row goes at once, the object through the job queue.
    expect(
        app.api_as(&t.access_token).delete_file(&p.file_id),
        StatusCode::NO_CONTENT,
        "delete",
    )
    .await;
    let blobs = app.state.blobs.clone();
    let key = p.object_key.clone();
    let gone = poll(Duration::from_secs(10), || {
        let (blobs, key) = (blobs.clone(), key.clone());
        async move { matches!(blobs.size(&key).await, Ok(None)).then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "delete job removes the object");
    assert!(!s3.object_path(&p.object_key).exists());
    assert!(s3.objects().is_empty(), "{:?}", s3.objects());
    // Deleting an absent key succeeds (a retried job must not fail forever).
    app.state.blobs.delete(&p.object_key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_are_enforced_by_the_store() {
    let s3 = S3Server::start().await;
    let app = app_on(&s3, Backend::Sqlite, |_| {}).await;
    let t = app.user("sig@example.com").await;
    let tok = t.access_token.as_str();
    let api = app.api_as(tok);
    let p = app.presigned(tok, &presign_request(10)).await;
    let url = p.upload_resource.as_ref().expect("one PUT").url.clone();
    let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["X-Amz-SignedHeaders"], "content-length;host");

    // One flipped signature character.
    let sig_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone().into_bytes();
    tampered[sig_at] = if tampered[sig_at] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let r = app.put_blob(&tampered, vec![1u8; 10]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The signature is for this key only.
    let other = url.replacen(&p.file_id, &uuid_like(), 1);
    assert_eq!(
        app.put_blob(&other, vec![1u8; 10]).await.status(),
        StatusCode::FORBIDDEN
    );
    // Larger and smaller than declared: the signed Content-Length does not match.
    for n in [11usize, 9, 1000] {
        let r = app.put_blob(&url, vec![1u8; n]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{n} bytes");
    }
    // A chunked body (no Content-Length at all) is refused too.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![1u8; 10])]);
    let r = app.put_blob(&url, reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.state.blobs.size(&p.object_key).await.unwrap(), None);
    assert!(s3.objects().is_empty(), "{:?}", s3.objects());
    let complete = complete_request(&p.file_id);
    let s = status(api.complete(&complete)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "nothing was uploaded");

    // The CLI's way: a streaming body with an explicit Content-Length, which hyper
    // sends with length framing, not chunked.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![7u8; 4]), Ok(vec![8u8; 6])];
    let r = app
        .client
        .put(&url)
        .header("content-length", 10)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    expect(api.complete(&complete), StatusCode::OK, "complete").await;
    assert_eq!(s3.objects(), vec![p.object_key.clone()]);

    // GET URLs: tampered → 403; expired → 403 (signed for 1 s, used after 2).
    let get = app
        .state
        .blobs
        .presign_get(&p.object_key, Duration::from_secs(60));
    assert_eq!(
        app.client.get(&get).send().await.unwrap().status(),
        StatusCode::OK
    );
    let sig_at = get.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut bad_get = get.clone().into_bytes();
    bad_get[sig_at] = if bad_get[sig_at] == b'0' { b'1' } else { b'0' };
    let bad_get = String::from_utf8(bad_get).unwrap();
    assert_eq!(
        app.client.get(&bad_get).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let short_get = app
        .state
        .blobs
        .presign_get(&p.object_key, Duration::from_secs(1));
    let fresh_key = format!(
        "{}/{}",
        p.object_key.split('/').next().unwrap(),
        uuid_like()
    );
    let (short_put, _) = app
        .state
        .blobs
        .presign_put(&fresh_key, 3, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        app.client.get(&short_get).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.put_blob(&short_put, vec![1u8; 3]).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.state.blobs.size(&fresh_key).await.unwrap(), None);
    assert_eq!(s3.objects(), vec![p.object_key.clone()]);
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000001".into()
}

async fn store_outage_is_a_fast_503_and_writes_nothing(b: Backend) {
    let mut s3 = S3Server::start().await;
    let app = app_on(&s3, b, |c| c.limits.pending_upload_ttl_secs = 0).await;
    let t = app.user("outage@example.com").await;
    let tok = t.access_token.as_str();
    let api = app.api_as(tok);
    // Uploaded but not completed when the store goes away.
    let p = app.presigned(tok, &presign_request(10)).await;
    assert_eq!(
        app.put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            vec![5u8; 10]
        )
        .await
        .status(),
        StatusCode::OK
    );

    s3.stop().await;
    // readyz probes for real: it reports the store, and stays 200 (degraded).
    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ready.status, "degraded");
    assert_eq!(ready.checks.blob_store, "error");
    assert_eq!(ready.checks.database, "ok");

    let rows = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files")
            .fetch_one(&app.sql().await)
            .await
            .unwrap();
        n
    };
    let before = rows().await;
    for _ in 0..3 {
        let started = Instant::now();
        let e = refused(
            api.presign(&presign_request(10)),
            StatusCode::SERVICE_UNAVAILABLE,
            "presign",
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(3), "fast 503");
        assert_eq!(e.retry_after, Some(30));
        assert_eq!(e.code(), "store_unavailable");
    }
    assert_eq!(rows().await, before, "presign wrote no row");
    let (used,): (i64,) = sqlx::query_as("SELECT used_bytes FROM global_usage WHERE id = 1")
        .fetch_one(&app.sql().await)
        .await
        .unwrap();
    assert_eq!(used, 10, "only the first upload holds quota");

    // complete needs the store's HEAD: 503, and the file stays pending.
    let e = refused(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::SERVICE_UNAVAILABLE,
        "complete",
    )
    .await;
    assert_eq!(e.retry_after, Some(30));
    assert_eq!(e.code(), "store_unavailable");
    assert_eq!(app.details(tok, &p.file_id).await.status, "pending");

    // Once the store is back, the pending sweeper fails the file and its object goes.
    s3.restart().await;
    assert!(s3.object_path(&p.object_key).exists());
    let n = hashdrop_server::service::cleaners::run(
        &app.state,
        hashdrop_server::domain::job::Cleaner::StalePendingUploads,
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(app.details(tok, &p.file_id).await.status, "failed");
    let gone = poll(Duration::from_secs(10), || async {
        (!s3.object_path(&p.object_key).exists()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the blob delete job ran against the store");
    let ok = poll(Duration::from_secs(10), || async {
        (status(api.presign(&presign_request(10))).await == StatusCode::OK).then_some(())
    })
    .await;
    assert!(ok.is_some(), "presign works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_answered_gives_503_from_the_first_request() {
    // A port that was bound and released: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.blob_store = Some(format!(
            "s3://{BUCKET}?endpoint=http://{closed}&path_style=true"
        ));
        c.s3.access_key_id = Some(ACCESS_KEY.into());
        c.s3.secret_access_key = Some(SECRET_KEY.into());
    })
    .await;
    let t = app.user("closed@example.com").await;
    let e = refused(
        app.api_as(&t.access_token).presign(&presign_request(10)),
        StatusCode::SERVICE_UNAVAILABLE,
        "presign",
    )
    .await;
    assert_eq!(e.code(), "store_unavailable");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM files")
        .fetch_one(&app.sql().await)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_readiness_error_not_an_outage() {
    let s3 = S3Server::start().await;
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        s3.configure(c);
        c.s3.secret_access_key = Some("not-the-secret".into());
    })
    .await;
    let (_, ready) = crate::common::readiness(&app).await;
    assert_eq!(ready.checks.blob_store, "error");
    // The store answered, so this is no outage: complete's HEAD fails as a 500.
    let t = app.user("creds@example.com").await;
    let p = app.presigned(&t.access_token, &presign_request(10)).await;
    let complete = CompleteRequest {
        plaintext_hash: Some("ab".repeat(32)),
        ..complete_request(&p.file_id)
    };
    assert_eq!(
        status(app.api_as(&t.access_token).complete(&complete)).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_go_to_the_bucket() {
    let s3 = S3Server::start().await;
    let app = app_on(&s3, Backend::Sqlite, |c| c.backup.keep = 2).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(
            hashdrop_server::service::ops::backup_now(&app.state)
                .await
                .unwrap(),
        );
        // Snapshot names carry a millisecond stamp.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listed = app.state.blobs.list("backups").await.unwrap();
    assert_eq!(listed, keys[1..].to_vec(), "oldest pruned, newest kept");
    assert_eq!(s3.objects(), keys[1..].to_vec());
    let dst = app.data_dir.join("restored.sqlite");
    app.state.blobs.get_file(&keys[2], &dst).await.unwrap();
    let head = std::fs::read(&dst).unwrap();
    assert!(head.starts_with(b"SQLite format 3\0"));
    assert_eq!(
        head.len() as u64,
        std::fs::metadata(s3.object_path(&keys[2])).unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::common::test_config(dir.path());
    cfg.blob_store = Some("s3://Bad_Bucket?endpoint=http://127.0.0.1:1&path_style=true".into());
    cfg.s3.access_key_id = Some("k".into());
    cfg.s3.secret_access_key = Some("s".into());
    let e = format!(
        "{:#}",
        hashdrop_server::App::build(cfg.clone()).await.unwrap_err()
    );
    assert!(e.contains("invalid bucket"), "{e}");
    cfg.blob_store = Some("gcs://bucket".into());
    let e = format!(
        "{:#}",
        hashdrop_server::App::build(cfg.clone()).await.unwrap_err()
    );
    assert!(e.contains("unsupported blob_store"), "{e}");
    cfg.blob_store = Some("s3://bucket?endpoint=http://127.0.0.1:1&path_style=true".into());
    cfg.s3.secret_access_key = None;
    let e = format!("{:#}", hashdrop_server::App::build(cfg).await.unwrap_err());
    assert!(e.contains("must be set together"), "{e}");
}

/// Security review: a presigned GET asks the store to serve the object as an opaque
/// attachment, so an uploader cannot choose the Content-Type a browser renders (the
/// uploader may PUT any Content-Type; S3 serves it back unless the GET overrides it).
/// s3s-fs ignores the overrides, so this checks that they are signed into the URL
/// and that the store accepts the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_gets_ask_for_an_opaque_attachment() {
    let s3 = S3Server::start().await;
    let app = app_on(&s3, Backend::Sqlite, |_| {}).await;
    let t = app.user("s3-type@example.com").await;
    let p = app.upload(&t.access_token, b"<html>x</html>").await;
    let d = app.details(&t.access_token, &p.file_id).await;
    let url = expect(
        app.api.download(&d.download_url),
        StatusCode::SEE_OTHER,
        "download",
    )
    .await;
    let loc = url.to_string();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("response-content-type").map(String::as_str),
        Some("application/octet-stream"),
        "{loc}"
    );
    assert!(
        q.get("response-content-disposition")
            .is_some_and(|v| v.starts_with("attachment")),
        "{loc}"
    );
    let got = app.client.get(&loc).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"<html>x</html>");
}
