//! Resumed downloads: `hashdrop decrypt` stopped part-way (killed, interrupted, cut
//! off) keeps its authenticated plaintext next to the destination, and the same command
//! run again continues it with an HTTP Range. The server's public URL points at a small
//! TCP proxy in the test, which forwards a bounded number of bytes to the client and
//! then holds or cuts the connection, so every interruption lands where the test says;
//! it also counts the bytes the client received and records the requests it sent.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{sample, Client, Server};

const CHUNK: u64 = 64 * 1024;
const SEALED_CHUNK: u64 = CHUNK + 16;

/// What the proxy does once the client has received its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Holds the connection open and forwards nothing more: the client waits.
    Stall,
    /// Closes the connection: the client sees it cut.
    Cut,
}

#[derive(Default)]
struct Shared {
    /// Bytes still allowed to the client, and what happens after; `None`: no limit.
    budget: Mutex<Option<(u64, Then)>>,
    /// A connection used up the budget.
    exhausted: AtomicBool,
    /// Bytes forwarded to the client since the last reset.
    to_client: AtomicU64,
    /// What the client sent since the last reset (request heads; capped).
    requests: Mutex<Vec<u8>>,
    /// The test is over: held connections are let go.
    closed: AtomicBool,
}

impl Shared {
    /// How many of `n` bytes may go to the client now.
    fn allow(&self, n: u64) -> (u64, Then) {
        let mut budget = self.budget.lock().unwrap();
        match budget.as_mut() {
            None => (n, Then::Stall),
            Some((left, then)) => {
                let allowed = n.min(*left);
                *left -= allowed;
                (allowed, *then)
            }
        }
    }
}

struct Proxy {
    url: String,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Binds the proxy's port, so the server can be told its public URL.
    fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            listener: Some(listener),
            shared: Arc::default(),
        }
    }

    /// Starts forwarding every connection to `server` (`http://HOST:PORT`).
    fn forward_to(&mut self, server: &str) {
        let target = server.trim_start_matches("http://").to_string();
        let listener = self.listener.take().expect("forwarding once");
        let shared = Arc::clone(&self.shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || relay(client, server, &shared));
            }
        });
    }

    /// From now on the client gets `bytes` more, then the connection stalls or is cut.
    fn limit(&self, bytes: u64, then: Then) {
        *self.shared.budget.lock().unwrap() = Some((bytes, then));
        self.shared.exhausted.store(false, Ordering::SeqCst);
    }

    /// No limit, and the counters start again from zero.
    fn unlimited(&self) {
        *self.shared.budget.lock().unwrap() = None;
        self.shared.to_client.store(0, Ordering::SeqCst);
        self.shared.requests.lock().unwrap().clear();
    }

    fn wait_exhausted(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.shared.exhausted.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the client never used its budget"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }

    /// The requests sent since the last reset, lowercased.
    fn requests(&self) -> String {
        String::from_utf8_lossy(&self.shared.requests.lock().unwrap()).to_lowercase()
    }
}

