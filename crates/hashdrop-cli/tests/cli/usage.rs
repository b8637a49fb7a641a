//! Snapshot tests of the command-line surface: `--help` texts and the errors for bad
//! arguments. Expected outputs live in `tests/snapshots/`; run with
//! `HASHDROP_UPDATE_SNAPSHOTS=1` to rewrite them after an intended change, then review
//! the diff.

use std::path::PathBuf;
use std::process::{Command, Stdio};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn hashdrop(args: &[&str]) -> Out {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hashdrop"))
        .args(args)
        .env_remove("HASHDROP_SERVER")
        .env_remove("HASHDROP_PASSWORD")
        .env_remove("HASHDROP_VAULT_PASSWORD")
        .env_remove("HASHDROP_PASSPHRASE")
        .env_remove("HASHDROP_OTP")
        .env("HASHDROP_HOME", home.path())
        .env("COLUMNS", "100")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var("HASHDROP_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with HASHDROP_UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (HASHDROP_UPDATE_SNAPSHOTS=1 rewrites it)",
        path.display()
    );
}

#[test]
fn help_texts() {
    let cases: &[(&str, &[&str])] = &[
        ("help", &["--help"]),
        ("help-auth", &["auth", "--help"]),
        ("help-auth-register", &["auth", "register", "--help"]),
        ("help-upload", &["upload", "--help"]),
        ("help-files", &["files", "--help"]),
        ("help-files-show", &["files", "show", "--help"]),
        ("help-share", &["share", "--help"]),
        ("help-decrypt", &["decrypt", "--help"]),
        ("help-vault", &["vault", "--help"]),
    ];
    for (name, args) in cases {
        let out = hashdrop(args);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert!(out.stderr.is_empty());
        snapshot(name, &out.stdout);
    }
}

#[test]
fn bad_arguments() {
    let cases: &[(&str, &[&str])] = &[
        ("err-no-command", &[]),
        ("err-unknown-command", &["frobnicate"]),
        ("err-upload-missing-path", &["upload"]),
        (
            "err-decrypt-two-key-sources",
            &["decrypt", "http://h/d/x", "--key", "K", "--vault"],
        ),
        (
            "err-upload-zero-downloads",
            &["upload", "f", "--max-downloads", "0"],
        ),
        (
            "err-upload-bad-duration",
            &["upload", "f", "--expires", "soon"],
        ),
        ("err-verify-missing-email", &["auth", "verify"]),
    ];
    for (name, args) in cases {
        let out = hashdrop(args);
        assert_eq!(out.code, 2, "{name}: usage errors exit 2");
        assert!(out.stdout.is_empty());
        snapshot(name, &out.stderr);
    }
}

#[test]
fn runtime_errors_are_one_line() {
    let cases: &[(&str, &[&str])] = &[
        (
            "err-bad-server-url",
            &["--server", "ftp://x", "files", "list"],
        ),
        ("err-not-logged-in", &["files", "list"]),
        (
            "err-upload-no-such-file",
            &["upload", "/nonexistent/file.bin"],
        ),
        (
            "err-bad-link",
            &["decrypt", "http://example.invalid/nothing-here"],
        ),
    ];
    for (name, args) in cases {
        let out = hashdrop(args);
        assert_eq!(out.code, 1, "{name}");
        assert_eq!(out.stderr.lines().count(), 1, "{name}: {}", out.stderr);
        snapshot(name, &out.stderr);
    }
    let json = hashdrop(&["--json", "files", "list"]);
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(v["code"], "not_logged_in");
}

#[test]
fn version_flag() {
    let out = hashdrop(&["--version"]);
    assert_eq!(
        out.stdout,
        format!("hashdrop {}\n", env!("CARGO_PKG_VERSION"))
    );
}
