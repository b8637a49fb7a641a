//! Test harness: a real server on 127.0.0.1:0 with a temp data dir, on SQLite or on a
//! fresh PostgreSQL database (from HASHDROP_TEST_POSTGRES_URL) dropped afterwards.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hashdrop_client::{Answer, Call, Client, HttpError};
use hashdrop_server::{App, AppState, Config};
use hashdrop_wire::*;
use reqwest::StatusCode;
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `NAME::sqlite` and `NAME::postgres` tests from `async fn NAME(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_admin_url().is_some() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// A service the test needs is absent: under HASHDROP_TEST_REQUIRE_SERVICES=1 that
/// fails the test, else the test is skipped with a printed notice saying `why`.
pub fn service_missing(why: &str) {
    if std::env::var("HASHDROP_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{why}, but HASHDROP_TEST_REQUIRE_SERVICES=1");
    }
    eprintln!("SKIP: {why}");
}

/// Whether `program` runs (asked with `version_arg`); [`service_missing`] when not.
fn installed(program: &str, version_arg: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok();
    if !found {
        service_missing(&format!("{program} is not installed"));
    }
    found
}

/// The admin URL, or `None` with a printed notice. With
/// HASHDROP_TEST_REQUIRE_SERVICES=1 a missing URL fails the test instead.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("HASHDROP_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            service_missing("postgres variant: HASHDROP_TEST_POSTGRES_URL is unset");
            None
        }
    }
}

/// The Redis URL for shared-limit tests, or `None` with a printed notice (a failure
/// instead under HASHDROP_TEST_REQUIRE_SERVICES=1).
pub fn redis_url() -> Option<String> {
    match std::env::var("HASHDROP_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            service_missing("redis test: HASHDROP_TEST_REDIS_URL is unset");
            None
        }
    }
}

/// Config for tests: cheap argon2, no rate limits, fast job polling, no schedules.
pub fn test_config(data_dir: &Path) -> Config {
    let mut cfg = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    cfg.auth.argon2_m_cost_kib = 64;
    cfg.auth.argon2_t_cost = 1;
    cfg.auth.argon2_p_cost = 1;
    cfg.rate_limit.enabled = false;
    cfg.jobs.poll_interval_ms = 50;
    cfg.jobs.backoff_base_ms = 5;
    cfg.jobs.backoff_max_ms = 20;
    cfg.jobs.cleaners_enabled = false;
    cfg.backup.interval_secs = 0;
    cfg
}

struct PgDb {
    admin_url: String,
    name: String,
}

impl Drop for PgDb {
    // Runs even when the test panicked, on its own runtime so it works from any context.
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut c)
                            .await;
                }
            });
        })
        .join();
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    format!("{prefix}/{db}{query}")
}

/// Creates a fresh database; returns its URL and the guard that drops it.
async fn fresh_pg() -> (String, PgDb) {
    let admin = postgres_admin_url().expect("postgres URL");
    let name = format!("hashdrop_test_{}", uuid::Uuid::new_v4().simple());
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to HASHDROP_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut c)
        .await
        .expect("create test database");
    (
        with_database(&admin, &name),
        PgDb {
            admin_url: admin,
            name,
        },
    )
}

/// A migrated, empty database of `backend` for tests of the store itself, and the
/// guard that removes it.
pub async fn fresh_store(backend: Backend) -> (hashdrop_server::store::Db, Box<dyn std::any::Any>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("store.db").display());
            let db = hashdrop_server::store::Db::connect(&url)
                .await
                .expect("sqlite");
            (db, Box::new(dir))
        }
        Backend::Postgres => {
            let (url, guard) = fresh_pg().await;
            let db = hashdrop_server::store::Db::connect(&url)
                .await
                .expect("postgres");
            (db, Box::new(guard))
        }
    }
}

/// A running server.
/// A pool on the database at `url`, for tests that look at rows directly.
pub async fn observer(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("test's own database connection")
}

pub struct TestApp {
    pub base: String,
    /// Raw HTTP (no redirects followed), for malformed requests and signed URLs.
    pub client: reqwest::Client,
    /// The typed API client on the same connections, without a token.
    pub api: Client,
    pub state: AppState,
    pub data_dir: PathBuf,
    pub backend: Backend,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
    _pg: Option<PgDb>,
}

impl TestApp {
    /// A pool on this app's database for the test's own reads and writes, as an
    /// outside observer (sqlx's Any driver: one query for both backends).
    pub async fn sql(&self) -> sqlx::AnyPool {
        observer(&self.database_url).await
    }

    /// Queues a mail job as the server would, in its own transaction.
    pub async fn enqueue_mail(&self, to: &str, body: &str, max_attempts: u32) {
        let mail =
            hashdrop_server::domain::job::Job::SendMail(hashdrop_server::domain::job::Mail {
                to: to.into(),
                subject: "s".into(),
                body: body.into(),
            });
        let now = hashdrop_server::domain::time::now_ms();
        let mut tx = self.state.db.begin().await.expect("begin");
        hashdrop_server::store::jobs::enqueue(&mut tx, &mail, max_attempts, now)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }

    /// Starts a server with the test config.
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts a server after `tweak` adjusts the config.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut cfg = test_config(tmp.path());
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let (url, guard) = fresh_pg().await;
                cfg.database_url = Some(url);
                Some(guard)
            }
        };
        tweak(&mut cfg);
        let mut app = Self::start(cfg, backend).await;
        app._tmp = Some(tmp);
        app._pg = pg;
        app
    }

    /// Starts a server on an existing config (restarts use this).
    pub async fn start(mut cfg: Config, backend: Backend) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        cfg.listen = addr.to_string();
        cfg.public_url = Some(format!("http://{addr}"));
        let data_dir = cfg.data_dir.clone();
        let database_url = cfg.database_url();
        let app = App::build(cfg).await.expect("build app");
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let base = format!("http://{addr}");
        TestApp {
            api: Client::with_http(base.parse().expect("base URL"), client.clone()),
            base,
            client,
            state,
            data_dir,
            backend,
            database_url,
            shutdown: Some(tx),
            handle: Some(handle),
            _tmp: None,
            _pg: None,
        }
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits for the server task.
    pub async fn stop(&mut self) {
        self.begin_shutdown();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(20), h)
                .await
                .expect("server stops in time")
                .expect("join")
                .expect("serve ok");
        }
    }

    /// Takes ownership of the temp data dir, for restarting on the same data.
    pub fn take_data_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The typed API client acting for the holder of `access_token`.
    pub fn api_as(&self, access_token: &str) -> Client {
        self.api.with_token(access_token)
    }

    /// GET of a path no client method names: web pages and assets, a link built by
    /// hand for one instance, an unknown route.
    pub async fn page(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Sends a request the test built or altered itself (malformed on purpose).
    pub async fn send(&self, request: reqwest::Request) -> reqwest::Response {
        self.client.execute(request).await.expect("request")
    }

    /// Registers; the raw response, for tests of the refusals.
    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.api
            .register(&credentials(email, password))
            .response()
            .await
            .expect("request")
    }

    /// Waits for the newest mail to `email` and returns its 6-digit code.
    pub async fn otp_for(&self, email: &str) -> String {
        let dir = self.data_dir.join("mail");
        let needle = format!("To: <{email}>");
        let found = poll(Duration::from_secs(10), || {
            let dir = dir.clone();
            let needle = needle.clone();
            async move {
                let mut newest: Option<(String, String)> = None;
                let rd = std::fs::read_dir(&dir).ok()?;
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if !name.ends_with(".eml") {
                        continue;
                    }
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    if text.contains(&needle) && newest.as_ref().is_none_or(|(n, _)| *n < name) {
                        newest = Some((name, text));
                    }
                }
                newest.map(|(_, t)| t)
            }
        })
        .await
        .expect("verification mail arrives");
        let i = found.find("code is: ").expect("code in mail") + "code is: ".len();
        found[i..i + 6].to_string()
    }

    /// Registers, verifies and logs in; returns the tokens.
    pub async fn user(&self, email: &str) -> LoginResponse {
        let pw = "correct horse battery";
        assert_eq!(self.register(email, pw).await.status(), StatusCode::CREATED);
        let otp = self.otp_for(email).await;
        self.verify_and_login(email, &otp, pw).await
    }

    /// Verifies `email` with `otp`, then logs in with `pw`; returns the tokens.
    pub async fn verify_and_login(&self, email: &str, otp: &str, pw: &str) -> LoginResponse {
        let verify = verify_request(email, otp);
        expect(self.api.verify(&verify), StatusCode::NO_CONTENT, "verify").await;
        let login = credentials(email, pw);
        expect(self.api.login(&login), StatusCode::OK, "login").await
    }

    /// Presign that must succeed; returns its answer.
    pub async fn presigned(&self, token: &str, request: &PresignRequest) -> PresignResponse {
        expect(
            self.api_as(token).presign(request),
            StatusCode::OK,
            "presign",
        )
        .await
    }

    /// GET an absolute URL (a signed blob URL) with a `Range` header.
    pub async fn get_range(&self, url: &str, range: &str) -> reqwest::Response {
        let r = self.client.get(url).header("range", range).send().await;
        r.expect("range get")
    }

    /// PUT `body` to a signed blob URL.
    pub async fn put_blob(&self, url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client.put(url).body(body).send().await.expect("put")
    }

    /// Presign ([`presign_request`] for `data`) + PUT + complete (reporting
    /// [`FIXTURE_PLAINTEXT_SIZE`]); returns the presign answer.
    pub async fn upload(&self, token: &str, data: &[u8]) -> PresignResponse {
        self.upload_with(token, data, |_| {}).await
    }

    /// [`TestApp::upload`] after `tweak` sets the owner's choices in the presign.
    pub async fn upload_with(
        &self,
        token: &str,
        data: &[u8],
        tweak: impl FnOnce(&mut PresignRequest),
    ) -> PresignResponse {
        let mut request = presign_request(data.len() as u64);
        tweak(&mut request);
        let p = self.presigned(token, &request).await;
        let r = self
            .put_blob(
                &p.upload_resource.as_ref().expect("one PUT").url,
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "blob put");
        let complete = CompleteRequest {
            plaintext_size_bytes: Some(FIXTURE_PLAINTEXT_SIZE),
            ..complete_request(&p.file_id)
        };
        expect(
            self.api_as(token).complete(&complete),
            StatusCode::OK,
            "complete",
        )
        .await;
        p
    }

    pub async fn details(&self, token: &str, id: &str) -> FileDetails {
        let mut v = expect(self.api_as(token).details(id), StatusCode::OK, "details").await;
        v.remove(0)
    }
}

/// Sends `call`, checks that it answered exactly `status`, and reads the answer.
pub async fn expect<T: Answer>(call: Call<T>, status: StatusCode, what: &str) -> T {
    let r = call
        .response()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.status(), status, "{what}");
    hashdrop_client::read(r)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Sends `call` and answers the status, whatever it is.
pub async fn status<T: Answer>(call: Call<T>) -> StatusCode {
    call.response().await.expect("request").status()
}

/// Sends `call`, checks that it was refused with exactly `status`, and reads the
/// refusal (its `code()` is `""` when the answer had no error body).
pub async fn refused<T: Answer>(call: Call<T>, status: StatusCode, what: &str) -> HttpError {
    let r = call
        .response()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(r.status(), status, "{what}");
    HttpError::from_response(r).await
}

/// The request `call` would send, with its JSON body replaced by `body`: the
/// client's method, path and headers around input that is malformed on purpose.
pub fn with_body<T: Answer>(call: Call<T>, body: impl Into<reqwest::Body>) -> reqwest::Request {
    let mut request = call.into_request().expect("request builds");
    *request.body_mut() = Some(body.into());
    request
}

/// The request `call` would send without its query string: an id left out.
pub fn without_query<T: Answer>(call: Call<T>) -> reqwest::Request {
    let mut request = call.into_request().expect("request builds");
    request.url_mut().set_query(None);
    request
}

/// The request `call` would send with an `X-Forwarded-For` line per entry of
/// `lines` added: what a client or proxy in front of the server claims.
pub fn forwarded_for<T: Answer>(call: Call<T>, lines: &[&str]) -> reqwest::Request {
    let mut request = call.into_request().expect("request builds");
    for line in lines {
        let value = line.parse().expect("header value");
        request.headers_mut().append("x-forwarded-for", value);
    }
    request
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// The plaintext size `TestApp::upload` reports at complete: the uploaded bytes are a
/// stand-in for ciphertext, so there is no real plaintext, and the server stores
/// whatever the client says.
pub const FIXTURE_PLAINTEXT_SIZE: u64 = 3;

/// A well-formed presign of `size` ciphertext bytes: `report.pdf`, vault mode, with
/// a plaintext hash of `ab` repeated.
pub fn presign_request(size: u64) -> PresignRequest {
    PresignRequest {
        file_name: "report.pdf".into(),
        plaintext_hash: Some("ab".repeat(32)),
        keyed_digest: None,
        metadata: None,
        encrypted_size_bytes: size,
        key_management_mode: KeyMode::Vault,
        mime_type: None,
        expires_at: None,
        max_downloads: None,
        parts: None,
    }
}

/// Login, registration and account-deletion body.
pub fn credentials(email: &str, password: &str) -> Credentials {
    Credentials {
        email: email.into(),
        password: password.into(),
    }
}

/// Verification body.
pub fn verify_request(email: &str, otp: &str) -> VerifyRequest {
    VerifyRequest {
        email: email.into(),
        otp: otp.into(),
    }
}

/// Complete of `file_id` with nothing else: no hash, no plaintext size.
pub fn complete_request(file_id: &str) -> CompleteRequest {
    CompleteRequest {
        file_id: file_id.into(),
        plaintext_hash: None,
        keyed_digest: None,
        plaintext_size_bytes: None,
        passphrase_salt: None,
    }
}

/// An account's quota counters and the global one, read by an outside observer:
/// (the user's used bytes, the user's file count, all users' used bytes).
pub async fn usage(app: &TestApp, email: &str) -> (i64, i64, i64) {
    let (used, files): (i64, i64) =
        sqlx::query_as("SELECT used_bytes, file_count FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&app.sql().await)
            .await
            .unwrap();
    let (global,): (i64,) = sqlx::query_as("SELECT used_bytes FROM global_usage WHERE id = 1")
        .fetch_one(&app.sql().await)
        .await
        .unwrap();
    (used, files, global)
}

/// Polls `f` every 20 ms until it yields `Some` or `timeout` passes.
pub async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Error body of a failed response.
pub async fn error_code(r: reqwest::Response) -> String {
    let b: ErrorBody = r.json().await.expect("error body is JSON");
    b.code
}

/// A fresh PostgreSQL database beside the test app's (for replica routing tests);
/// dropped with the returned guard.
pub struct ExtraPgDb {
    pub url: String,
    _guard: PgDb,
}

pub async fn extra_pg_database() -> ExtraPgDb {
    let (url, guard) = fresh_pg().await;
    ExtraPgDb { url, _guard: guard }
}

impl ExtraPgDb {
    /// Lets connections in, or turns them away and ends the open ones: a real outage
    /// of this database, for replica tests, without touching the shared server.
    pub async fn allow_connections(&self, allow: bool) {
        let admin = postgres_admin_url().expect("postgres URL");
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("admin");
        let name = &self._guard.name;
        sqlx::query(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allow}"
        ))
        .execute(&mut c)
        .await
        .expect("alter database");
        if !allow {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(name)
            .execute(&mut c)
            .await
            .expect("terminate backends");
        }
    }
}

impl TestApp {
    /// Another instance on this one's configuration: same database, data dir (so
    /// the same secrets and mail spool) and Redis, its own port and instance id.
    pub async fn sibling(&self) -> TestApp {
        let mut cfg = (*self.state.cfg).clone();
        cfg.instance_id = None;
        Self::start(cfg, self.backend).await
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for a child process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A throwaway `redis-server` on its own port, for tests that stop and restart
/// Redis (the shared one must never be stopped). Killed on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisProcess {
    /// Starts one, or `None` with a notice when `redis-server` is not installed (a
    /// failure instead under HASHDROP_TEST_REQUIRE_SERVICES=1).
    pub async fn start() -> Option<RedisProcess> {
        if !installed("redis-server", "--version") {
            return None;
        }
        let mut r = RedisProcess {
            port: free_port(),
            child: None,
        };
        r.resume().await;
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an outage as the instances see it).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    pub async fn resume(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let port = self.port;
        poll(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
        .expect("redis-server accepts connections");
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Readiness body of `app`.
pub async fn readiness(app: &TestApp) -> (StatusCode, Readiness) {
    let r = app.api.readyz().response().await.expect("request");
    let s = r.status();
    (s, hashdrop_client::read(r).await.expect("readiness json"))
}

/// Kills and reaps a child process on drop.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Kills the child now and waits for it.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real `haproxy` in front of one server, configured like deploy/haproxy
/// (`option forwardfor`: it appends its own `X-Forwarded-For` line). Killed on drop.
pub struct HaproxyProcess {
    pub port: u16,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl HaproxyProcess {
    /// Starts one before `backend` (`http://127.0.0.1:PORT`), or `None` with a notice
    /// when `haproxy` is not installed (a failure under HASHDROP_TEST_REQUIRE_SERVICES=1).
    pub async fn start(backend: &str) -> Option<HaproxyProcess> {
        if !installed("haproxy", "-v") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let server = backend.trim_start_matches("http://");
        let cfg = format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             \n  option http-server-close\n  option forwardfor\n\
             frontend api\n  bind 127.0.0.1:{port}\n  default_backend app\n\
             backend app\n  server app1 {server}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let p = HaproxyProcess {
            port,
            _child: ChildGuard(child),
            _dir: dir,
        };
        poll(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
        .expect("haproxy accepts connections");
        Some(p)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Applies TOML `settings` over `cfg` the way a config file would, so a test can set
/// keys by name (an unknown key fails the test with the loader's own message).
pub fn merge_toml(cfg: &mut Config, settings: &str) {
    use figment::providers::{Format, Serialized, Toml};
    *cfg = figment::Figment::from(Serialized::defaults(cfg.clone()))
        .merge(Toml::string(settings))
        .extract()
        .unwrap_or_else(|e| panic!("config {settings:?}: {e}"));
}
