//! Multipart uploads over real HTTP, on the local store and on S3 (s3s-fs): parts
//! sent out of order and in parallel, a part of the wrong length, a missing part, a
//! delete in the middle, and the quota through all of it.

use crate::common::usage;
use crate::prelude::*;
use crate::s3::S3Server;

/// Smallest part S3 accepts (but for the last one).
const PART: u64 = MIN_PART_BYTES;

/// Which store a story runs on.
#[derive(Debug, Clone, Copy)]
enum Store {
    Local,
    S3,
}

/// A server on `store` (and the S3 server it uses, kept alive with it).
async fn app_on(store: Store, b: Backend) -> (TestApp, Option<S3Server>) {
    match store {
        Store::Local => (TestApp::spawn(b).await, None),
        Store::S3 => {
            let s3 = S3Server::start().await;
            let app = TestApp::spawn_with(b, |c| s3.configure(c)).await;
            (app, Some(s3))
        }
    }
}

/// Bytes that differ at every offset, so a part in the wrong place shows.
fn object(len: u64) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// Three parts: 5 MiB + 1000 (as if an age header led it), 5 MiB, and 123 bytes.
fn plan() -> PartPlan {
    PartPlan {
        first_part_bytes: PART + 1000,
        part_bytes: PART,
    }
}

fn multipart_request(size: u64) -> PresignRequest {
    PresignRequest {
        parts: Some(plan()),
        ..presign_request(size)
    }
}

async fn part_urls(api: &hashdrop_client::Client, file_id: &str, numbers: &[u64]) -> Vec<PartUrl> {
    let req = PartUrlsRequest {
        file_id: file_id.into(),
        part_numbers: numbers.to_vec(),
    };
    expect(api.part_urls(&req), StatusCode::OK, "part urls")
        .await
        .parts
}

/// A server on `store`, `email` signed up on it, and a three-part upload of `size`
/// bytes (5 MiB + 1000, 5 MiB, 123) presigned for them.
struct Started {
    app: TestApp,
    /// Bind it (`s3: _s3`): dropped, the S3 server stops.
    s3: Option<S3Server>,
    t: LoginResponse,
    api: hashdrop_client::Client,
    size: u64,
    p: PresignResponse,
}

async fn started(store: Store, b: Backend, email: &str) -> Started {
    let (app, s3) = app_on(store, b).await;
    let t = app.user(email).await;
    let api = app.api_as(&t.access_token);
    let size = 2 * PART + 1000 + 123;
    let p = app
        .presigned(&t.access_token, &multipart_request(size))
        .await;
    Started {
        app,
        s3,
        t,
        api,
        size,
        p,
    }
}

/// PUTs `data` part by part through `urls` (in order), each accepted.
async fn send_parts(app: &TestApp, urls: &[PartUrl], data: &[u8]) {
    let mut start = 0;
    for u in urls {
        let end = start + u.size_bytes as usize;
        let put = app.put_blob(&u.url, data[start..end].to_vec()).await;
        assert_eq!(put.status(), StatusCode::OK, "part {}", u.part_number);
        start = end;
    }
}

