//! Several instances on one database: instance identity, jobs executed once with
//! every worker claiming, cleaners scheduled once per slot, and the read replica.

#[path = "../common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{poll, Backend, TestApp};
use hashdrop_server::domain::job::{Cleaner, KIND_CLEANUP, KIND_SEND_MAIL};
use hashdrop_server::store::jobs;
use reqwest::StatusCode;
use sqlx::Connection;

fn instance_of(r: &reqwest::Response) -> String {
    r.headers()["x-hashdrop-instance"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_names_its_instance() {
    let a = TestApp::spawn(Backend::Sqlite).await;
    let b = a.sibling().await;
    let ids: HashSet<String> = [&a, &b]
        .iter()
        .map(|app| app.state.instance_id.to_string())
        .collect();
    assert_eq!(ids.len(), 2, "generated ids differ: {ids:?}");
    for app in [&a, &b] {
        // A probe, an unknown route and a refusal (no token) alike.
        for (what, r) in [
            ("healthz", app.api.healthz().response().await.unwrap()),
            ("unknown route", app.page("/no/such/route").await),
            ("list", app.api.list_all().response().await.unwrap()),
        ] {
            assert_eq!(instance_of(&r), *app.state.instance_id, "{what}");
        }
    }
    let named =
        TestApp::spawn_with(Backend::Sqlite, |c| c.instance_id = Some("web-7".into())).await;
    let r = named.api.healthz().response().await.unwrap();
    assert_eq!(instance_of(&r), "web-7");
}

fn one_slot(interval_secs: i64) -> i64 {
    hashdrop_server::domain::time::now_ms() / (interval_secs * 1000)
}

/// Three instances share one PostgreSQL queue: 50 mails are each sent exactly once
/// although every worker claims, and a schedule tick from every instance leaves one
/// cleanup job per cleaner and slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_once_and_cleaners_are_scheduled_once_across_instances() {
    if common::postgres_admin_url().is_none() {
        return;
    }
    const INTERVAL: i64 = 3600;
    let slot_before = one_slot(INTERVAL);
    let a = TestApp::spawn_with(Backend::Postgres, |c| {
        c.jobs.cleaners_enabled = true;
        c.jobs.cleaner_interval_secs = INTERVAL as u64;
    })
    .await;
    let fleet = [a.sibling().await, a.sibling().await];
    let apps: Vec<&TestApp> = std::iter::once(&a).chain(fleet.iter()).collect();

    for i in 0..50 {
        a.enqueue_mail(&format!("fleet{i}@example.com"), "b", 8)
            .await;
    }
    for app in &apps {
        app.state.jobs_notify.notify_one();
    }
    let done = poll(Duration::from_secs(30), || async {
        let done: Vec<_> = jobs::list(&a.state.db, Some("done"))
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.kind == KIND_SEND_MAIL)
            .collect();
        (done.len() == 50).then_some(done)
    })
    .await
    .expect("all 50 mail jobs done");
    assert!(done.iter().all(|j| j.attempts == 1), "claimed once each");
    // Same data dir on every instance: one spool holds every instance's mail.
    let mut recipients: HashMap<String, usize> = HashMap::new();
    for e in std::fs::read_dir(a.data_dir.join("mail"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let to = text
            .lines()
            .find(|l| l.starts_with("To: "))
            .unwrap()
            .to_string();
        *recipients.entry(to).or_default() += 1;
    }
    assert_eq!(recipients.len(), 50, "{recipients:?}");
    assert!(recipients.values().all(|&n| n == 1), "{recipients:?}");

    // Every instance's scheduler already ticked at start; tick all again.
    for app in &apps {
        hashdrop_server::worker::schedule_due(&app.state)
            .await
            .unwrap();
    }
    let slot_after = one_slot(INTERVAL);
    let rows: Vec<(String,)> = sqlx::query_as("SELECT payload FROM jobs WHERE kind = $1")
        .bind(KIND_CLEANUP)
        .fetch_all(&a.sql().await)
        .await
        .unwrap();
    let mut per_cleaner: HashMap<String, i64> = HashMap::new();
    for (payload,) in rows {
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        *per_cleaner
            .entry(v["cleaner"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let slots = slot_after - slot_before + 1;
    assert_eq!(per_cleaner.len(), Cleaner::ALL.len(), "{per_cleaner:?}");
    assert!(
        per_cleaner.values().all(|&n| n == slots),
        "one job per cleaner and slot ({slots} slot(s)), not one per instance: {per_cleaner:?}"
    );
}

/// With the replica URL on the same database (a real second pool), every read
/// endpoint answers as without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_on_the_same_database_serves_reads() {
    if common::postgres_admin_url().is_none() {
        return;
    }
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.database_replica_url = c.database_url.clone();
    })
    .await;
    let t = app.user("replica@example.com").await;
    let p = app.upload(&t.access_token, b"replicated").await;
    let api = app.api_as(&t.access_token);
    let r = api.list_all().response().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Vec<hashdrop_wire::FileSummary> = r.json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        app.details(&t.access_token, &p.file_id).await.status,
        "uploaded"
    );
    let r = api.resolve(&p.file_id[..8]).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api.file_hash(&p.file_id).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, ready) = common::readiness(&app).await;
    assert_eq!((s, ready.checks.database.as_str()), (StatusCode::OK, "ok"));
    replica_reaches(&app, "ok").await;
}

