//! Any S3-compatible object store (AWS S3, R2, MinIO, RustFS, Garage). Clients get
//! presigned PUT/GET URLs and move the bytes themselves; the server only sends the few
//! requests it needs (HEAD, DELETE, list, backups). `rusty-s3` signs (SigV4), `reqwest`
//! sends.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use reqwest::{header, StatusCode};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, GetObject,
    HeadBucket, HeadObject, ListObjectsV2, ListParts, PutObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::{valid_key, valid_segment, BlobStore, HeldPart, PartSpan, StoreUnavailable};
use crate::config::S3Config;
use crate::domain::time::now_ms;

/// A URL the server signs for its own request only has to outlive sending it.
const SELF_URL_TTL: Duration = Duration::from_secs(60);
/// A store that does not accept a connection this fast is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Whole-request limit for metadata requests (HEAD, DELETE, list pages).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit of the reachability probe, paid by at most one request at a time.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest silence inside a transfer (backups can be large, so no total limit).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reachability verdict is trusted before the next probe.
const HEALTH_FRESH: Duration = Duration::from_secs(1);

/// `s3://BUCKET?endpoint=URL&region=REGION&path_style=BOOL`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Where the server sends its requests; ends with `/`.
    pub endpoint: Url,
    /// SigV4 region.
    pub region: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub path_style: bool,
}

impl S3Url {
    /// Parses a blob store URL. Defaults: AWS's regional endpoint, `us-east-1`,
    /// virtual-host style.
    pub fn parse(s: &str) -> anyhow::Result<S3Url> {
        let rest = s
            .strip_prefix("s3://")
            .context("an S3 blob store URL starts with s3://")?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        anyhow::ensure!(
            valid_bucket(bucket),
            "invalid bucket {bucket:?} in blob_store: 3 to 63 lowercase letters, digits, \
             '.' or '-', starting and ending with a letter or digit, and nothing after it \
             but ?parameters"
        );
        let (mut endpoint, mut region, mut path_style) = (None, None, None);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let dup = match &*k {
                "endpoint" => endpoint.replace(v.into_owned()).is_some(),
                "region" => region.replace(v.into_owned()).is_some(),
                "path_style" => {
                    let b = match &*v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => anyhow::bail!("blob_store: path_style must be true or false"),
                    };
                    path_style.replace(b).is_some()
                }
                other => anyhow::bail!(
                    "blob_store: unknown parameter {other:?} (known: endpoint, region, path_style)"
                ),
            };
            anyhow::ensure!(!dup, "blob_store: parameter {k:?} given twice");
        }
        let region = region.unwrap_or_else(|| "us-east-1".into());
        anyhow::ensure!(
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "blob_store: invalid region {region:?}"
        );
        let endpoint = match endpoint {
            Some(e) => parse_endpoint(&e, "blob_store endpoint")?,
            None => Url::parse(&format!("https://s3.{region}.amazonaws.com/"))?,
        };
        let path_style = path_style.unwrap_or(false);
        if !path_style {
            // `bucket.127.0.0.1` is no host name: say so now rather than fail DNS later.
            anyhow::ensure!(
                matches!(endpoint.host(), Some(url::Host::Domain(_))),
                "blob_store: an endpoint given by IP address needs path_style=true"
            );
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            endpoint,
            region,
            path_style,
        })
    }
}

/// S3's bucket naming rules, minus the rarely relevant reserved prefixes.
fn valid_bucket(s: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(s.bytes().next())
        && edge(s.bytes().last())
}

/// An http(s) base URL without credentials, query or fragment, normalised to end in
/// `/` (rusty-s3 joins the bucket onto it, and a join replaces a last segment without
/// one). The value is not echoed: a mistaken one may hold a password.
fn parse_endpoint(s: &str, what: &str) -> anyhow::Result<Url> {
    let mut u = Url::parse(s).map_err(|e| anyhow::anyhow!("{what} is not a URL: {e}"))?;
    anyhow::ensure!(
        matches!(u.scheme(), "http" | "https"),
        "{what} must be http:// or https://"
    );
    anyhow::ensure!(u.host_str().is_some(), "{what} has no host");
    anyhow::ensure!(
        u.username().is_empty() && u.password().is_none(),
        "{what} must not carry credentials: set [s3] access_key_id and secret_access_key"
    );
    anyhow::ensure!(
        u.query().is_none() && u.fragment().is_none(),
        "{what} must not have a query or fragment"
    );
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}

