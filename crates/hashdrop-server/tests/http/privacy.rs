//! Private metadata and the keyed digest (issue 12): what new clients send sealed is
//! stored as sent, handed back to the owner (with their copy) and to link holders
//! (without it), and never kept in clear; malformed or mixed requests change nothing.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::prelude::*;

crate::both_backends!(
    sealed_names_and_keyed_digests_are_kept_as_sent,
    sealed_metadata_and_digests_are_checked_before_anything_is_stored,
);

/// Stand-in sealed metadata: the server checks shape, never cryptography.
fn sealed(tag: &str, owner_copy: bool) -> SealedMetadata {
    SealedMetadata {
        age_header: B64.encode(format!("age-encryption.org/v1\n-> X25519 {tag}\n")),
        sealed: B64.encode(format!("sixteen+ bytes of sealed {tag}")),
        owner_copy: owner_copy
            .then(|| B64.encode(format!("age-encryption.org/v1\nto owner {tag}"))),
    }
}

fn sealed_presign(size: u64, metadata: SealedMetadata) -> PresignRequest {
    PresignRequest {
        file_name: String::new(),
        metadata: Some(metadata),
        plaintext_hash: None,
        keyed_digest: None,
        encrypted_size_bytes: size,
        key_management_mode: KeyMode::Vault,
        mime_type: None,
        expires_at: None,
        max_downloads: None,
        parts: None,
    }
}

async fn sealed_names_and_keyed_digests_are_kept_as_sent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("sealed@example.com").await;
    let owner = app.api_as(&t.access_token);
    let meta = sealed("one", true);
    let data = vec![7u8; 4000];
    let p = expect(
        owner.presign(&sealed_presign(4000, meta.clone())),
        StatusCode::OK,
        "presign",
    )
    .await;
    assert_eq!(
        app.put_blob(&p.upload_resource.as_ref().expect("one PUT").url, data)
            .await
            .status(),
        StatusCode::OK
    );
    let digest = "0f".repeat(32);
    let complete = CompleteRequest {
        file_id: p.file_id.clone(),
        plaintext_hash: None,
        keyed_digest: Some(digest.to_uppercase()),
        plaintext_size_bytes: Some(3),
        passphrase_salt: None,
    };
    expect(owner.complete(&complete), StatusCode::OK, "complete").await;

    // The owner gets everything back, their copy included.
    let details = app.details(&t.access_token, &p.file_id).await;
    assert_eq!(details.file_name, "");
    assert_eq!(details.metadata.as_ref(), Some(&meta));
    assert_eq!(
        details.keyed_digest.as_deref(),
        Some(digest.as_str()),
        "lowercased"
    );
    assert_eq!(details.plaintext_hash, "");
    let listed = expect(owner.list_all(), StatusCode::OK, "list").await;
    assert_eq!(listed[0].metadata.as_ref(), Some(&meta));
    // There is no SHA-256 to hand an older CLI: it is told so, rather than given an
    // empty hash that it would report as a mismatch of every correct download.
    let no_sha = refused(owner.file_hash(&p.file_id), StatusCode::CONFLICT, "hash").await;
    assert_eq!(no_sha.code(), "conflict");
    assert!(
        no_sha.message().contains("keyed digest"),
        "{}",
        no_sha.message()
    );

    // A link holder gets what opens the name, not the owner's copy.
    let info = expect(app.api.share_info(&p.file_id), StatusCode::OK, "share info").await;
    let for_recipients = SealedMetadata {
        owner_copy: None,
        ..meta.clone()
    };
    assert_eq!(info.metadata, Some(for_recipients));
    assert_eq!(info.keyed_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(info.file_name, "");

    // Nothing in clear in the row.
    let (name, mime, sha): (String, Option<String>, String) =
        sqlx::query_as("SELECT file_name, mime_type, plaintext_hash FROM files WHERE id = $1")
            .bind(&p.file_id)
            .fetch_one(&app.sql().await)
            .await
            .unwrap();
    assert_eq!((name.as_str(), mime, sha.as_str()), ("", None, ""));

    // Without a vault a client sends no owner copy; that is accepted.
    let bare = expect(
        owner.presign(&sealed_presign(10, sealed("two", false))),
        StatusCode::OK,
        "presign",
    )
    .await;
    let details = app.details(&t.access_token, &bare.file_id).await;
    assert_eq!(details.metadata.and_then(|m| m.owner_copy), None);
}