/// The object as a recipient downloads it, through the counted download URL.
async fn download(app: &TestApp, file_id: &str) -> Vec<u8> {
    let info = expect(app.api.share_info(file_id), StatusCode::OK, "share info").await;
    let r = reqwest::get(&info.download_url).await.expect("download");
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local_sqlite() {
                super::$name(Store::Local, Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3_sqlite() {
                super::$name(Store::S3, Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local_postgres() {
                if crate::common::postgres_admin_url().is_some() {
                    super::$name(Store::Local, Backend::Postgres).await
                }
            }
        }
    )*};
}

on_both_stores!(
    parts_sent_out_of_order_and_in_parallel_make_the_object,
    a_part_of_the_wrong_length_is_refused_by_the_store,
    a_delete_in_the_middle_aborts_the_upload_and_releases_the_quota_once,
    parts_past_the_quota_are_refused_and_counted_nowhere,
    an_upload_presigned_whole_before_parts_were_counted_is_not_counted_again,
    a_complete_cut_off_after_the_join_is_finished_by_the_next_one,
);

async fn parts_sent_out_of_order_and_in_parallel_make_the_object(store: Store, b: Backend) {
    let Started {
        app,
        t,
        api,
        size,
        p,
        s3,
        ..
    } = started(store, b, "parts@example.com").await;
    let data = object(size);
    assert_eq!(p.part_count, Some(3));
    assert!(
        p.upload_resource.is_none(),
        "no single PUT for a multipart upload"
    );
    // The file counts from presign; its bytes count part by part as their URLs are
    // signed.
    assert_eq!(usage(&app, "parts@example.com").await, (0, 1, 0));
    let last = part_urls(&api, &p.file_id, &[3]).await;
    assert_eq!(usage(&app, "parts@example.com").await, (123, 1, 123));

    // Last part first, then the other two at the same time. Part 3 signed again
    // counts once.
    let urls = part_urls(&api, &p.file_id, &[3, 1, 2]).await;
    assert_eq!(
        usage(&app, "parts@example.com").await,
        (size as i64, 1, size as i64)
    );
    assert_eq!(last[0].size_bytes, urls[0].size_bytes);
    assert_eq!(
        urls.iter()
            .map(|u| (u.part_number, u.size_bytes))
            .collect::<Vec<_>>(),
        vec![(3, 123), (1, PART + 1000), (2, PART)]
    );
    let slice = |u: &PartUrl| {
        let start = match u.part_number {
            1 => 0,
            n => PART + 1000 + (n - 2) * PART,
        } as usize;
        data[start..start + u.size_bytes as usize].to_vec()
    };
    assert_eq!(
        app.put_blob(&urls[0].url, slice(&urls[0])).await.status(),
        StatusCode::OK
    );

    // Completing with parts missing says which, and changes nothing.
    let e = refused(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::BAD_REQUEST,
        "complete with parts missing",
    )
    .await;
    assert!(e.message().contains("parts 1, 2"), "{}", e.message());
    assert_eq!(
        app.details(&t.access_token, &p.file_id).await.status,
        "pending"
    );

    let (a, b2) = tokio::join!(
        app.put_blob(&urls[1].url, slice(&urls[1])),
        app.put_blob(&urls[2].url, slice(&urls[2])),
    );
    assert_eq!((a.status(), b2.status()), (StatusCode::OK, StatusCode::OK));

    // What a resumed upload asks: the store holds all three, with their lengths.
    let held = expect(api.stored_parts(&p.file_id), StatusCode::OK, "stored parts").await;
    assert_eq!(held.part_count, 3);
    assert_eq!(
        held.parts
            .iter()
            .map(|s| (s.part_number, s.size_bytes))
            .collect::<Vec<_>>(),
        vec![(1, PART + 1000), (2, PART), (3, 123)]
    );

    let done = expect(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::OK,
        "complete",
    )
    .await;
    assert_eq!(done.uploaded_file_size, size);
    assert!(
        download(&app, &p.file_id).await == data,
        "the object is the parts in order"
    );
    // A part URL used again after complete changes nothing in the finished object.
    // (A connection of its own: the refusal may come before the body is read, and
    // the server then closes that connection.)
    let again = reqwest::Client::new()
        .put(&urls[1].url)
        .body(vec![0u8; urls[1].size_bytes as usize])
        .send()
        .await;
    match again {
        Ok(r) => assert!(
            r.status().is_client_error(),
            "a part after complete: {}",
            r.status()
        ),
        Err(e) => assert!(e.is_request() || e.is_body(), "a part after complete: {e}"),
    }
    assert!(
        download(&app, &p.file_id).await == data,
        "the object is unchanged"
    );
    // Completing again answers the same; the parts are gone, the quota unchanged.
    expect(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::OK,
        "again",
    )
    .await;
    assert_eq!(
        usage(&app, "parts@example.com").await,
        (size as i64, 1, size as i64)
    );
    let after = refused(
        api.stored_parts(&p.file_id),
        StatusCode::CONFLICT,
        "parts after",
    )
    .await;
    assert_eq!(after.code(), "conflict");

    // Deleting the finished file removes its object, and the delete job ends done at
    // its first attempt: the store has no upload left to abort, which is not a fault.
    // (The server's own worker may be running it: wait for a first outcome.)
    expect(
        api.delete_file(&p.file_id),
        StatusCode::NO_CONTENT,
        "delete",
    )
    .await;
    let delete_job = poll(Duration::from_secs(10), || async {
        hashdrop_server::worker::drain_once(&app.state)
            .await
            .unwrap();
        hashdrop_server::store::jobs::list(&app.state.db, None)
            .await
            .unwrap()
            .into_iter()
            .find(|j| {
                j.kind == hashdrop_server::domain::job::KIND_DELETE_BLOB
                    && (j.state == "done" || j.last_error.is_some())
            })
            .map(|j| (j.state, j.attempts, j.last_error))
    })
    .await;
    assert_eq!(delete_job, Some(("done".to_string(), 1, None)));
    let object_left = match &s3 {
        Some(s3) => !s3.objects().is_empty(),
        None => app.data_dir.join("blobs").join(&p.object_key).exists(),
    };
    assert!(!object_left, "the object outlived its file");
}

async fn a_part_of_the_wrong_length_is_refused_by_the_store(store: Store, b: Backend) {
    let Started {
        app,
        api,
        p,
        s3: _s3,
        ..
    } = started(store, b, "short@example.com").await;
    let urls = part_urls(&api, &p.file_id, &[2, 3]).await;

    // One byte short, one byte long: the URL is signed for the part's length. The
    // store answers 4xx, or (S3) may refuse before reading the body and close the
    // connection under the sender: either way nothing is stored.
    for (url, len) in [(&urls[0].url, PART - 1), (&urls[1].url, 124)] {
        match app
            .client
            .put(url)
            .body(vec![7u8; len as usize])
            .send()
            .await
        {
            Ok(r) => assert!(
                r.status().is_client_error(),
                "{len}-byte part: {}",
                r.status()
            ),
            Err(e) => assert!(e.is_request() || e.is_body(), "{len}-byte part: {e}"),
        }
    }
    let held = expect(api.stored_parts(&p.file_id), StatusCode::OK, "stored parts").await;
    assert!(held.parts.is_empty(), "nothing stored: {:?}", held.parts);

    // A part stored whole, then sent again too long: S3 refuses the unsigned length
    // and keeps the first copy; the local store, which rewrites in place, cuts the
    // body off and forgets the part until it comes whole.
    let ok = reqwest::Client::new()
        .put(&urls[1].url)
        .body(vec![7u8; 123])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // Chunked, so no Content-Length stops it before the store starts writing.
    let chunked = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![7u8; 124])]);
    let _ = reqwest::Client::new()
        .put(&urls[1].url)
        .body(reqwest::Body::wrap_stream(chunked))
        .send()
        .await;
    let held = expect(api.stored_parts(&p.file_id), StatusCode::OK, "stored parts").await;
    let part3: Vec<_> = held
        .parts
        .iter()
        .map(|s| (s.part_number, s.size_bytes))
        .collect();
    match store {
        Store::S3 => assert_eq!(part3, vec![(3, 123)]),
        Store::Local => assert_eq!(part3, vec![], "a damaged part is not held"),
    }

    // A URL for one part does not store another, nor a whole object.
    let mut moved = reqwest::Url::parse(&urls[1].url).unwrap();
    let query: Vec<(String, String)> = moved
        .query_pairs()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case("part") || k == "partNumber" {
                "2".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    moved.query_pairs_mut().clear().extend_pairs(query);
    let r = app.put_blob(moved.as_str(), vec![7u8; 123]).await;
    assert!(
        r.status().is_client_error(),
        "part URL for another part: {}",
        r.status()
    );

    // Numbers outside the plan are refused before anything is signed.
    let e = refused(
        api.part_urls(&PartUrlsRequest {
            file_id: p.file_id.clone(),
            part_numbers: vec![4],
        }),
        StatusCode::BAD_REQUEST,
        "part 4 of 3",
    )
    .await;
    assert!(e.message().contains("3 parts"), "{}", e.message());
}

