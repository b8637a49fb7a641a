//! Background work as values: what a queued job asks for, and the cleaners.
//!
//! A job is stored as a `kind` and a JSON payload; [`Job::kind`]/[`Job::payload`]
//! and [`Job::decode`] are the only places that know the spelling.

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One plain-text message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Sends one [`Mail`].
pub const KIND_SEND_MAIL: &str = "send_mail";
/// Deletes one object, and aborts its unfinished multipart upload if it had one:
/// `{"key": "...", "upload_id": "..."}` (`upload_id` absent for a single PUT).
pub const KIND_DELETE_BLOB: &str = "delete_blob";
/// Runs one cleaner: `{"cleaner": "..."}`.
pub const KIND_CLEANUP: &str = "cleanup";
/// Takes a SQLite snapshot into the blob store.
pub const KIND_BACKUP: &str = "backup";

/// What a job does.
#[derive(Debug, Clone)]
pub enum Job {
    /// Deliver a message (its payload is dropped once sent: it holds an OTP).
    SendMail(Mail),
    /// Delete one object from the blob store.
    DeleteBlob {
        /// The object key.
        key: String,
        /// The store's multipart upload id, when the object was uploaded in parts:
        /// parts never completed must be aborted, or the store keeps them.
        upload_id: Option<String>,
    },
    /// Run one cleaner.
    Cleanup(Cleaner),
    /// Snapshot the SQLite database into the blob store.
    Backup,
}

impl Job {
    /// The stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::SendMail(_) => KIND_SEND_MAIL,
            Job::DeleteBlob { .. } => KIND_DELETE_BLOB,
            Job::Cleanup(_) => KIND_CLEANUP,
            Job::Backup => KIND_BACKUP,
        }
    }

    /// The stored payload.
    pub fn payload(&self) -> serde_json::Value {
        match self {
            Job::SendMail(mail) => serde_json::to_value(mail).unwrap_or_default(),
            Job::DeleteBlob { key, upload_id } => match upload_id {
                Some(id) => serde_json::json!({ "key": key, "upload_id": id }),
                None => serde_json::json!({ "key": key }),
            },
            Job::Cleanup(c) => serde_json::json!({ "cleaner": c.name() }),
            Job::Backup => serde_json::json!({}),
        }
    }

    /// Reads a stored job back.
    pub fn decode(kind: &str, payload: &str) -> anyhow::Result<Job> {
        let payload: serde_json::Value = serde_json::from_str(payload).context("payload")?;
        Ok(match kind {
            KIND_SEND_MAIL => Job::SendMail(serde_json::from_value(payload).context("mail")?),
            KIND_DELETE_BLOB => Job::DeleteBlob {
                key: payload["key"].as_str().context("key")?.to_string(),
                upload_id: payload["upload_id"].as_str().map(str::to_string),
            },
            KIND_CLEANUP => {
                let name = payload["cleaner"].as_str().context("cleaner")?;
                Job::Cleanup(Cleaner::parse(name).with_context(|| format!("cleaner {name:?}"))?)
            }
            KIND_BACKUP => Job::Backup,
            other => anyhow::bail!("unknown job kind {other:?}"),
        })
    }
}

/// The scheduled cleaners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleaner {
    /// Uploads presigned long ago and never completed: failed, quota released.
    StalePendingUploads,
    /// `.part-*` files of the local store left by a crash or a dropped PUT, and part
    /// directories of multipart uploads nothing owns any more.
    StaleUploadParts,
    /// `failed`/`deleted` records older than a day.
    StaleFileRecords,
    /// Expired and long-revoked refresh tokens.
    RefreshTokens,
    /// Yesterday's per-file daily download counters.
    DownloadCounters,
    /// Accounts never verified within their time.
    UnverifiedUsers,
    /// Expired verification codes.
    ExpiredOtps,
    /// Files past their owner-set expiry: their life ends.
    ExpiredShares,
    /// Finished jobs older than a week.
    FinishedJobs,
}

impl Cleaner {
    /// Every cleaner, in the order the scheduler enqueues them.
    pub const ALL: [Cleaner; 9] = [
        Cleaner::StalePendingUploads,
        Cleaner::StaleUploadParts,
        Cleaner::StaleFileRecords,
        Cleaner::RefreshTokens,
        Cleaner::DownloadCounters,
        Cleaner::UnverifiedUsers,
        Cleaner::ExpiredOtps,
        Cleaner::ExpiredShares,
        Cleaner::FinishedJobs,
    ];

    /// The name operators and job payloads use.
    pub fn name(self) -> &'static str {
        match self {
            Cleaner::StalePendingUploads => "stale_pending_uploads",
            Cleaner::StaleUploadParts => "stale_upload_parts",
            Cleaner::StaleFileRecords => "stale_file_records",
            Cleaner::RefreshTokens => "refresh_tokens",
            Cleaner::DownloadCounters => "download_counters",
            Cleaner::UnverifiedUsers => "unverified_users",
            Cleaner::ExpiredOtps => "expired_otps",
            Cleaner::ExpiredShares => "expired_shares",
            Cleaner::FinishedJobs => "finished_jobs",
        }
    }

    /// The cleaner called `name`.
    pub fn parse(name: &str) -> Option<Cleaner> {
        Cleaner::ALL.into_iter().find(|c| c.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_reads_back_as_itself() {
        let jobs = [
            Job::SendMail(Mail {
                to: "a@b.c".into(),
                subject: "s".into(),
                body: "b".into(),
            }),
            Job::DeleteBlob {
                key: "u/f".into(),
                upload_id: None,
            },
            Job::DeleteBlob {
                key: "u/g".into(),
                upload_id: Some("abc".into()),
            },
            Job::Cleanup(Cleaner::ExpiredShares),
            Job::Backup,
        ];
        for job in jobs {
            let back = Job::decode(job.kind(), &job.payload().to_string()).unwrap();
            assert_eq!(back.kind(), job.kind());
            assert_eq!(back.payload(), job.payload());
        }
        assert!(Job::decode("cleanup", r#"{"cleaner":"nope"}"#).is_err());
        assert!(Job::decode("nope", "{}").is_err());
    }

    #[test]
    fn cleaner_names_are_unique_and_parse() {
        for c in Cleaner::ALL {
            assert_eq!(Cleaner::parse(c.name()), Some(c));
        }
    }
}
