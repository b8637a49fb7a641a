//! The state directory (`HASHDROP_HOME`, default `~/.hashdrop`): tokens, the vault and
//! its metadata. The directory is 0700 and every file 0600; every write is atomic
//! (temporary file in the same directory, fsync, rename, fsync of the directory) and
//! writers of one file are serialized by an exclusive lock on a sibling `.lock` file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use crate::error::fail;

/// The state directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// Holds an exclusive lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// The saved login session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Server the tokens belong to.
    pub server: String,
    /// Account email.
    pub email: String,
    /// Current JWT access token.
    pub access_token: String,
    /// Current refresh token (rotated on every use).
    pub refresh_token: String,
}

/// Public facts about the local vault, readable without the passphrase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaultMeta {
    /// Format version of this metadata file.
    pub version: u32,
    /// Public key (`age1...`) of the account identity every vault-mode file is
    /// encrypted to.
    pub account_recipient: String,
    /// Number of file keys at the last write.
    pub files: usize,
    /// RFC 3339 time of the last write.
    pub updated_at: String,
}

impl Home {
    /// `HASHDROP_HOME`, else `~/.hashdrop`.
    pub fn locate() -> anyhow::Result<Self> {
        let dir = match std::env::var_os("HASHDROP_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => dirs::home_dir()
                .map(|h| h.join(".hashdrop"))
                .ok_or_else(|| {
                    fail(
                        "no_home",
                        "cannot find your home directory",
                        "set HASHDROP_HOME to a directory for hashdrop's state",
                    )
                })?,
        };
        Ok(Self { dir })
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (0700) if needed.
    pub fn ensure(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        set_mode(&self.dir, 0o700)?;
        Ok(())
    }

    /// A file inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Takes the exclusive lock named `name` (a `.{name}.lock` file), blocking.
    pub fn lock(&self, name: &str) -> anyhow::Result<LockGuard> {
        self.ensure()?;
        let path = self.path(&format!(".{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        set_mode(&path, 0o600)?;
        FileExt::lock_exclusive(&file).with_context(|| format!("locking {}", path.display()))?;
        Ok(LockGuard { file })
    }

    /// Writes `bytes` to `name` atomically with mode 0600.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.ensure()?;
        write_atomic(&self.path(name), bytes)
    }

    /// Reads `name`, `None` if it does not exist.
    pub fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match fs::read(self.path(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path(name).display())),
        }
    }

    /// Removes `name` if present.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.path(name).display())),
        }
    }

    /// The saved session, if any.
    pub fn session(&self) -> anyhow::Result<Option<Session>> {
        match self.read(SESSION_FILE)? {
            None => Ok(None),
            Some(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("{} is corrupt; run `hashdrop auth login`", SESSION_FILE)
            })?)),
        }
    }

    /// Saves the session.
    pub fn save_session(&self, s: &Session) -> anyhow::Result<()> {
        self.write_atomic(SESSION_FILE, &serde_json::to_vec_pretty(s)?)
    }

    /// Vault metadata, if any.
    pub fn vault_meta(&self) -> anyhow::Result<Option<VaultMeta>> {
        match self.read(VAULT_META_FILE)? {
            None => Ok(None),
            Some(b) => Ok(serde_json::from_slice(&b).ok()),
        }
    }
}

/// Session file name.
pub const SESSION_FILE: &str = "session.json";
/// Vault file name (an age file).
pub const VAULT_FILE: &str = "vault.age";
/// Vault metadata file name.
pub const VAULT_META_FILE: &str = "vault.json";

/// Atomic write of `bytes` to `path`, mode 0600: temp file in the same directory,
/// fsync, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".hashdrop-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    set_mode(tmp.path(), 0o600)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Flushes a directory entry change to disk (best effort; not every platform can).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home {
            dir: dir.path().join("state"),
        };
        home.write_atomic("a", b"one").unwrap();
        home.write_atomic("a", b"two").unwrap();
        assert_eq!(home.read("a").unwrap().unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = fs::metadata(home.path("a")).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600);
            let d = fs::metadata(home.dir()).unwrap().permissions().mode();
            assert_eq!(d & 0o777, 0o700);
        }
        let leftovers: Vec<_> = fs::read_dir(home.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
