//! The HTTP side: requests to the Hashdrop API, transparent access-token refresh, and
//! the translation of every failure into one actionable line.

use std::time::Duration;

use anyhow::Context;
use hashdrop_wire::{ErrorBody, RefreshRequest, RefreshResponse};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::error::fail;
use crate::home::{Home, Session};
use crate::util::printable;

/// Pauses before each further attempt of a request that met a transient failure.
const RETRY_PAUSES: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];

/// A 503 whose Retry-After asks for more than this is reported, not waited out.
const MAX_RETRY_AFTER_SECS: u64 = 2;

/// Requests whose second arrival does what the first did: the idempotent methods,
/// and completing an upload (a completed file answers the same again).
fn safe_to_repeat(method: &Method, path: &str) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    ) || (*method == Method::POST && path == "/api/files/complete")
}

fn transient_status(r: &Response) -> bool {
    match r.status() {
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => true,
        StatusCode::SERVICE_UNAVAILABLE => r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none_or(|secs| secs <= MAX_RETRY_AFTER_SECS),
        _ => false,
    }
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Api {
    base: Url,
    http: reqwest::Client,
    home: Home,
    verbose: bool,
    insecure_http: bool,
}

/// A non-success answer, before it is turned into a user-facing message.
#[derive(Debug)]
pub struct HttpError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `code` of the error body, if the server sent one.
    pub code: String,
    /// The `error` text of the error body (or the status text).
    pub message: String,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for HttpError {}

impl HttpError {
    /// Reads an unsuccessful response.
    pub async fn read(resp: Response) -> Self {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = resp.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => (b.code, b.error),
            Err(_) => (
                String::new(),
                status.canonical_reason().unwrap_or("error").to_string(),
            ),
        };
        Self {
            status,
            code,
            message,
            retry_after,
        }
    }

    /// The user-facing line; `subject` names what was asked for ("file", "link"...).
    pub fn into_user(self, subject: &str) -> anyhow::Error {
        let m = self.message.trim_end_matches('.').to_string();
        match self.status.as_u16() {
            400 => fail(
                "bad_request",
                format!("the server rejected the request: {m}"),
                "check the arguments",
            ),
            401 => fail(
                "unauthorized",
                format!("the server refused the credentials ({m})"),
                "log in again with `hashdrop auth login`",
            ),
            403 if self.code == "quota_exceeded" => fail(
                "quota_exceeded",
                "storage quota exceeded",
                "delete files you no longer need (`hashdrop files delete ID`) and retry",
            ),
            403 => fail(
                "forbidden",
                format!("the server refused access ({m})"),
                "the link may be outdated: fetch a fresh one and retry",
            ),
            404 => fail(
                "not_found",
                format!("{subject} not found"),
                "check the id or link; the file may have been deleted",
            ),
            409 => fail("conflict", m, "see `hashdrop files list`"),
            410 => fail(
                "link_expired",
                format!("this link has expired or reached its download limit ({m})"),
                "ask the sender for a new link",
            ),
            413 => fail(
                "too_large",
                format!("the file is too large for this server ({m})"),
                "upload a smaller file",
            ),
            429 if self.code == "download_limit" => fail(
                "download_limit",
                "daily download limit reached for this file",
                format!(
                    "try again in {}",
                    human_wait(self.retry_after.unwrap_or(3600))
                ),
            ),
            429 => fail(
                "rate_limited",
                format!("too many requests ({m})"),
                format!(
                    "wait {} and retry",
                    human_wait(self.retry_after.unwrap_or(60))
                ),
            ),
            503 if self.code == "global_quota_exceeded" => fail(
                "quota_exceeded",
                format!("the server is out of storage ({m})"),
                "try again later or contact the operator",
            ),
            503 => fail(
                "unavailable",
                format!("the server is temporarily unavailable ({m})"),
                format!(
                    "try again in {}",
                    human_wait(self.retry_after.unwrap_or(60))
                ),
            ),
            s => fail(
                "server_error",
                format!("the server failed (HTTP {s}: {m})"),
                "try again later; if it persists, tell the server's operator",
            ),
        }
    }
}

