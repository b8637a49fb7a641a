//! The durable job queue and the cleaners, driven through a running server.

use crate::prelude::*;

crate::both_backends!(
    concurrent_workers_run_each_job_once,
    cleaners_remove_expired_rows,
);

async fn concurrent_workers_run_each_job_once(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.jobs.worker_enabled = false).await;
    {
        for i in 0..40 {
            app.enqueue_mail(&format!("w{i}@example.com"), "code is: 123456", 3)
                .await;
        }
    }
    let (x, y, z) = tokio::join!(
        hashdrop_server::worker::drain_once(&app.state),
        hashdrop_server::worker::drain_once(&app.state),
        hashdrop_server::worker::drain_once(&app.state),
    );
    assert_eq!(x.unwrap() + y.unwrap() + z.unwrap(), 40);
    let mails = std::fs::read_dir(app.data_dir.join("mail"))
        .unwrap()
        .count();
    assert_eq!(mails, 40, "each job ran exactly once");
    let done = hashdrop_server::store::jobs::list(&app.state.db, Some("done"))
        .await
        .unwrap();
    assert_eq!(done.len(), 40);
}

async fn cleaners_remove_expired_rows(b: Backend) {
    use hashdrop_server::domain::job::Cleaner;
    use hashdrop_server::service::cleaners::run as run_cleaner;
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
        let url = app.database_url.clone();
        async move {
            let pool = crate::common::observer(&url).await;
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM refresh_tokens").await, 1);
    let expired = poll(Duration::from_secs(5), || async {
        (run_cleaner(&app.state, Cleaner::RefreshTokens)
            .await
            .unwrap()
            == 1)
            .then_some(())
    })
    .await;
    assert!(expired.is_some());
    assert_eq!(count("SELECT COUNT(*) FROM refresh_tokens").await, 0);
    // The unverified account goes (and its OTP with it); the verified one stays.
    let gone = poll(Duration::from_secs(5), || async {
        (run_cleaner(&app.state, Cleaner::UnverifiedUsers)
            .await
            .unwrap()
            == 1)
            .then_some(())
    })
    .await;
    assert!(gone.is_some());
    assert_eq!(count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM otps").await, 0);
}
