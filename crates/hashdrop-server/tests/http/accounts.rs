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
    let register = app
        .api
        .register(&credentials("a@example.com", "long enough pw"));
    let r = app.send(with_body(register, "{not json")).await;
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
    let login = credentials("a@example.com", "long enough pw");
    assert_eq!(
        status(app.api.login(&login)).await,
        StatusCode::UNAUTHORIZED
    );

    let otp = app.otp_for("a@example.com").await;
    let wrong = if otp == "000000" { "111111" } else { "000000" };
    let verify = |code: &str| verify_request("a@example.com", code);
    assert_eq!(
        status(app.api.verify(&verify(wrong))).await,
        StatusCode::UNAUTHORIZED
    );
    let nobody = verify_request("nobody@example.com", &otp);
    assert_eq!(
        status(app.api.verify(&nobody)).await,
        StatusCode::UNAUTHORIZED
    );
    expect(
        app.api.verify(&verify(&otp)),
        StatusCode::NO_CONTENT,
        "verify",
    )
    .await;

    // A verified email cannot be registered again.
    let r = app.register("A@example.com", "another password").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let wrong_password = credentials("a@example.com", "wrong password");
    let e = refused(
        app.api.login(&wrong_password),
        StatusCode::UNAUTHORIZED,
        "wrong credentials",
    )
    .await;
    assert_eq!(e.code(), "unauthorized", "wrong credentials");
    let t = expect(app.api.login(&login), StatusCode::OK, "login").await;
    assert_eq!(t.access_token.split('.').count(), 3);
    assert!(t.refresh_token.len() >= 32);

    // Bearer checks: a missing or bad access token has its own code, so a client
    // knows that refreshing may help.
    for api in [app.api.clone(), app.api_as("garbage")] {
        let e = refused(api.list_all(), StatusCode::UNAUTHORIZED, "bearer").await;
        assert_eq!(e.code(), "invalid_token");
    }
    // Fresh account: the reference answers 404 for an empty list.
    assert_eq!(
        status(app.api_as(&t.access_token).list_all()).await,
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
    let futs = guesses
        .iter()
        .map(|g| status(app.api.verify(&verify_request("b@example.com", g))));
    let results = futures_util::future::join_all(futs).await;
    let unauthorized = results
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let capped = results
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(unauthorized, 3);
    assert_eq!(capped, 5);
    // Even the right code is refused now.
    let right = verify_request("b@example.com", &otp);
    let e = refused(
        app.api.verify(&right),
        StatusCode::TOO_MANY_REQUESTS,
        "right code after the cap",
    )
    .await;
    assert_eq!(e.code(), "otp_attempts_exceeded");
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
    let fresh = verify_request("b@example.com", &otp2);
    expect(app.api.verify(&fresh), StatusCode::NO_CONTENT, "fresh code").await;
}

async fn refresh_rotation_reuse_and_revoke(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("c@example.com").await;
    let r1 = expect(app.api.refresh(&t.refresh_token), StatusCode::OK, "refresh").await;
    assert_ne!(r1.refresh_token, t.refresh_token);
    assert_eq!(
        status(app.api_as(&r1.access_token).list_all()).await,
        StatusCode::NOT_FOUND
    );

    // Reusing the rotated token fails and kills the whole family.
    assert_eq!(
        status(app.api.refresh(&t.refresh_token)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(app.api.refresh(&r1.refresh_token)).await,
        StatusCode::UNAUTHORIZED
    );

    // Revoke: a fresh login's token stops working.
    let login = credentials("c@example.com", "correct horse battery");
    let t2 = app.api.login(&login).await.expect("login");
    expect(
        app.api.revoke(&t2.refresh_token),
        StatusCode::NO_CONTENT,
        "revoke",
    )
    .await;
    assert_eq!(
        status(app.api.refresh(&t2.refresh_token)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(app.api.refresh("nonsense")).await,
        StatusCode::UNAUTHORIZED
    );
    // A body without the token field.
    let r = app
        .send(with_body(app.api.revoke("x"), r#"{"nope": 1}"#))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn delete_account_removes_rows_and_blobs(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("del@example.com").await;
    let p = app.upload(&t.access_token, b"bye").await;
    let creds = credentials("del@example.com", "correct horse battery");
    let owner = app.api_as(&t.access_token);
    assert_eq!(
        status(app.api.delete_account(&creds)).await,
        StatusCode::UNAUTHORIZED
    );
    let wrong = credentials("del@example.com", "wrong password");
    assert_eq!(
        status(owner.delete_account(&wrong)).await,
        StatusCode::UNAUTHORIZED
    );
    expect(
        owner.delete_account(&creds),
        StatusCode::NO_CONTENT,
        "delete account",
    )
    .await;
    assert_eq!(
        status(app.api.login(&creds)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(app.api.refresh(&t.refresh_token)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(app.api.share_info(&p.file_id)).await,
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
    assert_eq!(
        status(app.api.verify(&verify_request("e@example.com", &otp))).await,
        StatusCode::BAD_REQUEST
    );

    let app = TestApp::spawn_with(b, |c| c.auth.refresh_token_ttl_secs = 0).await;
    let t = app.user("e2@example.com").await;
    assert_eq!(
        status(app.api.refresh(&t.refresh_token)).await,
        StatusCode::UNAUTHORIZED
    );
}
