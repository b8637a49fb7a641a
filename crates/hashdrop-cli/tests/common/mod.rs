//! Harness for end-to-end tests: the real `hashdrop-server` binary on a free port with a
//! temporary data directory, driven by the real `hashdrop` binary with a temporary
//! `HASHDROP_HOME`.
//!
//! Finding the server binary: `HASHDROP_SERVER_BIN` if set; otherwise the harness runs
//! `$CARGO build -p hashdrop-server --target-dir <ours>` once per test binary, where
//! `<ours>` is the target directory this test executable lives in (its grandparent
//! directory), so the server is always fresh and built with the same profile. If the
//! server cannot be built the tests print a skip notice and pass, unless
//! `HASHDROP_TEST_REQUIRE_SERVICES=1`, in which case they fail.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery";
pub const VAULT_PASSWORD: &str = "vault passphrase 1";
pub const FILE_PASSPHRASE: &str = "file passphrase 1";

fn target_dir() -> PathBuf {
    // .../target/debug/deps/e2e-HASH -> .../target
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn profile_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

/// The server binary, or `None` (after printing why) when it cannot be built.
pub fn server_bin() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HASHDROP_SERVER_BIN") {
            return Some(PathBuf::from(p));
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "-q", "-p", "hashdrop-server", "--target-dir"])
            .arg(target_dir())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let p = profile_dir().join("hashdrop-server");
                if p.exists() {
                    Some(p)
                } else {
                    eprintln!("hashdrop-server built but not found at {}", p.display());
                    None
                }
            }
            Ok(o) => {
                eprintln!(
                    "building hashdrop-server failed:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("cannot run cargo to build hashdrop-server: {e}");
                None
            }
        }
    })
    .clone()
}

/// Skips (or fails under HASHDROP_TEST_REQUIRE_SERVICES=1) when a tool is missing.
pub fn skip(what: &str) {
    if std::env::var("HASHDROP_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("required service missing: {what}");
    }
    eprintln!("SKIPPED: {what}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server with rate limiting off plus `env`. `None` = skip the test.
    pub fn start(env: &[(&str, &str)]) -> Option<Self> {
        let Some(bin) = server_bin() else {
            skip("the hashdrop-server binary could not be built");
            return None;
        };
        // The port is picked by binding then releasing: the server's public URL must be
        // known before it starts, which rules out letting it bind port 0.
        for _attempt in 0..5 {
            let data = tempfile::tempdir().unwrap();
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let log = std::fs::File::create(data.path().join("server.log")).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(data.path())
                .arg("--public-url")
                .arg(&url)
                .env_remove("HASHDROP_CONFIG")
                .env_remove("HASHDROP_DATABASE_URL")
                .env("HASHDROP_RATE_LIMIT__ENABLED", "false")
                .env("HASHDROP_AUTH__ARGON2_M_COST_KIB", "1024")
                .env("HASHDROP_AUTH__ARGON2_T_COST", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn hashdrop-server");
            let mut server = Server { child, url, data };
            if server.wait_ready() {
                return Some(server);
            }
            // Port taken in between, or a crash: show the log and try another port.
            eprintln!("server log:\n{}", server.log());
            drop(server);
        }
        panic!("hashdrop-server did not become ready");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = http.get(format!("{}/api/healthz", self.url)).send() {
                if r.status().is_success() {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
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