fn human_wait(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// Refuses plain `http://` to any host but this machine unless `insecure_http`: the
/// account password, the session tokens and the file metadata would cross the network
/// readable and alterable by anyone on the path. Refused rather than warned about,
/// because a warning scrolls past in scripts while the password is already sent;
/// `--insecure-http` is the explicit opt-in for a trusted network.
pub fn refuse_plain_http(url: &Url, insecure_http: bool, what: &str) -> anyhow::Result<()> {
    if url.scheme() != "http" || insecure_http || is_loopback(url) {
        return Ok(());
    }
    Err(fail(
        "insecure_http",
        format!(
            "refusing plain http:// to {} ({what}): passwords, tokens and file names would cross the network unencrypted",
            url.host_str().unwrap_or("?")
        ),
        "use https://, or pass --insecure-http if the network is trusted",
    ))
}

/// Whether `url` points at this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Turns a transport error into the "server unreachable" line.
pub fn transport_error(e: reqwest::Error, target: &str) -> anyhow::Error {
    if e.is_connect() || e.is_timeout() {
        fail(
            "unreachable",
            format!("cannot reach the server at {target}"),
            "check that it is running and that --server / HASHDROP_SERVER is right",
        )
    } else {
        let mut text = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            text.push_str(": ");
            text.push_str(&s.to_string());
            src = s.source();
        }
        fail(
            "network",
            format!("network error talking to {target} ({text})"),
            "check your connection and retry",
        )
    }
}

