//! The store's conformance suite: the same stories on SQLite and on PostgreSQL,
//! straight against `hashdrop_server::store` (no HTTP), so both databases are held
//! to one contract: typed rows read back as written, each transition happens once,
//! quotas and caps hold under concurrency.

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{fresh_store, Backend};
use hashdrop_server::domain::file::{self, FileStatus, NewSealedMeta, PlainDigest};
use hashdrop_server::domain::job::{Cleaner, Job};
use hashdrop_server::domain::time::rfc3339;
use hashdrop_server::store::accounts::{self, CodeOutcome, Guess, NewCode, Rotation};
use hashdrop_server::store::files::{self, Freshness, NewFile};
use hashdrop_server::store::quota::{self, QuotaError, QuotaLimits, Reservation};
use hashdrop_server::store::{jobs, Db};
use hashdrop_wire::{FileSummary, KeyMode, SealedMetadata};

const NOW: i64 = 1_800_000_000_000;
const LIMITS: QuotaLimits = QuotaLimits {
    global_bytes: 1_000,
    user_bytes: 600,
    user_files: 3,
};

/// A keyed digest, for files whose digest the story does not look at.
fn any_digest() -> PlainDigest {
    PlainDigest::Keyed("cd".repeat(32))
}

/// Stand-ins for a client's sealed metadata (the store checks no cryptography).
fn wire_meta(tag: &str) -> SealedMetadata {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    SealedMetadata {
        age_header: b64(format!("age-encryption.org/v1\nheader of {tag}")),
        sealed: b64(format!("sealed {tag}")),
        owner_copy: Some(b64(format!("age-encryption.org/v1\nowner copy of {tag}"))),
    }
}

fn sealed_meta(tag: &str) -> NewSealedMeta {
    let m = wire_meta(tag);
    file::parse_sealed_meta(&m.age_header, &m.sealed, m.owner_copy.as_deref().unwrap()).unwrap()
}

async fn verified_user(db: &Db, id: &str) {
    let mut tx = db.begin().await.unwrap();
    accounts::insert(&mut tx, id, &format!("{id}@example.com"), "phc", NOW)
        .await
        .unwrap();
    accounts::mark_verified(&mut tx, id, NOW).await.unwrap();
    tx.commit().await.unwrap();
}

/// Reserves quota and inserts a pending file of `size` bytes, as presign does.
async fn pending_file(db: &Db, owner: &str, id: &str, size: i64) -> Result<(), QuotaError> {
    insert_pending(db, owner, id, size, None).await
}

/// A pending multipart upload of `size` bytes in parts of 200 as presign records it:
/// the file counted, none of its bytes yet.
async fn pending_multipart_file(db: &Db, owner: &str, id: &str, size: i64) {
    let parts = Some(("upload-1", 200, 200));
    insert_pending(db, owner, id, size, parts).await.unwrap();
}

