//! Shares: the counted download redirect, its caps and expiry.

use crate::prelude::*;

crate::both_backends!(
    download_counter_race_exactly_limit,
    max_downloads_and_expiry,
);

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
        let modes = hashdrop_server::store::ops::commit_modes(&app.state.db)
            .await
            .unwrap();
        assert_eq!(modes, Some(("on".to_string(), "off".to_string())));
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
    let n = hashdrop_server::service::cleaners::run(
        &app.state,
        hashdrop_server::domain::job::Cleaner::ExpiredShares,
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(app.details(tok, &p.file_id).await.status, "deleted");
}
