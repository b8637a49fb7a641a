//! Typed client of the Hashdrop HTTP API, shared by the `hashdrop` CLI and by the
//! server's and the CLI's tests, so that each path and each JSON shape is written
//! once, here, next to the wire types it sends and reads.
//!
//! Every endpoint is a method of [`Client`] returning a [`Call`]. Awaiting the call
//! sends it and reads the answer into its wire type, or into an [`Error`] that keeps
//! what the server said. Callers with a transport policy of their own (the CLI retries
//! through a load balancer and refreshes tokens) take the built request with
//! [`Call::into_request`] and read the response with [`read`]; tests that check
//! statuses and headers take the raw response with [`Call::response`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), hashdrop_client::Error> {
//! use hashdrop_client::Client;
//! use hashdrop_wire::Credentials;
//!
//! let api = Client::new("http://127.0.0.1:8080".parse().unwrap());
//! let creds = Credentials { email: "me@example.com".into(), password: "long enough".into() };
//! let tokens = api.login(&creds).await?;
//! let files = api.with_token(tokens.access_token).list_all().await?;
//! # let _ = files;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod call;
mod error;

use hashdrop_wire::{
    CliVersion, CompleteRequest, CompleteResponse, Credentials, FileDetails, FileHash, FileMatch,
    FileSummary, LoginResponse, PartUrlsRequest, PartUrlsResponse, PassphraseSalt, PresignRequest,
    PresignResponse, Readiness, RefreshRequest, RefreshResponse, ShareInfo, StoredParts,
    UserResponse, VerifyRequest,
};
use reqwest::{Method, RequestBuilder};

pub use call::{read, Answer, Call};
pub use error::{Error, HttpError};
pub use reqwest::{StatusCode, Url};

