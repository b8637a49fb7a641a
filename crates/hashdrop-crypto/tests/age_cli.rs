//! Interop with the stock `age` command: what we write, `age -d` reads, and what `age`
//! writes, we read. Skips with a notice when `age` is not installed, unless
//! HASHDROP_TEST_REQUIRE_SERVICES=1 (as in CI), where a missing `age` is a failure.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use age::secrecy::ExposeSecret;
use hashdrop_crypto::{decrypt, encrypt, AgeIdentity, Keys, Passphrase, Recipients, CHUNK_SIZE};

fn age_available() -> bool {
    let found = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("HASHDROP_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("the `age` command is required (HASHDROP_TEST_REQUIRE_SERVICES=1) but not installed");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: `age` not installed; interop tests not run (apt-get install age)"
        );
    }
    found
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 1000) as u8).collect()
}

/// Runs `age` under a pseudo-terminal (util-linux `script`), since `age` only reads
/// passphrases from a terminal. `tty_input` is what gets typed.
fn age_with_tty(args: &str, tty_input: &str) {
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &format!("age {args}"), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("util-linux `script` runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tty_input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "age {args} failed");
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
}

#[test]
fn age_decrypts_our_vault_mode_file_with_the_file_identity_or_the_account_identity() {
    if !age_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (file_id, account_id) = (AgeIdentity::generate(), AgeIdentity::generate());
    let data = sample(3 * CHUNK_SIZE + 99);
    let mut sealed = Vec::new();
    encrypt(
        &data[..],
        &mut sealed,
        Recipients::Vault {
            file: &file_id.to_recipient(),
            account: &account_id.to_recipient(),
        },
    )
    .unwrap();
    write(&dir.path().join("obj.age"), &sealed);
    for (name, id) in [("file.key", &file_id), ("account.key", &account_id)] {
        write(
            &dir.path().join(name),
            id.to_secret_string().expose_secret().as_bytes(),
        );
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(dir.path().join(name))
            .arg(dir.path().join("obj.age"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age -d failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data, "with {name}");
    }
}

#[test]
fn age_decrypts_our_passphrase_file() {
    if !age_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = sample(CHUNK_SIZE + 1);
    let pass = Passphrase::new("tr0ub4dor&3".into());
    let mut sealed = Vec::new();
    encrypt(
        &data[..],
        &mut sealed,
        Recipients::Passphrase {
            passphrase: &pass,
            work_factor: Some(12),
        },
    )
    .unwrap();
    let (input, output) = (dir.path().join("p.age"), dir.path().join("p.out"));
    write(&input, &sealed);
    age_with_tty(
        &format!("-d -o {} {}", output.display(), input.display()),
        "tr0ub4dor&3\n",
    );
    assert_eq!(std::fs::read(&output).unwrap(), data);
}

#[test]
fn we_decrypt_what_age_encrypts_to_a_recipient_binary_and_armored() {
    if !age_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let id = AgeIdentity::generate();
    let data = sample(2 * CHUNK_SIZE);
    let plain = dir.path().join("plain");
    write(&plain, &data);
    for armor in [false, true] {
        let mut cmd = Command::new("age");
        cmd.arg("-r").arg(id.to_recipient().to_string());
        if armor {
            cmd.arg("-a");
        }
        let out = cmd.arg(&plain).output().unwrap();
        assert!(out.status.success());
        let mut decrypted = Vec::new();
        let summary =
            decrypt(&out.stdout[..], &mut decrypted, &Keys::identity(id.clone())).unwrap();
        assert_eq!(decrypted, data, "armor={armor}");
        assert_eq!(summary.plaintext_len, data.len() as u64);
    }
}

#[test]
fn we_decrypt_what_age_encrypts_with_a_passphrase() {
    if !age_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = sample(1000);
    let (plain, sealed) = (dir.path().join("plain"), dir.path().join("p.age"));
    write(&plain, &data);
    age_with_tty(
        &format!("-p -o {} {}", sealed.display(), plain.display()),
        "open sesame\nopen sesame\n",
    );
    let bytes = std::fs::read(&sealed).unwrap();
    let mut decrypted = Vec::new();
    decrypt(
        &bytes[..],
        &mut decrypted,
        &Keys::passphrase(Passphrase::new("open sesame".into())),
    )
    .unwrap();
    assert_eq!(decrypted, data);
}

#[test]
fn age_decrypts_a_file_encrypted_in_parallel_parts() {
    if !age_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let id = AgeIdentity::generate();
    let account = AgeIdentity::generate();
    write(
        &dir.path().join("file.key"),
        id.to_secret_string().expose_secret().as_bytes(),
    );
    // Parts of two chunks; lengths ending inside a chunk, on a chunk, on a part.
    for len in [0, 1, CHUNK_SIZE, 5 * CHUNK_SIZE, 6 * CHUNK_SIZE + 77] {
        let data = sample(len);
        let (sealed, _) = hashdrop_crypto::Encryption::new(Recipients::Vault {
            file: &id.to_recipient(),
            account: &account.to_recipient(),
        })
        .unwrap()
        .encrypt_parts_to_vec(&data, 2 * CHUNK_SIZE as u64)
        .unwrap();
        write(&dir.path().join("parts.age"), &sealed);
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(dir.path().join("file.key"))
            .arg(dir.path().join("parts.age"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age -d failed on len {len}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == data, "len {len}");
    }
}
