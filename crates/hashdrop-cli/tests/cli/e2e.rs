//! End to end: the real server (in-process) and the real `hashdrop` binary.

use std::path::Path;

use crate::common::{sample, Client, Server};

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

fn field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

#[test]
fn full_flow_register_upload_share_decrypt_delete() {
    let server = Server::start(|_| {});
    let alice = Client::signed_up(&server, "alice@example.com");
    let v = alice.run(&["--json", "version"]).ok().json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["server_compatible_version"].is_string(), "{v}");
    let work = tempfile::tempdir().unwrap();
    let data = sample(3 * 65536 + 123, 1);
    let src = work.path().join("report.bin");
    write(&src, &data);

    // Vault mode (default) and passphrase mode.
    let up_v = alice.upload(&src, &["--name", "report.bin"]);
    let id_v = field(&up_v, "file_id");
    let link_v = field(&up_v, "share_link");
    assert_eq!(up_v["key_management_mode"], "vault");
    assert!(link_v.starts_with(&format!("{}/d/{id_v}#AGE-SECRET-KEY-1", server.url)));
    let up_p = alice.upload(&src, &["-N", "-n", "secret.bin"]);
    let id_p = field(&up_p, "file_id");
    let link_p = field(&up_p, "share_link");
    assert_eq!(link_p, format!("{}/d/{id_p}", server.url));
    assert_eq!(up_p["key_management_mode"], "passphrase");

    // The state directory is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(alice.home.path()), 0o700);
        for f in ["session.json", "vault.age", "vault.json"] {
            assert_eq!(mode(&alice.home.path().join(f)), 0o600, "{f}");
        }
    }

    // list / show / share
    let ids = alice.file_ids();
    assert!(ids.contains(&id_v) && ids.contains(&id_p));
    let human = alice.run(&["files", "list"]).ok();
    assert!(human.stdout.contains("report.bin") && human.stdout.contains("secret.bin"));
    let show = alice
        .run(&["--json", "files", "show", &id_v[..8], "--reveal-key"])
        .ok()
        .json();
    assert_eq!(field(&show, "file_id"), id_v);
    assert_eq!(show["plaintext_size_bytes"], data.len() as u64);
    let key = field(&show, "key");
    assert!(link_v.ends_with(&format!("#{key}")));
    let shown = alice.run(&["files", "show", &id_v]).ok();
    assert!(!shown.stdout.contains(&key), "key only with --reveal-key");
    let share = alice.run(&["share", &id_v[..8]]).ok();
    assert_eq!(share.stdout.trim(), link_v);
    let share_p = alice.run(&["share", &id_p]).ok();
    assert_eq!(share_p.stdout.trim(), link_p);
    // --qr: the drawing (half blocks only), then the link; --json carries the same drawing.
    let qr = alice.run(&["share", &id_v[..8], "--qr"]).ok();
    let (drawing, last) = qr.stdout.trim_end().rsplit_once('\n').unwrap();
    assert_eq!(last, link_v);
    assert!(drawing.lines().count() >= 15, "{drawing}");
    assert!(
        drawing
            .chars()
            .all(|c| " \u{2580}\u{2584}\u{2588}\n".contains(c)),
        "{drawing}"
    );
    let qr_json = alice
        .run(&["--json", "share", &id_v[..8], "--qr"])
        .ok()
        .json();
    assert_eq!(qr_json["qr"].as_str().unwrap().trim_end(), drawing);
    alice
        .run(&["files", "show", &id_p, "--reveal-key"])
        .fails_with("passphrase");

    // decrypt: by share link, by --key, by --vault, by passphrase, each verified.
    let out = tempfile::tempdir().unwrap();
    let o1 = out.path().join("by-link.bin");
    alice
        .run(&["decrypt", &link_v, o1.to_str().unwrap(), "--verify"])
        .ok();
    assert_eq!(std::fs::read(&o1).unwrap(), data);
    let download_url = field(&show, "download_url");
    let o2 = out.path().join("by-key.bin");
    alice
        .run(&[
            "decrypt",
            &download_url,
            o2.to_str().unwrap(),
            "--key",
            &key,
            "--verify",
        ])
        .ok();
    assert_eq!(std::fs::read(&o2).unwrap(), data);
    let o3 = out.path().join("by-vault.bin");
    alice
        .run(&[
            "decrypt",
            &link_v,
            o3.to_str().unwrap(),
            "--vault",
            "--verify",
        ])
        .ok();
    assert_eq!(std::fs::read(&o3).unwrap(), data);
    // A directory destination gets the display name.
    let r = alice
        .run(&[
            "--json",
            "decrypt",
            &link_p,
            out.path().to_str().unwrap(),
            "--verify",
        ])
        .ok()
        .json();
    assert_eq!(r["verified"], true);
    assert_eq!(std::fs::read(out.path().join("secret.bin")).unwrap(), data);
    let o5 = out.path().join("by-passphrase-flag.bin");
    alice
        .run(&[
            "decrypt",
            &link_p,
            o5.to_str().unwrap(),
            "--passphrase",
            "--verify",
        ])
        .ok();
    assert_eq!(std::fs::read(&o5).unwrap(), data);
    // No temporary files remain next to the outputs.
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // An existing output is not replaced without --force.
    alice
        .run(&["decrypt", &link_v, o1.to_str().unwrap()])
        .fails_with("already exists");
    alice
        .run(&["decrypt", &link_v, o1.to_str().unwrap(), "--force"])
        .ok();

    // A second user, not logged in, decrypts the share link and checks it against the
    // keyed digest, which only key holders can compute.
    let bob = Client::new(&server.url, "bob@example.com");
    let ob = out.path().join("bob.bin");
    bob.run(&["decrypt", &link_v, ob.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&ob).unwrap(), data);
    let verified = bob
        .run(&[
            "decrypt",
            &link_v,
            ob.to_str().unwrap(),
            "--verify",
            "--force",
        ])
        .ok();
    assert!(
        verified.stdout.contains("keyed digest verified"),
        "{verified:#?}"
    );

    // Without DEST the file lands in the Downloads directory.
    let fake_home = tempfile::tempdir().unwrap();
    std::fs::create_dir(fake_home.path().join("Downloads")).unwrap();
    let mut cmd = bob.cmd(&["decrypt", &link_v]);
    cmd.env("HOME", fake_home.path())
        .env("XDG_CONFIG_HOME", fake_home.path().join(".config"));
    Client::run_cmd(cmd).ok();
    assert_eq!(
        std::fs::read(fake_home.path().join("Downloads/report.bin")).unwrap(),
        data
    );

    // delete
    alice
        .run(&["files", "delete", &id_p[..8]])
        .fails_with("--yes");
    alice.run(&["files", "delete", &id_p[..8], "--yes"]).ok();
    alice
        .run(&[
            "decrypt",
            &link_p,
            out.path().join("gone").to_str().unwrap(),
        ])
        .fails_with("not found");
    assert!(!out.path().join("gone").exists());
    alice
        .run(&["files", "show", &id_p])
        .fails_with("no file of yours");

    // logout revokes; login again; delete the account.
    let session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(alice.home.path().join("session.json")).unwrap())
            .unwrap();
    alice.run(&["auth", "logout"]).ok();
    assert!(!alice.home.path().join("session.json").exists());
    let refreshed = reqwest::blocking::Client::new()
        .post(format!("{}/api/token/refresh", server.url))
        .json(&serde_json::json!({"refresh_token": session["refresh_token"]}))
        .send()
        .unwrap();
    assert_eq!(
        refreshed.status().as_u16(),
        401,
        "logout revoked the refresh token"
    );
    alice.run(&["files", "list"]).fails_with("not logged in");
    alice
        .run(&["auth", "login", "--email", "alice@example.com"])
        .ok();
    alice
        .run_env(
            &["auth", "delete-account", "--yes"],
            &[("HASHDROP_PASSWORD", "wrong password!")],
        )
        .fails_with("wrong password");
    alice.run(&["auth", "delete-account", "--yes"]).ok();
    alice
        .run(&["auth", "login", "--email", "alice@example.com"])
        .fails_with("wrong email or password");
    // The vault survives account deletion (keys are never dropped).
    assert!(alice.home.path().join("vault.age").exists());
}

