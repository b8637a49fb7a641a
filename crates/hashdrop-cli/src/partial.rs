//! A download kept for resuming (`hashdrop decrypt` after an interruption): the
//! plaintext of the chunks authenticated so far, `.hashdrop-<file id>.partial` next to
//! the destination, and a small state file beside it, `.hashdrop-<file id>.partial.json`
//! (both mode 0600).
//!
//! Written so that a process killed at any moment leaves a pair that can be trusted
//! as far as it goes: the state is written atomically (temporary file, rename) before
//! the first plaintext byte, and removed first when a fresh download starts over; the
//! partial only ever receives authenticated plaintext, appended in order, so it may run
//! ahead of the state (the state holds no length) and may end in a torn chunk, which a
//! resume cuts off ([`Partial::resume_point`]). Its bytes are not authenticated again
//! when a download resumes: the whole plaintext's recorded digest is checked instead.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hashdrop_crypto::{age_header_len, PlainDigest, CHUNK_SIZE};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the state file's layout; another version is not resumed.
const STATE_VERSION: u32 = 1;

/// What a resume must find unchanged, and where to fetch from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// The shared file.
    pub file_id: String,
    /// Size of the whole object (age header and payload).
    pub ciphertext_len: u64,
    /// Base64 of the object's age header and payload nonce.
    pub age_header: String,
    /// `"keyed"` or `"sha256"`: which digest the plaintext is checked against.
    pub digest: String,
    /// The object URL the counted download redirected to, reused while it is valid so
    /// a resume does not count another download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_url: Option<String>,
    /// When `object_url` stops working (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_url_expires: Option<i64>,
}

impl State {
    /// The state of a download of `file_id` whose object starts with `header`.
    pub fn new(
        file_id: &str,
        ciphertext_len: u64,
        header: &[u8],
        digest: PlainDigest,
        object_url: &str,
    ) -> Self {
        let expires = url_expiry(object_url);
        Self {
            version: STATE_VERSION,
            file_id: file_id.to_string(),
            ciphertext_len,
            age_header: B64.encode(header),
            digest: digest_name(digest).to_string(),
            object_url: expires.map(|_| object_url.to_string()),
            object_url_expires: expires,
        }
    }

    /// The header bytes, if they decode.
    pub fn header(&self) -> Option<Vec<u8>> {
        let header = B64.decode(&self.age_header).ok()?;
        (age_header_len(&header) == Some(header.len())).then_some(header)
    }

    /// The object URL while it has a minute left, else `None`.
    pub fn live_object_url(&self) -> Option<&str> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match (&self.object_url, self.object_url_expires) {
            (Some(url), Some(exp)) if exp - now > 60 => Some(url),
            _ => None,
        }
    }

    /// Remembers a new object URL (a counted download handed out another one).
    pub fn set_object_url(&mut self, url: &str) {
        let expires = url_expiry(url);
        self.object_url = expires.map(|_| url.to_string());
        self.object_url_expires = expires;
    }
}

/// The state file's name for a digest kind.
pub fn digest_name(kind: PlainDigest) -> &'static str {
    match kind {
        PlainDigest::Keyed => "keyed",
        PlainDigest::Sha256 => "sha256",
    }
}

/// When a signed object URL expires (unix seconds): the local store's `exp`, or S3's
/// `X-Amz-Date` plus `X-Amz-Expires`. `None` when the URL says nothing we understand.
fn url_expiry(url: &str) -> Option<i64> {
    let url = url::Url::parse(url).ok()?;
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    };
    if let Some(exp) = param("exp") {
        return exp.parse().ok();
    }
    let signed = amz_date(&param("X-Amz-Date")?)?;
    let valid_for: i64 = param("X-Amz-Expires")?.parse().ok()?;
    Some(signed + valid_for)
}

/// An S3 signing time, `YYYYMMDDTHHMMSSZ`, as unix seconds.
fn amz_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u8> { text.get(r)?.parse().ok() };
    let year: i32 = text.get(0..4)?.parse().ok()?;
    let month = time::Month::try_from(n(4..6)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, n(6..8)?).ok()?;
    let at = time::Time::from_hms(n(9..11)?, n(11..13)?, n(13..15)?).ok()?;
    Some(date.with_time(at).assume_utc().unix_timestamp())
}

/// The partial download of one file into one directory.
#[derive(Debug, Clone)]
pub struct Partial {
    /// The plaintext so far.
    pub data: PathBuf,
    /// The state file.
    pub state: PathBuf,
}