/// A PostgreSQL instance whose "replica" is a second database with the schema but
/// none of the primary's rows, so where a read went shows in its answer.
async fn app_with_separate_replica() -> (TestApp, common::ExtraPgDb) {
    let replica = common::extra_pg_database().await;
    // Connecting applies the migrations.
    hashdrop_server::store::Db::connect(&replica.url)
        .await
        .unwrap()
        .close()
        .await;
    let replica_url = replica.url.clone();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.database_replica_url = Some(replica_url);
    })
    .await;
    (app, replica)
}

/// Waits (up to 10 s) until readiness reports the replica as `want`, and returns
/// the whole readiness answer seen then.
async fn replica_reaches(app: &TestApp, want: &str) -> (StatusCode, hashdrop_wire::Readiness) {
    poll(Duration::from_secs(10), || async {
        let (s, ready) = common::readiness(app).await;
        (ready.checks.replica == want).then_some((s, ready))
    })
    .await
    .unwrap_or_else(|| panic!("readiness never reported the replica as {want}"))
}

/// The one replica every instance shares goes away: the instance stays in rotation
/// (200, `degraded`), its lag-tolerant reads move to the primary, and they move back
/// once the replica answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_outage_moves_reads_to_the_primary_and_back() {
    if common::postgres_admin_url().is_none() {
        return;
    }
    let (app, replica) = app_with_separate_replica().await;
    let t = app.user("outage@example.com").await;
    let api = app.api_as(&t.access_token);
    let p = app.upload(&t.access_token, b"on the primary").await;
    let hash_status = || async { api.file_hash(&p.file_id).response().await.unwrap().status() };

    let (s, ready) = replica_reaches(&app, "ok").await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    assert_eq!(
        hash_status().await,
        StatusCode::NOT_FOUND,
        "with the replica up, the read goes there"
    );

    replica.allow_connections(false).await;
    let (s, ready) = replica_reaches(&app, "degraded").await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "degraded"));
    assert_eq!(ready.checks.database, "ok");
    assert_eq!(
        hash_status().await,
        StatusCode::OK,
        "the read moved to the primary"
    );
    let list: Vec<hashdrop_wire::FileSummary> = api.list_all().await.unwrap();
    assert_eq!(list.len(), 1);

    replica.allow_connections(true).await;
    let (s, ready) = replica_reaches(&app, "ok").await;
    assert_eq!((s, ready.status.as_str()), (StatusCode::OK, "ready"));
    assert_eq!(
        hash_status().await,
        StatusCode::NOT_FOUND,
        "back on the replica"
    );
}

/// The replica URL points at a different database holding a marker file the
/// primary does not have: the read-only endpoints see the marker (and not the file
/// just uploaded to the primary), while delete, upload and download use the
/// primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_endpoints_read_the_replica_and_writes_the_primary() {
    if common::postgres_admin_url().is_none() {
        return;
    }
    let (app, replica) = app_with_separate_replica().await;
    let t = app.user("routing@example.com").await;
    let api = app.api_as(&t.access_token);
    let p = app.upload(&t.access_token, b"primary only").await;
    let (user_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE email = $1")
        .bind("routing@example.com")
        .fetch_one(&app.sql().await)
        .await
        .unwrap();

    let marker = uuid::Uuid::new_v4().to_string();
    let marker_hash = "cd".repeat(32);
    let mut c = sqlx::PgConnection::connect(&replica.url).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, verified_at, created_at, updated_at) \
         VALUES ($1, 'routing@example.com', 'x', 1, 1, 1)",
    )
    .bind(&user_id)
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO files (id, user_id, object_key, file_name, plaintext_hash, encrypted_size, \
         key_mode, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'marker.txt', $4, 7, 'vault', 'uploaded', 1, 1)",
    )
    .bind(&marker)
    .bind(&user_id)
    .bind(format!("nohash/{marker}"))
    .bind(&marker_hash)
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    replica_reaches(&app, "ok").await;

    let list: Vec<hashdrop_wire::FileSummary> = api.list_all().await.unwrap();
    let names: Vec<&str> = list.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(names, ["marker.txt"], "list reads the replica");
    assert_eq!(
        app.details(&t.access_token, &marker).await.file_name,
        "marker.txt"
    );
    let r = api.resolve(&marker[..8]).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h: hashdrop_wire::FileHash = api.file_hash(&marker).await.unwrap();
    assert_eq!(h.hash, marker_hash);
    let r = api.file_hash(&p.file_id).response().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "hash reads the replica too"
    );

    // The download counts on the primary, which has the uploaded file only. (Its
    // URL is built from the object key: the details that carry it read the replica.)
    let download = app.url(&format!("/files/download/{}", p.object_key));
    let r = app.api.download(&download).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = app.api.share_info(&p.file_id).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "public lookups use the primary");
    // Delete resolves its prefix on the primary, where the new file is.
    let r = api.delete_file(&p.file_id).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api.delete_file(&marker).response().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "the marker is not on the primary"
    );
}
