//! The Redis cache of the public file lookup: hits and misses, invalidation seen by
//! every instance, downloads that never trust a cached entry, and an outage that is
//! bypassed and recovered from without anyone acting.

use std::time::Duration;

use crate::prelude::*;
use hashdrop_server::infra::cache::{CacheStats, FileFacts, RedisFileCache};
use reqwest::StatusCode;

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

/// The download link of `p` as `app` would hand it out: on that instance, where the
/// server's own links name the instance that built them.
fn download_link(app: &TestApp, p: &PresignResponse) -> String {
    app.url(&format!("/files/download/{}", p.object_key))
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
    let p = a.upload(&t.access_token, b"0123456789").await;
    let key = RedisFileCache::key(&prefix, &p.file_id);
    let share = |app: &TestApp| status(app.api.share_info(&p.file_id));
    let download = download_link(&other, &p);

    assert_eq!(redis_get(&url, &key).await, None);
    let before = stats(&a);
    assert_eq!(share(&a).await, StatusCode::OK);
    assert_eq!(stats(&a).misses, before.misses + 1, "first lookup misses");
    let entry = redis_get(&url, &key).await.expect("filled on miss");
    let facts: FileFacts = serde_json::from_str(&entry).unwrap();
    assert_eq!(facts.object_key, p.object_key);

    // The other instance is answered by the entry a put there.
    let before = stats(&other);
    assert_eq!(share(&other).await, StatusCode::OK);
    let s = status(other.api.download(&download)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(stats(&other).hits, before.hits + 2, "share + download hit");
    let details = a.details(&t.access_token, &p.file_id).await;
    assert_eq!(details.download_count, 1, "the count is a DB write");

    // Delete on a; b must not serve the file from the cache afterwards.
    expect(
        a.api_as(&t.access_token).delete_file(&p.file_id),
        StatusCode::NO_CONTENT,
        "delete",
    )
    .await;
    assert_eq!(redis_get(&url, &key).await.as_deref(), Some("-"));
    assert_eq!(share(&other).await, StatusCode::NOT_FOUND);
    assert_eq!(
        other.page(&format!("/d/{}", p.file_id)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(other.api.download(&download)).await,
        StatusCode::NOT_FOUND
    );
    // A miss on a deleted file does not put the record back.
    assert_eq!(redis_get(&url, &key).await.as_deref(), Some("-"));

    let metrics = expect(a.api.metrics(None), StatusCode::OK, "metrics").await;
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
        .upload_with(&t.access_token, b"capped", |p| p.max_downloads = Some(1))
        .await;
    let share = |app: &TestApp| status(app.api.share_info(&capped.file_id));
    assert_eq!(share(&a).await, StatusCode::OK);
    let download = download_link(&other, &capped);
    assert_eq!(
        status(other.api.download(&download)).await,
        StatusCode::SEE_OTHER
    );
    // Still cached, but the cap is read from the database.
    let hits = stats(&other).hits;
    assert_eq!(
        status(other.api.download(&download)).await,
        StatusCode::GONE
    );
    assert_eq!(share(&other).await, StatusCode::GONE);
    assert!(stats(&other).hits > hits, "answered with a cached entry");

    let gone = a.upload(&t.access_token, b"gone").await;
    let entry = {
        assert_eq!(
            status(a.api.share_info(&gone.file_id)).await,
            StatusCode::OK
        );
        redis_get(&url, &RedisFileCache::key(&prefix, &gone.file_id))
            .await
            .expect("cached")
    };
    expect(
        a.api_as(&t.access_token).delete_file(&gone.file_id),
        StatusCode::NO_CONTENT,
        "delete",
    )
    .await;
    // Simulate the lost invalidation: the live record is back in Redis.
    redis_set(&url, &RedisFileCache::key(&prefix, &gone.file_id), &entry).await;
    let download = download_link(&other, &gone);
    assert_eq!(
        status(other.api.download(&download)).await,
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
    let p = a.upload(&t.access_token, b"acct").await;
    let expiring_at =
        hashdrop_server::domain::time::rfc3339(hashdrop_server::domain::time::now_ms() + 3000);
    let e = a
        .upload_with(&t.access_token, b"exp", |p| {
            p.expires_at = Some(expiring_at)
        })
        .await;
    for id in [&p.file_id, &e.file_id] {
        assert_eq!(status(a.api.share_info(id)).await, StatusCode::OK);
        assert!(redis_get(&url, &RedisFileCache::key(&prefix, id))
            .await
            .is_some_and(|v| v != "-"));
    }
    // Past its expiry the cached entry alone answers 410.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        status(a.api.download(&download_link(&a, &e))).await,
        StatusCode::GONE
    );
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

    let creds = credentials("acct@example.com", "correct horse battery");
    expect(
        a.api_as(&t.access_token).delete_account(&creds),
        StatusCode::NO_CONTENT,
        "delete account",
    )
    .await;
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
    let p = app.upload(&t.access_token, b"outage").await;
    let share = || status(app.api.share_info(&p.file_id));
    let download = download_link(&app, &p);
    assert_eq!(share().await, StatusCode::OK);
    assert_eq!(share().await, StatusCode::OK);
    assert_eq!(stats(&app).hits, 1);
    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    assert_eq!(ready.checks.cache, "ok");
    assert_eq!(ready.checks.rate_limit, "disabled");

    redis.kill();
    let hits = stats(&app).hits;
    for _ in 0..3 {
        assert_eq!(share().await, StatusCode::OK);
        assert_eq!(
            status(app.api.download(&download)).await,
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
        assert_eq!(share().await, StatusCode::OK);
        (stats(&app).hits > hits).then_some(())
    })
    .await
    .expect("cache used again after Redis is back");
    let (s, ready) = crate::common::readiness(&app).await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    let details = app.details(&t.access_token, &p.file_id).await;
    assert_eq!(details.download_count, 3);
}