impl Api {
    /// A client for `server` (e.g. `http://127.0.0.1:8080`).
    pub fn new(
        server: &str,
        home: Home,
        verbose: bool,
        insecure_http: bool,
    ) -> anyhow::Result<Self> {
        let mut base = Url::parse(server.trim()).map_err(|e| {
            fail(
                "bad_server",
                format!("invalid server URL {server:?} ({e})"),
                "pass --server http(s)://HOST[:PORT]",
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(fail(
                "bad_server",
                format!("invalid server URL {server:?}"),
                "pass --server http(s)://HOST[:PORT]",
            ));
        }
        refuse_plain_http(&base, insecure_http, "--server")?;
        base.set_fragment(None);
        base.set_query(None);
        let http = reqwest::Client::builder()
            .user_agent(concat!("hashdrop-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            http,
            home,
            verbose,
            insecure_http,
        })
    }

    /// [`refuse_plain_http`] with this run's `--insecure-http`.
    pub fn check_transport(&self, url: &Url, what: &str) -> anyhow::Result<()> {
        refuse_plain_http(url, self.insecure_http, what)
    }

    /// The server base URL, without a trailing slash.
    pub fn base(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// The raw HTTP client (downloads, blob uploads).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The state directory.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Absolute URL of an API path such as `/api/files/all`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// Logs a request line with `-v` (query strings, which may hold signatures, cut).
    pub fn trace(&self, method: &Method, url: &str) {
        if self.verbose {
            let shown = url.split('?').next().unwrap_or(url);
            eprintln!("hashdrop: {method} {}", printable(shown, false));
        }
    }

    /// Sends a request, mapping transport errors.
    pub async fn send(&self, rb: RequestBuilder, target: &str) -> anyhow::Result<Response> {
        let resp = self
            .execute(rb)
            .await
            .map_err(|e| transport_error(e, &self.base()))?;
        if self.verbose {
            eprintln!(
                "hashdrop: -> {} ({target})",
                resp.status().as_u16(),
                target = printable(target.split('?').next().unwrap_or(target), false)
            );
        }
        Ok(resp)
    }

    /// Sends a request, sending it again after the transient failures a fleet behind
    /// a load balancer produces while an instance restarts or dies: a refused
    /// connection (the request never arrived, so any request may go again), and for
    /// requests that are safe to repeat also a dropped connection or a 502/503/504
    /// from the balancer. A 503 asking for a long wait (an object-store outage, a full
    /// quota) is returned for the caller to explain. Streaming bodies are sent once.
    pub async fn execute(&self, rb: RequestBuilder) -> Result<Response, reqwest::Error> {
        let (client, req) = rb.build_split();
        let mut req = req?;
        let repeatable = safe_to_repeat(req.method(), req.url().path());
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            let spare = req.try_clone();
            let outcome = client.execute(req).await;
            let transient = match &outcome {
                Err(e) => e.is_connect() || repeatable,
                Ok(r) => repeatable && transient_status(r),
            };
            match (transient, spare, pauses.next()) {
                (true, Some(again), Some(pause)) => {
                    if self.verbose {
                        eprintln!("hashdrop: transient failure; sending again");
                    }
                    tokio::time::sleep(*pause).await;
                    req = again;
                }
                _ => return outcome,
            }
        }
    }

    /// An unauthenticated JSON call. Returns the body or the raw [`HttpError`].
    pub async fn public<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Result<T, HttpError>> {
        let resp = self.public_raw(method, path, body).await?;
        if resp.status().is_success() {
            Ok(Ok(read_json(resp).await?))
        } else {
            Ok(Err(HttpError::read(resp).await))
        }
    }

    /// An unauthenticated call returning the response whatever its status.
    pub async fn public_raw<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Response> {
        let url = self.url(path);
        self.trace(&method, &url);
        let mut rb = self.http.request(method, &url);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.send(rb, path).await
    }

    /// The saved session for this server, or "log in".
    pub fn session(&self) -> anyhow::Result<Session> {
        match self.home.session()? {
            Some(s) if s.server == self.base() => Ok(s),
            Some(s) => Err(fail(
                "not_logged_in",
                format!("you are logged in to {}, not to {}", s.server, self.base()),
                "run `hashdrop auth login` for this server",
            )),
            None => Err(fail(
                "not_logged_in",
                "you are not logged in",
                "run `hashdrop auth login` (or `hashdrop auth register` first)",
            )),
        }
    }

    /// An authenticated call. A 401 triggers one token refresh and one retry; any
    /// other status is returned to the caller.
    pub async fn authed<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Response> {
        let session = self.session()?;
        let resp = self
            .authed_once(method.clone(), path, body, &session.access_token)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // A 401 about something else (a wrong password on delete-account) goes back to
        // the caller untouched; only a rejected access token is worth a refresh. A 401
        // without our JSON body (a proxy's) is treated as a token problem too.
        let text = resp.text().await.unwrap_or_default();
        let token_problem = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.code == "invalid_token")
            .unwrap_or(true);
        if !token_problem {
            let rebuilt = http::Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text)
                .context("rebuilding a response")?;
            return Ok(Response::from(rebuilt));
        }
        let access = self.refresh(&session.access_token).await?;
        let resp = self.authed_once(method, path, body, &access).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(fail(
                "session_expired",
                "your session is no longer valid",
                "log in again with `hashdrop auth login`",
            ));
        }
        Ok(resp)
    }

    /// An authenticated JSON call: the body on success, else the raw [`HttpError`] for
    /// the caller to turn into a message.
    pub async fn authed_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Result<T, HttpError>> {
        let resp = self.authed(method, path, body).await?;
        if resp.status().is_success() {
            Ok(Ok(read_json(resp).await?))
        } else {
            Ok(Err(HttpError::read(resp).await))
        }
    }

    async fn authed_once<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        token: &str,
    ) -> anyhow::Result<Response> {
        let url = self.url(path);
        self.trace(&method, &url);
        let mut rb = self.http.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.send(rb, path).await
    }

    /// Refreshes the access token that just failed. Serialized across processes by a
    /// lock: refresh tokens rotate on use and presenting a used one again revokes the
    /// whole session, so a second process must pick up the first one's new tokens
    /// instead of refreshing again.
    async fn refresh(&self, failed_access: &str) -> anyhow::Result<String> {
        let _lock = self.home.lock("session")?;
        let session = self.session()?;
        if session.access_token != failed_access {
            return Ok(session.access_token);
        }
        let body = RefreshRequest {
            refresh_token: session.refresh_token.clone(),
        };
        let resp = self
            .public_raw(Method::POST, "/api/token/refresh", Some(&body))
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(fail(
                "session_expired",
                "your session has expired or was revoked",
                "log in again with `hashdrop auth login`",
            ));
        }
        if !resp.status().is_success() {
            return Err(HttpError::read(resp).await.into_user("session"));
        }
        let fresh: RefreshResponse = read_json(resp).await?;
        let updated = Session {
            access_token: fresh.access_token.clone(),
            refresh_token: fresh.refresh_token,
            ..session
        };
        self.home.save_session(&updated)?;
        Ok(fresh.access_token)
    }
}

/// Reads a JSON body.
pub async fn read_json<T: DeserializeOwned>(resp: Response) -> anyhow::Result<T> {
    let url = resp.url().path().to_string();
    let bytes = resp.bytes().await.map_err(|e| transport_error(e, &url))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        fail(
            "bad_response",
            format!("unexpected answer from the server for {url} ({e})"),
            "check that --server points at a Hashdrop server of a compatible version",
        )
    })
}
