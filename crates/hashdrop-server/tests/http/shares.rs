//! Shares: the counted download redirect, its caps and expiry.

use crate::prelude::*;

crate::both_backends!(
    download_counter_race_exactly_limit,
    max_downloads_and_expiry,
);

async fn download_counter_race_exactly_limit(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.limits.daily_downloads_per_file = 3).await;
    let t = app.user("dl@example.com").await;
    let p = app.upload(&t.access_token, b"payload").await;
    let url = app.details(&t.access_token, &p.file_id).await.download_url;
    let statuses: Vec<StatusCode> =
        futures_util::future::join_all((0..50).map(|_| status(app.api.download(&url)))).await;
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
    let e = refused(
        app.api.download(&url),
        StatusCode::TOO_MANY_REQUESTS,
        "download over the daily limit",
    )
    .await;
    assert!(e.retry_after.expect("retry-after") > 0);
    assert_eq!(e.code(), "download_limit");
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
    let p = app
        .upload_with(tok, b"x", |p| p.max_downloads = Some(2))
        .await;
    let url = app.details(tok, &p.file_id).await.download_url;
    for left in [2, 1] {
        let s = expect(app.api.share_info(&p.file_id), StatusCode::OK, "share").await;
        assert_eq!(s.downloads_left, Some(left));
        assert_eq!(status(app.api.download(&url)).await, StatusCode::SEE_OTHER);
    }
    // Used up: 410 with a code of its own, so the share page can say which.
    for e in [
        refused(app.api.download(&url), StatusCode::GONE, "download").await,
        refused(app.api.share_info(&p.file_id), StatusCode::GONE, "share").await,
    ] {
        let body = e.body.expect("an error body");
        assert_eq!(body.code, "download_cap_reached");
    }

    // Expiry in the past is refused at presign; a near expiry takes effect.
    let api = app.api_as(tok);
    for expires_at in ["2001-01-01T00:00:00Z", "tomorrow"] {
        let body = PresignRequest {
            expires_at: Some(expires_at.into()),
            ..presign_request(1)
        };
        assert_eq!(
            status(api.presign(&body)).await,
            StatusCode::BAD_REQUEST,
            "{expires_at}"
        );
    }
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let p = app
        .upload_with(tok, b"y", |p| p.expires_at = Some(soon))
        .await;
    let s = expect(app.api.share_info(&p.file_id), StatusCode::OK, "share").await;
    assert!(s.expires_at.is_some());
    assert_eq!(s.downloads_left, None, "no cap, no count");
    let gone = poll(Duration::from_secs(10), || async {
        (status(app.api.download(&s.download_url)).await == StatusCode::GONE).then_some(())
    })
    .await;
    assert!(gone.is_some());
    let e = refused(app.api.share_info(&p.file_id), StatusCode::GONE, "share").await;
    assert_eq!(e.body.expect("an error body").code, "link_expired");
    assert_eq!(
        app.page(&format!("/d/{}", p.file_id)).await.status(),
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