async fn insert_pending(
    db: &Db,
    owner: &str,
    id: &str,
    size: i64,
    multipart: Option<(&str, u64, u64)>,
) -> Result<(), QuotaError> {
    let mut tx = db.begin().await?;
    let file = Reservation {
        bytes: if multipart.is_some() { 0 } else { size },
        files: 1,
    };
    quota::reserve(&mut tx, owner, file, LIMITS, NOW).await?;
    let key = format!("usrh-{owner}/{id}");
    files::insert_pending(
        &mut tx,
        &NewFile {
            id,
            user_id: owner,
            object_key: &key,
            file_name: "notes.txt",
            mime_type: Some("text/plain"),
            digest: None,
            meta: None,
            encrypted_size: size,
            key_mode: "vault",
            expires_at: None,
            max_downloads: Some(2),
            now: NOW,
            multipart,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Counts `parts` of file `id` and reserves what they add, as signing their URLs
/// does: all or nothing.
async fn count_parts(
    db: &Db,
    owner: &str,
    id: &str,
    parts: &[(u64, u64)],
) -> Result<Option<i64>, QuotaError> {
    let mut tx = db.begin().await?;
    quota::lock_global(&mut tx).await?;
    let added = files::count_parts(&mut tx, id, parts).await?;
    if let Some(bytes) = added.filter(|b| *b > 0) {
        let more = Reservation { bytes, files: 0 };
        quota::reserve(&mut tx, owner, more, LIMITS, NOW).await?;
    }
    tx.commit().await?;
    Ok(added)
}

fn file_id(n: u8) -> String {
    format!("00000000-0000-4000-8000-0000000000{n:02x}")
}

async fn file_rows_read_back_as_written(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    let id = file_id(1);
    pending_file(&db, "ann", &id, 100).await.unwrap();

    let state = files::upload_state(&db, &id, "ann").await.unwrap().unwrap();
    assert_eq!(state.status(), Some(FileStatus::Pending));
    assert_eq!(state.encrypted_size, 100);
    assert!(files::upload_state(&db, &id, "bob")
        .await
        .unwrap()
        .is_none());

    let hash = "ab".repeat(32);
    let digest = PlainDigest::Keyed(hash.clone());
    assert!(files::mark_uploaded(&db, &id, "ann", 42, &digest, NOW)
        .await
        .unwrap());
    assert!(
        !files::mark_uploaded(&db, &id, "ann", 42, &digest, NOW)
            .await
            .unwrap(),
        "only a pending file completes"
    );
    let listed = files::list(&db, "ann").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].status.as_str(), listed[0].encrypted_size),
        ("uploaded", 100)
    );
    let found = files::by_prefix(&db, "ann", &id[..8], Freshness::MayLag)
        .await
        .unwrap();
    assert_eq!(found[0].plaintext_size, 42);
    assert_eq!(found[0].max_downloads, Some(2));
    assert_eq!(found[0].expires_at, None);
    assert_eq!(
        (
            found[0].plaintext_hash.as_str(),
            found[0].keyed_digest.as_str()
        ),
        ("", hash.as_str()),
        "a keyed digest, and no plaintext hash"
    );
    assert_eq!(
        files::plaintext_sha256(&db, &id, "ann").await.unwrap(),
        Some(String::new())
    );
    let public = files::uploaded(&db, &id).await.unwrap().unwrap();
    assert_eq!(public.facts.file_name, "notes.txt");
    assert_eq!(public.download_count, 0);
}

async fn quota_holds_its_limits_and_is_released_once(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    pending_file(&db, "ann", &file_id(1), 500).await.unwrap();
    assert!(matches!(
        pending_file(&db, "ann", &file_id(2), 101).await,
        Err(QuotaError::UserFull)
    ));
    verified_user(&db, "bob").await;
    assert!(matches!(
        pending_file(&db, "bob", &file_id(3), 501).await,
        Err(QuotaError::GlobalFull)
    ));
    assert!(matches!(
        pending_file(&db, "nobody", &file_id(4), 1).await,
        Err(QuotaError::NoSuchUser)
    ));
    assert_eq!(
        quota::global_used(&db).await.unwrap(),
        500,
        "refusals reserve nothing"
    );

    let mut tx = db.begin().await.unwrap();
    quota::lock_global(&mut tx).await.unwrap();
    let ended = files::end_life(&mut tx, &file_id(1), FileStatus::Failed, NOW)
        .await
        .unwrap()
        .expect("a live file ends");
    assert!(ended.was_live);
    quota::release(&mut tx, &ended.user_id, ended.held_bytes)
        .await
        .unwrap();
    assert!(
        files::end_life(&mut tx, &file_id(1), FileStatus::Deleted, NOW)
            .await
            .unwrap()
            .is_none(),
        "a file's life ends once"
    );
    tx.commit().await.unwrap();
    assert_eq!(quota::global_used(&db).await.unwrap(), 0);
    // The user's share came back too: the whole user limit fits again.
    pending_file(&db, "ann", &file_id(5), 600).await.unwrap();
}

async fn parallel_endings_of_one_file_release_its_quota_once(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    let id = file_id(1);
    pending_file(&db, "ann", &id, 300).await.unwrap();
    let db = Arc::new(db);
    let racers = (0..8).map(|i| {
        let (db, id) = (db.clone(), id.clone());
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            quota::lock_global(&mut tx).await.unwrap();
            let ended = if i % 2 == 0 {
                files::remove_owned(&mut tx, &id, "ann").await.unwrap()
            } else {
                files::end_life(&mut tx, &id, FileStatus::Failed, NOW)
                    .await
                    .unwrap()
            };
            if let Some(f) = &ended {
                if f.was_live {
                    quota::release(&mut tx, &f.user_id, f.held_bytes)
                        .await
                        .unwrap();
                }
            }
            tx.commit().await.unwrap();
            ended.is_some_and(|f| f.was_live)
        })
    });
    let mut released = 0;
    for r in racers {
        released += r.await.unwrap() as u32;
    }
    assert_eq!(released, 1, "exactly one ending saw the file live");
    assert_eq!(quota::global_used(&db).await.unwrap(), 0);
}

