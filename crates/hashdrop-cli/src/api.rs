//! The HTTP side: the transport policy around `hashdrop-client`'s calls (retries
//! through a load balancer, `-v` tracing, transparent access-token refresh) and the
//! translation of every failure into one actionable line. Paths and JSON shapes live
//! in `hashdrop-client`.

use std::time::Duration;

use anyhow::Context;
use hashdrop_client::{Answer, Call, Client, HttpError};
use reqwest::{Method, Request, Response, StatusCode};
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
    client: Client,
    home: Home,
    verbose: bool,
    insecure_http: bool,
}

/// A refusal turned into the user-facing line.
pub trait Explain {
    /// The user-facing line; `subject` names what was asked for ("file", "link"...).
    fn into_user(self, subject: &str) -> anyhow::Error;
}

impl Explain for HttpError {
    fn into_user(self, subject: &str) -> anyhow::Error {
        let m = self.message().trim_end_matches('.').to_string();
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
            403 if self.code() == "quota_exceeded" => fail(
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
            429 if self.code() == "download_limit" => fail(
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
            503 if self.code() == "global_quota_exceeded" => fail(
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

/// Turns a failed call that is not a refusal into its user-facing line; `target` is
/// the server the call went to.
fn client_error(e: hashdrop_client::Error, target: &str) -> anyhow::Error {
    match e {
        hashdrop_client::Error::Transport(e) => transport_error(e, target),
        hashdrop_client::Error::Unexpected { path, detail } => fail(
            "bad_response",
            format!("unexpected answer from the server for {path} ({detail})"),
            "check that --server points at a Hashdrop server of a compatible version",
        ),
        other => anyhow::Error::new(other),
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
        let base = Url::parse(server.trim()).map_err(|e| {
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
        let http = reqwest::Client::builder()
            .user_agent(concat!("hashdrop-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client: Client::with_http(base, http),
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
        self.client.base().to_string()
    }

    /// The raw HTTP client (downloads, blob uploads).
    pub fn http(&self) -> &reqwest::Client {
        self.client.http()
    }

    /// The state directory.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Logs a request line with `-v` (query strings, which may hold signatures, cut).
    pub fn trace(&self, method: &Method, url: &str) {
        if self.verbose {
            let shown = url.split('?').next().unwrap_or(url);
            eprintln!("hashdrop: {method} {}", printable(shown, false));
        }
    }

    /// Sends a request, sending it again after the transient failures a fleet behind
    /// a load balancer produces while an instance restarts or dies: a refused
    /// connection (the request never arrived, so any request may go again), and for
    /// `repeatable` requests also a dropped connection or a 502/503/504 from the
    /// balancer. A 503 asking for a long wait (an object-store outage, a full quota) is
    /// returned for the caller to explain. Streaming bodies are sent once.
    pub async fn execute(
        &self,
        mut req: Request,
        repeatable: bool,
    ) -> Result<Response, reqwest::Error> {
        let mut pauses = RETRY_PAUSES.iter();
        loop {
            let spare = req.try_clone();
            let outcome = self.http().execute(req).await;
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

    /// Sends one call of `client` through [`Api::execute`], traced with `-v`. Returns
    /// the answer, or the refusal for the caller to turn into a message.
    async fn run<T: Answer>(
        &self,
        client: &Client,
        call: Call<T>,
    ) -> anyhow::Result<Result<T, HttpError>> {
        let target = client.base();
        let repeatable = call.is_repeatable();
        let req = call.into_request().map_err(|e| client_error(e, target))?;
        let path = req.url().path().to_string();
        self.trace(req.method(), req.url().as_str());
        let resp = self
            .execute(req, repeatable)
            .await
            .map_err(|e| transport_error(e, target))?;
        if self.verbose {
            eprintln!(
                "hashdrop: -> {} ({})",
                resp.status().as_u16(),
                printable(&path, false)
            );
        }
        match hashdrop_client::read(resp).await {
            Ok(answer) => Ok(Ok(answer)),
            Err(hashdrop_client::Error::Http(e)) => Ok(Err(e)),
            // The body broke off after the status line.
            Err(hashdrop_client::Error::Transport(e)) => Err(transport_error(e, &path)),
            Err(e) => Err(client_error(e, target)),
        }
    }

    /// An unauthenticated call to this server.
    pub async fn public<T: Answer>(
        &self,
        call: impl FnOnce(&Client) -> Call<T>,
    ) -> anyhow::Result<Result<T, HttpError>> {
        self.run(&self.client, call(&self.client)).await
    }

    /// An unauthenticated call to the server at `origin` (a share link's), which need
    /// not be this one; the session's tokens never go there.
    pub async fn public_at<T: Answer>(
        &self,
        origin: &Url,
        call: impl FnOnce(&Client) -> Call<T>,
    ) -> anyhow::Result<Result<T, HttpError>> {
        let there = Client::with_http(origin.clone(), self.http().clone());
        self.run(&there, call(&there)).await
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

    /// An authenticated call, made by `call` from a client holding the access token.
    /// A 401 about that token triggers one token refresh and one retry; any other
    /// refusal is returned to the caller.
    pub async fn authed<T: Answer>(
        &self,
        call: impl Fn(&Client) -> Call<T>,
    ) -> anyhow::Result<Result<T, HttpError>> {
        let session = self.session()?;
        let client = self.client.with_token(session.access_token.as_str());
        match self.run(&client, call(&client)).await? {
            // A 401 about something else (a wrong password on delete-account) goes
            // back to the caller untouched; only a rejected access token is worth a
            // refresh. A 401 without our JSON body (a proxy's) counts as one too.
            Err(e) if e.is_token_problem() => {}
            answered => return Ok(answered),
        }
        let access = self.refresh(&session.access_token).await?;
        let client = self.client.with_token(access);
        match self.run(&client, call(&client)).await? {
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(fail(
                "session_expired",
                "your session is no longer valid",
                "log in again with `hashdrop auth login`",
            )),
            answered => Ok(answered),
        }
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
        let fresh = match self.public(|c| c.refresh(&session.refresh_token)).await? {
            Ok(fresh) => fresh,
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                return Err(fail(
                    "session_expired",
                    "your session has expired or was revoked",
                    "log in again with `hashdrop auth login`",
                ))
            }
            Err(e) => return Err(e.into_user("session")),
        };
        let updated = Session {
            access_token: fresh.access_token.clone(),
            refresh_token: fresh.refresh_token,
            ..session
        };
        self.home.save_session(&updated)?;
        Ok(fresh.access_token)
    }
}
