//! What the CLI refuses to trust: plain http to another machine, terminal control
//! characters in what a server says, and secrets on the command line.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use crate::common::{sample, Client, Server};

fn field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

/// `0.0.0.0` is not a loopback address, but connecting to it reaches this machine on
/// Linux: a non-local host name for the rule, a real server behind it for the opt-in.
#[test]
fn plain_http_to_another_host_needs_insecure_http() {
    let server = Server::start(|_| {});
    let port = server.url.rsplit(':').next().unwrap();
    let remote = format!("http://0.0.0.0:{port}");
    let email = "http@example.com";
    let c = Client::new(&remote, email);

    c.run(&["auth", "register", "--email", email])
        .fails_with("refusing plain http:// to 0.0.0.0");
    assert!(
        crate::common::otp_in(&server.data.path().join("mail"), email).is_none(),
        "nothing reached the server"
    );

    // Opted in, the same command goes through.
    c.run(&["--insecure-http", "auth", "register", "--email", email])
        .ok();
    assert_eq!(server.otp(email).len(), 6, "the verification mail went out");

    // Loopback names stay allowed without the flag.
    let local = Client::new(&format!("http://localhost:{port}"), "local@example.com");
    local
        .run(&["auth", "register", "--email", "local@example.com"])
        .ok();

    // A link to decrypt follows the same rule, before anything is fetched.
    let link = format!("{remote}/d/0b9c7c36-93a4-4d55-9fb7-3f3b6a7c9e01");
    local
        .run(&["decrypt", &link])
        .fails_with("refusing plain http:// to 0.0.0.0 (the link)");
}

/// A server that answers the login with tokens, the file list with a name full of
/// terminal escapes, and everything else with an error message full of them.
fn hostile_server() -> String {
    const NASTY: &str = "x\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{202e}txt.exe";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut byte = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                req.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&req).to_lowercase();
            let body_len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; body_len];
            let _ = s.read_exact(&mut body);
            let (status, json) = if head.starts_with("post /api/user/login") {
                (
                    "200 OK",
                    serde_json::json!({"access_token": "a", "refresh_token": "r"}),
                )
            } else if head.starts_with("get /api/files/all") {
                (
                    "200 OK",
                    serde_json::json!([{
                        "file_id": "0b9c7c36-93a4-4d55-9fb7-3f3b6a7c9e01",
                        "file_name": NASTY,
                        "encrypted_size_bytes": 1,
                        "status": format!("up{NASTY}"),
                        "key_management_mode": "vault",
                        "created_at": "2026-01-01T00:00:00Z",
                    }]),
                )
            } else {
                (
                    "400 Bad Request",
                    serde_json::json!({"error": format!("bad {NASTY}"), "code": "bad"}),
                )
            };
            let json = json.to_string();
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
        }
    });
    format!("http://{addr}")
}

fn assert_inert(text: &str) {
    for c in ['\u{1b}', '\u{7}', '\r', '\u{9b}', '\u{202e}'] {
        assert!(!text.contains(c), "{c:?} reached the terminal: {text:?}");
    }
}

#[test]
fn server_text_cannot_drive_the_terminal() {
    let url = hostile_server();
    let c = Client::new(&url, "t@example.com");

    // An error message from the server: shown, escaped, still one line.
    let run = c
        .run(&["auth", "register", "--email", "t@example.com"])
        .fails_with("the server rejected the request: bad x\\u{1b}]0;pwned\\u{7}");
    assert_inert(&run.stderr);

    // File names and fields in a listing.
    c.run(&["auth", "login", "--email", "t@example.com"]).ok();
    let list = c.run(&["files", "list"]).ok();
    assert_inert(&list.stdout);
    assert!(
        list.stdout
            .contains("x\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\\u{9b}31m\\u{202e}txt.exe"),
        "{list:#?}"
    );
    assert_eq!(
        list.stdout.lines().count(),
        2,
        "header and one row: {list:#?}"
    );

    // --json keeps the exact text, JSON-escaped, for programs.
    let json = c.run(&["--json", "files", "list"]).ok().json();
    assert_eq!(
        json[0]["file_name"],
        "x\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{202e}txt.exe"
    );
}

/// The key of a vault-mode file from a file or from HASHDROP_KEY, never on argv.
#[test]
fn decrypt_key_from_a_file_or_the_environment() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "keys@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("secret.bin");
    let data = sample(70_000, 21);
    std::fs::write(&src, &data).unwrap();
    let up = c.upload(&src, &[]);
    let id = field(&up, "file_id");
    // The download URL, not the share link: it carries no key.
    let link = field(&up, "share_link");
    let keyless = link.split('#').next().unwrap().to_string();
    let key = field(
        &c.run(&["--json", "files", "show", &id, "--reveal-key"])
            .ok()
            .json(),
        "key",
    );
    // Another user with no vault: the key has to come from somewhere.
    let bob = Client::new(&server.url, "bob@example.com");
    bob.run(&[
        "decrypt",
        &keyless,
        work.path().join("none").to_str().unwrap(),
    ])
    .fails_with("the link carries no key");

    // An age identity file, comments and all.
    let key_file = work.path().join("key.txt");
    std::fs::write(
        &key_file,
        format!("# created: 2026-01-01T00:00:00Z\n# public key: age1...\n{key}\n"),
    )
    .unwrap();
    let out = work.path().join("from-file.bin");
    bob.run(&[
        "decrypt",
        &keyless,
        out.to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // The environment.
    let out = work.path().join("from-env.bin");
    bob.run_env(
        &["decrypt", &keyless, out.to_str().unwrap()],
        &[("HASHDROP_KEY", &key)],
    )
    .ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // A missing key file and a file without a key: one line each, no output.
    let out = work.path().join("never.bin");
    bob.run(&[
        "decrypt",
        &keyless,
        out.to_str().unwrap(),
        "--key-file",
        work.path().join("nope.txt").to_str().unwrap(),
    ])
    .fails_with("cannot read the key file");
    let empty = work.path().join("empty.txt");
    std::fs::write(&empty, "# only a comment\n").unwrap();
    bob.run(&[
        "decrypt",
        &keyless,
        out.to_str().unwrap(),
        "--key-file",
        empty.to_str().unwrap(),
    ])
    .fails_with("the key is not an age identity");
    assert!(!Path::new(&out).exists());
}