async fn downloads_are_counted_only_within_the_caps(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    let id = file_id(1);
    let key = format!("usrh-ann/{id}");
    pending_file(&db, "ann", &id, 10).await.unwrap();
    assert!(
        files::count_download(&db, &id, &key, 10, NOW)
            .await
            .unwrap()
            .is_none(),
        "a pending file is not downloadable"
    );
    files::mark_uploaded(&db, &id, "ann", 1, &any_digest(), NOW)
        .await
        .unwrap();
    assert!(
        files::count_download(&db, &id, "usrh-bob/x", 10, NOW)
            .await
            .unwrap()
            .is_none(),
        "another owner's key is refused"
    );
    // The daily limit of 1 refuses the second download today, not tomorrow's.
    let day = 24 * 3600 * 1000;
    assert!(files::count_download(&db, &id, &key, 1, NOW)
        .await
        .unwrap()
        .is_some());
    assert!(files::count_download(&db, &id, &key, 1, NOW)
        .await
        .unwrap()
        .is_none());
    let f = files::uploaded(&db, &id).await.unwrap().unwrap();
    assert_eq!((f.download_count, f.downloads_today(NOW)), (1, 1));
    assert_eq!(f.downloads_today(NOW + day), 0);
    // The total cap of 2 holds whatever the day.
    assert!(files::count_download(&db, &id, &key, 1, NOW + day)
        .await
        .unwrap()
        .is_some());
    assert!(files::count_download(&db, &id, &key, 9, NOW + 2 * day)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        files::uploaded(&db, &id)
            .await
            .unwrap()
            .unwrap()
            .download_count,
        2
    );
}

async fn a_code_gets_a_capped_number_of_guesses(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    let mut tx = db.begin().await.unwrap();
    accounts::insert(&mut tx, "ann", "ann@example.com", "phc", NOW)
        .await
        .unwrap();
    let code = NewCode {
        user_id: "ann",
        code_hash: "h1",
        expires_at: NOW + 60_000,
        now: NOW,
        max_attempts: 2,
    };
    assert_eq!(
        accounts::replace_code(&mut tx, code).await.unwrap(),
        CodeOutcome::Stored
    );
    tx.commit().await.unwrap();
    for _ in 0..2 {
        assert!(matches!(
            accounts::take_guess(&db, "ann", 2).await.unwrap(),
            Guess::Counted { .. }
        ));
    }
    assert_eq!(
        accounts::take_guess(&db, "ann", 2).await.unwrap(),
        Guess::NoAttemptsLeft
    );
    assert_eq!(
        accounts::take_guess(&db, "bob", 2).await.unwrap(),
        Guess::NoCode
    );
    // A new code while the burned one lives buys no guesses.
    let mut tx = db.begin().await.unwrap();
    let again = NewCode {
        code_hash: "h2",
        ..code
    };
    assert_eq!(
        accounts::replace_code(&mut tx, again).await.unwrap(),
        CodeOutcome::Burned {
            until: NOW + 60_000
        }
    );
    drop(tx);
    // Once it expired, a new code starts over.
    let mut tx = db.begin().await.unwrap();
    let later = NewCode {
        code_hash: "h3",
        now: NOW + 61_000,
        expires_at: NOW + 120_000,
        ..code
    };
    assert_eq!(
        accounts::replace_code(&mut tx, later).await.unwrap(),
        CodeOutcome::Stored
    );
    tx.commit().await.unwrap();
    assert_eq!(
        accounts::take_guess(&db, "ann", 2).await.unwrap(),
        Guess::Counted {
            code_hash: "h3".into(),
            expires_at: NOW + 120_000
        }
    );
}

async fn a_refresh_token_rotates_once_and_a_replay_revokes_all(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    let later = NOW + 3_600_000;
    accounts::insert_session(&db, "t1", "ann", NOW, later)
        .await
        .unwrap();
    accounts::insert_session(&db, "other", "ann", NOW, later)
        .await
        .unwrap();
    let rotate = |from: &'static str, to: &'static str| {
        let db = &db;
        async move {
            let mut tx = db.begin().await.unwrap();
            let r = accounts::rotate_session(&mut tx, from, to, NOW + 1, later)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            r
        }
    };
    assert_eq!(
        rotate("t1", "t2").await,
        Rotation::Rotated {
            user_id: "ann".into()
        }
    );
    assert_eq!(
        rotate("t1", "t3").await,
        Rotation::Reused {
            user_id: "ann".into()
        }
    );
    assert_eq!(
        rotate("t2", "t4").await,
        Rotation::Invalid,
        "the successor was revoked"
    );
    assert_eq!(
        rotate("other", "t5").await,
        Rotation::Invalid,
        "every session was"
    );
    assert_eq!(rotate("unknown", "t6").await, Rotation::Invalid);
}