/// Credentials from `[s3]`, else from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
/// (looked up through `env`). Both halves come from the same place: a key id from
/// one source and a secret from another is a mistake, not a fallback.
pub fn credentials(
    cfg: &S3Config,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Credentials> {
    let set = |v: Option<String>| v.filter(|s| !s.is_empty());
    match (
        set(cfg.access_key_id.clone()),
        set(cfg.secret_access_key.clone()),
    ) {
        (Some(k), Some(s)) => Ok(Credentials::new(k, s)),
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "[s3] access_key_id and secret_access_key must be set together \
             (HASHDROP_S3__ACCESS_KEY_ID / HASHDROP_S3__SECRET_ACCESS_KEY)"
        ),
        (None, None) => match (
            set(env("AWS_ACCESS_KEY_ID")),
            set(env("AWS_SECRET_ACCESS_KEY")),
        ) {
            (Some(k), Some(s)) => Ok(Credentials::new(k, s)),
            _ => anyhow::bail!(
                "the s3:// blob store needs credentials: set [s3] access_key_id and \
                 secret_access_key (HASHDROP_S3__ACCESS_KEY_ID / \
                 HASHDROP_S3__SECRET_ACCESS_KEY) or AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY"
            ),
        },
    }
}

/// The last reachability verdict and who is refreshing it.
///
/// Presign must not reserve quota and write a `pending` row while the store is down,
/// but a round trip to the store on every presign would double its latency. So the
/// verdict is cached for [`HEALTH_FRESH`], and every request the server sends anyway
/// (HEAD at complete, DELETE jobs, probes from readyz) refreshes it for free. When it
/// is stale, one caller probes with a short timeout: while the store was last seen up
/// everyone waits for that probe (normally a few milliseconds), so a store that just
/// died is noticed before any row is written; while it was last seen down the others
/// answer 503 at once instead of queueing behind a probe that may take
/// [`PROBE_TIMEOUT`].
#[derive(Debug, Default)]
struct Health {
    last: Mutex<Option<(Instant, bool)>>,
    probing: tokio::sync::Mutex<()>,
}

impl Health {
    fn last(&self) -> Option<(Instant, bool)> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self) -> Option<bool> {
        self.last()
            .filter(|(at, _)| at.elapsed() < HEALTH_FRESH)
            .map(|(_, up)| up)
    }

    fn record(&self, up: bool) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), up));
        metrics::gauge!("hashdrop_blob_store_up").set(if up { 1.0 } else { 0.0 });
    }
}

/// Blobs in an S3 bucket.
#[derive(Debug)]
pub struct S3BlobStore {
    /// Addressed through the endpoint the server reaches.
    bucket: Bucket,
    /// Addressed through the endpoint clients reach; SigV4 signs the host, so URLs
    /// for clients must be signed for the host they will send.
    public_bucket: Bucket,
    creds: Credentials,
    http: reqwest::Client,
    health: Health,
}