#[test]
fn ten_parallel_uploads_all_end_up_in_the_vault() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "par@example.com");
    let work = tempfile::tempdir().unwrap();
    // One upload first creates the vault, so the ten race only on updates; a second
    // round below races on creation too.
    let children: Vec<_> = (0..10)
        .map(|i| {
            let p = work.path().join(format!("f{i}.bin"));
            write(&p, &sample(10_000 + i * 777, i as u64));
            let mut cmd = c.cmd(&["--json", "upload", p.to_str().unwrap()]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(field(&v, "file_id"));
    }
    assert_eq!(ids.len(), 10);
    for id in &ids {
        let show = c
            .run(&["--json", "files", "show", id, "--reveal-key"])
            .ok()
            .json();
        assert!(field(&show, "key").starts_with("AGE-SECRET-KEY-1"));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.home.path().join("vault.json")).unwrap()).unwrap();
    assert_eq!(meta["files"], 10);
}

#[test]
fn tampered_blob_leaves_no_output_file() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "tamper@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("t.bin");
    write(&src, &sample(5 * 65536, 9));
    let up = c.upload(&src, &[]);
    let id = field(&up, "file_id");
    let link = field(&up, "share_link");
    let objects = server.objects();
    let object = objects
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy() == id)
        .unwrap_or_else(|| panic!("object {id} not among {objects:?}"));
    let mut bytes = std::fs::read(object).unwrap();
    // Flip a byte in the third payload chunk (index 2 of 0..=4; 65552-byte sealed chunks).
    let pos = bytes.len() - 2 * 65552 - 100;
    bytes[pos] ^= 0x40;
    std::fs::write(object, &bytes).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("t.out");
    let r = c
        .run(&["decrypt", &link, dest.to_str().unwrap()])
        .fails_with("tampered");
    assert!(r.stderr.contains("chunk 2"), "{r:#?}");
    assert!(!dest.exists());
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "no temp file left"
    );
}

