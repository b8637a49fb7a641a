//! Harness for end-to-end tests: the real Hashdrop server (the `hashdrop-server`
//! library, served in-process on its own runtime and thread) on a free port with a
//! temporary data directory, driven by the real `hashdrop` binary with a temporary
//! `HASHDROP_HOME`.
//!
//! In-process because a test must not build anything: shelling out to `cargo build` for
//! the server binary cost minutes per run (it resolved features differently from the
//! test build and recompiled much of the tree). The fleet stories, which need server
//! processes they can restart and kill, use the binary Cargo built for the server
//! crate's own tests in the same run ([`server_bin`]).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use hashdrop_server::{App, Config};

pub const PASSWORD: &str = "correct horse battery";
pub const VAULT_PASSWORD: &str = "vault passphrase 1";
pub const FILE_PASSPHRASE: &str = "file passphrase 1";

/// The `hashdrop-server` binary for tests that need server processes: `HASHDROP_SERVER_BIN`
/// if set, else the one Cargo put next to this test executable's profile directory
/// (`cargo test --workspace` builds it for the server crate's integration tests). `None`,
/// after printing why, when it is missing or older than the server's sources: a stale
/// binary would test old code.
pub fn server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HASHDROP_SERVER_BIN") {
        return Some(PathBuf::from(p));
    }
    // .../target/debug/deps/cli-HASH -> .../target/debug/hashdrop-server
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("profile directory")
        .join("hashdrop-server");
    let hint = "run `cargo test --workspace` (it builds the server binary), or `cargo build \
                -p hashdrop-server` first, or set HASHDROP_SERVER_BIN";
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        eprintln!("no hashdrop-server binary at {}: {hint}", bin.display());
        return None;
    };
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for src in [
        "hashdrop-server/src",
        "hashdrop-server/migrations",
        "hashdrop-wire/src",
    ] {
        if newest_file(&crates.join(src)).is_some_and(|t| t > built) {
            eprintln!("{} is older than crates/{src}: {hint}", bin.display());
            return None;
        }
    }
    Some(bin)
}

/// Modification time of the newest file under `dir`.
fn newest_file(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_file(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// Skips (or fails under HASHDROP_TEST_REQUIRE_SERVICES=1) when a tool is missing.
pub fn skip(what: &str) {
    if std::env::var("HASHDROP_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("required service missing: {what}");
    }
    eprintln!("SKIPPED: {what}");
}

/// A server running in this process on a runtime of its own; stopped on drop.
pub struct Server {
    pub url: String,
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Server {
    /// Starts a server on SQLite in a temporary data dir, with rate limiting off and
    /// cheap password hashing, after `configure` has adjusted the config.
    pub fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().unwrap();
        // Bound here so the public URL (which every link carries) is known before start.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut cfg = Config {
            data_dir: data.path().to_path_buf(),
            listen: listener.local_addr().unwrap().to_string(),
            public_url: Some(url.clone()),
            ..Config::default()
        };
        cfg.rate_limit.enabled = false;
        cfg.auth.argon2_m_cost_kib = 1024;
        cfg.auth.argon2_t_cost = 1;
        // A CLI killed mid-request must not hold the test up at shutdown.
        cfg.shutdown_timeout_secs = 1;
        configure(&mut cfg);

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let app = match App::build(cfg).await {
                    Ok(app) => app,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = ready_tx.send(Ok(()));
                let stopped = async move {
                    let _ = stop_rx.await;
                };
                if let Err(e) = app.serve(listener, stopped).await {
                    eprintln!("in-process hashdrop-server stopped with an error: {e:#}");
                }
            });
        });
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("hashdrop-server did not start: {e}"),
            Err(_) => panic!("hashdrop-server thread ended during startup"),
        }
        Server {
            url,
            data,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The newest OTP mailed to `email`, polling the mail spool.
    pub fn otp(&self, email: &str) -> String {
        let dir = self.data.path().join("mail");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(code) = otp_in(&dir, email) {
                return code;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no OTP mail for {email} in {}", dir.display());
    }

    /// Files stored in the blob directory (object paths).
    pub fn objects(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data.path().join("blobs"), &mut out);
        out
    }
}

