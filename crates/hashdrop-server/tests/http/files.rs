//! The owner's files over HTTP: presign, upload, complete, list, details, delete, quotas.

use crate::prelude::*;

crate::both_backends!(
    upload_list_download_share_delete,
    cross_user_access_is_404,
    quota_race_never_overshoots,
    presign_and_complete_validation,
    hash_may_arrive_at_complete_instead_of_presign,
    ambiguous_prefix_delete_is_409,
    file_status_column_takes_only_the_four_states,
    oversized_put_is_cut_off,
    signed_url_tampering_and_expiry,
    stale_pending_upload_cleaner_releases_quota,
);

async fn upload_list_download_share_delete(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("d@example.com").await;
    let tok = t.access_token.as_str();
    let api = app.api_as(tok);
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let p = app
        .upload_with(tok, &data, |p| p.key_management_mode = KeyMode::Passphrase)
        .await;
    assert!(p.object_key.starts_with("usrh-"));
    assert!(p.object_key.ends_with(&p.file_id));

    // complete is idempotent.
    let c = expect(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::OK,
        "complete again",
    )
    .await;
    assert_eq!(c.uploaded_file_size, 5000);
    assert_eq!(c.s3_object_key, p.object_key);

    let all = expect(api.list_all(), StatusCode::OK, "list").await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, "uploaded");
    assert_eq!(all[0].key_management_mode, KeyMode::Passphrase);
    assert_eq!(all[0].encrypted_size_bytes, 5000);

    let prefix = &p.file_id[..6];
    let m = expect(api.resolve(prefix), StatusCode::OK, "resolve").await;
    assert_eq!(
        m,
        vec![FileMatch {
            file_name: "report.pdf".into(),
            metadata: None,
            file_id: p.file_id.clone()
        }]
    );
    assert_eq!(
        app.send(without_query(api.resolve(prefix))).await.status(),
        StatusCode::BAD_REQUEST
    );
    // `zz%` goes out as `?id=zz%25`: not hex.
    assert_eq!(status(api.resolve("zz%")).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        status(api.resolve("ffffffff-0")).await,
        StatusCode::NOT_FOUND
    );

    let d = app.details(tok, prefix).await;
    assert_eq!(d.plaintext_hash, "ab".repeat(32));
    assert_eq!(d.plaintext_size_bytes, 3);
    assert_eq!(d.s3_key, p.object_key);

    let h = expect(api.file_hash(&p.file_id), StatusCode::OK, "hash").await;
    assert_eq!(h.hash, "ab".repeat(32));
    assert_eq!(status(api.file_hash("abc")).await, StatusCode::BAD_REQUEST);
    assert_eq!(status(api.salt(&p.file_id)).await, StatusCode::NOT_FOUND);

    // Public share facts: nothing about the owner.
    let r = app.api.share_info(&p.file_id).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let raw: serde_json::Value = r.json().await.unwrap();
    let text = raw.to_string();
    assert!(!text.contains("d@example.com"));
    let s: ShareInfo = serde_json::from_value(raw).unwrap();
    assert_eq!(s.encrypted_size_bytes, 5000);
    assert_eq!(s.key_management_mode, KeyMode::Passphrase);
    assert_eq!(s.download_url, d.download_url);
    let page = app.client.get(&d.share_url).send().await.unwrap();
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
        let r = app.page(asset).await;
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert_eq!(
            r.headers()["content-security-policy"].to_str().unwrap(),
            csp
        );
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    }
    assert_eq!(
        app.page("/d/not-a-uuid").await.status(),
        StatusCode::NOT_FOUND
    );

    // Download: 303 to a signed URL serving the bytes, with Range.
    let loc = expect(
        app.api.download(&s.download_url),
        StatusCode::SEE_OTHER,
        "download",
    )
    .await
    .to_string();
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
    // Links with a user hash that is not the owner's, or no file id.
    let bad = app.url(&format!("/files/download/usrh-0000/{}", p.file_id));
    assert_eq!(status(app.api.download(&bad)).await, StatusCode::NOT_FOUND);
    let bad = app.url("/files/download/usrh-0000/not-a-uuid");
    assert_eq!(
        status(app.api.download(&bad)).await,
        StatusCode::BAD_REQUEST
    );

    // Delete by prefix; an ambiguous prefix is refused.
    let p2 = app.upload(tok, b"second").await;
    assert_eq!(status(api.delete_file("")).await, StatusCode::BAD_REQUEST);
    expect(
        api.delete_file(&p.file_id),
        StatusCode::NO_CONTENT,
        "delete",
    )
    .await;
    assert_eq!(
        status(api.delete_file(&p.file_id)).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(app.api.share_info(&p.file_id)).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(app.api.download(&s.download_url)).await,
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
    let all = expect(api.list_all(), StatusCode::OK, "list").await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].file_id, p2.file_id);
}

