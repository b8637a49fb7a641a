//! One request of the API and how its answer is read.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use hashdrop_wire::{
    CliVersion, CompleteResponse, FileDetails, FileHash, FileMatch, FileSummary, LoginResponse,
    PartUrlsResponse, PassphraseSalt, PresignResponse, Readiness, RefreshResponse, ShareInfo,
    StoredParts, UserResponse,
};
use reqwest::header::LOCATION;
use reqwest::{Method, Request, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::error::{Error, HttpError};

/// A built request whose answer reads as `T`. Nothing is sent until it is awaited,
/// [sent](Call::send) or turned into its [response](Call::response).
#[must_use = "a Call sends nothing until it is awaited"]
pub struct Call<T> {
    http: reqwest::Client,
    // Kept unsent and inspectable: an executor with its own policy sends it.
    request: Result<Request, reqwest::Error>,
    repeatable: bool,
    answer: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Call");
        match &self.request {
            Ok(r) => d
                .field("method", r.method())
                .field("url", &r.url().as_str()),
            Err(e) => d.field("error", e),
        };
        d.field("repeatable", &self.repeatable).finish()
    }
}

impl<T: Answer> Call<T> {
    pub(crate) fn new(http: &reqwest::Client, rb: RequestBuilder) -> Self {
        let request = rb.build();
        // The idempotent methods: a second arrival does what the first did.
        let repeatable = request.as_ref().is_ok_and(|r| {
            matches!(
                *r.method(),
                Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
            )
        });
        Self {
            http: http.clone(),
            request,
            repeatable,
            answer: PhantomData,
        }
    }

    /// Marks a non-idempotent method whose endpoint answers the same again.
    pub(crate) fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
    }

    /// Whether sending this again, when its answer was lost (a dropped connection, a
    /// balancer's 502 while an instance restarts), does no harm. Retrying executors
    /// ask this; a refused connection means the request never arrived, so any call may
    /// go again then.
    pub fn is_repeatable(&self) -> bool {
        self.repeatable
    }

    /// The request as it will go out, or `None` when it could not be built.
    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref().ok()
    }

    /// The request, for a caller that sends it itself; read its response with
    /// [`read`].
    pub fn into_request(self) -> Result<Request, Error> {
        self.request.map_err(Error::Transport)
    }

    /// Sends the request once and returns the response whatever its status, for tests
    /// that check statuses and headers.
    pub async fn response(self) -> Result<Response, Error> {
        let request = self.request.map_err(Error::Transport)?;
        self.http.execute(request).await.map_err(Error::Transport)
    }

    /// Sends the request once and reads the answer.
    pub async fn send(self) -> Result<T, Error> {
        read(self.response().await?).await
    }
}

impl<T: Answer + Send + 'static> IntoFuture for Call<T> {
    type Output = Result<T, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Reads the response to a [`Call`] into its answer, or into the [`HttpError`] the
/// server explained a refusal with.
pub async fn read<T: Answer>(resp: Response) -> Result<T, Error> {
    let status = resp.status();
    if !T::accepts(status) {
        return Err(HttpError::from_response(resp).await.into());
    }
    let url = resp.url().clone();
    let location = resp.headers().get(LOCATION).cloned();
    let body = resp.bytes().await.map_err(Error::Transport)?;
    let reply = sealed::Reply {
        url: &url,
        location: location.as_ref().and_then(|l| l.to_str().ok()),
        body: &body,
    };
    T::decode(&reply).map_err(|detail| Error::Unexpected {
        path: url.path().to_string(),
        detail,
    })
}

/// What an endpoint answers on success: the wire types, `()` for the 204s, the plain
/// text of the health check and metrics, JSON for the OpenAPI document, and [`Url`]
/// for the download redirect. Implemented here for exactly those; the API has no
/// other answers.
pub trait Answer: sealed::Sealed {}

mod sealed {
    use reqwest::{StatusCode, Url};

    /// A success answer, read.
    #[derive(Debug)]
    pub struct Reply<'a> {
        pub url: &'a Url,
        pub location: Option<&'a str>,
        pub body: &'a [u8],
    }

    pub trait Sealed: Sized {
        /// Whether `status` carries this answer rather than a refusal.
        fn accepts(status: StatusCode) -> bool {
            status.is_success()
        }

        /// The answer, or what did not fit.
        fn decode(reply: &Reply<'_>) -> Result<Self, String>;
    }
}