impl Partial {
    /// The partial download of `file_id` into `dir`.
    pub fn new(dir: &Path, file_id: &str) -> Self {
        Self {
            data: dir.join(format!(".hashdrop-{file_id}.partial")),
            state: dir.join(format!(".hashdrop-{file_id}.partial.json")),
        }
    }

    /// Whether anything of it is on disk.
    pub fn exists(&self) -> bool {
        self.data.exists() || self.state.exists()
    }

    /// The state, if there is a readable one of this version.
    pub fn read_state(&self) -> Option<State> {
        let bytes = std::fs::read(&self.state).ok()?;
        let state: State = serde_json::from_slice(&bytes).ok()?;
        (state.version == STATE_VERSION).then_some(state)
    }

    /// Replaces the state atomically.
    pub fn write_state(&self, state: &State) -> anyhow::Result<()> {
        crate::home::write_atomic(&self.state, &serde_json::to_vec_pretty(state)?)
    }

    /// Bytes of plaintext on disk (0 when there is no partial).
    pub fn len(&self) -> u64 {
        std::fs::metadata(&self.data).map_or(0, |m| m.len())
    }

    /// Where a resume starts, as a chunk index: the whole chunks on disk, but never
    /// past the final chunk of a `plaintext_len`-byte file (that one is fetched again,
    /// so the stream's end is authenticated).
    pub fn resume_point(&self, plaintext_len: u64) -> u64 {
        let chunk = CHUNK_SIZE as u64;
        let last = plaintext_len.div_ceil(chunk).max(1) - 1;
        (self.len() / chunk).min(last)
    }

    /// Starts the plaintext over: no state (so a kill from here on leaves nothing that
    /// looks resumable), then an empty partial, mode 0600.
    pub fn start_over(&self) -> io::Result<File> {
        remove(&self.state)?;
        let file = private_options().truncate(true).open(&self.data)?;
        restrict(&self.data)?;
        Ok(file)
    }

    /// Cuts the partial to `chunk` whole chunks and opens it for appending; also
    /// returns a reader over those chunks' plaintext.
    pub fn continue_at(&self, chunk: u64) -> io::Result<(File, impl Read)> {
        let keep = chunk * CHUNK_SIZE as u64;
        let file = private_options().append(true).open(&self.data)?;
        restrict(&self.data)?;
        file.set_len(keep)?;
        let prefix = io::BufReader::with_capacity(1 << 20, File::open(&self.data)?).take(keep);
        Ok((file, prefix))
    }

    /// Removes the plaintext and the state (the plaintext first: a state alone
    /// resumes nothing).
    pub fn discard(&self) {
        let _ = remove(&self.data);
        let _ = remove(&self.state);
    }

    /// The plaintext is complete and moved away: forget the state.
    pub fn finished(&self) {
        let _ = remove(&self.state);
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Mode 0600 even for a partial created before (the mode given at creation does not
/// apply to an existing file).
fn restrict(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A reader that watches the start of a download for the age header, and calls
/// `on_header` with it once the header and its nonce have gone by, before handing
/// those bytes on: the decryptor can release plaintext only after reading a chunk
/// beyond them, so whatever `on_header` records is on disk before any plaintext.
pub struct HeaderTee<R, F> {
    inner: R,
    seen: Vec<u8>,
    on_header: Option<F>,
}

/// Bytes of a download's start searched for the header (an age header to one or two
/// recipients is a few hundred bytes).
const HEADER_SEARCH: usize = 64 * 1024;

impl<R, F: FnOnce(&[u8])> HeaderTee<R, F> {
    /// Watches `inner`.
    pub fn new(inner: R, on_header: F) -> Self {
        Self {
            inner,
            seen: Vec::new(),
            on_header: Some(on_header),
        }
    }
}

impl<R: Read, F: FnOnce(&[u8])> Read for HeaderTee<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.on_header.is_some() {
            let take = n.min(HEADER_SEARCH.saturating_sub(self.seen.len()));
            self.seen.extend_from_slice(&buf[..take]);
            if let Some(len) = age_header_len(&self.seen) {
                if let Some(f) = self.on_header.take() {
                    f(&self.seen[..len]);
                }
                self.seen = Vec::new();
            } else if take < n || n == 0 {
                // Not a binary age file we can find the header of: nothing to resume.
                self.on_header = None;
                self.seen = Vec::new();
            }
        }
        Ok(n)
    }
}

impl<R, F> std::fmt::Debug for HeaderTee<R, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderTee")
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: u64 = CHUNK_SIZE as u64;

    #[test]
    fn resumes_at_whole_chunks_and_never_past_the_final_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partial::new(dir.path(), "id");
        let at = |len: u64, plaintext: u64| {
            std::fs::write(&p.data, vec![0u8; len as usize]).unwrap();
            p.resume_point(plaintext)
        };
        assert_eq!(at(0, 10 * C), 0);
        assert_eq!(at(C - 1, 10 * C), 0, "a torn first chunk");
        assert_eq!(at(3 * C + 17, 10 * C), 3, "a torn chunk is cut off");
        assert_eq!(at(4 * C, 4 * C), 3, "complete: the final chunk again");
        assert_eq!(at(4 * C + 5, 4 * C + 5), 4);
        assert_eq!(at(9 * C, 4 * C + 5), 4, "longer than the file");
        assert_eq!(at(5, 0), 0, "the empty file");
    }

