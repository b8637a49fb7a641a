//! Files and directories only the server's user can read: the data dir holds the
//! database, the signing secrets, every blob and the mail spool (with OTPs), so
//! directories are created 0700 and files 0600 whatever the process umask is, and
//! existing ones are tightened at startup.

use std::path::Path;

use anyhow::Context;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Mode of every directory the server creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the server creates.
pub const FILE_MODE: u32 = 0o600;

/// `mkdir -p` with mode 0700 for each directory created, then 0700 on `dir` itself
/// even if it existed (an umask only removes bits, so set it explicitly).
pub fn create_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(DIR_MODE);
    b.create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    restrict(dir, DIR_MODE)
}

/// [`create_dir`] for async callers (a blocking call on a blocking thread).
pub async fn create_dir_async(dir: &Path) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || create_dir(&dir)).await?
}

/// Sets `path`'s permission bits to `mode` (a no-op off Unix).
pub fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", path.display()))?;
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Options creating a new file with mode 0600 (the umask cannot widen it). The
/// explicit chmod after opening covers an umask that removes owner bits.
pub fn new_file_options() -> tokio::fs::OpenOptions {
    let mut o = tokio::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    o.mode(FILE_MODE);
    o
}

/// Creates `path` (which must not exist) with mode 0600.
pub async fn create_file(path: &Path) -> std::io::Result<tokio::fs::File> {
    new_file_options().open(path).await
}

/// [`create_file`] for blocking code.
pub fn create_file_sync(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(FILE_MODE);
    }
    o.open(path)
}

/// Writes `bytes` to a new file `path` with mode 0600.
pub async fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = create_file(path).await?;
    f.write_all(bytes).await?;
    f.flush().await
}

/// Makes sure the SQLite file at `path` exists with mode 0600 before SQLite opens
/// it: SQLite creates files 0644 minus the umask and gives its `-wal` and `-shm`
/// files the database file's mode, so this covers all three.
pub fn prepare_sqlite_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            create_dir(dir)?;
        }
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(false);
    #[cfg(unix)]
    o.mode(FILE_MODE);
    o.open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    restrict(path, FILE_MODE)
}