/// A JSON body; the type comes from the caller's `Self`.
fn json<T: DeserializeOwned>(reply: &sealed::Reply<'_>) -> Result<T, String> {
    serde_json::from_slice(reply.body).map_err(|e| e.to_string())
}

macro_rules! json_answers {
    ($($t:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {
            fn decode(reply: &sealed::Reply<'_>) -> Result<Self, String> {
                json(reply)
            }
        }
        impl Answer for $t {}
    )*};
}

json_answers!(
    UserResponse,
    LoginResponse,
    RefreshResponse,
    PresignResponse,
    PartUrlsResponse,
    StoredParts,
    CompleteResponse,
    Vec<FileSummary>,
    Vec<FileMatch>,
    Vec<FileDetails>,
    FileHash,
    ShareInfo,
    CliVersion,
    PassphraseSalt,
    // The OpenAPI document, whose shape is not this API's.
    serde_json::Value,
);

impl sealed::Sealed for Readiness {
    // A draining or failing instance says why in the same body, with 503.
    fn accepts(status: StatusCode) -> bool {
        status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE
    }

    fn decode(reply: &sealed::Reply<'_>) -> Result<Self, String> {
        json(reply)
    }
}
impl Answer for Readiness {}

impl sealed::Sealed for () {
    fn decode(_: &sealed::Reply<'_>) -> Result<Self, String> {
        Ok(())
    }
}
impl Answer for () {}

impl sealed::Sealed for String {
    fn decode(reply: &sealed::Reply<'_>) -> Result<Self, String> {
        String::from_utf8(reply.body.to_vec()).map_err(|e| e.to_string())
    }
}
impl Answer for String {}

impl sealed::Sealed for Url {
    fn accepts(status: StatusCode) -> bool {
        status.is_redirection()
    }

    // Resolved against the URL that answered, so a relative Location works too.
    fn decode(reply: &sealed::Reply<'_>) -> Result<Self, String> {
        let location = reply.location.ok_or("a redirect without a Location")?;
        reply
            .url
            .join(location)
            .map_err(|e| format!("Location {location:?}: {e}"))
    }
}
impl Answer for Url {}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        Response::from(b.body(body.to_string()).unwrap())
    }

    #[tokio::test]
    async fn success_reads_the_wire_type() {
        let r = response(200, &[], r#"{"hash":"ab"}"#);
        assert_eq!(read::<FileHash>(r).await.unwrap().hash, "ab");
        let r = response(204, &[], "");
        read::<()>(r).await.unwrap();
        let r = response(200, &[], "OK");
        assert_eq!(read::<String>(r).await.unwrap(), "OK");
    }

    #[tokio::test]
    async fn a_refusal_keeps_status_code_and_retry_after() {
        let r = response(
            429,
            &[("retry-after", "3600")],
            r#"{"error":"daily download limit reached","code":"download_limit"}"#,
        );
        let Err(Error::Http(e)) = read::<ShareInfo>(r).await else {
            panic!("not an HTTP error");
        };
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code(), "download_limit");
        assert_eq!(e.retry_after, Some(3600));
    }

    #[tokio::test]
    async fn a_wrong_shape_is_unexpected_not_a_refusal() {
        let r = response(200, &[], "<html>");
        match read::<FileHash>(r).await {
            Err(Error::Unexpected { detail, .. }) => assert!(detail.contains("expected")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn readiness_reads_from_a_503_too() {
        let body = r#"{"status":"not_ready","draining":true,
            "checks":{"database":"ok","blob_store":"ok"}}"#;
        let ready = read::<Readiness>(response(503, &[], body)).await.unwrap();
        assert_eq!(ready.status, "not_ready");
        assert!(ready.draining);
        assert!(matches!(
            read::<Readiness>(response(429, &[], "")).await,
            Err(Error::Http(_))
        ));
    }

    #[tokio::test]
    async fn the_download_redirect_is_returned_not_followed() {
        let r = response(303, &[("location", "https://store.example/o?sig=1")], "");
        assert_eq!(
            read::<Url>(r).await.unwrap().as_str(),
            "https://store.example/o?sig=1"
        );
        let r = response(303, &[], "");
        assert!(matches!(
            read::<Url>(r).await,
            Err(Error::Unexpected { .. })
        ));
        // A client that followed the redirect got the object, not the URL.
        let r = response(200, &[], "age-encryption.org/v1");
        assert!(matches!(read::<Url>(r).await, Err(Error::Http(_))));
    }
}