fn relay(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) {
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upstream = Arc::clone(shared);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from_client.read(&mut buf) {
            if n == 0 {
                break;
            }
            {
                let mut log = upstream.requests.lock().unwrap();
                if log.len() < 1 << 20 {
                    log.extend_from_slice(&buf[..n]);
                }
            }
            if to_server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let (mut from_server, mut to_client) = (server, client);
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from_server.read(&mut buf) {
        if n == 0 {
            break;
        }
        let (allowed, then) = shared.allow(n as u64);
        if to_client.write_all(&buf[..allowed as usize]).is_err() {
            break;
        }
        shared.to_client.fetch_add(allowed, Ordering::SeqCst);
        if allowed < n as u64 {
            shared.exhausted.store(true, Ordering::SeqCst);
            if then == Then::Stall {
                while !shared.closed.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            break;
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = from_server.shutdown(Shutdown::Both);
}

/// A server whose public URL (the download URL, its redirect to the object) is the
/// proxy's, and one signed-up user who uploaded `len` bytes. The CLI talks to the API
/// directly; the object's bytes come through the proxy.
struct Setup {
    proxy: Proxy,
    server: Server,
    client: Client,
    data: Vec<u8>,
    id: String,
    link: String,
    out: tempfile::TempDir,
    _work: tempfile::TempDir,
}

impl Setup {
    fn new(email: &str, len: usize, upload_args: &[&str]) -> Self {
        let mut proxy = Proxy::bind();
        let public = proxy.url.clone();
        let server = Server::start(|cfg| cfg.public_url = Some(public));
        proxy.forward_to(&server.url);
        let client = Client::signed_up(&server, email);
        let work = tempfile::tempdir().unwrap();
        let data = sample(len, len as u64);
        let src = work.path().join("big.bin");
        std::fs::write(&src, &data).unwrap();
        let up = client.upload(&src, upload_args);
        let field = |k: &str| {
            up[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k}: {up}"))
                .to_string()
        };
        let (id, link) = (field("file_id"), field("share_link"));
        Self {
            proxy,
            server,
            client,
            data,
            id,
            link,
            out: tempfile::tempdir().unwrap(),
            _work: work,
        }
    }

    fn dest(&self) -> PathBuf {
        self.out.path().join("big.bin")
    }

    fn partial(&self) -> PathBuf {
        self.out
            .path()
            .join(format!(".hashdrop-{}.partial", self.id))
    }

    fn state(&self) -> PathBuf {
        self.out
            .path()
            .join(format!(".hashdrop-{}.partial.json", self.id))
    }

    fn object(&self) -> PathBuf {
        self.server
            .objects()
            .into_iter()
            .find(|p| p.file_name().unwrap().to_string_lossy() == self.id)
            .expect("the object is stored")
    }

    fn decrypt(&self, extra: &[&str]) -> std::process::Command {
        let dest = self.dest();
        let mut args = vec!["decrypt", self.link.as_str(), dest.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.client.cmd(&args)
    }

    /// What is left in the output directory.
    fn leftovers(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Runs `decrypt` until the proxy has handed over `bytes` and the connection is
    /// cut; the run fails, keeping the partial.
    fn cut_after(&self, bytes: u64) -> crate::common::Run {
        self.proxy.limit(bytes, Then::Cut);
        let run = Client::run_cmd(self.decrypt(&[]));
        self.proxy.unlimited();
        run
    }

    /// `downloads_left` of the share, asked of the server directly.
    fn downloads_left(&self) -> u64 {
        let info: serde_json::Value =
            reqwest::blocking::get(format!("{}/api/share/{}", self.server.url, self.id))
                .unwrap()
                .json()
                .unwrap();
        info["downloads_left"]
            .as_u64()
            .unwrap_or_else(|| panic!("{info}"))
    }
}

/// Waits until `path` has stopped growing (and holds something).
fn wait_until_settled(path: &Path) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut same_for) = (0, 0);
    loop {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        same_for = if len == last && len > 0 {
            same_for + 1
        } else {
            0
        };
        last = len;
        if same_for >= 10 {
            return len;
        }
        assert!(
            Instant::now() < deadline,
            "{} never settled",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bytes of the age header and payload nonce at the start of an object.
fn header_len(object: &[u8]) -> u64 {
    let mac = object.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    let eol = mac + object[mac..].iter().position(|&b| b == b'\n').unwrap();
    (eol + 1 + 16) as u64
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn spawn(mut cmd: std::process::Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_download_resumes_with_a_range_from_the_last_whole_chunk() {
    let s = Setup::new("kill@example.com", 24 << 20, &["--max-downloads", "5"]);
    let object = std::fs::read(s.object()).unwrap();
    let header_len = header_len(&object);
    assert_eq!(s.downloads_left(), 5);

    // The first run gets 10 MiB, then the connection goes quiet; it is killed there.
    s.proxy.limit(10 << 20, Then::Stall);
    let mut first = spawn(s.decrypt(&["--json"]));
    s.proxy.wait_exhausted();
    let kept = wait_until_settled(&s.partial());
    first.kill().unwrap(); // SIGKILL: no handler runs
    first.wait().unwrap();
    assert!(
        !s.dest().exists(),
        "nothing at the destination before the end"
    );
    assert!(
        s.state().exists(),
        "the state was written before any plaintext"
    );
    assert!(
        (4 << 20..10 << 20).contains(&kept),
        "{kept} bytes kept of the 10 MiB sent"
    );
    let partial = std::fs::read(s.partial()).unwrap();
    assert!(
        s.data.starts_with(&partial),
        "only plaintext, and only a prefix of it"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&s.partial()), 0o600);
        assert_eq!(mode(&s.state()), 0o600);
    }
    assert_eq!(s.downloads_left(), 4, "the first run counted one download");

    // The same command again continues where the whole chunks end.
    s.proxy.unlimited();
    let second = Client::run_cmd(s.decrypt(&["--json"])).ok();
    let report = second.json();
    let resumed_at = report["resumed_at_bytes"].as_u64().unwrap();
    assert!(resumed_at > 0 && resumed_at % CHUNK == 0, "{report}");
    assert!(
        resumed_at <= kept && kept - resumed_at < CHUNK,
        "{resumed_at} of {kept}"
    );
    assert_eq!(
        report["verified"], true,
        "a resumed download is always checked"
    );
    assert_eq!(std::fs::read(s.dest()).unwrap(), s.data, "byte for byte");

    // It asked for the object's header, then for the rest from the resume point, and
    // got only that: not the whole object again.
    let requests = s.proxy.requests();
    let offset = header_len + resumed_at / CHUNK * SEALED_CHUNK;
    assert!(
        requests.contains(&format!("range: bytes=0-{}\r\n", header_len - 1)),
        "{requests}"
    );
    assert!(
        requests.contains(&format!("range: bytes={offset}-\r\n")),
        "{requests}"
    );
    let received = s.proxy.bytes_to_client();
    let rest = object.len() as u64 - offset;
    assert!(
        received >= rest && received < rest + (64 << 10),
        "received {received} bytes for a rest of {rest} (object {})",
        object.len()
    );
    assert_eq!(
        s.downloads_left(),
        4,
        "the resume reused the object URL: no second counted download"
    );
    assert_eq!(s.leftovers(), ["big.bin"], "no partial or state left");
}

#[test]
fn a_cut_connection_keeps_the_partial_and_the_next_run_says_it_resumed() {
    let s = Setup::new("cut@example.com", 6 << 20, &[]);
    let failed = s.cut_after(3 << 20);
    let failed = failed.fails_with("run the same command again to resume");
    assert!(failed.stderr.contains(".partial"), "{failed:#?}");
    assert!(s.partial().exists() && s.state().exists());
    assert!(!s.dest().exists());

    let resumed = Client::run_cmd(s.decrypt(&[])).ok();
    assert!(resumed.stderr.contains("Resuming at"), "{resumed:#?}");
    assert!(resumed.stdout.contains(", resumed at "), "{resumed:#?}");
    assert!(
        resumed.stdout.contains("keyed digest verified"),
        "{resumed:#?}"
    );
    assert_eq!(std::fs::read(s.dest()).unwrap(), s.data);
    assert_eq!(s.leftovers(), ["big.bin"]);
}

#[test]
fn ctrl_c_keeps_the_partial_and_restart_discards_it() {
    if !crate::common::tool_available("kill") {
        crate::common::skip("kill (procps or util-linux)");
        return;
    }
    let s = Setup::new("ctrlc@example.com", 6 << 20, &[]);
    s.proxy.limit(3 << 20, Then::Stall);
    let child = spawn(s.decrypt(&[]));
    s.proxy.wait_exhausted();
    wait_until_settled(&s.partial());
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; kept the authenticated part"),
        "{stderr}"
    );
    assert!(stderr.contains("--restart"), "{stderr}");
    assert!(s.partial().exists() && s.state().exists());

    // --restart throws the kept part away and downloads everything, without a Range.
    s.proxy.unlimited();
    let report = Client::run_cmd(s.decrypt(&["--json", "--restart"]))
        .ok()
        .json();
    assert_eq!(report["resumed_at_bytes"], 0, "{report}");
    assert!(
        !s.proxy.requests().contains("range:"),
        "{}",
        s.proxy.requests()
    );
    assert_eq!(std::fs::read(s.dest()).unwrap(), s.data);
    assert_eq!(s.leftovers(), ["big.bin"]);
}

#[test]
fn a_kept_part_changed_on_disk_fails_the_digest_and_is_removed() {
    let s = Setup::new("local@example.com", 4 << 20, &[]);
    s.cut_after(2 << 20);
    let mut kept = std::fs::read(s.partial()).unwrap();
    assert!(kept.len() > 100_000, "{} bytes kept", kept.len());
    kept[70_000] ^= 0x01; // inside the second chunk, which the resume keeps
    std::fs::write(s.partial(), &kept).unwrap();

    // (--json: the error alone on stderr, without the "Resuming at" note.)
    let failed = Client::run_cmd(s.decrypt(&["--json"]));
    let failed = failed.fails_with("was changed on disk");
    assert_eq!(failed.json()["code"], "hash_mismatch");
    assert!(
        failed.stderr.contains("partial download was removed"),
        "{failed:#?}"
    );
    assert_eq!(
        s.leftovers(),
        Vec::<String>::new(),
        "no plaintext left behind"
    );

    // The next run starts from zero and succeeds.
    let report = Client::run_cmd(s.decrypt(&["--json"])).ok().json();
    assert_eq!(report["resumed_at_bytes"], 0);
    assert_eq!(std::fs::read(s.dest()).unwrap(), s.data);
}

#[test]
fn an_object_damaged_after_the_interruption_fails_and_leaves_nothing() {
    let s = Setup::new("damaged@example.com", 4 << 20, &[]);
    s.cut_after(2 << 20);
    assert!(s.partial().exists());
    // Flip a byte in the final chunk, which the resumed download fetches.
    let mut object = std::fs::read(s.object()).unwrap();
    let at = object.len() - 100;
    object[at] ^= 0x40;
    std::fs::write(s.object(), &object).unwrap();

    let failed = Client::run_cmd(s.decrypt(&["--json"]));
    let failed = failed.fails_with("chunk 63 failed authentication");
    assert_eq!(failed.json()["code"], "tampered");
    assert_eq!(
        s.leftovers(),
        Vec::<String>::new(),
        "no plaintext left behind"
    );
}

#[test]
fn an_object_with_another_header_is_not_resumed() {
    let s = Setup::new("header@example.com", 4 << 20, &[]);
    s.cut_after(2 << 20);
    assert!(s.partial().exists());
    // Same size, another header: a byte of the first recipient stanza changed.
    let mut object = std::fs::read(s.object()).unwrap();
    let stanza = object.windows(3).position(|w| w == b"-> ").unwrap();
    object[stanza + 5] ^= 0x01;
    std::fs::write(s.object(), &object).unwrap();

    let failed = Client::run_cmd(s.decrypt(&["--json"]));
    let failed = failed.fails_with("not the one the interrupted download started on");
    assert_eq!(failed.json()["code"], "changed");
    assert_eq!(s.leftovers(), Vec::<String>::new());
}
