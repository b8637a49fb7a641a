//! Rate limits shared through Redis, and the per-instance fallback when Redis is down.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::prelude::*;
use reqwest::StatusCode;

async fn login_status(app: &TestApp) -> (StatusCode, Option<String>) {
    let login = credentials("nobody@example.com", "whatever1");
    let r = app.api.login(&login).response().await.unwrap();
    let remaining = r
        .headers()
        .get("x-ratelimit-remaining")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), remaining)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_limits_are_shared_between_instances() {
    let Some(url) = crate::common::redis_url() else {
        return;
    };
    // A fresh key namespace per run keeps runs and parallel tests apart.
    let prefix = format!("hashdrop-test-{}", uuid::Uuid::new_v4().simple());
    let a = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.backend = url.clone();
        c.rate_limit.redis_key_prefix = prefix.clone();
        c.rate_limit.auth.per_key_per_minute = 3;
    })
    .await;
    let b = a.sibling().await;
    // Token buckets have no window edge to wait for: three tokens, whoever asks.
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

/// Two instances behind one Redis, hammered alternately, admit together what the
/// configured fleet-wide bucket admits (its size plus the refill during the burst),
/// not twice that; and both instances did answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_together_get_the_configured_rate_not_twice_it() {
    let Some(url) = crate::common::redis_url() else {
        return;
    };
    let prefix = format!("hashdrop-test-{}", uuid::Uuid::new_v4().simple());
    const PER_MINUTE: u32 = 30;
    let a = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.backend = url.clone();
        c.rate_limit.redis_key_prefix = prefix.clone();
        c.rate_limit.health.global_per_minute = PER_MINUTE;
    })
    .await;
    let b = a.sibling().await;
    let started = Instant::now();
    let mut allowed = 0u32;
    let mut instances = HashSet::new();
    for i in 0..(PER_MINUTE * 3) {
        let app = if i % 2 == 0 { &a } else { &b };
        // cli/version: the health group's global bucket (probes are never limited).
        let r = app.api.cli_version().response().await.unwrap();
        instances.insert(
            r.headers()["x-hashdrop-instance"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        match r.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            s => panic!("unexpected {s}"),
        }
    }
    // One token comes back every 60/PER_MINUTE seconds.
    let refill = (started.elapsed().as_secs_f64() * PER_MINUTE as f64 / 60.0).ceil() as u32;
    assert!(
        allowed >= PER_MINUTE && allowed <= PER_MINUTE + refill,
        "allowed {allowed}, expected {PER_MINUTE}..={} (per-instance limits would give ~{})",
        PER_MINUTE + refill,
        2 * PER_MINUTE
    );
    assert_eq!(instances.len(), 2, "both instances answered: {instances:?}");
}