/// Two uploads that each fit the quota but not together: presign lets both start
/// (each fits now), their part URLs race, and the parts that would pass the quota
/// are refused with nothing counted or signed; the refused upload goes on once room
/// is freed.
async fn parts_past_the_quota_are_refused_and_counted_nowhere(store: Store, b: Backend) {
    let size = 2 * PART + 1000 + 123;
    let (app, _s3) = match store {
        Store::Local => (
            TestApp::spawn_with(b, |c| c.limits.user_bytes = size + PART).await,
            None,
        ),
        Store::S3 => {
            let s3 = S3Server::start().await;
            let app = TestApp::spawn_with(b, |c| {
                s3.configure(c);
                c.limits.user_bytes = size + PART;
            })
            .await;
            (app, Some(s3))
        }
    };
    let email = "tight@example.com";
    let t = app.user(email).await;
    let api = app.api_as(&t.access_token);

    // A file that cannot fit at all is refused at presign, before anything starts.
    let e = refused(
        api.presign(&multipart_request(2 * size)),
        StatusCode::FORBIDDEN,
        "presign past the quota",
    )
    .await;
    assert_eq!(e.code(), "quota_exceeded");

    let one = app
        .presigned(&t.access_token, &multipart_request(size))
        .await;
    let two = app
        .presigned(&t.access_token, &multipart_request(size))
        .await;
    assert_eq!(usage(&app, email).await, (0, 2, 0));
    let all = PartUrlsRequest {
        file_id: String::new(),
        part_numbers: vec![1, 2, 3],
    };
    let ask = |file_id: &str| {
        api.part_urls(&PartUrlsRequest {
            file_id: file_id.into(),
            ..all.clone()
        })
    };
    let (a, b2) = tokio::join!(ask(&one.file_id).send(), ask(&two.file_id).send());
    let (won, lost) = match (a, b2) {
        (Ok(urls), Err(e)) => ((one.file_id.clone(), urls), (two.file_id.clone(), e)),
        (Err(e), Ok(urls)) => ((two.file_id.clone(), urls), (one.file_id.clone(), e)),
        other => panic!("exactly one upload gets its parts: {other:?}"),
    };
    let refusal = lost.1.http().expect("a refusal");
    assert_eq!(refusal.status, StatusCode::FORBIDDEN);
    assert_eq!(refusal.code(), "quota_exceeded");
    assert_eq!(won.1.parts.len(), 3);
    assert_eq!(usage(&app, email).await, (size as i64, 2, size as i64));
    // Within the room left (one part's worth), the loser's parts are signed one by
    // one: its short last part fits.
    let last = part_urls(&api, &lost.0, &[3]).await;
    assert_eq!(last[0].size_bytes, 123);
    let used = size as i64 + 123;
    assert_eq!(usage(&app, email).await, (used, 2, used));
    refused(ask(&lost.0), StatusCode::FORBIDDEN, "still past the quota").await;
    assert_eq!(usage(&app, email).await, (used, 2, used), "nothing counted");

    // Deleting the winner frees its bytes; the loser's parts then all fit, its
    // last part counted once.
    expect(api.delete_file(&won.0), StatusCode::NO_CONTENT, "delete").await;
    let rest = part_urls(&api, &lost.0, &[1, 2, 3]).await;
    assert_eq!(rest.len(), 3);
    assert_eq!(usage(&app, email).await, (size as i64, 1, size as i64));
}

