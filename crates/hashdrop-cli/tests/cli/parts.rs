//! Large files go up in parts: sent several at a time, the object decrypts byte for
//! byte (also with stock `age -d`), a part cut off mid-send is sealed again and sent
//! again, an upload killed midway resumes and sends only the parts the server does
//! not hold, a file that changed in between is never sealed again under its old key,
//! and an upload completed on the server whose key was never saved is finished, not
//! started over, by the next run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{sample, tool_available, Client, Server};

/// Plaintext bytes per part (the CLI's part size).
const PART: usize = 8 << 20;

fn field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

/// Decrypts `link` with the CLI into `dir` and returns the bytes.
fn decrypted(c: &Client, link: &str, dir: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    c.run(&["decrypt", link, out.to_str().unwrap()]).ok();
    std::fs::read(&out).unwrap()
}

/// Finished parts of unfinished multipart uploads in the server's local store.
fn stored_parts(server: &Server) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = server.data.path().join("blobs").join(".multipart");
    for upload in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for part in std::fs::read_dir(upload.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if part
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u64>().is_ok())
            {
                out.push(part.path());
            }
        }
    }
    out
}

/// Stored file objects (not the server's own backups).
fn file_objects(server: &Server) -> Vec<PathBuf> {
    server
        .objects()
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == "backups"))
        .filter(|p| !p.components().any(|c| c.as_os_str() == ".multipart"))
        .collect()
}

/// The state file an interrupted upload left in the client's home, and its file id.
fn interrupted_upload(c: &Client) -> (PathBuf, String) {
    let state_file = std::fs::read_dir(c.home.path().join("uploads"))
        .unwrap()
        .flatten()
        .next()
        .expect("the interrupted upload's state")
        .path();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let id = field(&state, "file_id");
    (state_file, id)
}

/// Starts an upload of `file` one part at a time and SIGKILLs it once the server
/// holds `parts` finished parts; returns how many it holds after the kill.
fn upload_killed_after(c: &Client, server: &Server, file: &Path, parts: usize) -> usize {
    c.upload_killed_when(file, || stored_parts(server).len() >= parts);
    stored_parts(server).len()
}

#[test]
fn a_large_file_goes_up_in_parallel_parts_and_decrypts_with_stock_age() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "parts@example.com");
    let work = tempfile::tempdir().unwrap();
    let data = sample(5 * PART + 12_345, 21);
    let src = work.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();

    let up = c.upload(&src, &["--parallel", "4"]);
    let link = field(&up, "share_link");
    assert!(
        up.get("resumed_at_bytes").is_none(),
        "a first run resumes nothing: {up}"
    );
    // One object, no parts left behind.
    assert_eq!(
        file_objects(&server).len(),
        1,
        "{:?}",
        file_objects(&server)
    );
    assert!(stored_parts(&server).is_empty());
    assert!(
        decrypted(&c, &link, work.path(), "out.bin") == data,
        "CLI decrypt"
    );

    if !tool_available("age") {
        crate::common::skip("`age` is not installed");
        return;
    }
    let key = work.path().join("key.txt");
    let secret = link.split_once('#').unwrap().1;
    std::fs::write(&key, format!("{secret}\n")).unwrap();
    let plain = work.path().join("age-out.bin");
    let status = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(&plain)
        .arg(&file_objects(&server)[0])
        .status()
        .unwrap();
    assert!(status.success(), "age -d");
    assert!(
        std::fs::read(&plain).unwrap() == data,
        "stock age decrypts the joined parts"
    );
}

