//! User-facing failures: one line saying what happened and what to do next.

use std::fmt;

/// A failure the user can act on. `Display` is the whole message on one line.
#[derive(Debug)]
pub struct Fail {
    /// Stable short code (also printed with `--json`).
    pub code: &'static str,
    /// What happened.
    pub what: String,
    /// What to do about it.
    pub todo: String,
    /// Extra machine-readable detail for `--json` (e.g. the candidates of an
    /// ambiguous id prefix).
    pub detail: Option<serde_json::Value>,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.todo.is_empty() {
            write!(f, "{}", self.what)
        } else {
            write!(f, "{}; {}", self.what, self.todo)
        }
    }
}

impl std::error::Error for Fail {}

/// Builds a [`Fail`] as an `anyhow::Error`.
pub fn fail(code: &'static str, what: impl Into<String>, todo: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Fail {
        code,
        what: what.into(),
        todo: todo.into(),
        detail: None,
    })
}

/// The `--json` form of an error: `{"error": LINE, "code": CODE, ...detail}`.
pub fn to_json(err: &anyhow::Error) -> serde_json::Value {
    let (line, code) = one_line(err);
    let mut v = serde_json::json!({"error": line, "code": code});
    if let Some(detail) = err.downcast_ref::<Fail>().and_then(|f| f.detail.as_ref()) {
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), detail.as_object()) {
            for (k, x) in extra {
                obj.insert(k.clone(), x.clone());
            }
        }
    }
    v
}

/// Renders any error as one line (and its code) for the top level.
pub fn one_line(err: &anyhow::Error) -> (String, &'static str) {
    if let Some(f) = err.downcast_ref::<Fail>() {
        return (f.to_string(), f.code);
    }
    let text = format!("{err:#}");
    let flat: Vec<&str> = text.split_whitespace().collect();
    (flat.join(" "), "error")
}

/// Translates a crypto failure into what the user should do.
pub fn from_crypto(e: hashdrop_crypto::CryptoError, subject: &str) -> anyhow::Error {
    use hashdrop_crypto::CryptoError as E;
    match e {
        E::NoMatchingKey => fail(
            "wrong_key",
            format!("wrong key or passphrase for {subject}"),
            "check the key after '#' in the link, the --key value or the passphrase, and retry",
        ),
        E::PayloadDamaged { chunk } => fail(
            "tampered",
            format!("{subject} was tampered with or damaged in transit (chunk {chunk} failed authentication); no output was written"),
            "download it again; if this repeats, ask the sender to upload it again",
        ),
        E::PayloadTruncated { chunk } => fail(
            "truncated",
            format!("{subject} is truncated (it ends after chunk {chunk}); no output was written"),
            "download it again; if this repeats, ask the sender to upload it again",
        ),
        E::HeaderMacFailed => fail(
            "tampered",
            format!("the header of {subject} was tampered with (header MAC failed); no output was written"),
            "download it again; if this repeats, ask the sender to upload it again",
        ),
        E::HeaderDamaged | E::ArmorDamaged => fail(
            "not_age",
            format!("{subject} is not an age file or its header is damaged"),
            "check the link or file",
        ),
        E::ExcessiveWork { required, max } => fail(
            "excessive_work",
            format!("{subject} asks for scrypt work 2^{required}, above the accepted 2^{max}"),
            "it was not made by hashdrop; decrypt it with `age -d` if you trust it",
        ),
        E::InvalidKey(what) => fail("invalid_key", format!("invalid key: {what}"), "check the key"),
        E::VaultFormat(m) => fail(
            "vault_format",
            format!("the vault is not a hashdrop vault this version understands ({m})"),
            "check the file, or upgrade hashdrop",
        ),
        E::LengthMismatch { expected, actual } => fail(
            "file_changed",
            format!("the file changed while it was being uploaded ({expected} bytes announced, {actual} read)"),
            "upload it again once nothing is writing to it",
        ),
        E::Io(io) => fail("io", format!("I/O error: {io}"), "check the disk and the network, then retry"),
        other => fail("crypto", other.to_string(), "retry; if it persists, report a bug"),
    }
}