/// A multipart upload presigned before migration 0006 (or by an older instance in a
/// rolling upgrade) reserved its whole size at presign and has no `held_bytes`: its
/// part URLs count nothing more, completing it changes nothing, and deleting it gives
/// the whole size back.
async fn an_upload_presigned_whole_before_parts_were_counted_is_not_counted_again(
    store: Store,
    b: Backend,
) {
    let email = "legacy@example.com";
    let Started {
        app,
        api,
        size,
        p,
        s3: _s3,
        ..
    } = started(store, b, email).await;
    // As the old presign left it: the whole size reserved, no held_bytes.
    let db = app.sql().await;
    for statement in [
        "UPDATE files SET held_bytes = NULL WHERE id = $1",
        "UPDATE users SET used_bytes = used_bytes + $2 \
         WHERE id = (SELECT user_id FROM files WHERE id = $1)",
        "UPDATE global_usage SET used_bytes = used_bytes + $2 \
         WHERE $1 <> ''",
    ] {
        sqlx::query(statement)
            .bind(&p.file_id)
            .bind(size as i64)
            .execute(&db)
            .await
            .unwrap();
    }
    let whole = (size as i64, 1, size as i64);
    assert_eq!(usage(&app, email).await, whole);

    let urls = part_urls(&api, &p.file_id, &[1, 2, 3]).await;
    assert_eq!(usage(&app, email).await, whole, "parts count nothing more");
    send_parts(&app, &urls, &object(size)).await;
    expect(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::OK,
        "complete",
    )
    .await;
    assert_eq!(
        usage(&app, email).await,
        whole,
        "complete counts nothing more"
    );
    expect(
        api.delete_file(&p.file_id),
        StatusCode::NO_CONTENT,
        "delete",
    )
    .await;
    assert_eq!(
        usage(&app, email).await,
        (0, 0, 0),
        "the whole size given back"
    );
}

