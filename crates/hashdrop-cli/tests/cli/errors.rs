//! Every user-facing error, end to end: one line on stderr, non-zero exit, nothing
//! half-done.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{sample, Client, Server};

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

fn field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

fn free_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[test]
fn server_unreachable() {
    let c = Client::new(&free_url(), "nobody@example.com");
    c.run(&["auth", "login", "--email", "nobody@example.com"])
        .fails_with("cannot reach the server");
    let link = format!(
        "{}/d/0b9c7c36-93a4-4d55-9fb7-3f3b6a7c9e01#AGE-SECRET-KEY-1X",
        free_url()
    );
    c.run(&["decrypt", &link, c.home.path().join("x").to_str().unwrap()])
        .fails_with("cannot reach the server");
    c.run(&["files", "list"]).fails_with("not logged in");
}

#[test]
fn missing_secrets_name_their_variable() {
    let server = Server::start(|_| {});
    let c = Client::new(&server.url, "s@example.com");
    c.run_env(
        &["auth", "register", "--email", "s@example.com"],
        &[("HASHDROP_PASSWORD", "")],
    )
    .fails_with("HASHDROP_PASSWORD");
    c.run(&["auth", "register"]).fails_with("--email");
    c.run(&["auth", "verify", "--email", "s@example.com"])
        .fails_with("HASHDROP_OTP");
    let c = Client::signed_up(&server, "t@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("a.bin");
    write(&src, b"hello");
    c.run_env(
        &["upload", src.to_str().unwrap(), "-N"],
        &[("HASHDROP_PASSPHRASE", "")],
    )
    .fails_with("HASHDROP_PASSPHRASE");
    c.run_env(
        &["upload", src.to_str().unwrap()],
        &[("HASHDROP_VAULT_PASSWORD", "")],
    )
    .fails_with("HASHDROP_VAULT_PASSWORD");
    // Nothing was uploaded by the failed attempts.
    let list = c.run(&["--json", "files", "list"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn wrong_key_wrong_passphrase_and_wrong_vault_passphrase() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "k@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("a.bin");
    write(&src, &sample(100_000, 3));
    let v = c.upload(&src, &[]);
    let p = c.upload(&src, &["-N"]);
    let out = work.path().join("out.bin");
    let other = hashdrop_crypto::AgeIdentity::generate();
    let other_key =
        hashdrop_crypto::secrecy::ExposeSecret::expose_secret(&other.to_secret_string())
            .to_string();
    let link_v = field(&v, "share_link");
    let base = link_v.split('#').next().unwrap();
    c.run(&["decrypt", base, out.to_str().unwrap(), "--key", &other_key])
        .fails_with("wrong key or passphrase");
    c.run(&[
        "decrypt",
        &format!("{base}#{other_key}"),
        out.to_str().unwrap(),
    ])
    .fails_with("wrong key or passphrase");
    c.run(&[
        "decrypt",
        base,
        out.to_str().unwrap(),
        "--key",
        "AGE-SECRET-KEY-1NOPE",
    ])
    .fails_with("not an age identity");
    c.run_env(
        &["decrypt", &field(&p, "share_link"), out.to_str().unwrap()],
        &[("HASHDROP_PASSPHRASE", "not the passphrase")],
    )
    .fails_with("wrong key or passphrase");
    c.run_env(
        &["share", &field(&v, "file_id")],
        &[("HASHDROP_VAULT_PASSWORD", "not the vault passphrase")],
    )
    .fails_with("wrong passphrase for the vault");
    let before = c.run(&["--json", "files", "list"]).ok().json();
    c.run_env(
        &["upload", src.to_str().unwrap()],
        &[("HASHDROP_VAULT_PASSWORD", "not the vault passphrase")],
    )
    .fails_with("wrong passphrase for the vault");
    let after = c.run(&["--json", "files", "list"]).ok().json();
    assert_eq!(before, after, "nothing uploaded without a usable vault");
    assert!(!out.exists());
    let leftovers = std::fs::read_dir(work.path()).unwrap().count();
    assert_eq!(leftovers, 1, "only the source file remains");
}

#[test]
fn daily_download_limit_reached() {
    let server = Server::start(|cfg| cfg.limits.daily_downloads_per_file = 1);
    let c = Client::signed_up(&server, "d@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("a.bin");
    write(&src, b"limited");
    let link = field(&c.upload(&src, &[]), "share_link");
    c.run(&["decrypt", &link, work.path().join("1").to_str().unwrap()])
        .ok();
    c.run(&["decrypt", &link, work.path().join("2").to_str().unwrap()])
        .fails_with("daily download limit reached");
    assert!(!work.path().join("2").exists());
}

#[test]
fn quota_exceeded_and_too_large() {
    let server = Server::start(|cfg| {
        cfg.limits.user_bytes = 150_000;
        cfg.limits.file_max_bytes = 100_000;
    });
    let c = Client::signed_up(&server, "q@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("a.bin");
    write(&src, &sample(80_000, 4));
    c.upload(&src, &[]);
    c.run(&["upload", src.to_str().unwrap()])
        .fails_with("storage quota exceeded");
    // Client-side size check: refused before anything is sent.
    let big = work.path().join("big.bin");
    write(&big, &sample(200_000, 5));
    c.run_env(
        &["upload", big.to_str().unwrap()],
        &[("HASHDROP_MAX_UPLOAD_BYTES", "150000")],
    )
    .fails_with("too large");
    // Server-side per-file limit.
    c.run_env(
        &["upload", big.to_str().unwrap()],
        &[("HASHDROP_MAX_UPLOAD_BYTES", "10000000")],
    )
    .fails_with("too large for this server");
    let list = c.run(&["--json", "files", "list"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn expired_and_used_up_links() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "e@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("a.bin");
    write(&src, b"short-lived");
    let once = field(&c.upload(&src, &["--max-downloads", "1"]), "share_link");
    c.run(&["decrypt", &once, work.path().join("1").to_str().unwrap()])
        .ok();
    c.run(&["decrypt", &once, work.path().join("2").to_str().unwrap()])
        .fails_with("expired or reached its download limit");

    let soon = field(&c.upload(&src, &["--expires", "2s"]), "share_link");
    // The expiry is a point in time: poll until it has passed (bounded), no fixed sleep.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dest = work.path().join("3");
    loop {
        let r = c.run(&["decrypt", &soon, dest.to_str().unwrap(), "--force"]);
        if r.code != 0 {
            r.fails_with("expired");
            break;
        }
        assert!(Instant::now() < deadline, "link never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.run(&["upload", src.to_str().unwrap(), "--expires", "soon"])
        .code
        .ne(&0)
        .then_some(())
        .expect("bad duration refused");
}

#[test]
fn file_not_found_and_ambiguous_prefix() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "n@example.com");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("o");
    c.run(&[
        "decrypt",
        &format!(
            "{}/d/0b9c7c36-93a4-4d55-9fb7-3f3b6a7c9e01#AGE-SECRET-KEY-1X",
            server.url
        ),
        out.to_str().unwrap(),
    ])
    .fails_with("not found");
    c.run(&["files", "show", "ffffffff"])
        .fails_with("no file of yours");
    c.run(&["files", "show", "not-hex!"])
        .fails_with("not a file id");
    c.run(&["decrypt", "http://x/elsewhere", out.to_str().unwrap()])
        .fails_with("not a Hashdrop share link");

    // Upload until two ids share their first character (at most 17 by pigeonhole).
    let src = work.path().join("a.bin");
    write(&src, b"same");
    let mut ids: Vec<String> = Vec::new();
    let prefix = loop {
        let id = field(&c.upload(&src, &["-N"]), "file_id");
        if let Some(p) = ids.iter().find(|o| o[..1] == id[..1]) {
            break p[..1].to_string();
        }
        ids.push(id);
        assert!(ids.len() <= 17);
    };
    let before = c.run(&["--json", "files", "list"]).ok().json();
    let r = c
        .run(&["files", "delete", &prefix, "--yes"])
        .fails_with("matches");
    assert!(r.stdout.lines().count() >= 3, "candidates listed: {r:#?}");
    c.run(&["share", &prefix])
        .fails_with("give more characters");
    let j = c.run(&["--json", "files", "show", &prefix]);
    assert_ne!(j.code, 0);
    let v = j.json();
    assert_eq!(v["code"], "ambiguous");
    assert!(v["candidates"].as_array().unwrap().len() >= 2, "{v}");
    let after = c.run(&["--json", "files", "list"]).ok().json();
    assert_eq!(before, after, "an ambiguous delete deletes nothing");
}

#[test]
fn access_token_refreshed_and_dead_session_asks_to_log_in() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "r@example.com");
    let session_path = c.home.path().join("session.json");
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&session_path).unwrap()).unwrap()
    };
    let spoil_access = || {
        let mut s = read();
        s["access_token"] = "expired.or.garbage".into();
        std::fs::write(&session_path, serde_json::to_vec(&s).unwrap()).unwrap();
    };
    let before = read();
    spoil_access();
    c.run(&["files", "list"]).ok();
    let after = read();
    assert_ne!(before["refresh_token"], after["refresh_token"], "rotated");
    assert_ne!(after["access_token"], "expired.or.garbage");

    // Revoke the refresh token behind the CLI's back: the next refresh fails.
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{}/api/token/revoke", server.url))
        .json(&serde_json::json!({"refresh_token": after["refresh_token"]}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    spoil_access();
    c.run(&["files", "list"]).fails_with("log in again");
}

/// Ctrl-C (SIGINT) or SIGTERM in the middle of a download that cannot be resumed leaves
/// no file behind, not even the hidden partial one: here the download stalls inside the
/// age header (so no resume state was written yet), and the file has no keyed digest to
/// check a resumed download against. A stub server answers the share facts and then
/// stalls the download after the first bytes, so the interrupt lands mid-stream every
/// time. (`resume.rs` has the interrupt that keeps a resumable partial.)
#[cfg(unix)]
#[test]
fn interrupted_download_leaves_no_file() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::process::Stdio;

    const ID: &str = "0b9c7c36-93a4-4d55-9fb7-3f3b6a7c9e01";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut stalled = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut byte = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                req.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&req).to_string();
            if head.contains("/api/share/") {
                let body = serde_json::json!({
                    "file_id": ID, "file_name": "x.bin", "encrypted_size_bytes": 10_000_000u64,
                    "key_management_mode": "vault", "expires_at": null,
                    "download_url": format!("http://{addr}/files/download/usrh-x/{ID}"),
                })
                .to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            } else {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\nage-encryption.org/v1\n"
                );
                let _ = s.flush();
                stalled.push(s);
            }
        }
    });

    for signal in ["-INT", "-TERM"] {
        let work = tempfile::tempdir().unwrap();
        let c = Client::new(&format!("http://{addr}"), "x@example.com");
        let key = hashdrop_crypto::AgeIdentity::generate();
        let key = hashdrop_crypto::secrecy::ExposeSecret::expose_secret(&key.to_secret_string())
            .to_string();
        let link = format!("http://{addr}/d/{ID}#{key}");
        let dest = work.path().join("out.bin");
        let mut cmd = c.cmd(&["decrypt", &link, dest.to_str().unwrap()]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let names: Vec<String> = std::fs::read_dir(work.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            if names.iter().any(|n| n.ends_with(".partial")) {
                break;
            }
            assert!(Instant::now() < deadline, "no partial file appeared");
            assert!(child.try_wait().unwrap().is_none(), "decrypt ended early");
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        assert_eq!(
            std::fs::read_dir(work.path()).unwrap().count(),
            0,
            "{signal}: nothing left behind"
        );
    }
}