async fn sealed_metadata_and_digests_are_checked_before_anything_is_stored(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.user("checks@example.com").await;
    let owner = app.api_as(&t.access_token);
    let good = sealed("x", true);
    let with = |change: &dyn Fn(&mut PresignRequest)| {
        let mut r = sealed_presign(100, good.clone());
        change(&mut r);
        r
    };
    let refused = [
        (
            "a name in clear beside the sealed one",
            with(&|r| r.file_name = "leak.pdf".into()),
        ),
        (
            "a media type in clear",
            with(&|r| r.mime_type = Some("application/pdf".into())),
        ),
        (
            "header not base64",
            with(&|r| r.metadata.as_mut().unwrap().age_header = "%%%".into()),
        ),
        (
            "header not an age header",
            with(&|r| r.metadata.as_mut().unwrap().age_header = B64.encode("GIF89a")),
        ),
        (
            "sealed too short for a tag",
            with(&|r| r.metadata.as_mut().unwrap().sealed = B64.encode("short")),
        ),
        (
            "sealed too long",
            with(&|r| r.metadata.as_mut().unwrap().sealed = B64.encode(vec![0u8; 4000])),
        ),
        (
            "owner copy not age",
            with(&|r| r.metadata.as_mut().unwrap().owner_copy = Some(B64.encode("plain text"))),
        ),
        (
            "both digests",
            with(&|r| {
                r.plaintext_hash = Some("a".repeat(64));
                r.keyed_digest = Some("b".repeat(64));
            }),
        ),
        (
            "keyed digest not hex",
            with(&|r| r.keyed_digest = Some("z".repeat(64))),
        ),
    ];
    for (what, request) in &refused {
        let r = owner.presign(request).response().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(error_code(r).await, "bad_request", "{what}");
    }
    let (used, count): (i64, i64) = sqlx::query_as(
        "SELECT used_bytes, file_count FROM users WHERE email = 'checks@example.com'",
    )
    .fetch_one(&app.sql().await)
    .await
    .unwrap();
    assert_eq!((used, count), (0, 0), "no quota taken by a refused presign");

    // A digest given at presign binds complete: the other kind, or another value, is
    // refused and the file stays pending.
    let mut request = sealed_presign(100, good.clone());
    request.keyed_digest = Some("c".repeat(64));
    let p = expect(owner.presign(&request), StatusCode::OK, "presign").await;
    app.put_blob(
        &p.upload_resource.as_ref().expect("one PUT").url,
        vec![1u8; 100],
    )
    .await;
    for (plaintext_hash, keyed_digest) in
        [(Some("c".repeat(64)), None), (None, Some("d".repeat(64)))]
    {
        let complete = CompleteRequest {
            file_id: p.file_id.clone(),
            plaintext_hash,
            keyed_digest,
            plaintext_size_bytes: None,
            passphrase_salt: None,
        };
        let r = owner.complete(&complete).response().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        app.details(&t.access_token, &p.file_id).await.status,
        "pending"
    );

    // No digest at presign nor at complete: complete says which field it needs.
    let bare = expect(
        owner.presign(&sealed_presign(100, good)),
        StatusCode::OK,
        "presign",
    )
    .await;
    app.put_blob(
        &bare.upload_resource.as_ref().expect("one PUT").url,
        vec![1u8; 100],
    )
    .await;
    let complete = CompleteRequest {
        file_id: bare.file_id.clone(),
        plaintext_hash: None,
        keyed_digest: None,
        plaintext_size_bytes: None,
        passphrase_salt: None,
    };
    let r = owner.complete(&complete).response().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("keyed_digest"),
        "{body}"
    );
}
