//! Rate limits shared through Redis, and the per-instance fallback when Redis is down.

mod common;

use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

async fn login_status(app: &TestApp) -> (StatusCode, Option<String>) {
    let r = app
        .post(
            "/api/user/login",
            None,
            json!({"email": "nobody@example.com", "password": "whatever1"}),
        )
        .await;
    let remaining = r
        .headers()
        .get("x-ratelimit-remaining")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), remaining)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_are_shared_between_instances() {
    let Some(url) = common::redis_url() else {
        return;
    };
    // A fresh key namespace per run keeps runs and parallel tests apart.
    let prefix = format!("hashdrop-test-{}", uuid::Uuid::new_v4().simple());
    let tweak = |c: &mut hashdrop_server::Config| {
        c.rate_limit.enabled = true;
        c.rate_limit.backend = url.clone();
        c.rate_limit.redis_key_prefix = prefix.clone();
        c.rate_limit.auth.per_key_per_minute = 3;
    };
    let a = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    let b = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    // Windows are whole UTC minutes: start well inside one so all requests share it.
    let secs = || hashdrop_server::db::now_ms() / 1000 % 60;
    common::poll(std::time::Duration::from_secs(10), || async {
        (secs() < 55).then_some(())
    })
    .await
    .expect("inside a window");
    assert_eq!(
        login_status(&a).await,
        (StatusCode::UNAUTHORIZED, Some("2".into()))
    );
    assert_eq!(
        login_status(&b).await,
        (StatusCode::UNAUTHORIZED, Some("1".into()))
    );
    assert_eq!(
        login_status(&a).await,
        (StatusCode::UNAUTHORIZED, Some("0".into()))
    );
    // The limit is reached for both instances.
    assert_eq!(login_status(&b).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login_status(&a).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_local_limits() {
    // Nothing listens on port 1: every Redis call fails fast.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.backend = "redis://127.0.0.1:1".into();
        c.rate_limit.auth.per_key_per_minute = 2;
    })
    .await;
    assert_eq!(login_status(&app).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&app).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&app).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.get("/api/healthz", None).await.status(), StatusCode::OK);
}