    #[test]
    fn continuing_cuts_the_torn_chunk_and_reads_the_rest_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partial::new(dir.path(), "id");
        let data: Vec<u8> = (0..2 * C + 100).map(|i| i as u8).collect();
        std::fs::write(&p.data, &data).unwrap();
        let (mut out, mut prefix) = p.continue_at(2).unwrap();
        let mut back = Vec::new();
        prefix.read_to_end(&mut back).unwrap();
        assert_eq!(back, &data[..2 * C as usize]);
        io::Write::write_all(&mut out, b"more").unwrap();
        drop(out);
        let now = std::fs::read(&p.data).unwrap();
        assert_eq!(&now[..2 * C as usize], &data[..2 * C as usize]);
        assert_eq!(&now[2 * C as usize..], b"more");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p.data).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn starting_over_drops_the_state_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = Partial::new(dir.path(), "id");
        std::fs::write(&p.data, b"old plaintext").unwrap();
        let header = b"age-encryption.org/v1\n-> X25519 a\nb\n--- c\n0123456789abcdef";
        let state = State::new("id", 99, header, PlainDigest::Keyed, "http://h/o?exp=1");
        p.write_state(&state).unwrap();
        assert_eq!(p.read_state().unwrap(), state);
        assert_eq!(state.header().unwrap(), header);
        drop(p.start_over().unwrap());
        assert!(p.read_state().is_none());
        assert_eq!(p.len(), 0);
        p.discard();
        assert!(!p.exists());
    }

    #[test]
    fn object_urls_are_kept_only_with_an_expiry() {
        let h = b"";
        let local = State::new(
            "i",
            1,
            h,
            PlainDigest::Keyed,
            "http://h/blob/a/b?exp=4102444800&sig=x",
        );
        assert_eq!(local.object_url_expires, Some(4_102_444_800));
        assert!(local.live_object_url().is_some());
        let s3 = State::new(
            "i",
            1,
            h,
            PlainDigest::Keyed,
            "https://b.s3/k?X-Amz-Date=20300101T000000Z&X-Amz-Expires=300&X-Amz-Signature=s",
        );
        assert_eq!(s3.object_url_expires, Some(1_893_456_000 + 300));
        let old = State::new(
            "i",
            1,
            h,
            PlainDigest::Keyed,
            "http://h/blob/a/b?exp=1000&sig=x",
        );
        assert!(old.live_object_url().is_none(), "expired");
        let unknown = State::new("i", 1, h, PlainDigest::Keyed, "http://h/blob/a/b");
        assert!(unknown.object_url.is_none());
    }

    #[test]
    fn the_tee_reports_the_header_before_handing_it_on() {
        let header = b"age-encryption.org/v1\n-> X25519 a\nb\n--- c\n0123456789abcdef".to_vec();
        let mut file = header.clone();
        file.extend_from_slice(&[1u8; 1000]);
        // Read in small pieces: the callback comes with the read that completes it.
        let seen = std::cell::RefCell::new(None);
        let mut tee = HeaderTee::new(&file[..], |h: &[u8]| {
            *seen.borrow_mut() = Some(h.to_vec());
        });
        let mut out = Vec::new();
        let mut piece = [0u8; 7];
        loop {
            let n = tee.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&piece[..n]);
            if out.len() < header.len() {
                assert!(seen.borrow().is_none());
            } else {
                assert_eq!(seen.borrow().as_deref(), Some(&header[..]));
            }
        }
        assert_eq!(out, file);

        let mut called = false;
        let mut tee = HeaderTee::new(
            &b"-----BEGIN AGE ENCRYPTED FILE-----\n"[..],
            |_: &[u8]| {
                called = true;
            },
        );
        io::copy(&mut tee, &mut io::sink()).unwrap();
        drop(tee);
        assert!(!called, "armored: no header to report");
    }
}