/// With a terminal on stdin, `auth register` prompts for the password twice (no echo),
/// then for the emailed code, and verifies in one go.
#[test]
fn interactive_register_prompts_and_verifies() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !crate::common::tool_available("script") {
        crate::common::skip("util-linux `script` is not installed");
        return;
    }
    let server = Server::start(|_| {});
    let email = "tty@example.com";
    let c = Client::new(&server.url, email);
    let line = format!(
        "{} auth register --email {email}",
        env!("CARGO_BIN_EXE_hashdrop")
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("HASHDROP_HOME", c.home.path())
        .env("HASHDROP_SERVER", &server.url)
        .env_remove("HASHDROP_PASSWORD")
        .env_remove("HASHDROP_OTP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tty = child.stdin.take().unwrap();
    // Collect the terminal output as it comes, so each answer is typed only once its
    // prompt is shown (typed-ahead text would be echoed before echo is switched off).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !seen.lock().unwrap().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for("Account password:");
    writeln!(tty, "{}", crate::common::PASSWORD).unwrap();
    tty.flush().unwrap();
    wait_for("Confirm account password:");
    writeln!(tty, "{}", crate::common::PASSWORD).unwrap();
    tty.flush().unwrap();
    wait_for("Verification code:");
    let otp = server.otp(email);
    writeln!(tty, "{otp}").unwrap();
    tty.flush().unwrap();
    let status = child.wait().unwrap();
    drop(tty);
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    assert!(status.success(), "{text}");
    assert!(text.contains("verified"), "{text}");
    assert!(
        !text.contains(crate::common::PASSWORD),
        "password echoed: {text}"
    );
    c.run(&["auth", "login", "--email", email]).ok();
}

/// An empty file round-trips, and a hostile display name cannot place the output
/// outside the destination directory.
#[test]
fn empty_file_and_hostile_display_name() {
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "edge@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("empty");
    write(&src, b"");
    let up = c.upload(&src, &["--name", "../../escape.txt"]);
    let link = field(&up, "share_link");
    let out = tempfile::tempdir().unwrap();
    let inner = out.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    c.run(&["decrypt", &link, inner.to_str().unwrap(), "--verify"])
        .ok();
    assert_eq!(std::fs::read(inner.join("escape.txt")).unwrap(), b"");
    assert!(!out.path().join("escape.txt").exists());
}

/// Progress bars appear on a terminal (and, per the other tests, never in captured
/// stderr, where every failure is exactly one line).
#[test]
fn progress_bars_on_a_terminal() {
    use std::process::{Command, Stdio};
    if !crate::common::tool_available("script") {
        crate::common::skip("util-linux `script` is not installed");
        return;
    }
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "tty2@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("big.bin");
    write(&src, &sample(8 << 20, 21));
    let line = format!(
        "{} upload {} -N",
        env!("CARGO_BIN_EXE_hashdrop"),
        src.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("HASHDROP_HOME", c.home.path())
        .env("HASHDROP_SERVER", &server.url)
        .env("HASHDROP_PASSPHRASE", crate::common::FILE_PASSPHRASE)
        .env("HASHDROP_SCRYPT_WORK_FACTOR", "10")
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("uploading") || text.contains("hashing"),
        "no progress bar drawn: {text}"
    );
    // Captured (non-terminal) stderr stays free of progress output: at most the note
    // that, with no vault here, the owner's listing cannot open this file's name.
    let quiet = c.run(&["upload", src.to_str().unwrap(), "-N"]).ok();
    let stderr = quiet.stderr.trim();
    assert!(
        stderr.is_empty() || stderr.starts_with("There is no vault on this machine"),
        "{quiet:#?}"
    );
    assert!(
        !stderr.contains("uploading") && !stderr.contains('\r'),
        "{quiet:#?}"
    );
}

/// Runs `line` under a pseudo-terminal; for each `(prompt, answer)` waits until the
/// prompt is shown, then types the answer. Returns success and the terminal output.
fn tty_session(
    line: &str,
    env: &[(&str, &str)],
    remove: &[&str],
    steps: &[(&str, &str)],
) -> (bool, String) {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let mut child = cmd.spawn().unwrap();
    let mut tty = child.stdin.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut from = 0;
    for (prompt, answer) in steps {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = seen.lock().unwrap().clone();
            if let Some(i) = text[from..].find(prompt) {
                from += i + prompt.len();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {prompt:?} in {text:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        writeln!(tty, "{answer}").unwrap();
        tty.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(tty);
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    (status.success(), text)
}

/// The first vault-mode upload creates the vault and asks for its passphrase twice on
/// a terminal; a mismatch creates nothing.
#[test]
fn interactive_upload_confirms_a_new_vault_passphrase() {
    if !crate::common::tool_available("script") {
        crate::common::skip("util-linux `script` is not installed");
        return;
    }
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "tty3@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("v.bin");
    write(&src, b"interactive vault");
    let line = format!(
        "{} upload {}",
        env!("CARGO_BIN_EXE_hashdrop"),
        src.display()
    );
    let home = c.home.path().to_str().unwrap().to_string();
    let env = [
        ("HASHDROP_HOME", home.as_str()),
        ("HASHDROP_SERVER", server.url.as_str()),
        ("HASHDROP_SCRYPT_WORK_FACTOR", "10"),
    ];
    let (ok, text) = tty_session(
        &line,
        &env,
        &["HASHDROP_VAULT_PASSWORD"],
        &[
            ("Vault passphrase:", "first passphrase"),
            ("Confirm vault passphrase:", "second passphrase"),
        ],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("differ"), "{text}");
    assert!(!c.home.path().join("vault.age").exists());
    let (ok, text) = tty_session(
        &line,
        &env,
        &["HASHDROP_VAULT_PASSWORD"],
        &[
            ("Vault passphrase:", "zebra quartz 71"),
            ("Confirm vault passphrase:", "zebra quartz 71"),
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("Created a new vault"), "{text}");
    assert!(!text.contains("zebra quartz 71"), "echoed: {text}");
    assert!(c.home.path().join("vault.age").exists());
    // The vault opens with that passphrase.
    c.run_env(
        &["files", "list"],
        &[("HASHDROP_VAULT_PASSWORD", "zebra quartz 71")],
    )
    .ok();
    let up_id = c
        .run_env(
            &["--json", "files", "list"],
            &[("HASHDROP_VAULT_PASSWORD", "zebra quartz 71")],
        )
        .ok()
        .json()[0]["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.run_env(
        &["share", &up_id],
        &[("HASHDROP_VAULT_PASSWORD", "zebra quartz 71")],
    )
    .ok();
}

/// Every file under `dir` (database, its journal, objects, mail spool), read raw.
fn every_stored_byte(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Issue 12: the server keeps no file name and no plaintext hash for new uploads, yet
/// the owner lists the names and a recipient gets the name and can verify the file.
#[test]
fn the_server_stores_no_name_and_no_plaintext_hash_for_new_uploads() {
    use sha2::{Digest, Sha256};
    let server = Server::start(|_| {});
    let alice = Client::signed_up(&server, "private@example.com");
    let work = tempfile::tempdir().unwrap();
    let data = sample(2 * 65536 + 17, 12);
    let sha256 = Sha256::digest(&data);
    let vault_name = "Quarterly-Layoffs-DRAFT.xlsx";
    let pass_name = "Merger-Terms-Confidential.pdf";
    let src = work.path().join("src.bin");
    write(&src, &data);
    let up_v = alice.upload(&src, &["--name", vault_name]);
    let up_p = alice.upload(&src, &["-N", "--name", pass_name]);
    assert!(up_v["keyed_digest"].is_string() && up_v.get("plaintext_hash").is_none());

    // What the server stored, raw: the SQLite database and its journal, every object,
    // the mail spool. Nothing holds either name or the plaintext's SHA-256.
    let hex = sha256
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let stored = every_stored_byte(server.data.path());
    assert!(
        stored
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("hashdrop.db")),
        "{stored:?}"
    );
    for (path, bytes) in &stored {
        for (what, needle) in [
            ("the vault file's name", vault_name.as_bytes()),
            ("the passphrase file's name", pass_name.as_bytes()),
            ("the plaintext SHA-256 (hex)", hex.as_bytes()),
            ("the plaintext SHA-256", &sha256[..]),
        ] {
            assert!(!contains(bytes, needle), "{} holds {what}", path.display());
        }
    }

    // The owner still sees both names (the passphrase file's through the vault's
    // account key, without its passphrase).
    let list = alice.run(&["files", "list"]).ok();
    assert!(
        list.stdout.contains(vault_name) && list.stdout.contains(pass_name),
        "{list:#?}"
    );
    let show = alice
        .run(&["--json", "files", "show", &field(&up_p, "file_id")])
        .ok()
        .json();
    assert_eq!(show["file_name"], pass_name);
    assert_eq!(show["plaintext_hash"], "");
    // A script without the vault passphrase still gets its listing, names sealed; a
    // wrong passphrase is an error, not a quiet placeholder.
    let blind = alice
        .run_env(&["files", "list"], &[("HASHDROP_VAULT_PASSWORD", "")])
        .ok();
    assert!(blind.stdout.contains("(sealed name)") && !blind.stdout.contains(vault_name));
    // In JSON a name that was not opened stays empty beside its sealed metadata, as
    // the server holds it: no placeholder a script could take for a real name.
    let blind = alice
        .run_env(
            &["--json", "files", "list"],
            &[("HASHDROP_VAULT_PASSWORD", "")],
        )
        .ok()
        .json();
    let listed = blind.as_array().expect("a JSON array");
    assert_eq!(listed.len(), 2, "{blind}");
    for file in listed {
        assert!(file["metadata"].is_object(), "{file}");
        assert_eq!(file["file_name"], "", "{file}");
    }
    alice
        .run_env(
            &["files", "list"],
            &[("HASHDROP_VAULT_PASSWORD", "not it at all")],
        )
        .fails_with("wrong passphrase");

    // A recipient who is nobody's user gets the name from the link and verifies the
    // keyed digest, with no login.
    let bob = Client::new(&server.url, "bob@example.com");
    let out = tempfile::tempdir().unwrap();
    let r = bob
        .run(&[
            "--json",
            "decrypt",
            &field(&up_v, "share_link"),
            out.path().to_str().unwrap(),
            "--verify",
        ])
        .ok()
        .json();
    assert_eq!(r["verified"], true);
    assert_eq!(r["keyed_digest"], up_v["keyed_digest"]);
    assert_eq!(std::fs::read(out.path().join(vault_name)).unwrap(), data);
    let r = bob
        .run(&[
            "--json",
            "decrypt",
            &field(&up_p, "share_link"),
            out.path().to_str().unwrap(),
            "--verify",
        ])
        .ok()
        .json();
    assert_eq!(r["file_name"], pass_name);
    assert_eq!(std::fs::read(out.path().join(pass_name)).unwrap(), data);

    // Another file's key fails on the sealed name, before anything is downloaded or
    // written.
    let other = alice.upload(&src, &["--name", "other.bin"]);
    let (_, other_key) = field(&other, "share_link")
        .split_once('#')
        .map(|(b, k)| (b.to_string(), k.to_string()))
        .unwrap();
    let link = field(&up_v, "share_link");
    let (base, _) = link.split_once('#').unwrap();
    let before = std::fs::read_dir(out.path()).unwrap().count();
    bob.run(&[
        "decrypt",
        &format!("{base}#{other_key}"),
        out.path().to_str().unwrap(),
    ])
    .fails_with("key");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), before);
}

/// A server that shows one file under another file's sealed name (both open with the
/// same passphrase) is caught: the download does not start with the header the name
/// was opened with, and nothing is written.
#[test]
fn a_sealed_name_moved_to_another_file_is_refused() {
    if !crate::common::tool_available("python3") {
        crate::common::skip("python3 is not installed (it edits the server's SQLite file)");
        return;
    }
    let server = Server::start(|_| {});
    let alice = Client::signed_up(&server, "swap@example.com");
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a.bin"), work.path().join("b.bin"));
    write(&a, &sample(70_000, 30));
    write(&b, &sample(70_000, 31));
    let up_a = alice.upload(&a, &["-N", "--name", "invoice.pdf"]);
    let up_b = alice.upload(&b, &["-N", "--name", "malware.exe"]);
    let (id_a, id_b) = (field(&up_a, "file_id"), field(&up_b, "file_id"));

    // The server (here: someone with its database) gives B the sealed name of A.
    let db = server.data.path().join("hashdrop.db");
    let swap = format!(
        "import sqlite3; c = sqlite3.connect({db:?}); \
         h, s = c.execute(\"SELECT meta_header, meta_sealed FROM files WHERE id = '{id_a}'\").fetchone(); \
         c.execute(\"UPDATE files SET meta_header = ?, meta_sealed = ? WHERE id = '{id_b}'\", (h, s)); \
         c.commit()"
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &swap])
        .status()
        .unwrap();
    assert!(status.success());

    let out = tempfile::tempdir().unwrap();
    let r = alice
        .run(&[
            "decrypt",
            &field(&up_b, "share_link"),
            out.path().to_str().unwrap(),
        ])
        .fails_with("sealed name of another file");
    assert!(r.stderr.contains("no output was written"), "{r:#?}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing written"
    );
    // A's own link still works.
    alice
        .run(&[
            "decrypt",
            &field(&up_a, "share_link"),
            out.path().to_str().unwrap(),
        ])
        .ok();
    assert!(out.path().join("invoice.pdf").exists());
}