impl S3BlobStore {
    /// A store for `url`, with credentials from `cfg` or from `env`.
    pub fn new(
        url: &S3Url,
        cfg: &S3Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<S3BlobStore> {
        let creds = credentials(cfg, env)?;
        let style = if url.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = |endpoint: Url| {
            Bucket::new(endpoint, style, url.bucket.clone(), url.region.clone())
                .context("building the bucket URL")
        };
        let public = match &cfg.public_endpoint {
            Some(e) if !e.is_empty() => parse_endpoint(e, "[s3] public_endpoint")?,
            _ => url.endpoint.clone(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the S3 HTTP client")?;
        Ok(S3BlobStore {
            bucket: bucket(url.endpoint.clone())?,
            public_bucket: bucket(public)?,
            creds,
            http,
            health: Health::default(),
        })
    }

    /// Sends a request, keeping the reachability verdict current. No answer at all,
    /// or a 5xx (S3's InternalError / SlowDown / ServiceUnavailable all say "retry"),
    /// is [`StoreUnavailable`]; any other answer is returned for the caller to judge.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        match req.send().await {
            Ok(resp) if resp.status().is_server_error() => {
                self.health.record(false);
                let status = resp.status();
                let (code, _) = s3_error_body(resp).await;
                Err(StoreUnavailable(format!("object store answered {status} {code}")).into())
            }
            Ok(resp) => {
                self.health.record(true);
                Ok(resp)
            }
            Err(e) => {
                self.health.record(false);
                // The URL carries a signature: keep it out of errors and logs.
                Err(StoreUnavailable(e.without_url().to_string()).into())
            }
        }
    }

    /// Sends a signed DELETE whose target may already be gone: AWS answers 204 for an
    /// absent key, some compatible stores 404, and an aborted or finished multipart
    /// upload is NoSuchUpload (404).
    async fn delete_url(&self, url: Url, what: &str) -> anyhow::Result<()> {
        let resp = self
            .send(self.http.delete(url).timeout(REQUEST_TIMEOUT))
            .await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.refused(what, resp).await)
        }
    }

    /// An unexpected 4xx turned into an error naming the S3 error code.
    async fn refused(&self, what: &str, resp: reqwest::Response) -> anyhow::Error {
        let status = resp.status();
        let (code, message) = s3_error_body(resp).await;
        anyhow::anyhow!("object store refused {what}: {status} {code} {message}")
    }

    async fn probe(&self) -> anyhow::Result<()> {
        let url = HeadBucket::new(&self.bucket, Some(&self.creds)).sign(SELF_URL_TTL);
        let resp = self
            .send(self.http.head(url).timeout(PROBE_TIMEOUT))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.refused("HEAD bucket", resp).await)
        }
    }
}

/// Text of every `<tag>...</tag>` in a flat S3 answer, with XML's character
/// references decoded (AWS sends an ETag as `&quot;…&quot;`, MinIO as `&#34;…&#34;`).
/// Not rusty-s3's typed parser: it insists on fields (ETag) that compatible stores
/// such as s3s-fs leave out, and listing needs only the keys.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    xml_blocks(xml, tag)
        .iter()
        .map(|v| xml_unescape(v))
        .collect()
}