/// A TCP relay to the server that cuts the first connection to carry more than
/// `cut_after` bytes from the client (only a part's body is that large) after it
/// has passed them on: a real connection dropped in the middle of a part.
struct CuttingRelay {
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingRelay {
    fn start(listener: std::net::TcpListener, upstream: String, cut_after: usize) -> Self {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpStream};
        use std::sync::atomic::Ordering;
        let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = cuts.clone();
        // The relay lives as long as the test process; its threads end with their
        // connections.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).expect("relay to the server");
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Write);
                });
                let cuts = counted.clone();
                std::thread::spawn(move || {
                    let (mut from_client, mut to_server) = (client, server);
                    let mut passed = 0;
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match from_client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        passed += n;
                        if passed > cut_after
                            && cuts
                                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok()
                        {
                            let _ = from_client.shutdown(Shutdown::Both);
                            let _ = to_server.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    let _ = to_server.shutdown(Shutdown::Write);
                });
            }
        });
        CuttingRelay { cuts }
    }

    fn cuts(&self) -> usize {
        self.cuts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_part_cut_off_mid_send_is_sealed_again_and_sent_again() {
    // Signed URLs (and links) name the relay, so every part goes through it.
    let relay_at = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_url = format!("http://{}", relay_at.local_addr().unwrap());
    let server = Server::start(|cfg| cfg.public_url = Some(relay_url.clone()));
    let upstream = server.url.trim_start_matches("http://").to_string();
    let relay = CuttingRelay::start(relay_at, upstream, 1 << 20);
    let c = Client::signed_up(&server, "cut@example.com");
    let work = tempfile::tempdir().unwrap();
    let data = sample(3 * PART + 777, 31);
    let src = work.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();

    // The part whose connection is cut is not kept in memory for another try: it is
    // read and sealed again, and must come out the same bytes.
    let up = c.upload(&src, &[]);
    assert_eq!(relay.cuts(), 1, "a part was cut off mid-send");
    assert!(stored_parts(&server).is_empty());
    assert!(
        decrypted(&c, &field(&up, "share_link"), work.path(), "out.bin") == data,
        "the part sent again decrypts byte for byte"
    );
}

#[test]
fn an_upload_killed_midway_resumes_and_sends_only_the_missing_parts() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "resume@example.com");
    let work = tempfile::tempdir().unwrap();
    let data = sample(6 * PART - 1000, 22);
    let src = work.path().join("resume.bin");
    std::fs::write(&src, &data).unwrap();

    let held = upload_killed_after(&c, &server, &src, 2);
    assert!((2..6).contains(&held), "{held} parts held after the kill");

    let up = c.upload(&src, &[]);
    assert_eq!(up["parts_reused"], held as u64, "{up}");
    assert_eq!(
        up["parts_sent"],
        6 - held as u64,
        "only the missing parts are sent: {up}"
    );
    assert!(
        up["resumed_at_bytes"].as_u64().unwrap() >= 2 * PART as u64,
        "{up}"
    );
    let link = field(&up, "share_link");
    assert!(decrypted(&c, &link, work.path(), "out.bin") == data);
    // Nothing of the interrupted upload stays behind: no state, no parts, one object.
    let states: Vec<_> = std::fs::read_dir(c.home.path().join("uploads"))
        .unwrap()
        .flatten()
        .collect();
    assert!(states.is_empty(), "{states:?}");
    assert!(stored_parts(&server).is_empty());
    assert_eq!(file_objects(&server).len(), 1);
}

#[test]
fn a_file_changed_after_the_kill_is_sent_again_under_a_new_key() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "changed@example.com");
    let work = tempfile::tempdir().unwrap();
    let mut data = sample(4 * PART + 77, 23);
    let src = work.path().join("changing.bin");
    std::fs::write(&src, &data).unwrap();
    let held = upload_killed_after(&c, &server, &src, 1);
    assert!((1..4).contains(&held));
    let (_, old_id) = interrupted_upload(&c);

    // One byte of the first part changes; size and modification time stay as they
    // were, so only the part digests can tell.
    let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
    data[100] ^= 0xff;
    std::fs::write(&src, &data).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let up = c.upload(&src, &[]);
    assert!(up.get("resumed_at_bytes").is_none(), "not resumed: {up}");
    assert_ne!(
        field(&up, "file_id"),
        old_id,
        "a new upload, under a new key"
    );
    let link = field(&up, "share_link");
    assert!(
        decrypted(&c, &link, work.path(), "out.bin") == data,
        "the changed content"
    );
    // The abandoned upload is gone from the server.
    let ids = c.file_ids();
    assert!(!ids.contains(&old_id), "{ids:?}");
}

#[test]
fn an_upload_completed_but_not_yet_saved_is_finished_by_the_next_run() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "unsaved@example.com");
    let work = tempfile::tempdir().unwrap();
    // A first upload creates the vault.
    let small = work.path().join("small.txt");
    std::fs::write(&small, b"first").unwrap();
    c.upload(&small, &[]);
    let data = sample(3 * PART + 5, 24);
    let src = work.path().join("unsaved.bin");
    std::fs::write(&src, &data).unwrap();

    // Holding the vault's lock, taken once parts are going up (the CLI has opened the
    // vault by then), lets the upload complete on the server and then keeps the CLI
    // from saving the key: it is killed in that window, as a crash or a lost
    // connection after complete would leave it.
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(c.home.path().join(".vault.lock"))
        .unwrap();
    let mut locked = false;
    c.upload_killed_when(&src, || {
        if !locked {
            if stored_parts(&server).is_empty() {
                return false;
            }
            fs4::fs_std::FileExt::lock_exclusive(&lock).unwrap();
            locked = true;
        }
        file_objects(&server).len() == 2 && stored_parts(&server).is_empty()
    });
    fs4::fs_std::FileExt::unlock(&lock).unwrap();
    let (state_file, id) = interrupted_upload(&c);

    // The same command finishes it: no part sent again, nothing deleted, same file.
    let up = c.upload(&src, &[]);
    assert_eq!(field(&up, "file_id"), id, "{up}");
    assert_eq!(up["parts_sent"], 0, "{up}");
    assert_eq!(up["parts_reused"], 4, "{up}");
    let link = field(&up, "share_link");
    assert!(decrypted(&c, &link, work.path(), "out.bin") == data);
    assert!(c.file_ids().contains(&id));
    assert_eq!(file_objects(&server).len(), 2);
    assert!(
        !state_file.exists(),
        "the state is removed once the key is saved"
    );
}
