//! Accounts over HTTP: sign-up with a mailed code, login, sessions, deletion.

use crate::prelude::*;

crate::both_backends!(
    register_verify_login_errors,
    otp_brute_force_is_capped,
    refresh_rotation_reuse_and_revoke,
    delete_account_removes_rows_and_blobs,
    expired_otp_and_refresh_token,
);

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
        .fetch_one(&app.sql().await)
        .await
        .unwrap();
    assert_eq!(used, 0);
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