/// `text` with the five predefined entities and numeric character references
/// decoded; anything else is kept as it is.
fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').and_then(|end| {
            let name = &tail[1..end];
            let ch = match name {
                "quot" => Some('"'),
                "apos" => Some('\''),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => name
                    .strip_prefix("#x")
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| name.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            }?;
            Some((ch, end + 1))
        });
        match decoded {
            Some((ch, used)) => {
                out.push(ch);
                rest = &tail[used..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The raw inner text of every `<tag>...</tag>` (for elements that hold others).
fn xml_blocks(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some((_, after)) = rest.split_once(open.as_str()) {
        let Some((value, tail)) = after.split_once(close.as_str()) else {
            break;
        };
        out.push(value.to_string());
        rest = tail;
    }
    out
}

/// `<Code>` and `<Message>` of an S3 XML error, when there is a body (HEAD has none).
async fn s3_error_body(resp: reqwest::Response) -> (String, String) {
    let text = resp.text().await.unwrap_or_default();
    let tag = |name: &str| {
        xml_values(&text, name)
            .into_iter()
            .next()
            .map(|v| v.chars().take(200).collect::<String>())
            .unwrap_or_default()
    };
    (tag("Code"), tag("Message"))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn presign_put(&self, key: &str, size_bytes: u64, ttl: Duration) -> (String, i64) {
        let mut put = PutObject::new(&self.public_bucket, Some(&self.creds), key);
        // Signed, so the store itself refuses a body of any other length (and a
        // chunked body without Content-Length): quota is enforced before any byte
        // lands, not only when complete measures the object.
        put.headers_mut()
            .insert("content-length", size_bytes.to_string());
        let exp = now_ms() + ttl.as_millis() as i64;
        (put.sign(ttl).into(), exp)
    }

    fn presign_get(&self, key: &str, ttl: Duration) -> String {
        let mut get = GetObject::new(&self.public_bucket, Some(&self.creds), key);
        // The uploader chose the stored Content-Type (a presigned PUT does not sign
        // it); the signed overrides make the store serve opaque bytes to save, never
        // a page for a browser to render on the bucket's origin.
        get.query_mut()
            .insert("response-content-type", super::OPAQUE_CONTENT_TYPE);
        get.query_mut()
            .insert("response-content-disposition", "attachment");
        get.sign(ttl).into()
    }

    async fn start_multipart(&self, key: &str) -> anyhow::Result<String> {
        anyhow::ensure!(valid_key(key), "invalid object key");
        let url =
            CreateMultipartUpload::new(&self.bucket, Some(&self.creds), key).sign(SELF_URL_TTL);
        let resp = self
            .send(self.http.post(url).timeout(REQUEST_TIMEOUT))
            .await?;
        if !resp.status().is_success() {
            return Err(self.refused("CreateMultipartUpload", resp).await);
        }
        let text = resp.text().await.context("reading CreateMultipartUpload")?;
        xml_values(&text, "UploadId")
            .into_iter()
            .next()
            .filter(|id| !id.is_empty())
            .context("CreateMultipartUpload answered without an UploadId")
    }

    fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: PartSpan,
        ttl: Duration,
    ) -> (String, i64) {
        // Part numbers are checked against the plan (at most 10,000) before signing;
        // S3 assembles the object itself, so the offset is not needed.
        let number = u16::try_from(part.number).unwrap_or(u16::MAX);
        let size_bytes = part.size;
        let mut put = UploadPart::new(
            &self.public_bucket,
            Some(&self.creds),
            key,
            number,
            upload_id,
        );
        // Signed, so the store refuses a part of any other length.
        put.headers_mut()
            .insert("content-length", size_bytes.to_string());
        let exp = now_ms() + ttl.as_millis() as i64;
        (put.sign(ttl).into(), exp)
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> anyhow::Result<Vec<HeldPart>> {
        let mut parts = Vec::new();
        let mut marker: Option<u16> = None;
        loop {
            let mut list = ListParts::new(&self.bucket, Some(&self.creds), key, upload_id);
            if let Some(m) = marker {
                list.set_part_number_marker(m);
            }
            let resp = self
                .send(
                    self.http
                        .get(list.sign(SELF_URL_TTL))
                        .timeout(REQUEST_TIMEOUT),
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                // NoSuchUpload: aborted, completed, or never started.
                return Ok(Vec::new());
            }
            if !resp.status().is_success() {
                return Err(self.refused("ListParts", resp).await);
            }
            let text = resp.text().await.context("reading ListParts")?;
            for part in xml_blocks(&text, "Part") {
                let field = |tag: &str| xml_values(&part, tag).into_iter().next();
                let number = field("PartNumber")
                    .and_then(|n| n.parse().ok())
                    .context("ListParts: a part without PartNumber")?;
                let size = field("Size")
                    .and_then(|n| n.parse().ok())
                    .context("ListParts: a part without Size")?;
                parts.push(HeldPart {
                    number,
                    size,
                    etag: field("ETag").unwrap_or_default(),
                });
            }
            let truncated =
                xml_values(&text, "IsTruncated").first().map(String::as_str) == Some("true");
            marker = xml_values(&text, "NextPartNumberMarker")
                .first()
                .and_then(|m| m.parse().ok());
            if !truncated || marker.is_none() {
                break;
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[HeldPart],
    ) -> anyhow::Result<()> {
        let complete = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.creds),
            key,
            upload_id,
            parts.iter().map(|p| p.etag.as_str()),
        );
        let url = complete.sign(SELF_URL_TTL);
        let body = complete.body();
        // Joining gigabytes of parts can take the store a while.
        let resp = self
            .send(
                self.http
                    .post(url)
                    .body(body)
                    .timeout(Duration::from_secs(300)),
            )
            .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        // S3 may answer 200 with an error document when the join fails late.
        if status.is_success() && !text.contains("<Error>") {
            Ok(())
        } else {
            let code = xml_values(&text, "Code")
                .into_iter()
                .next()
                .unwrap_or_default();
            anyhow::bail!("object store refused CompleteMultipartUpload: {status} {code}")
        }
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> anyhow::Result<()> {
        let url = AbortMultipartUpload::new(&self.bucket, Some(&self.creds), key, upload_id)
            .sign(SELF_URL_TTL);
        self.delete_url(url, "AbortMultipartUpload").await
    }

    async fn size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        let url = HeadObject::new(&self.bucket, Some(&self.creds), key).sign(SELF_URL_TTL);
        let resp = self
            .send(self.http.head(url).timeout(REQUEST_TIMEOUT))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                // Not `content_length()`: for a HEAD that is the (empty) body's length.
                let len = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .context("HEAD object answered without Content-Length")?;
                Ok(Some(len))
            }
            _ => Err(self.refused("HEAD object", resp).await),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let url = DeleteObject::new(&self.bucket, Some(&self.creds), key).sign(SELF_URL_TTL);
        self.delete_url(url, "DELETE object").await
    }

    async fn put_file(&self, key: &str, src: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(valid_key(key), "invalid object key");
        let file = tokio::fs::File::open(src)
            .await
            .with_context(|| format!("opening {}", src.display()))?;
        let len = file.metadata().await?.len();
        let mut put = PutObject::new(&self.bucket, Some(&self.creds), key);
        put.headers_mut().insert("content-length", len.to_string());
        let url = put.sign(SELF_URL_TTL);
        let resp = self
            .send(
                self.http
                    .put(url)
                    .header(header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::from(file)),
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.refused("PUT object", resp).await)
        }
    }

    async fn get_file(&self, key: &str, dst: &Path) -> anyhow::Result<()> {
        let url = GetObject::new(&self.bucket, Some(&self.creds), key).sign(SELF_URL_TTL);
        let mut resp = self.send(self.http.get(url)).await?;
        if !resp.status().is_success() {
            return Err(self.refused("GET object", resp).await);
        }
        let mut out = tokio::fs::File::create(dst)
            .await
            .with_context(|| format!("creating {}", dst.display()))?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("reading object: {}", e.without_url()))?
        {
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(valid_segment(prefix), "invalid prefix");
        let dir = format!("{prefix}/");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut list = ListObjectsV2::new(&self.bucket, Some(&self.creds));
            list.with_prefix(dir.as_str());
            if let Some(t) = &token {
                list.with_continuation_token(t.as_str());
            }
            let url = list.sign(SELF_URL_TTL);
            let resp = self
                .send(self.http.get(url).timeout(REQUEST_TIMEOUT))
                .await?;
            if !resp.status().is_success() {
                return Err(self.refused("ListObjectsV2", resp).await);
            }
            let xml = resp.text().await?;
            // Keys come URL-encoded (encoding-type=url); a valid key has no character
            // that encoding changes, and one that was changed fails `valid_key`.
            out.extend(
                xml_values(&xml, "Key")
                    .into_iter()
                    .filter(|k| k.starts_with(&dir) && valid_key(k)),
            );
            match xml_values(&xml, "NextContinuationToken").pop() {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.probe().await
    }

    async fn available(&self) -> anyhow::Result<()> {
        let up = match self.health.fresh() {
            Some(up) => up,
            None => match self.health.probing.try_lock() {
                Ok(_probe) => self.probe_verdict().await,
                Err(_) if self.health.last().is_some_and(|(_, up)| !up) => false,
                Err(_) => {
                    let _wait = self.health.probing.lock().await;
                    match self.health.fresh() {
                        Some(up) => up,
                        None => self.probe_verdict().await,
                    }
                }
            },
        };
        if up {
            Ok(())
        } else {
            Err(StoreUnavailable("object store unreachable".into()).into())
        }
    }

    fn is_shared(&self) -> bool {
        true
    }
}

impl S3BlobStore {
    /// Reachable means "answered": a 403 from a misconfigured bucket is a readiness
    /// error, not an outage.
    async fn probe_verdict(&self) -> bool {
        match self.probe().await {
            Ok(()) => true,
            Err(e) => e.downcast_ref::<StoreUnavailable>().is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AWS ListParts answer: ETags come entity-encoded, and CompleteMultipartUpload
    /// must get them back as the plain quoted strings.
    #[test]
    fn list_parts_answers_are_decoded() {
        let xml = r#"<ListPartsResult><IsTruncated>false</IsTruncated>
            <Part><PartNumber>1</PartNumber><ETag>&quot;7778aef83f66abc1fa1e8477f296d394&quot;</ETag><Size>5242880</Size></Part>
            <Part><PartNumber>2</PartNumber><ETag>&#34;aaaa&#34;</ETag><Size>12</Size></Part>
            </ListPartsResult>"#;
        let parts = xml_blocks(xml, "Part");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            xml_values(&parts[0], "ETag"),
            vec!["\"7778aef83f66abc1fa1e8477f296d394\"".to_string()]
        );
        assert_eq!(xml_values(&parts[1], "ETag"), vec!["\"aaaa\"".to_string()]);
        assert_eq!(xml_values(&parts[1], "Size"), vec!["12".to_string()]);
        assert_eq!(
            xml_unescape("a&amp;b &lt;&gt; &#x41;&apos; &bogus; &"),
            "a&b <> A' &bogus; &"
        );
    }

    #[test]
    fn url_defaults_and_parameters() {
        let u = S3Url::parse("s3://my-bucket").unwrap();
        assert_eq!(u.bucket, "my-bucket");
        assert_eq!(u.endpoint.as_str(), "https://s3.us-east-1.amazonaws.com/");
        assert_eq!(u.region, "us-east-1");
        assert!(!u.path_style);

        let u = S3Url::parse("s3://b.x-1?region=eu-west-3").unwrap();
        assert_eq!(u.endpoint.as_str(), "https://s3.eu-west-3.amazonaws.com/");
        assert_eq!(u.region, "eu-west-3");

        let u =
            S3Url::parse("s3://drops?endpoint=http://127.0.0.1:9000&region=garage&path_style=true")
                .unwrap();
        assert_eq!(u.endpoint.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(u.region, "garage");
        assert!(u.path_style);

        // Percent-encoded endpoints work, and a path gets its trailing slash.
        let u =
            S3Url::parse("s3://drops?endpoint=https%3A%2F%2Fminio.internal%2Fs3&path_style=false")
                .unwrap();
        assert_eq!(u.endpoint.as_str(), "https://minio.internal/s3/");
        assert!(!u.path_style);
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for (url, needle) in [
            ("file:///x", "starts with s3://"),
            ("s3://", "invalid bucket"),
            ("s3://ab", "invalid bucket"),
            ("s3://Upper", "invalid bucket"),
            ("s3://-lead", "invalid bucket"),
            ("s3://bucket/prefix", "invalid bucket"),
            ("s3://b_x", "invalid bucket"),
            ("s3://bucket?endpont=http://x", "unknown parameter"),
            ("s3://bucket?path_style=yes", "path_style must be"),
            ("s3://bucket?region=us-east-1&region=eu", "given twice"),
            ("s3://bucket?region=", "invalid region"),
            (
                "s3://bucket?endpoint=ftp://h&path_style=true",
                "http:// or https://",
            ),
            ("s3://bucket?endpoint=not a url", "is not a URL"),
            (
                "s3://bucket?endpoint=http://u:hunter2@h&path_style=true",
                "must not carry credentials",
            ),
            (
                "s3://bucket?endpoint=http://127.0.0.1:9000",
                "needs path_style=true",
            ),
        ] {
            let e = format!("{:#}", S3Url::parse(url).unwrap_err());
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    fn cfg(key: Option<&str>, secret: Option<&str>) -> S3Config {
        S3Config {
            access_key_id: key.map(Into::into),
            secret_access_key: secret.map(Into::into),
            public_endpoint: None,
        }
    }

    #[test]
    fn credentials_come_from_config_then_aws_variables() {
        let aws = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("ENVKEY".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("envsecret".to_string()),
            _ => None,
        };
        let none = |_: &str| None;
        let c = credentials(&cfg(Some("CFGKEY"), Some("cfgsecret")), aws).unwrap();
        assert_eq!((c.key(), c.secret()), ("CFGKEY", "cfgsecret"));
        let c = credentials(&cfg(None, None), aws).unwrap();
        assert_eq!((c.key(), c.secret()), ("ENVKEY", "envsecret"));
        // Empty values (an exported but blank variable) count as unset.
        let c = credentials(&cfg(Some(""), Some("")), aws).unwrap();
        assert_eq!(c.key(), "ENVKEY");

        let e = credentials(&cfg(Some("CFGKEY"), None), aws).unwrap_err();
        assert!(e.to_string().contains("must be set together"), "{e}");
        let e = credentials(&cfg(None, None), none).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        let half = |k: &str| (k == "AWS_ACCESS_KEY_ID").then(|| "K".to_string());
        assert!(credentials(&cfg(None, None), half).is_err());
    }

    #[test]
    fn list_answers_are_read_without_optional_fields() {
        let xml = "<ListBucketResult><Name>b</Name><Prefix>backups/</Prefix>\
            <Contents><Key>backups/a.sqlite</Key><Size>1</Size></Contents>\
            <Contents><Key>backups/b.sqlite</Key><ETag>\"x\"</ETag></Contents>\
            <IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>\
            </ListBucketResult>";
        assert_eq!(
            xml_values(xml, "Key"),
            vec!["backups/a.sqlite", "backups/b.sqlite"]
        );
        assert_eq!(xml_values(xml, "NextContinuationToken"), vec!["t1"]);
        assert!(xml_values("<Key>unclosed", "Key").is_empty());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = cfg(Some("AKIDVISIBLE"), Some("wJalrTOPSECRET"));
        let store = S3BlobStore::new(
            &S3Url::parse("s3://bkt?endpoint=http://127.0.0.1:1&path_style=true").unwrap(),
            &c,
            |_| None,
        )
        .unwrap();
        for text in [format!("{c:?}"), format!("{store:?}")] {
            assert!(!text.contains("TOPSECRET"), "{text}");
            assert!(text.contains("AKIDVISIBLE"), "{text}");
        }
    }

    #[test]
    fn presigned_put_signs_the_exact_length_for_the_public_endpoint() {
        let mut c = cfg(Some("AK"), Some("SK"));
        c.public_endpoint = Some("https://objects.example.com".into());
        let store = S3BlobStore::new(
            &S3Url::parse("s3://bkt?endpoint=http://10.0.0.5:9000&path_style=true").unwrap(),
            &c,
            |_| None,
        )
        .unwrap();
        let (put, exp) = store.presign_put("usrh-a/f", 1234, Duration::from_secs(60));
        let put = Url::parse(&put).unwrap();
        assert_eq!(put.host_str(), Some("objects.example.com"));
        assert_eq!(put.path(), "/bkt/usrh-a/f");
        let q: std::collections::HashMap<_, _> = put.query_pairs().into_owned().collect();
        assert_eq!(q["X-Amz-SignedHeaders"], "content-length;host");
        assert_eq!(q["X-Amz-Expires"], "60");
        assert!((exp - now_ms() - 60_000).abs() < 5_000);
        let get = Url::parse(&store.presign_get("usrh-a/f", Duration::from_secs(30))).unwrap();
        assert_eq!(get.host_str(), Some("objects.example.com"));
    }
}