/// The 6-digit code in the newest `.eml` to `email` in a log mailer's spool.
pub fn otp_in(dir: &Path, email: &str) -> Option<String> {
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .filter(|(_, t)| t.contains(&format!("<{email}>")))
        .collect();
    found.sort();
    let (_, text) = found.last()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or(text);
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_string)
}

/// One user's CLI environment.
pub struct Client {
    pub home: tempfile::TempDir,
    pub server: String,
    pub email: String,
}

/// Output of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }
    pub fn fails_with(self, needle: &str) -> Self {
        assert_ne!(self.code, 0, "command should have failed: {self:#?}");
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}: {self:#?}"
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "errors are one line: {self:#?}"
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

impl Client {
    pub fn new(server: &str, email: &str) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            server: server.to_string(),
            email: email.to_string(),
        }
    }

    /// A `hashdrop` command with this client's home, server and test secrets.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hashdrop"));
        c.args(args)
            .env("HASHDROP_HOME", self.home.path())
            .env("HASHDROP_SERVER", &self.server)
            .env("HASHDROP_SCRYPT_WORK_FACTOR", "10")
            .env("HASHDROP_PASSWORD", PASSWORD)
            .env("HASHDROP_VAULT_PASSWORD", VAULT_PASSWORD)
            .env("HASHDROP_PASSPHRASE", FILE_PASSPHRASE)
            .env_remove("HASHDROP_OTP")
            .env_remove("HASHDROP_IMPORT_VAULT_PASSWORD")
            .env_remove("HASHDROP_MAX_UPLOAD_BYTES")
            .stdin(Stdio::null());
        c
    }

    pub fn run_cmd(mut c: Command) -> Run {
        let out = c.output().expect("run hashdrop");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Self::run_cmd(self.cmd(args))
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in env {
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        Self::run_cmd(c)
    }

    /// register → verify (code from the mail spool) → login.
    pub fn signed_up(server: &Server, email: &str) -> Self {
        let c = Self::new(&server.url, email);
        c.run(&["auth", "register", "--email", email]).ok();
        let otp = server.otp(email);
        c.run_env(
            &["auth", "verify", "--email", email],
            &[("HASHDROP_OTP", &otp)],
        )
        .ok();
        c.run(&["auth", "login", "--email", email]).ok();
        c
    }

    /// Starts `hashdrop upload FILE --parallel 1` (one part at a time, so progress is
    /// easy to read from outside) and SIGKILLs it as soon as `progressed()` says so.
    /// An upload that ends, or makes no progress in two minutes, fails the test: it
    /// would have tested nothing.
    pub fn upload_killed_when(&self, file: &Path, mut progressed: impl FnMut() -> bool) {
        let mut child = self
            .cmd(&[
                "--json",
                "upload",
                file.to_str().unwrap(),
                "--parallel",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start upload");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !progressed() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the upload ended before it could be killed: {status}");
            }
            assert!(Instant::now() < deadline, "the upload made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The ids `files list --json` shows.
    pub fn file_ids(&self) -> Vec<String> {
        let list = self.run(&["--json", "files", "list"]).ok().json();
        list.as_array()
            .expect("files list answers an array")
            .iter()
            .map(|f| f["file_id"].as_str().expect("file_id").to_string())
            .collect()
    }

    /// Uploads and returns the `--json` answer.
    pub fn upload(&self, path: &Path, extra: &[&str]) -> serde_json::Value {
        let p = path.to_str().unwrap();
        let mut args = vec!["--json", "upload", p];
        args.extend_from_slice(extra);
        self.run(&args).ok().json()
    }
}

/// Deterministic pseudo-random bytes.
pub fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