/// A throwaway Redis is killed under two instances: no request fails with a 5xx,
/// readiness turns `degraded` (still 200), each instance enforces the limit on its
/// own; Redis comes back and, with nobody acting, the limits are shared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_per_instance_and_recovers_by_itself() {
    let Some(mut redis) = crate::common::RedisProcess::start().await else {
        return;
    };
    let url = redis.url();
    let a = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.backend = url.clone();
        c.rate_limit.auth.per_key_per_minute = 3;
    })
    .await;
    let b = a.sibling().await;
    let (s, ready) = crate::common::readiness(&a).await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    assert_eq!(ready.checks.rate_limit, "ok");

    redis.kill();
    // Instance a alone: its own bucket of 3, then 429; never a 5xx.
    for _ in 0..3 {
        assert_eq!(login_status(&a).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_status(&a).await.0, StatusCode::TOO_MANY_REQUESTS);
    // b has a bucket of its own meanwhile: that is the per-instance fallback.
    assert_eq!(login_status(&b).await.0, StatusCode::UNAUTHORIZED);
    let (s, ready) = crate::common::readiness(&a).await;
    assert_eq!(s, StatusCode::OK, "a Redis outage keeps the instance in");
    assert_eq!(ready.status, "degraded");
    assert_eq!(ready.checks.rate_limit, "degraded");
    assert_eq!(ready.checks.database, "ok");

    redis.resume().await; // empty: the shared bucket starts full
                          // Ordinary traffic brings the shared limiter back (at most one reconnect
                          // attempt every 2 s); a is refused locally until then.
    crate::common::poll(Duration::from_secs(10), || async {
        (login_status(&a).await.0 == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await
    .expect("a is admitted again once the shared bucket is used");
    // b finds Redis again on its own next attempt too; a health check is one.
    crate::common::poll(Duration::from_secs(10), || async {
        (crate::common::readiness(&b).await.1.checks.rate_limit == "ok").then_some(())
    })
    .await
    .expect("b reconnects");
    // One token of the shared 3 is gone; b's local bucket (2 left) no longer counts.
    assert_eq!(login_status(&b).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&a).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&b).await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login_status(&a).await.0, StatusCode::TOO_MANY_REQUESTS);
    let (s, ready) = crate::common::readiness(&b).await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    assert_eq!(ready.checks.rate_limit, "ok");
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
    assert_eq!(status(app.api.healthz()).await, StatusCode::OK);
}

crate::both_backends!(
    rate_limit_answers_429_with_headers,
    per_user_and_forwarded_ip_buckets,
    the_parts_of_a_large_upload_do_not_use_up_the_address_downloads,
);

async fn rate_limit_answers_429_with_headers(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.auth.per_key_per_minute = 3;
        c.rate_limit.health.global_per_minute = 1000;
    })
    .await;
    let login = credentials("x@example.com", "whatever1");
    let mut last = None;
    for i in 0..4 {
        let r = app.api.login(&login).response().await.unwrap();
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
    assert_eq!(status(app.api.healthz()).await, StatusCode::OK);
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
    let list_a = || status(app.api_as(&a.access_token).list_all());
    for _ in 0..2 {
        assert_eq!(list_a().await, StatusCode::NOT_FOUND);
    }
    assert_eq!(list_a().await, StatusCode::TOO_MANY_REQUESTS);
    // Another user has their own bucket.
    assert_eq!(
        status(app.api_as(&bb.access_token).list_all()).await,
        StatusCode::NOT_FOUND
    );

    // Behind a trusted proxy each forwarded client has its own bucket.
    let creds = credentials("nobody@example.com", "whatever1");
    let login = |ip: &'static str| app.send(forwarded_for(app.api.login(&creds), &[ip]));
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
            login("203.0.113.7").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("203.0.113.7").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("203.0.113.8").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A multipart upload to the local store is one signed PUT per part, all from one
/// address: they have their own budget, so they neither use up that address's
/// downloads nor are stopped by them.
async fn the_parts_of_a_large_upload_do_not_use_up_the_address_downloads(b: Backend) {
    let app = TestApp::spawn_with(b, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.download.per_key_per_minute = 3;
    })
    .await;
    let t = app.user("many-parts@example.com").await;
    let api = app.api_as(&t.access_token);
    let part = MIN_PART_BYTES;
    let size = 3 * part + 123;
    let request = PresignRequest {
        parts: Some(PartPlan {
            first_part_bytes: part,
            part_bytes: part,
        }),
        ..presign_request(size)
    };
    let p = app.presigned(&t.access_token, &request).await;
    let urls = expect(
        api.part_urls(&PartUrlsRequest {
            file_id: p.file_id.clone(),
            part_numbers: vec![1, 2, 3, 4],
        }),
        StatusCode::OK,
        "part urls",
    )
    .await
    .parts;
    for u in &urls {
        let put = app.put_blob(&u.url, vec![7u8; u.size_bytes as usize]).await;
        assert_eq!(put.status(), StatusCode::OK, "part {}", u.part_number);
    }
    expect(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::OK,
        "complete",
    )
    .await;

    // Four part PUTs later the address still has its three download requests: share
    // facts, the counted download redirect (the blob it leads to is in the blob
    // group), share facts again.
    let info = expect(app.api.share_info(&p.file_id), StatusCode::OK, "share info").await;
    let blob = reqwest::get(&info.download_url).await.unwrap();
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(blob.bytes().await.unwrap().len() as u64, size);
    assert_eq!(
        status(app.api.share_info(&p.file_id)).await,
        StatusCode::OK,
        "the third download request"
    );
    // The download budget itself still holds.
    assert_eq!(
        status(app.api.share_info(&p.file_id)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