async fn jobs_are_claimed_once_and_deduplicated(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    let job = Job::Cleanup(Cleaner::ExpiredShares);
    jobs::enqueue_once(&db, &job, "slot-1", 3, NOW)
        .await
        .unwrap();
    jobs::enqueue_once(&db, &job, "slot-1", 3, NOW)
        .await
        .unwrap();
    let claimed = jobs::claim(&db, NOW).await.unwrap().expect("one job due");
    assert_eq!((claimed.kind.as_str(), claimed.attempts), ("cleanup", 1));
    assert!(
        jobs::claim(&db, NOW).await.unwrap().is_none(),
        "one row per dedupe key"
    );
    jobs::mark_failed(&db, claimed.id, "boom", false, NOW + 1_000, NOW)
        .await
        .unwrap();
    assert!(
        jobs::claim(&db, NOW).await.unwrap().is_none(),
        "not due before its backoff"
    );
    let again = jobs::claim(&db, NOW + 1_000)
        .await
        .unwrap()
        .expect("due again");
    assert_eq!(again.attempts, 2);
    jobs::mark_done(&db, again.id, NOW + 1_000).await.unwrap();
    let done = jobs::list(&db, Some("done")).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].last_error.as_deref(), Some("boom"));
    assert_eq!(
        jobs::purge_done(&db, NOW + 2_000).await.unwrap(),
        1,
        "finished jobs are purged"
    );
}

