//! End-to-end API tests over real HTTP, each on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use common::{error_code, poll, presign_body, Backend, TestApp};
use hashdrop_wire::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

both_backends!(
    health_readiness_version_metrics_openapi,
    file_status_column_takes_only_the_four_states,
    register_verify_login_errors,
    otp_brute_force_is_capped,
    refresh_rotation_reuse_and_revoke,
    upload_list_download_share_delete,
    cross_user_access_is_404,
    quota_race_never_overshoots,
    download_counter_race_exactly_limit,
    max_downloads_and_expiry,
    signed_url_tampering_and_expiry,
    oversized_put_is_cut_off,
    rate_limit_answers_429_with_headers,
    delete_account_removes_rows_and_blobs,
    stale_pending_upload_cleaner_releases_quota,
    admin_reset_is_dev_only,
    per_user_and_forwarded_ip_buckets,
    concurrent_workers_run_each_job_once,
    readiness_fails_without_blob_store,
    presign_and_complete_validation,
    hash_may_arrive_at_complete_instead_of_presign,
    expired_otp_and_refresh_token,
    cleaners_remove_expired_rows,
    ambiguous_prefix_delete_is_409,
    malformed_input_is_json_400_everywhere,
);

async fn health_readiness_version_metrics_openapi(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app.get("/api/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "OK");

    let r = app.get("/api/readyz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ready: Readiness = r.json().await.unwrap();
    assert_eq!(ready.checks.database, "ok");
    assert_eq!(ready.checks.blob_store, "ok");
    assert_eq!(ready.checks.cache, "disabled");
    assert_eq!(ready.checks.rate_limit, "disabled");
    assert_eq!(ready.status, "ready");
    assert!(!ready.draining);

    let v: CliVersion = app
        .get("/api/cli/version", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(!v.compatible_version.is_empty());

    let m = app.get("/metrics", None).await;
    assert_eq!(m.status(), StatusCode::OK);
    let text = m.text().await.unwrap();
    assert!(text.contains("hashdrop_http_requests_total"), "{text}");

    let doc: serde_json::Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/files/presign",
        "/files/download/{user_hash}/{file_id}",
        "/api/share/{file_id}",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }

    let r = app.get("/no/such/route", None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "not_found");
}

async fn register_verify_login_errors(b: Backend) {
    let app = TestApp::spawn(b).await;
    // Malformed JSON and bad input are JSON 400s.
    let r = app
        .client
        .post(app.url("/api/user/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "bad_request");
    assert_eq!(
        app.register("a@example.com", "short").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.register("not-an-email", "long enough pw")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    let r = app.register("a@example.com", "long enough pw").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let u: UserResponse = r.json().await.unwrap();
    assert_eq!(u.email, "a@example.com");
    assert!(uuid::Uuid::parse_str(&u.id).is_ok());

    // Unverified accounts cannot log in.
    let login = json!({"email": "a@example.com", "password": "long enough pw"});
    let r = app.post("/api/user/login", None, login.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let otp = app.otp_for("a@example.com").await;
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    let verify = |code: &str| json!({"email": "a@example.com", "otp": code});
    let r = app
        .send_json(Method::PATCH, "/api/user/verify", None, verify(wrong))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .send_json(
            Method::PATCH,
            "/api/user/verify",
            None,
            json!({"email": "nobody@example.com", "otp": otp}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .send_json(Method::PATCH, "/api/user/verify", None, verify(&otp))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A verified email cannot be registered again.
    let r = app.register("A@example.com", "another password").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let r = app
        .post(
            "/api/user/login",
            None,
            json!({"email": "a@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(r).await, "unauthorized", "wrong credentials");
    let r = app.post("/api/user/login", None, login).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: LoginResponse = r.json().await.unwrap();
    assert_eq!(t.access_token.split('.').count(), 3);
    assert!(t.refresh_token.len() >= 32);

    // Bearer checks: a missing or bad access token has its own code, so a client
    // knows that refreshing may help.
    for token in [None, Some("garbage")] {
        let r = app.get("/api/files/all", token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(r).await, "invalid_token");
    }
    // Fresh account: the reference answers 404 for an empty list.
    assert_eq!(
        app.get("/api/files/all", Some(&t.access_token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

async fn otp_brute_force_is_capped(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.auth.otp_max_attempts = 3;
        c.auth.otp_ttl_secs = 3;
    })
    .await;
    assert_eq!(
        app.register("b@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::CREATED
    );
    let otp = app.otp_for("b@example.com").await;
    let guesses: Vec<String> = (0..10)
        .map(|i| format!("{:06}", i))
        .filter(|g| *g != otp)
        .take(8)
        .collect();
    // Parallel guesses: at most 3 are even evaluated.
    let futs = guesses.iter().map(|g| {
        app.send_json(
            Method::PATCH,
            "/api/user/verify",
            None,
            json!({"email": "b@example.com", "otp": g}),
        )
    });
    let results = futures_util::future::join_all(futs).await;
    let unauthorized = results
        .iter()
        .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
        .count();
    let capped = results
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(unauthorized, 3);
    assert_eq!(capped, 5);
    // Even the right code is refused now.
    let r = app
        .send_json(
            Method::PATCH,
            "/api/user/verify",
            None,
            json!({"email": "b@example.com", "otp": otp}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(r).await, "otp_attempts_exceeded");
    // Registering again does not hand out new guesses while the burned code lives.
    let r = app.register("b@example.com", "long enough pw").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(r).await, "otp_attempts_exceeded");
    // Once it has expired, registering again issues a fresh code that works.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        app.register("b@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::CREATED
    );
    let otp2 = poll(Duration::from_secs(10), || async {
        let o = app.otp_for("b@example.com").await;
        (o != otp).then_some(o)
    })
    .await
    .expect("second code");
    let r = app
        .send_json(
            Method::PATCH,
            "/api/user/verify",
            None,
            json!({"email": "b@example.com", "otp": otp2}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn refresh_rotation_reuse_and_revoke(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("c@example.com").await;
    let r = app
        .post(
            "/api/token/refresh",
            None,
            json!({"refresh_token": t.refresh_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r1: RefreshResponse = r.json().await.unwrap();
    assert_ne!(r1.refresh_token, t.refresh_token);
    assert_eq!(
        app.get("/api/files/all", Some(&r1.access_token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Reusing the rotated token fails and kills the whole family.
    let r = app
        .post(
            "/api/token/refresh",
            None,
            json!({"refresh_token": t.refresh_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .post(
            "/api/token/refresh",
            None,
            json!({"refresh_token": r1.refresh_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Revoke: a fresh login's token stops working.
    let t2: LoginResponse = app
        .post(
            "/api/user/login",
            None,
            json!({"email": "c@example.com", "password": "correct horse battery"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .post(
            "/api/token/revoke",
            None,
            json!({"refresh_token": t2.refresh_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .post(
            "/api/token/refresh",
            None,
            json!({"refresh_token": t2.refresh_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .post(
            "/api/token/refresh",
            None,
            json!({"refresh_token": "nonsense"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .post("/api/token/revoke", None, json!({"nope": 1}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn upload_list_download_share_delete(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("d@example.com").await;
    let tok = t.access_token.as_str();
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let p = app
        .upload(tok, &data, json!({"key_management_mode": "passphrase"}))
        .await;
    assert!(p.object_key.starts_with("usrh-"));
    assert!(p.object_key.ends_with(&p.file_id));

    // complete is idempotent.
    let r = app
        .post(
            "/api/files/complete",
            Some(tok),
            json!({"file_id": p.file_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let c: CompleteResponse = r.json().await.unwrap();
    assert_eq!(c.uploaded_file_size, 5000);
    assert_eq!(c.s3_object_key, p.object_key);

    let all: Vec<FileSummary> = app
        .get("/api/files/all", Some(tok))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, "uploaded");
    assert_eq!(all[0].key_management_mode, KeyMode::Passphrase);
    assert_eq!(all[0].encrypted_size_bytes, 5000);

    let prefix = &p.file_id[..6];
    let m: Vec<FileMatch> = app
        .get(&format!("/api/files/resolve?id={prefix}"), Some(tok))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        m,
        vec![FileMatch {
            file_name: "report.pdf".into(),
            file_id: p.file_id.clone()
        }]
    );
    assert_eq!(
        app.get("/api/files/resolve", Some(tok)).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/files/resolve?id=zz%25", Some(tok))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/files/resolve?id=ffffffff-0", Some(tok))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let d = app.details(tok, prefix).await;
    assert_eq!(d.plaintext_hash, "ab".repeat(32));
    assert_eq!(d.plaintext_size_bytes, 3);
    assert_eq!(d.s3_key, p.object_key);

    let h: FileHash = app
        .get(&format!("/api/files/hash?id={}", p.file_id), Some(tok))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(h.hash, "ab".repeat(32));
    assert_eq!(
        app.get("/api/files/hash?id=abc", Some(tok)).await.status(),
        StatusCode::BAD_REQUEST
    );
    let r = app
        .get(&format!("/api/files/salt?id={}", p.file_id), Some(tok))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Public share facts: nothing about the owner.
    let r = app.get(&format!("/api/share/{}", p.file_id), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let raw: serde_json::Value = r.json().await.unwrap();
    let text = raw.to_string();
    assert!(!text.contains("d@example.com"));
    let s: ShareInfo = serde_json::from_value(raw).unwrap();
    assert_eq!(s.encrypted_size_bytes, 5000);
    assert_eq!(s.key_management_mode, KeyMode::Passphrase);
    assert_eq!(s.download_url, d.download_url);
    let page = app.get(&format!("/d/{}", p.file_id), None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    // Scripts only from this origin; 'wasm-unsafe-eval' admits WebAssembly (the
    // payload cipher) and no JavaScript eval or inline script.
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
        "{csp}"
    );
    assert!(
        !csp.replace("'wasm-unsafe-eval'", "").contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/web/app.js">"#));
    assert!(html.contains("hashdrop decrypt"));
    for asset in [
        "/web/app.js",
        "/web/style.css",
        "/web/decrypt-worker.js",
        "/d/sw.js",
    ] {
        let r = app.get(asset, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert_eq!(
            r.headers()["content-security-policy"].to_str().unwrap(),
            csp
        );
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    }
    assert_eq!(
        app.get("/d/not-a-uuid", None).await.status(),
        StatusCode::NOT_FOUND
    );

    // Download: 303 to a signed URL serving the bytes, with Range.
    let r = app.client.get(&s.download_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = app.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    let r = app.get_range(&loc, "bytes=100-199").await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..200]);
    assert_eq!(app.details(tok, prefix).await.download_count, 1);
    let bad = app.url(&format!("/files/download/usrh-0000/{}", p.file_id));
    assert_eq!(
        app.client.get(&bad).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let bad = app.url("/files/download/usrh-0000/not-a-uuid");
    assert_eq!(
        app.client.get(&bad).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );

    // Delete by prefix; an ambiguous prefix is refused.
    let p2 = app.upload(tok, b"second", json!({})).await;
    assert_eq!(
        app.delete("/api/files?id=", Some(tok)).await.status(),
        StatusCode::BAD_REQUEST
    );
    let r = app
        .delete(&format!("/api/files?id={}", p.file_id), Some(tok))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.delete(&format!("/api/files?id={}", p.file_id), Some(tok))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/share/{}", p.file_id), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.client
            .get(&s.download_url)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // The object goes through a durable job.
    let blob = app.state.blobs.clone();
    let key = p.object_key.clone();
    let gone = poll(Duration::from_secs(10), || {
        let blob = blob.clone();
        let key = key.clone();
        async move { blob.size(&key).await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "object deleted by job");
    let all: Vec<FileSummary> = app
        .get("/api/files/all", Some(tok))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].file_id, p2.file_id);
}

async fn cross_user_access_is_404(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.user("owner@example.com").await;
    let bb = app.user("intruder@example.com").await;
    let p = app
        .upload(&a.access_token, b"secret bytes", json!({}))
        .await;
    let bt = Some(bb.access_token.as_str());
    let id = &p.file_id;
    for path in [
        format!("/api/files?id={id}"),
        format!("/api/files?id={}", &id[..8]),
        format!("/api/files/resolve?id={id}"),
        format!("/api/files/hash?id={id}"),
        format!("/api/files/salt?id={id}"),
    ] {
        assert_eq!(
            app.get(&path, bt).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        app.delete(&format!("/api/files?id={id}"), bt)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .post("/api/files/complete", bt, json!({"file_id": id}))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // B's own user hash with A's file id.
    let pb = app.upload(&bb.access_token, b"b", json!({})).await;
    let b_hash = pb.object_key.split('/').next().unwrap();
    let r = app
        .client
        .get(app.url(&format!("/files/download/{b_hash}/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Nothing changed for A.
    let d = app.details(&a.access_token, id).await;
    assert_eq!(d.status, "uploaded");
    assert_eq!(d.download_count, 0);
    assert!(app.state.blobs.size(&p.object_key).await.unwrap().is_some());
}

async fn quota_race_never_overshoots(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.limits.user_files = 5;
        c.limits.user_bytes = 1_000_000;
    })
    .await;
    let t = app.user("q@example.com").await;
    let futs = (0..20).map(|_| app.presign(&t.access_token, presign_body(1000)));
    let rs = futures_util::future::join_all(futs).await;
    let ok = rs.iter().filter(|r| r.status() == StatusCode::OK).count();
    let refused = rs
        .iter()
        .filter(|r| r.status() == StatusCode::FORBIDDEN)
        .count();
    assert_eq!((ok, refused), (5, 15));

    // Byte quota, separately: 10 × 300 KB against 1 MB → 3 fit.
    let app2 = TestApp::spawn_with(b, |c| c.limits.user_bytes = 1_000_000).await;
    let t2 = app2.user("q2@example.com").await;
    let rs = futures_util::future::join_all(
        (0..10).map(|_| app2.presign(&t2.access_token, presign_body(300_000))),
    )
    .await;
    assert_eq!(
        rs.iter().filter(|r| r.status() == StatusCode::OK).count(),
        3
    );

    // Global quota → 503 with Retry-After.
    let app3 = TestApp::spawn_with(b, |c| c.limits.global_bytes = 2500).await;
    let t3 = app3.user("q3@example.com").await;
    let rs = futures_util::future::join_all(
        (0..6).map(|_| app3.presign(&t3.access_token, presign_body(1000))),
    )
    .await;
    assert_eq!(
        rs.iter().filter(|r| r.status() == StatusCode::OK).count(),
        2
    );
    let r = rs
        .into_iter()
        .find(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));

    // Per-file max → 413.
    let r = app3
        .presign(
            &t3.access_token,
            presign_body(app3.state.cfg.limits.file_max_bytes + 1),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn download_counter_race_exactly_limit(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.limits.daily_downloads_per_file = 3).await;
    let t = app.user("dl@example.com").await;
    let p = app.upload(&t.access_token, b"payload", json!({})).await;
    let url = app.details(&t.access_token, &p.file_id).await.download_url;
    let rs = futures_util::future::join_all((0..50).map(|_| app.client.get(&url).send())).await;
    let statuses: Vec<StatusCode> = rs.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::SEE_OTHER)
            .count(),
        3
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        47
    );
    let r = app.client.get(&url).send().await.unwrap();
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(error_code(r).await, "download_limit");
    assert_eq!(
        app.details(&t.access_token, &p.file_id)
            .await
            .download_count,
        3
    );
    if b == Backend::Postgres {
        // The counter's pool skips the WAL-flush wait; every other write keeps it.
        let setting = |pool| async move {
            sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
                .fetch_one(pool)
                .await
                .unwrap()
        };
        assert_eq!(setting(app.state.db.relaxed_pool()).await, "off");
        assert_eq!(setting(app.state.db.pool()).await, "on");
    }
}

async fn max_downloads_and_expiry(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("m@example.com").await;
    let tok = &t.access_token;
    let p = app.upload(tok, b"x", json!({"max_downloads": 2})).await;
    let url = app.details(tok, &p.file_id).await.download_url;
    let share_path = format!("/api/share/{}", p.file_id);
    for left in [2, 1] {
        let s: ShareInfo = app.get(&share_path, None).await.json().await.unwrap();
        assert_eq!(s.downloads_left, Some(left));
        assert_eq!(
            app.client.get(&url).send().await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
    }
    // Used up: 410 with a code of its own, so the share page can say which.
    for r in [
        app.client.get(&url).send().await.unwrap(),
        app.get(&share_path, None).await,
    ] {
        assert_eq!(r.status(), StatusCode::GONE);
        let e: ErrorBody = r.json().await.unwrap();
        assert_eq!(e.code, "download_cap_reached");
    }

    // Expiry in the past is refused at presign; a near expiry takes effect.
    let mut body = presign_body(1);
    body["expires_at"] = json!("2001-01-01T00:00:00Z");
    assert_eq!(
        app.presign(tok, body.clone()).await.status(),
        StatusCode::BAD_REQUEST
    );
    body["expires_at"] = json!("tomorrow");
    assert_eq!(
        app.presign(tok, body).await.status(),
        StatusCode::BAD_REQUEST
    );
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let p = app.upload(tok, b"y", json!({"expires_at": soon})).await;
    let s: ShareInfo = app
        .get(&format!("/api/share/{}", p.file_id), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(s.expires_at.is_some());
    assert_eq!(s.downloads_left, None, "no cap, no count");
    let gone = poll(Duration::from_secs(10), || async {
        (app.client
            .get(&s.download_url)
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::GONE)
            .then_some(())
    })
    .await;
    assert!(gone.is_some());
    let r = app.get(&format!("/api/share/{}", p.file_id), None).await;
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().code, "link_expired");
    assert_eq!(
        app.get(&format!("/d/{}", p.file_id), None).await.status(),
        StatusCode::GONE
    );
    // The expired-shares cleaner retires it and frees its object.
    let n = hashdrop_server::jobs::run_cleaner(&app.state, "expired_shares")
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(app.details(tok, &p.file_id).await.status, "deleted");
}

async fn signed_url_tampering_and_expiry(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("s@example.com").await;
    let r = app.presign(&t.access_token, presign_body(10)).await;
    let p: PresignResponse = r.json().await.unwrap();
    let url = p.upload_resource.url.clone();
    let tampered = [
        url.replace("max=10", "max=1000000"),
        url.replace(&p.file_id, &uuid::Uuid::new_v4().to_string()),
        url.replace("sig=", "sig=00"),
        url.replace("/blob/usrh-", "/blob/usrx-"),
        url.split("&sig=").next().unwrap().to_string(),
    ];
    for u in &tampered {
        let r = app.put_blob(u, vec![1u8; 10]).await;
        assert!(
            r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::BAD_REQUEST,
            "{u}: {}",
            r.status()
        );
    }
    // A GET with a PUT signature is refused.
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Path traversal never reaches the filesystem.
    let r = app
        .client
        .get(app.url("/blob/..%2F..%2Fetc/passwd?exp=9999999999&sig=00"))
        .send()
        .await
        .unwrap();
    assert!(r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::NOT_FOUND);
    // The genuine URL works, once: objects are immutable.
    let r = app.put_blob(&url, vec![1u8; 10]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.put_blob(&url, vec![2u8; 10]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Expiry: a URL signed for 1 s stops working.
    let short = app
        .state
        .blobs
        .presign_get(&p.object_key, Duration::from_secs(1));
    assert_eq!(
        app.client.get(&short).send().await.unwrap().status(),
        StatusCode::OK
    );
    let expired = poll(Duration::from_secs(5), || async {
        (app.client.get(&short).send().await.unwrap().status() == StatusCode::FORBIDDEN)
            .then_some(())
    })
    .await;
    assert!(expired.is_some(), "expired URL refused");
}

async fn oversized_put_is_cut_off(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("o@example.com").await;
    let p = app.presigned(&t.access_token, presign_body(1000)).await;
    // Declared length over the limit: refused before reading.
    let r = app.put_blob(&p.upload_resource.url, vec![0u8; 4000]).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed body without a length: cut off once it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![7u8; 500])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = app.put_blob(&p.upload_resource.url, body).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        app.state.blobs.size(&p.object_key).await.unwrap().is_none(),
        "no partial object"
    );
    let leftovers = std::fs::read_dir(
        app.data_dir
            .join("blobs")
            .join(p.object_key.split('/').next().unwrap()),
    )
    .map(|rd| rd.count())
    .unwrap_or(0);
    assert_eq!(leftovers, 0, "no temp files left");
    // complete without an object is a 400; a short object fails the upload.
    let r = app
        .post(
            "/api/files/complete",
            Some(&t.access_token),
            json!({"file_id": p.file_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.put_blob(&p.upload_resource.url, vec![1u8; 999])
            .await
            .status(),
        StatusCode::OK
    );
    let r = app
        .post(
            "/api/files/complete",
            Some(&t.access_token),
            json!({"file_id": p.file_id}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.details(&t.access_token, &p.file_id).await.status,
        "failed"
    );
}

async fn rate_limit_answers_429_with_headers(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.auth.per_key_per_minute = 3;
        c.rate_limit.health.global_per_minute = 1000;
    })
    .await;
    let mut last = None;
    for i in 0..4 {
        let r = app
            .post(
                "/api/user/login",
                None,
                json!({"email": "x@example.com", "password": "whatever1"}),
            )
            .await;
        assert!(r.headers().contains_key("x-ratelimit-limit"));
        assert!(r.headers().contains_key("x-ratelimit-remaining"));
        if i < 3 {
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        last = Some(r);
    }
    let r = last.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(error_code(r).await, "rate_limited");
    // Other groups are unaffected.
    assert_eq!(app.get("/api/healthz", None).await.status(), StatusCode::OK);
}

async fn delete_account_removes_rows_and_blobs(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("del@example.com").await;
    let p = app.upload(&t.access_token, b"bye", json!({})).await;
    let creds = json!({"email": "del@example.com", "password": "correct horse battery"});
    let r = app
        .send_json(Method::DELETE, "/api/user", None, creds.clone())
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let wrong = json!({"email": "del@example.com", "password": "wrong password"});
    let r = app
        .send_json(Method::DELETE, "/api/user", Some(&t.access_token), wrong)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .send_json(
            Method::DELETE,
            "/api/user",
            Some(&t.access_token),
            creds.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.post("/api/user/login", None, creds).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .post(
            "/api/token/refresh",
            None,
            json!({"refresh_token": t.refresh_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get(&format!("/api/share/{}", p.file_id), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let blob = app.state.blobs.clone();
    let gone = poll(Duration::from_secs(10), || {
        let blob = blob.clone();
        let key = p.object_key.clone();
        async move { blob.size(&key).await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert!(gone.is_some());
    let (used,): (i64,) = sqlx::query_as("SELECT used_bytes FROM global_usage WHERE id = 1")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(used, 0);
}

async fn stale_pending_upload_cleaner_releases_quota(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.limits.pending_upload_ttl_secs = 0;
        c.limits.user_files = 1;
    })
    .await;
    let t = app.user("stale@example.com").await;
    let p = app.presigned(&t.access_token, presign_body(10)).await;
    assert_eq!(
        app.put_blob(&p.upload_resource.url, vec![0u8; 10])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.presign(&t.access_token, presign_body(10))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let swept = poll(Duration::from_secs(5), || async {
        let n = hashdrop_server::jobs::run_cleaner(&app.state, "stale_pending_uploads")
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    assert!(swept.is_some());
    assert_eq!(
        app.details(&t.access_token, &p.file_id).await.status,
        "failed"
    );
    assert_eq!(
        app.presign(&t.access_token, presign_body(10))
            .await
            .status(),
        StatusCode::OK
    );
    let blob = app.state.blobs.clone();
    let gone = poll(Duration::from_secs(10), || {
        let blob = blob.clone();
        let key = p.object_key.clone();
        async move { blob.size(&key).await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert!(gone.is_some());
    // Every cleaner runs without error on this backend.
    for c in hashdrop_server::jobs::CLEANERS {
        hashdrop_server::jobs::run_cleaner(&app.state, c)
            .await
            .unwrap();
    }
}

async fn admin_reset_is_dev_only(b: Backend) {
    let app = TestApp::spawn(b).await;
    let r = app.delete("/admin/reset", None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let dev = TestApp::spawn_with(b, |c| c.dev_mode = true).await;
    let t = dev.user("r@example.com").await;
    dev.upload(&t.access_token, b"z", json!({})).await;
    assert_eq!(
        dev.delete("/admin/reset", None).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = dev
        .post(
            "/api/user/login",
            None,
            json!({"email": "r@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Every route in the OpenAPI table is served (no fallback 404, no 405), so the
/// document cannot list a route the router lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_table_matches_router() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for route in hashdrop_server::openapi::ROUTES {
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

async fn per_user_and_forwarded_ip_buckets(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.list.per_key_per_minute = 2;
        c.rate_limit.auth.per_key_per_minute = 4;
        c.rate_limit.register.per_key_per_hour = 2;
        // This story is about per-IP buckets; the per-account one has its own test.
        c.rate_limit.login_account.per_key_per_minute = 100;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let a = app.user("rl-a@example.com").await;
    let bb = app.user("rl-b@example.com").await;
    for _ in 0..2 {
        assert_eq!(
            app.get("/api/files/all", Some(&a.access_token))
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        app.get("/api/files/all", Some(&a.access_token))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another user has their own bucket.
    assert_eq!(
        app.get("/api/files/all", Some(&bb.access_token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Behind a trusted proxy each forwarded client has its own bucket.
    let login = |ip: &'static str| {
        app.client
            .post(app.url("/api/user/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": "nobody@example.com", "password": "whatever1"}))
            .send()
    };
    // The set-up above used up 127.0.0.1's register budget; forwarded clients have
    // their own buckets.
    assert_eq!(
        app.register("rl-c@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..4 {
        assert_eq!(
            login("203.0.113.7").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("203.0.113.7").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("203.0.113.8").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn concurrent_workers_run_each_job_once(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.jobs.worker_enabled = false).await;
    {
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        for i in 0..40 {
            let mail = json!({"to": format!("w{i}@example.com"), "subject": "s", "body": "code is: 123456"});
            hashdrop_server::jobs::enqueue(
                &mut conn,
                hashdrop_server::jobs::KIND_SEND_MAIL,
                &mail,
                None,
                3,
            )
            .await
            .unwrap();
        }
    }
    let (x, y, z) = tokio::join!(
        hashdrop_server::jobs::drain_once(&app.state),
        hashdrop_server::jobs::drain_once(&app.state),
        hashdrop_server::jobs::drain_once(&app.state),
    );
    assert_eq!(x.unwrap() + y.unwrap() + z.unwrap(), 40);
    let mails = std::fs::read_dir(app.data_dir.join("mail"))
        .unwrap()
        .count();
    assert_eq!(mails, 40, "each job ran exactly once");
    let done = hashdrop_server::jobs::list(&app.state.db, Some("done"))
        .await
        .unwrap();
    assert_eq!(done.len(), 40);
}

async fn readiness_fails_without_blob_store(b: Backend) {
    let app = TestApp::spawn(b).await;
    std::fs::remove_dir_all(app.data_dir.join("blobs")).unwrap();
    let r = app.get("/api/readyz", None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Readiness = r.json().await.unwrap();
    assert_eq!(ready.checks.blob_store, "error");
    assert_eq!(ready.checks.database, "ok");
    // Liveness is unaffected.
    assert_eq!(app.get("/api/healthz", None).await.status(), StatusCode::OK);
}

async fn presign_and_complete_validation(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("v@example.com").await;
    let tok = t.access_token.as_str();
    let mut cases = Vec::new();
    for (k, v) in [
        ("plaintext_hash", json!("xyz")),
        ("plaintext_hash", json!("g".repeat(64))),
        ("file_name", json!("")),
        ("file_name", json!("a\u{7}b")),
        ("file_name", json!("n".repeat(256))),
        ("encrypted_size_bytes", json!(0)),
        ("encrypted_size_bytes", json!(-5)),
        ("key_management_mode", json!("people")),
        ("max_downloads", json!(0)),
    ] {
        let mut body = presign_body(10);
        body[k] = v;
        cases.push(body);
    }
    for body in cases {
        let r = app.presign(tok, body.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(r).await, "bad_request");
    }
    assert_eq!(
        app.post("/api/files/presign", None, presign_body(10))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Nothing was reserved by the refused requests.
    let (used, count): (i64, i64) =
        sqlx::query_as("SELECT used_bytes, file_count FROM users WHERE email = 'v@example.com'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!((used, count), (0, 0));

    let r = app
        .post("/api/files/complete", Some(tok), json!({"file_id": "nope"}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .post(
            "/api/files/complete",
            Some(tok),
            json!({"file_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .post("/api/files/complete", None, json!({"file_id": "x"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A different hash at complete than at presign is refused.
    let p = app.presigned(tok, presign_body(3)).await;
    let r = app.put_blob(&p.upload_resource.url, vec![0u8; 3]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .post(
            "/api/files/complete",
            Some(tok),
            json!({"file_id": p.file_id, "plaintext_hash": "cd".repeat(32)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .post(
            "/api/files/complete",
            Some(tok),
            json!({"file_id": p.file_id, "plaintext_hash": "AB".repeat(32)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// A client that hashes while it encrypts and uploads (one read of the file) presigns
/// without the hash and hands it over at complete.
async fn hash_may_arrive_at_complete_instead_of_presign(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("h@example.com").await;
    let tok = t.access_token.as_str();
    let mut body = presign_body(3);
    body.as_object_mut().unwrap().remove("plaintext_hash");
    let p = app.presigned(tok, body).await;
    let r = app.put_blob(&p.upload_resource.url, vec![0u8; 3]).await;
    assert_eq!(r.status(), StatusCode::OK);

    for bad in [
        json!({"file_id": p.file_id}),
        json!({"file_id": p.file_id, "plaintext_hash": "zz"}),
    ] {
        let r = app.post("/api/files/complete", Some(tok), bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(
            e["error"].as_str().unwrap().contains("plaintext_hash"),
            "{e}"
        );
    }
    // Refused completes changed nothing: the file is still pending, not listed as done.
    let r = app
        .get(&format!("/api/files?id={}", p.file_id), Some(tok))
        .await;
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d[0]["status"], "pending", "{d}");
    assert_eq!(d[0]["plaintext_hash"], "", "not known before complete");

    let r = app
        .post(
            "/api/files/complete",
            Some(tok),
            json!({"file_id": p.file_id, "plaintext_hash": "EF".repeat(32)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .get(&format!("/api/files/hash?id={}", p.file_id), Some(tok))
        .await;
    let h: serde_json::Value = r.json().await.unwrap();
    assert_eq!(h["hash"], "ef".repeat(32));
}

async fn expired_otp_and_refresh_token(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.auth.otp_ttl_secs = 0;
        c.auth.refresh_token_ttl_secs = 0;
    })
    .await;
    assert_eq!(
        app.register("e@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::CREATED
    );
    let otp = app.otp_for("e@example.com").await;
    let r = app
        .send_json(
            Method::PATCH,
            "/api/user/verify",
            None,
            json!({"email": "e@example.com", "otp": otp}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let app = TestApp::spawn_with(b, |c| c.auth.refresh_token_ttl_secs = 0).await;
    let t = app.user("e2@example.com").await;
    let r = app
        .post(
            "/api/token/refresh",
            None,
            json!({"refresh_token": t.refresh_token}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn cleaners_remove_expired_rows(b: Backend) {
    use hashdrop_server::jobs::run_cleaner;
    let app = TestApp::spawn_with(b, |c| {
        c.auth.refresh_token_ttl_secs = 0;
        c.auth.unverified_user_ttl_secs = 0;
    })
    .await;
    app.user("kept@example.com").await;
    assert_eq!(
        app.register("ghost@example.com", "long enough pw")
            .await
            .status(),
        StatusCode::CREATED
    );
    app.otp_for("ghost@example.com").await;
    let count = |sql: &'static str| {
        let pool = app.state.db.pool().clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM refresh_tokens").await, 1);
    let expired = poll(Duration::from_secs(5), || async {
        (run_cleaner(&app.state, "refresh_tokens").await.unwrap() == 1).then_some(())
    })
    .await;
    assert!(expired.is_some());
    assert_eq!(count("SELECT COUNT(*) FROM refresh_tokens").await, 0);
    // The unverified account goes (and its OTP with it); the verified one stays.
    let gone = poll(Duration::from_secs(5), || async {
        (run_cleaner(&app.state, "unverified_users").await.unwrap() == 1).then_some(())
    })
    .await;
    assert!(gone.is_some());
    assert_eq!(count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM otps").await, 0);
}

async fn ambiguous_prefix_delete_is_409(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("amb@example.com").await;
    let tok = t.access_token.as_str();
    // Presign until two ids share their first hex digit (at most 17 by pigeonhole).
    let mut seen: std::collections::HashMap<char, String> = Default::default();
    let (first, second) = loop {
        let p = app.presigned(tok, presign_body(1)).await;
        let c = p.file_id.chars().next().unwrap();
        if let Some(other) = seen.insert(c, p.file_id.clone()) {
            break (other, p.file_id);
        }
    };
    let prefix = &first[..1];
    let r = app
        .delete(&format!("/api/files?id={prefix}"), Some(tok))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let m: Vec<FileMatch> = app
        .get(&format!("/api/files/resolve?id={prefix}"), Some(tok))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = m.iter().map(|f| f.file_id.as_str()).collect();
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
    // Deleting a pending upload by full id works and frees its quota slot.
    let r = app
        .delete(&format!("/api/files?id={first}"), Some(tok))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (count,): (i64,) =
        sqlx::query_as("SELECT file_count FROM users WHERE email = 'amb@example.com'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(count as usize, seen.len());
}

async fn malformed_input_is_json_400_everywhere(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("bad@example.com").await;
    let tok = t.access_token.as_str();
    for (method, path, auth) in [
        (Method::POST, "/api/user/register", false),
        (Method::PATCH, "/api/user/verify", false),
        (Method::POST, "/api/user/login", false),
        (Method::DELETE, "/api/user", true),
        (Method::POST, "/api/token/refresh", false),
        (Method::POST, "/api/token/revoke", false),
        (Method::POST, "/api/files/presign", true),
        (Method::POST, "/api/files/complete", true),
    ] {
        for body in ["{", "[]", "{\"unexpected\": true}"] {
            let mut r = app
                .client
                .request(method.clone(), app.url(path))
                .header("content-type", "application/json")
                .body(body);
            if auth {
                r = r.bearer_auth(tok);
            }
            let r = r.send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::BAD_REQUEST,
                "{method} {path} {body}"
            );
            assert_eq!(error_code(r).await, "bad_request", "{method} {path} {body}");
        }
    }
    for path in [
        "/api/files",
        "/api/files/hash",
        "/api/files/salt",
        "/api/files/resolve",
    ] {
        let r = app.get(path, Some(tok)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} without id");
        assert_eq!(
            app.get(path, None).await.status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(
        app.get("/api/files/salt?id=xyz", Some(tok)).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/share/not-a-uuid", None).await.status(),
        StatusCode::BAD_REQUEST
    );
}

/// The `files.status` column is guarded by a CHECK constraint (migration 0002): a
/// status outside pending/uploaded/failed/deleted is refused by the database itself.
async fn file_status_column_takes_only_the_four_states(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("status@example.com").await;
    let id = app
        .upload(&t.access_token, b"status", json!({}))
        .await
        .file_id;
    let bogus = sqlx::query("UPDATE files SET status = 'archived' WHERE id = $1")
        .bind(&id)
        .execute(app.state.db.pool())
        .await;
    assert!(
        bogus.is_err(),
        "a status outside the state machine was stored"
    );
    for ok in ["deleted", "failed", "uploaded"] {
        sqlx::query("UPDATE files SET status = $1 WHERE id = $2")
            .bind(ok)
            .bind(&id)
            .execute(app.state.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}