/// A complete whose client went away after the store joined the parts, before the
/// file was recorded, leaves the object whole and the file pending. A resumed upload
/// asking which parts are held hears "all of them", and completing again finishes it.
async fn a_complete_cut_off_after_the_join_is_finished_by_the_next_one(store: Store, b: Backend) {
    let Started {
        app,
        t,
        api,
        size,
        p,
        s3: _s3,
        ..
    } = started(store, b, "cut-off@example.com").await;
    let data = object(size);
    let urls = part_urls(&api, &p.file_id, &[1, 2, 3]).await;
    send_parts(&app, &urls, &data).await;
    // What complete does before it records the file, and nothing after.
    let upload_id: (String,) = sqlx::query_as("SELECT upload_id FROM files WHERE id = $1")
        .bind(&p.file_id)
        .fetch_one(&app.sql().await)
        .await
        .unwrap();
    let blobs = &app.state.blobs;
    let parts = blobs.list_parts(&p.object_key, &upload_id.0).await.unwrap();
    assert_eq!(parts.len(), 3);
    blobs
        .complete_multipart(&p.object_key, &upload_id.0, &parts)
        .await
        .unwrap();
    assert_eq!(
        app.details(&t.access_token, &p.file_id).await.status,
        "pending"
    );

    let held = expect(api.stored_parts(&p.file_id), StatusCode::OK, "stored parts").await;
    assert_eq!(
        held.parts
            .iter()
            .map(|s| (s.part_number, s.size_bytes))
            .collect::<Vec<_>>(),
        vec![(1, PART + 1000), (2, PART), (3, 123)],
        "every part is held once the object is whole"
    );
    let done = expect(
        api.complete(&complete_request(&p.file_id)),
        StatusCode::OK,
        "complete again",
    )
    .await;
    assert_eq!(done.uploaded_file_size, size);
    assert!(download(&app, &p.file_id).await == data);
}

async fn a_delete_in_the_middle_aborts_the_upload_and_releases_the_quota_once(
    store: Store,
    b: Backend,
) {
    let email = "midway@example.com";
    let Started {
        app, s3, api, p, ..
    } = started(store, b, email).await;
    let urls = part_urls(&api, &p.file_id, &[1, 2, 3]).await;
    let first = app.put_blob(&urls[0].url, object(PART + 1000)).await;
    assert_eq!(first.status(), StatusCode::OK);

    // Parts still arriving while eight deletes race: one wins, the quota comes
    // back exactly once.
    let puts = futures_util::future::join_all(
        urls[1..]
            .iter()
            .map(|u| app.put_blob(&u.url, object(u.size_bytes))),
    );
    let deletes =
        futures_util::future::join_all((0..8).map(|_| status(api.delete_file(&p.file_id))));
    let (_, answers) = tokio::join!(puts, deletes);
    assert_eq!(
        answers
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count(),
        1,
        "exactly one delete wins"
    );
    assert_eq!(usage(&app, email).await, (0, 0, 0), "quota released once");

    // The delete job aborts the store's upload (the server's worker may be running
    // it already): a part sent before that lands and is dropped with the rest, one
    // sent after is refused, and in the end nothing of the upload is left.
    let refused_late = poll(Duration::from_secs(10), || async {
        hashdrop_server::worker::drain_once(&app.state)
            .await
            .unwrap();
        let late = app.put_blob(&urls[2].url, object(123)).await;
        late.status().is_client_error().then_some(())
    })
    .await;
    assert!(
        refused_late.is_some(),
        "parts are still accepted after the delete"
    );
    let leftovers = || match &s3 {
        // No object. A part whose PUT was already running when the upload was aborted
        // can still land afterwards: S3 documents this ("abort may need to be repeated");
        // s3s-fs then keeps it as an orphan file, which docs/SCALING.md covers with a
        // bucket lifecycle rule. Parts sent after the abort are refused (above).
        Some(s3) => s3.objects(),
        None => std::fs::read_dir(app.data_dir.join("blobs").join(".multipart"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let cleaned = poll(Duration::from_secs(10), || async {
        hashdrop_server::worker::drain_once(&app.state)
            .await
            .unwrap();
        leftovers().is_empty().then_some(())
    })
    .await;
    assert!(cleaned.is_some(), "left behind: {:?}", leftovers());
    assert_eq!(usage(&app, email).await, (0, 0, 0));
}

/// Part directories that nothing touched for longer than a pending upload may live
/// (a crash between starting an upload and recording its file, say) are swept; a
/// directory still receiving parts is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_part_directory_is_swept_once_idle() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let root = app.data_dir.join("blobs").join(".multipart");
    let abandoned = root.join("0123456789abcdef0123456789abcdef");
    let active = root.join("fedcba9876543210fedcba9876543210");
    for dir in [&abandoned, &active] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("1"), b"part").unwrap();
    }
    let idle = app.state.cfg.limits.pending_upload_ttl_secs + 3600;
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(idle);
    std::fs::File::open(&abandoned)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    hashdrop_server::service::cleaners::run(
        &app.state,
        hashdrop_server::domain::job::Cleaner::StaleUploadParts,
    )
    .await
    .expect("cleaner runs");
    assert!(
        !abandoned.exists(),
        "an abandoned upload's parts are removed"
    );
    assert!(active.join("1").exists(), "an upload in progress is kept");
}