/// A client of one Hashdrop server. Cloning is cheap: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `base` with a connection pool of its own that never
    /// follows redirects, so that [`Client::download`] can hand back the signed URL
    /// instead of fetching the object.
    ///
    /// # Panics
    ///
    /// If `base` cannot have a path (`mailto:` and the like; http and https URLs
    /// always can), or if no TLS backend can be initialised, as `reqwest` does.
    pub fn new(base: Url) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend for the HTTP client");
        Self::with_http(base, http)
    }

    /// A client of the server at `base` over `http`, so the caller chooses timeouts,
    /// user agent and pool. [`Client::download`] needs a client that does not follow
    /// redirects; every other endpoint answers without one. A path in `base` is kept
    /// as a prefix of every endpoint (a server behind `https://host/hashdrop/`).
    ///
    /// # Panics
    ///
    /// If `base` cannot have a path (`mailto:` and the like; http and https URLs
    /// always can).
    pub fn with_http(mut base: Url, http: reqwest::Client) -> Self {
        assert!(
            !base.cannot_be_a_base(),
            "a Hashdrop server URL needs a path: {base}"
        );
        base.set_query(None);
        base.set_fragment(None);
        Self {
            http,
            base,
            token: None,
        }
    }

    /// This client, sending `access_token` as `Authorization: Bearer` to the endpoints
    /// that act for an account. The public endpoints never carry it, so a share link
    /// pointing at another server cannot collect it.
    pub fn with_token(&self, access_token: impl Into<String>) -> Self {
        Self {
            token: Some(access_token.into()),
            ..self.clone()
        }
    }

    /// The access token sent to the account endpoints, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL without a trailing slash, as links and messages show it.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The underlying HTTP client, for what is not an API call: signed blob URLs.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `base` + `path`, then `tail` as one more segment, percent-encoded, so an id can
    /// never add segments or a query of its own.
    fn url(&self, path: &str, tail: Option<&str>) -> Url {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .expect("checked in Client::with_http");
            segments.pop_if_empty();
            segments.extend(path.split('/').filter(|s| !s.is_empty()));
            if let Some(tail) = tail {
                segments.push(tail);
            }
        }
        url
    }

    fn public(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path, None))
    }

    fn account(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.public(method, path);
        match &self.token {
            Some(token) => rb.bearer_auth(token),
            // Sent anyway: the server's 401 `invalid_token` says what is missing.
            None => rb,
        }
    }

    // Accounts.

    /// `POST /api/user/register`. The account stays unusable until [`Client::verify`]
    /// with the code the server mails.
    pub fn register(&self, credentials: &Credentials) -> Call<UserResponse> {
        Call::new(
            &self.http,
            self.public(Method::POST, "/api/user/register")
                .json(credentials),
        )
    }

    /// `PATCH /api/user/verify` with the mailed code. Wrong codes are counted: after a
    /// few the code stops working (429), and registering again issues a new one only
    /// once it has expired.
    pub fn verify(&self, request: &VerifyRequest) -> Call<()> {
        Call::new(
            &self.http,
            self.public(Method::PATCH, "/api/user/verify").json(request),
        )
    }

    /// `POST /api/user/login`: the tokens for [`Client::with_token`] and
    /// [`Client::refresh`].
    pub fn login(&self, credentials: &Credentials) -> Call<LoginResponse> {
        Call::new(
            &self.http,
            self.public(Method::POST, "/api/user/login")
                .json(credentials),
        )
    }

    /// `POST /api/token/refresh`. Refresh tokens rotate: the one sent is dead once
    /// this answers, and presenting it again revokes every session of the account, so
    /// store the answer before anything else can fail.
    pub fn refresh(&self, refresh_token: &str) -> Call<RefreshResponse> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_string(),
        };
        Call::new(
            &self.http,
            self.public(Method::POST, "/api/token/refresh").json(&body),
        )
    }

    /// `POST /api/token/revoke`: logging out ends the refresh token on the server, not
    /// only on this machine.
    pub fn revoke(&self, refresh_token: &str) -> Call<()> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_string(),
        };
        Call::new(
            &self.http,
            self.public(Method::POST, "/api/token/revoke").json(&body),
        )
    }

    /// `DELETE /api/user`, with the password again: a stolen access token alone must
    /// not be able to delete an account. A wrong password answers 401 with a code other
    /// than `invalid_token` ([`HttpError::is_token_problem`] tells them apart).
    pub fn delete_account(&self, credentials: &Credentials) -> Call<()> {
        Call::new(
            &self.http,
            self.account(Method::DELETE, "/api/user").json(credentials),
        )
    }

    // Files.

    /// `POST /api/files/presign`: reserves quota and answers a signed URL to PUT the
    /// ciphertext to (with [`Client::http`]), then [`Client::complete`].
    pub fn presign(&self, request: &PresignRequest) -> Call<PresignResponse> {
        Call::new(
            &self.http,
            self.account(Method::POST, "/api/files/presign")
                .json(request),
        )
    }

    /// `POST /api/files/complete`, after the object is stored. Marked repeatable
    /// although it is a POST: a completed file answers the same again, so an answer
    /// lost at a load balancer can be asked for once more.
    pub fn complete(&self, request: &CompleteRequest) -> Call<CompleteResponse> {
        Call::new(
            &self.http,
            self.account(Method::POST, "/api/files/complete")
                .json(request),
        )
        .repeatable()
    }

    /// `POST /api/files/parts`: signed URLs for parts of a pending multipart upload.
    /// Repeatable: signing again changes nothing on the server.
    pub fn part_urls(&self, request: &PartUrlsRequest) -> Call<PartUrlsResponse> {
        Call::new(
            &self.http,
            self.account(Method::POST, "/api/files/parts").json(request),
        )
        .repeatable()
    }

    /// `GET /api/files/parts?id=UUID`: the parts the store holds of a pending
    /// multipart upload, so a resumed upload sends only the others.
    pub fn stored_parts(&self, file_id: &str) -> Call<StoredParts> {
        Call::new(
            &self.http,
            self.account(Method::GET, "/api/files/parts")
                .query(&[("id", file_id)]),
        )
    }

    /// `GET /api/files/all`. An account without files answers 404, as the reference
    /// server does, not an empty list.
    pub fn list_all(&self) -> Call<Vec<FileSummary>> {
        Call::new(&self.http, self.account(Method::GET, "/api/files/all"))
    }

    /// `GET /api/files/resolve?id=PREFIX`: names and full ids of the files whose id
    /// starts with `id_prefix`, so short ids can be typed.
    pub fn resolve(&self, id_prefix: &str) -> Call<Vec<FileMatch>> {
        Call::new(
            &self.http,
            self.account(Method::GET, "/api/files/resolve")
                .query(&[("id", id_prefix)]),
        )
    }

    /// `GET /api/files?id=PREFIX`: everything about the files whose id starts with
    /// `id_prefix`; several when the prefix is ambiguous, for the caller to choose.
    pub fn details(&self, id_prefix: &str) -> Call<Vec<FileDetails>> {
        Call::new(
            &self.http,
            self.account(Method::GET, "/api/files")
                .query(&[("id", id_prefix)]),
        )
    }

    /// `GET /api/files/hash?id=UUID`: the plaintext SHA-256 the owner's upload
    /// recorded, to check a decrypted download against.
    pub fn file_hash(&self, file_id: &str) -> Call<FileHash> {
        Call::new(
            &self.http,
            self.account(Method::GET, "/api/files/hash")
                .query(&[("id", file_id)]),
        )
    }

    /// `GET /api/files/salt?id=UUID`, kept from the reference. This server always
    /// answers 404 for an id it knows: age keeps the scrypt salt in the file header.
    pub fn salt(&self, file_id: &str) -> Call<PassphraseSalt> {
        Call::new(
            &self.http,
            self.account(Method::GET, "/api/files/salt")
                .query(&[("id", file_id)]),
        )
    }

    /// `DELETE /api/files?id=PREFIX`: refused (409) unless the prefix names exactly one
    /// file, so a short id never deletes the wrong one.
    pub fn delete_file(&self, id_prefix: &str) -> Call<()> {
        Call::new(
            &self.http,
            self.account(Method::DELETE, "/api/files")
                .query(&[("id", id_prefix)]),
        )
    }

    // Recipients.

    /// `GET /api/share/{file_id}`: what a recipient needs to fetch and decrypt, without
    /// an account. Aim it at the server named in the share link (a client made for
    /// that origin), which need not be the one this client logs in to.
    pub fn share_info(&self, file_id: &str) -> Call<ShareInfo> {
        Call::new(
            &self.http,
            self.http.get(self.url("/api/share", Some(file_id))),
        )
    }

    /// `GET {download_url}` (the `download_url` of [`ShareInfo`] or [`FileDetails`],
    /// which the server builds, so the path is not repeated here): counts a download
    /// and answers the signed URL of the object without fetching it, so the caller can
    /// check it or hand it on. Needs an HTTP client that does not follow redirects
    /// ([`Client::new`] makes one).
    pub fn download(&self, download_url: &str) -> Call<Url> {
        Call::new(&self.http, self.http.get(download_url))
    }

    // Operations.

    /// `GET /api/cli/version`: the CLI version the server expects, to suggest an
    /// upgrade.
    pub fn cli_version(&self) -> Call<CliVersion> {
        Call::new(&self.http, self.public(Method::GET, "/api/cli/version"))
    }

    /// `GET /api/readyz`. A 503 carries the same body as a 200 (`not_ready`, and why),
    /// so both read as [`Readiness`].
    pub fn readyz(&self) -> Call<Readiness> {
        Call::new(&self.http, self.public(Method::GET, "/api/readyz"))
    }

    /// `GET /api/healthz`: liveness only, plain text `OK`.
    pub fn healthz(&self) -> Call<String> {
        Call::new(&self.http, self.public(Method::GET, "/api/healthz"))
    }

    /// `GET /metrics`: Prometheus text. A server with `metrics_token` set wants it
    /// as `Authorization: Bearer`; it is not an account's access token, so it is
    /// given here rather than taken from [`Client::with_token`].
    pub fn metrics(&self, scrape_token: Option<&str>) -> Call<String> {
        let rb = self.public(Method::GET, "/metrics");
        let rb = match scrape_token {
            Some(token) => rb.bearer_auth(token),
            None => rb,
        };
        Call::new(&self.http, rb)
    }

    /// `GET /api/openapi.json`: the OpenAPI document of the server's routes, read as
    /// plain JSON (its shape is the OpenAPI specification's, not this API's).
    pub fn openapi(&self) -> Call<serde_json::Value> {
        Call::new(&self.http, self.public(Method::GET, "/api/openapi.json"))
    }

    /// `DELETE /admin/reset`: empties every account and file of a server in
    /// `dev_mode`; any other server refuses it (403).
    pub fn admin_reset(&self) -> Call<()> {
        Call::new(&self.http, self.public(Method::DELETE, "/admin/reset"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashdrop_wire::KeyMode;

    fn client(base: &str) -> Client {
        Client::new(base.parse().unwrap())
    }

    fn url_of<T: Answer>(call: &Call<T>) -> String {
        call.request().expect("request builds").url().to_string()
    }

    #[test]
    fn paths_keep_the_base_prefix_and_drop_its_query() {
        for base in [
            "http://h:1/hashdrop",
            "http://h:1/hashdrop/",
            "http://h:1/hashdrop/?x=1#f",
        ] {
            let c = client(base);
            assert_eq!(c.base(), "http://h:1/hashdrop", "{base}");
            assert_eq!(url_of(&c.list_all()), "http://h:1/hashdrop/api/files/all");
        }
        assert_eq!(
            url_of(&client("https://h").cli_version()),
            "https://h/api/cli/version"
        );
    }

    #[test]
    fn operations_paths() {
        let c = client("http://h/p").with_token("T");
        assert_eq!(url_of(&c.metrics(None)), "http://h/p/metrics");
        assert_eq!(url_of(&c.openapi()), "http://h/p/api/openapi.json");
        assert_eq!(url_of(&c.admin_reset()), "http://h/p/admin/reset");
        assert_eq!(url_of(&c.salt("ab")), "http://h/p/api/files/salt?id=ab");
        let auth = |call: &Call<String>| {
            call.request()
                .unwrap()
                .headers()
                .get(reqwest::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_string())
        };
        // The scrape token, never the account's.
        assert_eq!(auth(&c.metrics(None)), None);
        assert_eq!(auth(&c.metrics(Some("S"))).as_deref(), Some("Bearer S"));
    }

    #[test]
    fn ids_cannot_escape_their_place() {
        let c = client("http://h");
        assert_eq!(
            url_of(&c.share_info("../admin/reset?x")),
            "http://h/api/share/..%2Fadmin%2Freset%3Fx"
        );
        assert_eq!(
            url_of(&c.details("ab&id=cd")),
            "http://h/api/files?id=ab%26id%3Dcd"
        );
    }

    #[test]
    fn the_token_goes_only_to_account_endpoints() {
        let c = client("http://h").with_token("T");
        let auth = |r: &reqwest::Request| {
            r.headers()
                .get(reqwest::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            auth(c.list_all().request().unwrap()).as_deref(),
            Some("Bearer T")
        );
        assert_eq!(
            auth(c.delete_file("ab").request().unwrap()).as_deref(),
            Some("Bearer T")
        );
        assert_eq!(auth(c.share_info("x").request().unwrap()), None);
        assert_eq!(auth(c.refresh("r").request().unwrap()), None);
        assert_eq!(auth(c.readyz().request().unwrap()), None);
        assert_eq!(auth(client("http://h").list_all().request().unwrap()), None);
    }

    #[test]
    fn bodies_are_the_wire_types() {
        let c = client("http://h").with_token("T");
        let presign = PresignRequest {
            file_name: "a".into(),
            plaintext_hash: None,
            keyed_digest: None,
            metadata: None,
            encrypted_size_bytes: 5,
            key_management_mode: KeyMode::Vault,
            mime_type: None,
            expires_at: None,
            max_downloads: None,
            parts: None,
        };
        let call = c.presign(&presign);
        let r = call.request().unwrap();
        assert_eq!(r.method(), Method::POST);
        let body = r.body().and_then(|b| b.as_bytes()).unwrap();
        let sent: PresignRequest = serde_json::from_slice(body).unwrap();
        assert_eq!(sent, presign);
        let r = c.refresh("R");
        let body = r.request().unwrap().body().and_then(|b| b.as_bytes());
        assert_eq!(body, Some(&br#"{"refresh_token":"R"}"#[..]));
    }

    #[test]
    fn only_idempotent_calls_and_complete_are_repeatable() {
        let c = client("http://h");
        let complete = CompleteRequest {
            file_id: "f".into(),
            plaintext_hash: None,
            keyed_digest: None,
            plaintext_size_bytes: None,
            passphrase_salt: None,
        };
        assert!(c.complete(&complete).is_repeatable());
        assert!(c.list_all().is_repeatable());
        assert!(c.delete_file("ab").is_repeatable());
        assert!(!c.refresh("r").is_repeatable());
        let creds = Credentials {
            email: "e".into(),
            password: "p".into(),
        };
        assert!(!c.login(&creds).is_repeatable());
    }
}
