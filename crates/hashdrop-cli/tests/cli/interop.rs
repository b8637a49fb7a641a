//! Interop with stock tools: the stored object fetched with plain `curl -L` decrypts
//! with `age -d` and the identity `files show --reveal-key` prints; the exported vault
//! opens with `age -d` and the vault passphrase; `vault import` merges into another
//! home without losing a key.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{sample, tool_available, Client, Server, VAULT_PASSWORD};

fn field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

/// Runs `age` under a pseudo-terminal (util-linux `script`): age reads passphrases
/// only from a terminal. `typed` is what gets typed.
fn age_with_tty(args: &str, typed: &str) -> bool {
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &format!("age {args}"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("script runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

fn tools_present() -> bool {
    for t in ["age", "curl", "script"] {
        if !tool_available(t) {
            crate::common::skip(&format!("`{t}` is not installed"));
            return false;
        }
    }
    true
}

#[test]
fn stored_object_decrypts_with_curl_and_stock_age() {
    if !tools_present() {
        return;
    }
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "interop@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("doc.bin");
    let data = sample(200_000, 11);
    std::fs::write(&src, &data).unwrap();
    let id = field(&c.upload(&src, &[]), "file_id");
    let show = c
        .run(&["--json", "files", "show", &id, "--reveal-key"])
        .ok()
        .json();
    let obj = work.path().join("object.age");
    let status = Command::new("curl")
        .args(["-sS", "-f", "-L", "-o"])
        .arg(&obj)
        .arg(field(&show, "download_url"))
        .status()
        .unwrap();
    assert!(status.success());
    let key = work.path().join("key.txt");
    std::fs::write(&key, format!("{}\n", field(&show, "key"))).unwrap();
    let out = work.path().join("plain.bin");
    let status = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(&out)
        .arg(&obj)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn exported_vault_opens_with_age_and_imports_elsewhere() {
    if !tools_present() {
        return;
    }
    let server = Server::start(|_| {});
    let c = Client::signed_up(&server, "vault@example.com");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("v.bin");
    std::fs::write(&src, sample(10_000, 12)).unwrap();
    let up = c.upload(&src, &[]);
    let id = field(&up, "file_id");
    let exported = work.path().join("vault-export.age");
    c.run(&["vault", "export", exported.to_str().unwrap()]).ok();

    // Stock age opens it with the vault passphrase.
    let opened = work.path().join("vault.json");
    assert!(age_with_tty(
        &format!("-d -o {} {}", opened.display(), exported.display()),
        &format!("{VAULT_PASSWORD}\n"),
    ));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&opened).unwrap()).unwrap();
    assert!(doc["files"][&id]
        .as_str()
        .unwrap()
        .starts_with("AGE-SECRET-KEY-1"));
    assert!(doc["account"]
        .as_str()
        .unwrap()
        .starts_with("AGE-SECRET-KEY-1"));

    // Another machine with its own vault and its own passphrase imports it.
    let other = Client::new(&server.url, "vault@example.com");
    let src2 = work.path().join("w.bin");
    std::fs::write(&src2, b"other machine").unwrap();
    other
        .run(&["auth", "login", "--email", "vault@example.com"])
        .ok();
    let other_pass = [("HASHDROP_VAULT_PASSWORD", "another vault pass")];
    let mut cmd = other.cmd(&["--json", "upload", src2.to_str().unwrap()]);
    cmd.env(other_pass[0].0, other_pass[0].1);
    let id2 = field(&Client::run_cmd(cmd).ok().json(), "file_id");
    other
        .run_env(
            &["vault", "import", exported.to_str().unwrap()],
            &other_pass,
        )
        .fails_with("HASHDROP_IMPORT_VAULT_PASSWORD");
    let r = other
        .run_env(
            &["--json", "vault", "import", exported.to_str().unwrap()],
            &[
                other_pass[0],
                ("HASHDROP_IMPORT_VAULT_PASSWORD", VAULT_PASSWORD),
            ],
        )
        .ok()
        .json();
    assert_eq!(r["added"], 1);
    assert_eq!(r["kept_other_account"], true);
    // Both keys are now in the other vault; importing again changes nothing.
    for fid in [&id, &id2] {
        let mut cmd = other.cmd(&["--json", "files", "show", fid, "--reveal-key"]);
        cmd.env(other_pass[0].0, other_pass[0].1);
        assert!(field(&Client::run_cmd(cmd).ok().json(), "key").starts_with("AGE-SECRET-KEY-1"));
    }
    let out = work.path().join("via-imported.bin");
    let mut cmd = other.cmd(&[
        "decrypt",
        &format!("{}/d/{id}", server.url),
        out.to_str().unwrap(),
        "--vault",
        "--verify",
    ]);
    cmd.env(other_pass[0].0, other_pass[0].1);
    Client::run_cmd(cmd).ok();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    let again = other
        .run_env(
            &["--json", "vault", "import", exported.to_str().unwrap()],
            &[
                other_pass[0],
                ("HASHDROP_IMPORT_VAULT_PASSWORD", VAULT_PASSWORD),
            ],
        )
        .ok()
        .json();
    assert_eq!(again["added"], 0);
    assert_eq!(again["unchanged"], 1);
}
