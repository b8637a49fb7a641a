//! The Redis cache of the public file lookup: hits and misses, invalidation seen by
//! every instance, downloads that never trust a cached entry, and an outage that is
//! bypassed and recovered from without anyone acting.

use std::time::Duration;

use crate::prelude::*;
use hashdrop_server::infra::cache::{CacheStats, FileFacts, RedisFileCache};
use reqwest::StatusCode;
use serde_json::json;

fn stats(app: &TestApp) -> CacheStats {
    app.state.cache.stats()
}

async fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn redis_set(url: &str, key: &str, value: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(60)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
}

async fn cached_pair(url: &str, b: Backend) -> (TestApp, TestApp, String) {
    let prefix = format!("hashdrop-test-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(b, |c| {
        c.cache.backend = url.to_string();
        c.cache.redis_key_prefix = prefix.clone();
    })
    .await;
    let other = a.sibling().await;
    (a, other, prefix)
}

async fn cache_hits_misses_and_invalidation_across_instances(b: Backend) {
    let Some(url) = crate::common::redis_url() else {
        return;
    };
    let (a, other, prefix) = cached_pair(&url, b).await;
    let t = a.user("cache@example.com").await;
    let p = a.upload(&t.access_token, b"0123456789", json!({})).await;
    let key = RedisFileCache::key(&prefix, &p.file_id);
    let share = format!("/api/share/{}", p.file_id);
    let download = format!("/files/download/{}", p.object_key);

    assert_eq!(redis_get(&url, &key).await, None);
    let before = stats(&a);
    assert_eq!(a.get(&share, None).await.status(), StatusCode::OK);
    assert_eq!(stats(&a).misses, before.misses + 1, "first lookup misses");
    let entry = redis_get(&url, &key).await.expect("filled on miss");
    let facts: FileFacts = serde_json::from_str(&entry).unwrap();
    assert_eq!(facts.object_key, p.object_key);

    // The other instance is answered by the entry a put there.
    let before = stats(&other);
    assert_eq!(other.get(&share, None).await.status(), StatusCode::OK);
    let r = other.get(&download, None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(stats(&other).hits, before.hits + 2, "share + download hit");
    let details = a.details(&t.access_token, &p.file_id).await;
    assert_eq!(details.download_count, 1, "the count is a DB write");

    // Delete on a; b must not serve the file from the cache afterwards.
    let r = a
        .delete(
            &format!("/api/files?id={}", p.file_id),
            Some(&t.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(redis_get(&url, &key).await.as_deref(), Some("-"));
    assert_eq!(
        other.get(&share, None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.get(&format!("/d/{}", p.file_id), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.get(&download, None).await.status(),
        StatusCode::NOT_FOUND
    );
    // A miss on a deleted file does not put the record back.
    assert_eq!(redis_get(&url, &key).await.as_deref(), Some("-"));

    let metrics = a.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("hashdrop_cache_hits_total"), "{metrics}");
    assert!(metrics.contains("hashdrop_cache_misses_total"));
}

/// An entry that outlived its file (an invalidation that never reached Redis) and
/// one for a file at its download cap still cannot get a download through: the
/// count is one conditional UPDATE on the primary.
async fn stale_entry_never_admits_a_download(b: Backend) {
    let Some(url) = crate::common::redis_url() else {
        return;
    };
    let (a, other, prefix) = cached_pair(&url, b).await;
    let t = a.user("stale@example.com").await;

    let capped = a
        .upload(&t.access_token, b"capped", json!({"max_downloads": 1}))
        .await;
    let share = format!("/api/share/{}", capped.file_id);
    assert_eq!(a.get(&share, None).await.status(), StatusCode::OK);
    let download = format!("/files/download/{}", capped.object_key);
    assert_eq!(
        other.get(&download, None).await.status(),
        StatusCode::SEE_OTHER
    );
    // Still cached, but the cap is read from the database.
    let hits = stats(&other).hits;
    assert_eq!(other.get(&download, None).await.status(), StatusCode::GONE);
    assert_eq!(other.get(&share, None).await.status(), StatusCode::GONE);
    assert!(stats(&other).hits > hits, "answered with a cached entry");

    let gone = a.upload(&t.access_token, b"gone", json!({})).await;
    let entry = {
        assert_eq!(
            a.get(&format!("/api/share/{}", gone.file_id), None)
                .await
                .status(),
            StatusCode::OK
        );
        redis_get(&url, &RedisFileCache::key(&prefix, &gone.file_id))
            .await
            .expect("cached")
    };
    let r = a
        .delete(
            &format!("/api/files?id={}", gone.file_id),
            Some(&t.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Simulate the lost invalidation: the live record is back in Redis.
    redis_set(&url, &RedisFileCache::key(&prefix, &gone.file_id), &entry).await;
    let download = format!("/files/download/{}", gone.object_key);
    assert_eq!(
        other.get(&download, None).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Account delete and the expired-shares cleaner invalidate too.
async fn account_delete_and_cleaner_invalidate(b: Backend) {
    let Some(url) = crate::common::redis_url() else {
        return;
    };
    let (a, _other, prefix) = cached_pair(&url, b).await;
    let t = a.user("acct@example.com").await;
    let p = a.upload(&t.access_token, b"acct", json!({})).await;
    let expiring_at =
        hashdrop_server::domain::time::rfc3339(hashdrop_server::domain::time::now_ms() + 3000);
    let e = a
        .upload(&t.access_token, b"exp", json!({"expires_at": expiring_at}))
        .await;
    for id in [&p.file_id, &e.file_id] {
        assert_eq!(
            a.get(&format!("/api/share/{id}"), None).await.status(),
            StatusCode::OK
        );
        assert!(redis_get(&url, &RedisFileCache::key(&prefix, id))
            .await
            .is_some_and(|v| v != "-"));
    }
    // Past its expiry the cached entry alone answers 410.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = a
        .get(&format!("/files/download/{}", e.object_key), None)
        .await;
    assert_eq!(r.status(), StatusCode::GONE);
    let n = hashdrop_server::service::cleaners::run(
        &a.state,
        hashdrop_server::domain::job::Cleaner::ExpiredShares,
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        redis_get(&url, &RedisFileCache::key(&prefix, &e.file_id))
            .await
            .as_deref(),
        Some("-")
    );

    let r = a
        .send_json(
            reqwest::Method::DELETE,
            "/api/user",
            Some(&t.access_token),
            json!({"email": "acct@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        redis_get(&url, &RedisFileCache::key(&prefix, &p.file_id))
            .await
            .as_deref(),
        Some("-")
    );
}

crate::both_backends!(
    cache_hits_misses_and_invalidation_across_instances,
    stale_entry_never_admits_a_download,
    account_delete_and_cleaner_invalidate
);

/// Redis (a throwaway server) dies: lookups bypass the cache, downloads keep
/// working with no 5xx, readiness says `degraded` with 200; Redis returns and the
/// cache is used again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_bypasses_the_cache_and_recovers() {
    let Some(mut redis) = crate::common::RedisProcess::start().await else {
        return;
    };
    let url = redis.url();
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.cache.backend = url.clone()).await;
    let t = app.user("outage@example.com").await;
    let p = app.upload(&t.access_token, b"outage", json!({})).await;
    let share = format!("/api/share/{}", p.file_id);
    let download = format!("/files/download/{}", p.object_key);
    assert_eq!(app.get(&share, None).await.status(), StatusCode::OK);
    assert_eq!(app.get(&share, None).await.status(), StatusCode::OK);
    assert_eq!(stats(&app).hits, 1);
    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    assert_eq!(ready.checks.cache, "ok");
    assert_eq!(ready.checks.rate_limit, "disabled");

    redis.kill();
    let hits = stats(&app).hits;
    for _ in 0..3 {
        assert_eq!(app.get(&share, None).await.status(), StatusCode::OK);
        assert_eq!(
            app.get(&download, None).await.status(),
            StatusCode::SEE_OTHER
        );
    }
    assert_eq!(stats(&app).hits, hits, "no hits while Redis is down");
    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!(s, StatusCode::OK, "a cache outage keeps the instance in");
    assert_eq!(ready.status, "degraded");
    assert_eq!(ready.checks.cache, "degraded");

    redis.resume().await;
    // Plain traffic reconnects (one attempt per 2 s at most), refills, then hits.
    crate::common::poll(Duration::from_secs(10), || async {
        assert_eq!(app.get(&share, None).await.status(), StatusCode::OK);
        (stats(&app).hits > hits).then_some(())
    })
    .await
    .expect("cache used again after Redis is back");
    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    let details = app.details(&t.access_token, &p.file_id).await;
    assert_eq!(details.download_count, 3);
}