/// The listing the database builds as JSON is exactly what the typed rows map to:
/// the same files, fields, order and RFC 3339 times, names with quotes, backslashes,
/// control-free Unicode and all, and a sealed name's three strings.
async fn the_database_built_listing_matches_the_typed_rows(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    let (count, json) = files::listing_json(&db, "ann").await.unwrap();
    assert_eq!((count, json.as_str()), (0, "[]"));
    let names = ["plain.txt", "quote\"back\\slash.bin", "Ünïcødé 文件 🎉.pdf"];
    for (i, name) in names.iter().enumerate() {
        let id = file_id(i as u8 + 1);
        // The first file's name is sealed, as new clients send it.
        let sealed = (i == 0).then(|| sealed_meta(name));
        let name = if sealed.is_some() { "" } else { *name };
        let mut tx = db.begin().await.unwrap();
        files::insert_pending(
            &mut tx,
            &NewFile {
                id: &id,
                user_id: "ann",
                object_key: &format!("usrh-ann/{id}"),
                file_name: name,
                mime_type: None,
                digest: None,
                meta: sealed.as_ref(),
                encrypted_size: 1000 + i as i64,
                key_mode: if i == 1 { "passphrase" } else { "vault" },
                expires_at: None,
                max_downloads: None,
                // Two files in the same millisecond: the id breaks the tie.
                now: NOW + 1_234 * (i as i64 / 2),
                multipart: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    files::mark_uploaded(&db, &file_id(1), "ann", 1, &any_digest(), NOW)
        .await
        .unwrap();
    let expected: Vec<FileSummary> = files::list(&db, "ann")
        .await
        .unwrap()
        .into_iter()
        .map(|f| FileSummary {
            metadata: f.meta.is_present().then(|| SealedMetadata {
                age_header: f.meta.meta_header.clone(),
                sealed: f.meta.meta_sealed.clone(),
                owner_copy: Some(f.meta_owner.clone()),
            }),
            file_id: f.id,
            file_name: f.file_name,
            encrypted_size_bytes: f.encrypted_size as u64,
            status: f.status,
            key_management_mode: KeyMode::parse(&f.key_mode).unwrap(),
            created_at: rfc3339(f.created_at),
        })
        .collect();
    let (count, json) = files::listing_json(&db, "ann").await.unwrap();
    let built: Vec<FileSummary> = serde_json::from_str(&json).unwrap();
    assert_eq!(count, 3);
    assert_eq!(built, expected);
    assert_eq!(built[0].file_name, names[2], "newest first");
    assert_eq!(built[0].created_at, "2027-01-15T08:00:01Z");
    // Both backends leave the key out of rows with nothing sealed, as serde does.
    assert_eq!(json.matches("\"metadata\"").count(), 1, "{json}");
    let sealed = built.iter().find(|f| f.metadata.is_some()).unwrap();
    assert_eq!(sealed.file_name, "", "no name in clear");
    assert_eq!(sealed.metadata, Some(wire_meta(names[0])));
    assert!(
        files::listing_json(&db, "bob").await.unwrap().0 == 0,
        "only the owner's files"
    );
}

async fn the_parts_of_a_multipart_upload_are_counted_once(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    let id = file_id(1);
    pending_multipart_file(&db, "ann", &id, 450).await;
    assert_eq!(
        quota::global_used(&db).await.unwrap(),
        0,
        "no bytes at presign"
    );

    // Parts count when their URLs are first signed, in any order, each once.
    let counted = count_parts(&db, "ann", &id, &[(3, 50), (1, 200)]).await;
    assert_eq!(counted.unwrap(), Some(250));
    let again = count_parts(&db, "ann", &id, &[(1, 200), (2, 200), (2, 200)]).await;
    assert_eq!(again.unwrap(), Some(200), "part 1 was counted before");
    assert_eq!(
        count_parts(&db, "ann", &id, &[(2, 200)]).await.unwrap(),
        Some(0)
    );
    assert_eq!(quota::global_used(&db).await.unwrap(), 450);

    // A single PUT holds its whole size from presign: nothing more to count.
    pending_file(&db, "ann", &file_id(2), 100).await.unwrap();
    let single = count_parts(&db, "ann", &file_id(2), &[(1, 100)]).await;
    assert_eq!(single.unwrap(), Some(0));
    assert_eq!(quota::global_used(&db).await.unwrap(), 550);

    // The end gives back what was counted, and no part counts after it.
    let mut tx = db.begin().await.unwrap();
    quota::lock_global(&mut tx).await.unwrap();
    let ended = files::end_life(&mut tx, &id, FileStatus::Deleted, NOW)
        .await
        .unwrap()
        .expect("live");
    assert_eq!(ended.held_bytes, 450);
    quota::release(&mut tx, &ended.user_id, ended.held_bytes)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(quota::global_used(&db).await.unwrap(), 100);
    assert_eq!(
        count_parts(&db, "ann", &id, &[(1, 200)]).await.unwrap(),
        None
    );
}

async fn parts_racing_for_the_last_room_never_pass_the_quota(b: Backend) {
    let (db, _guard) = fresh_store(b).await;
    verified_user(&db, "ann").await;
    // Two uploads of 400 each: either fits the user's 600, both do not.
    let (one, two) = (file_id(1), file_id(2));
    pending_multipart_file(&db, "ann", &one, 400).await;
    pending_multipart_file(&db, "ann", &two, 400).await;
    let db = Arc::new(db);
    let racers = [one.clone(), two.clone()].map(|id| {
        let db = db.clone();
        tokio::spawn(async move { count_parts(&db, "ann", &id, &[(1, 200), (2, 200)]).await })
    });
    let mut outcomes = Vec::new();
    for r in racers {
        outcomes.push(r.await.unwrap());
    }
    let won: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, Ok(Some(400))))
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(QuotaError::UserFull))),
        "{outcomes:?}"
    );
    assert_eq!(quota::global_used(&db).await.unwrap(), 400);

    // The refused batch counted nothing: once the winner is gone, the same parts
    // count in full.
    let (winner, loser) = if won[0] { (&one, &two) } else { (&two, &one) };
    let mut tx = db.begin().await.unwrap();
    quota::lock_global(&mut tx).await.unwrap();
    let ended = files::remove_owned(&mut tx, winner, "ann")
        .await
        .unwrap()
        .unwrap();
    quota::release(&mut tx, &ended.user_id, ended.held_bytes)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let retried = count_parts(&db, "ann", loser, &[(1, 200), (2, 200)]).await;
    assert_eq!(retried.unwrap(), Some(400));
}

both_backends!(
    the_database_built_listing_matches_the_typed_rows,
    file_rows_read_back_as_written,
    quota_holds_its_limits_and_is_released_once,
    parallel_endings_of_one_file_release_its_quota_once,
    the_parts_of_a_multipart_upload_are_counted_once,
    parts_racing_for_the_last_room_never_pass_the_quota,
    downloads_are_counted_only_within_the_caps,
    a_code_gets_a_capped_number_of_guesses,
    a_refresh_token_rotates_once_and_a_replay_revokes_all,
    jobs_are_claimed_once_and_deduplicated,
);