async fn cross_user_access_is_404(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.user("owner@example.com").await;
    let bb = app.user("intruder@example.com").await;
    let p = app.upload(&a.access_token, b"secret bytes").await;
    let intruder = app.api_as(&bb.access_token);
    let id = &p.file_id;
    for (what, answered) in [
        ("details", status(intruder.details(id)).await),
        (
            "details by prefix",
            status(intruder.details(&id[..8])).await,
        ),
        ("resolve", status(intruder.resolve(id)).await),
        ("hash", status(intruder.file_hash(id)).await),
        ("salt", status(intruder.salt(id)).await),
        ("delete", status(intruder.delete_file(id)).await),
        (
            "complete",
            status(intruder.complete(&complete_request(id))).await,
        ),
    ] {
        assert_eq!(answered, StatusCode::NOT_FOUND, "{what}");
    }
    // B's own user hash with A's file id.
    let pb = app.upload(&bb.access_token, b"b").await;
    let b_hash = pb.object_key.split('/').next().unwrap();
    let link = app.url(&format!("/files/download/{b_hash}/{id}"));
    assert_eq!(status(app.api.download(&link)).await, StatusCode::NOT_FOUND);
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
    let api = app.api_as(&t.access_token);
    let futs = (0..20).map(|_| status(api.presign(&presign_request(1000))));
    let rs = futures_util::future::join_all(futs).await;
    let ok = rs.iter().filter(|s| **s == StatusCode::OK).count();
    let over_quota = rs.iter().filter(|s| **s == StatusCode::FORBIDDEN).count();
    assert_eq!((ok, over_quota), (5, 15));

    // Byte quota, separately: 10 × 300 KB against 1 MB → 3 fit.
    let app2 = TestApp::spawn_with(b, |c| c.limits.user_bytes = 1_000_000).await;
    let t2 = app2.user("q2@example.com").await;
    let api2 = app2.api_as(&t2.access_token);
    let rs = futures_util::future::join_all(
        (0..10).map(|_| status(api2.presign(&presign_request(300_000)))),
    )
    .await;
    assert_eq!(rs.iter().filter(|s| **s == StatusCode::OK).count(), 3);

    // Global quota → 503 with Retry-After.
    let app3 = TestApp::spawn_with(b, |c| c.limits.global_bytes = 2500).await;
    let t3 = app3.user("q3@example.com").await;
    let api3 = app3.api_as(&t3.access_token);
    let rs = futures_util::future::join_all(
        (0..6).map(|_| api3.presign(&presign_request(1000)).response()),
    )
    .await;
    let rs: Vec<reqwest::Response> = rs.into_iter().map(|r| r.unwrap()).collect();
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
    let too_big = presign_request(app3.state.cfg.limits.file_max_bytes + 1);
    assert_eq!(
        status(api3.presign(&too_big)).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

async fn presign_and_complete_validation(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("v@example.com").await;
    let api = app.api_as(&t.access_token);
    let valid = || presign_request(10);
    for bad in [
        PresignRequest {
            plaintext_hash: Some("xyz".into()),
            ..valid()
        },
        PresignRequest {
            plaintext_hash: Some("g".repeat(64)),
            ..valid()
        },
        PresignRequest {
            file_name: "".into(),
            ..valid()
        },
        PresignRequest {
            file_name: "a\u{7}b".into(),
            ..valid()
        },
        PresignRequest {
            file_name: "n".repeat(256),
            ..valid()
        },
        PresignRequest {
            encrypted_size_bytes: 0,
            ..valid()
        },
        PresignRequest {
            max_downloads: Some(0),
            parts: None,
            ..valid()
        },
    ] {
        let what = format!("{bad:?}");
        let e = refused(api.presign(&bad), StatusCode::BAD_REQUEST, &what).await;
        assert_eq!(e.code(), "bad_request", "{what}");
    }
    // Values the wire types cannot even hold, as JSON.
    for (field, value) in [
        ("encrypted_size_bytes", serde_json::json!(-5)),
        ("key_management_mode", serde_json::json!("people")),
    ] {
        let mut body = serde_json::to_value(valid()).unwrap();
        body[field] = value;
        let r = app
            .send(with_body(api.presign(&valid()), body.to_string()))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(r).await, "bad_request");
    }
    assert_eq!(
        status(app.api.presign(&valid())).await,
        StatusCode::UNAUTHORIZED
    );
    // Nothing was reserved by the refused requests.
    let (used, count): (i64, i64) =
        sqlx::query_as("SELECT used_bytes, file_count FROM users WHERE email = 'v@example.com'")
            .fetch_one(&app.sql().await)
            .await
            .unwrap();
    assert_eq!((used, count), (0, 0));

    assert_eq!(
        status(api.complete(&complete_request("nope"))).await,
        StatusCode::BAD_REQUEST
    );
    let unknown = complete_request(&uuid::Uuid::new_v4().to_string());
    assert_eq!(status(api.complete(&unknown)).await, StatusCode::NOT_FOUND);
    assert_eq!(
        status(app.api.complete(&complete_request("x"))).await,
        StatusCode::UNAUTHORIZED
    );
    // A different hash at complete than at presign is refused.
    let p = app.presigned(&t.access_token, &presign_request(3)).await;
    let r = app
        .put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            vec![0u8; 3],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let with_hash = |hash: String| CompleteRequest {
        plaintext_hash: Some(hash),
        ..complete_request(&p.file_id)
    };
    assert_eq!(
        status(api.complete(&with_hash("cd".repeat(32)))).await,
        StatusCode::BAD_REQUEST
    );
    expect(
        api.complete(&with_hash("AB".repeat(32))),
        StatusCode::OK,
        "complete with the presign's hash in capitals",
    )
    .await;
}

/// A client that hashes while it encrypts and uploads (one read of the file) presigns
/// without the hash and hands it over at complete.
async fn hash_may_arrive_at_complete_instead_of_presign(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("h@example.com").await;
    let tok = t.access_token.as_str();
    let api = app.api_as(tok);
    let without_hash = PresignRequest {
        plaintext_hash: None,
        ..presign_request(3)
    };
    let p = app.presigned(tok, &without_hash).await;
    let r = app
        .put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            vec![0u8; 3],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let with_hash = |hash: &str| CompleteRequest {
        plaintext_hash: Some(hash.into()),
        ..complete_request(&p.file_id)
    };
    for bad in [complete_request(&p.file_id), with_hash("zz")] {
        let e = refused(api.complete(&bad), StatusCode::BAD_REQUEST, "complete").await;
        assert!(e.message().contains("plaintext_hash"), "{e:?}");
    }
    // Refused completes changed nothing: the file is still pending, not listed as done.
    let d = app.details(tok, &p.file_id).await;
    assert_eq!(d.status, "pending", "{d:?}");
    assert_eq!(d.plaintext_hash, "", "not known before complete");

    expect(
        api.complete(&with_hash(&"EF".repeat(32))),
        StatusCode::OK,
        "complete with the hash",
    )
    .await;
    let h = expect(api.file_hash(&p.file_id), StatusCode::OK, "hash").await;
    assert_eq!(h.hash, "ef".repeat(32));
}

async fn ambiguous_prefix_delete_is_409(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("amb@example.com").await;
    let tok = t.access_token.as_str();
    let api = app.api_as(tok);
    // Presign until two ids share their first hex digit (at most 17 by pigeonhole).
    let mut seen: std::collections::HashMap<char, String> = Default::default();
    let (first, second) = loop {
        let p = app.presigned(tok, &presign_request(1)).await;
        let c = p.file_id.chars().next().unwrap();
        if let Some(other) = seen.insert(c, p.file_id.clone()) {
            break (other, p.file_id);
        }
    };
    let prefix = &first[..1];
    assert_eq!(status(api.delete_file(prefix)).await, StatusCode::CONFLICT);
    let m = expect(api.resolve(prefix), StatusCode::OK, "resolve").await;
    let ids: Vec<&str> = m.iter().map(|f| f.file_id.as_str()).collect();
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
    // Deleting a pending upload by full id works and frees its quota slot.
    expect(api.delete_file(&first), StatusCode::NO_CONTENT, "delete").await;
    let (count,): (i64,) =
        sqlx::query_as("SELECT file_count FROM users WHERE email = 'amb@example.com'")
            .fetch_one(&app.sql().await)
            .await
            .unwrap();
    assert_eq!(count as usize, seen.len());
}

/// The `files.status` column is guarded by a CHECK constraint (migration 0002): a
/// status outside pending/uploaded/failed/deleted is refused by the database itself.
async fn file_status_column_takes_only_the_four_states(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("status@example.com").await;
    let id = app.upload(&t.access_token, b"status").await.file_id;
    let bogus = sqlx::query("UPDATE files SET status = 'archived' WHERE id = $1")
        .bind(&id)
        .execute(&app.sql().await)
        .await;
    assert!(
        bogus.is_err(),
        "a status outside the state machine was stored"
    );
    for ok in ["deleted", "failed", "uploaded"] {
        sqlx::query("UPDATE files SET status = $1 WHERE id = $2")
            .bind(ok)
            .bind(&id)
            .execute(&app.sql().await)
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

async fn oversized_put_is_cut_off(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("o@example.com").await;
    let api = app.api_as(&t.access_token);
    let p = app.presigned(&t.access_token, &presign_request(1000)).await;
    // Declared length over the limit: refused before reading.
    let r = app
        .put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            vec![0u8; 4000],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed body without a length: cut off once it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![7u8; 500])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = app
        .put_blob(&p.upload_resource.as_ref().expect("one PUT").url, body)
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The rest of that body was never read: the connection is not reused for the
    // next request (which would otherwise meet a connection the server is closing).
    assert_eq!(
        r.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
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
    let complete = complete_request(&p.file_id);
    assert_eq!(
        status(api.complete(&complete)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            vec![1u8; 999]
        )
        .await
        .status(),
        StatusCode::OK
    );
    assert_eq!(
        status(api.complete(&complete)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.details(&t.access_token, &p.file_id).await.status,
        "failed"
    );
}

async fn signed_url_tampering_and_expiry(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("s@example.com").await;
    let p = app.presigned(&t.access_token, &presign_request(10)).await;
    let url = p.upload_resource.as_ref().expect("one PUT").url.clone();
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

async fn stale_pending_upload_cleaner_releases_quota(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.limits.pending_upload_ttl_secs = 0;
        c.limits.user_files = 1;
    })
    .await;
    let t = app.user("stale@example.com").await;
    let api = app.api_as(&t.access_token);
    let p = app.presigned(&t.access_token, &presign_request(10)).await;
    assert_eq!(
        app.put_blob(
            &p.upload_resource.as_ref().expect("one PUT").url,
            vec![0u8; 10]
        )
        .await
        .status(),
        StatusCode::OK
    );
    assert_eq!(
        status(api.presign(&presign_request(10))).await,
        StatusCode::FORBIDDEN
    );
    let swept = poll(Duration::from_secs(5), || async {
        let n = hashdrop_server::service::cleaners::run(
            &app.state,
            hashdrop_server::domain::job::Cleaner::StalePendingUploads,
        )
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
        status(api.presign(&presign_request(10))).await,
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
    for c in hashdrop_server::domain::job::Cleaner::ALL {
        hashdrop_server::service::cleaners::run(&app.state, c)
            .await
            .unwrap();
    }
}
