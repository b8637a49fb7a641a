//! Command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Zero-trust file store and share: files are encrypted on this machine as standard
/// age files before upload; the server only ever sees ciphertext.
///
/// Secrets are read from HASHDROP_PASSWORD, HASHDROP_VAULT_PASSWORD,
/// HASHDROP_PASSPHRASE, HASHDROP_OTP and HASHDROP_KEY when set, else prompted for when
/// stdin is a terminal. State lives in HASHDROP_HOME (default ~/.hashdrop).
#[derive(Debug, Parser)]
#[command(name = "hashdrop", version, propagate_version = true)]
pub struct Cli {
    /// Server base URL.
    #[arg(
        long,
        env = "HASHDROP_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub server: String,
    /// Allow plain http:// to a host other than this machine (passwords and tokens
    /// then cross the network unencrypted).
    #[arg(long, global = true, help_heading = "Global options")]
    pub insecure_http: bool,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Show HTTP requests and details on stderr.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register, verify, log in and out, delete the account.
    Auth {
        /// Auth action.
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// Encrypt a file on this machine and upload it.
    Upload(UploadArgs),
    /// List, show and delete your files.
    Files {
        /// Files action.
        #[command(subcommand)]
        cmd: FilesCmd,
    },
    /// Print the share link of one of your files.
    Share {
        /// File id or a unique prefix of it.
        id_prefix: String,
        /// Also draw the link as a QR code (with --json: a "qr" field holding the drawing).
        #[arg(long)]
        qr: bool,
    },
    /// Download and decrypt a share link or download URL.
    Decrypt(DecryptArgs),
    /// Export or import the local key vault.
    Vault {
        /// Vault action.
        #[command(subcommand)]
        cmd: VaultCmd,
    },
    /// Print the client version (and the server's, if reachable).
    Version,
}

/// `auth` actions.
#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Create an account; asks for the emailed code and verifies when interactive.
    Register {
        /// Account email.
        #[arg(long)]
        email: Option<String>,
    },
    /// Activate an account with the emailed one-time code.
    Verify {
        /// Account email.
        #[arg(long)]
        email: String,
        /// The 6-digit code (else HASHDROP_OTP, else prompted). Visible in the process
        /// list while it runs: prefer HASHDROP_OTP or the prompt on shared machines.
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
    },
    /// Log in and keep the session in HASHDROP_HOME.
    Login {
        /// Account email.
        #[arg(long)]
        email: Option<String>,
    },
    /// Revoke the session on the server and forget it here.
    Logout,
    /// Delete the account and every file in it (asks for the password).
    DeleteAccount {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// `upload` arguments.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// File to upload.
    pub path: PathBuf,
    /// Display name (default: the file name).
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Encrypt with a passphrase (HASHDROP_PASSPHRASE) instead of a key kept in the vault.
    #[arg(short = 'N', long)]
    pub no_vault: bool,
    /// Refuse downloads after this long, e.g. 7d, 12h, 30m.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<humantime::Duration>,
    /// Refuse downloads after this many.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_downloads: Option<u64>,
    /// Parts of a large file sent at the same time (at most 4 are held in memory).
    #[arg(long, value_name = "N", default_value_t = crate::cmd::parts::DEFAULT_PARALLEL,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16))]
    pub parallel: usize,
    /// Do not resume an interrupted upload of this file: discard it and start over.
    #[arg(long)]
    pub restart: bool,
}

/// `files` actions.
#[derive(Debug, Subcommand)]
pub enum FilesCmd {
    /// List your files.
    ///
    /// Sealed names are opened with the vault (its passphrase is asked for, or read from
    /// HASHDROP_VAULT_PASSWORD). A name that cannot be opened shows as "(sealed name)";
    /// with --json its `file_name` is empty beside the file's `metadata`.
    List,
    /// Show one file's details.
    Show {
        /// File id or a unique prefix of it.
        id_prefix: String,
        /// Also print the file's age identity from the vault.
        #[arg(long)]
        reveal_key: bool,
    },
    /// Delete a file from the server.
    Delete {
        /// File id or a unique prefix of it.
        id_prefix: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// `decrypt` arguments.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("keysource").multiple(false))]
pub struct DecryptArgs {
    /// Share link ({server}/d/{id}#KEY) or download URL ({server}/files/download/...).
    #[arg(value_name = "LINK_OR_URL")]
    pub link: String,
    /// Output file or directory [default: your Downloads directory].
    pub dest: Option<PathBuf>,
    /// Decrypt with this age identity (AGE-SECRET-KEY-1...). Other local users can
    /// read it in the process list: prefer --key-file or HASHDROP_KEY.
    #[arg(long, group = "keysource", value_name = "IDENTITY")]
    pub key: Option<String>,
    /// Decrypt with the age identity in this file ('-' reads stdin); an age identity
    /// file with '#' comment lines works.
    #[arg(long, group = "keysource", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Decrypt with the keys in the local vault.
    #[arg(long, group = "keysource")]
    pub vault: bool,
    /// Decrypt with a passphrase (HASHDROP_PASSPHRASE, else prompted).
    #[arg(long, group = "keysource")]
    pub passphrase: bool,
    /// Compare the plaintext's SHA-256 with the one the owner's upload recorded
    /// (needs you logged in as the owner).
    #[arg(long)]
    pub verify: bool,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Discard the partial download an interrupted run kept for this file next to
    /// the destination, and download from the start.
    #[arg(long)]
    pub restart: bool,
}

/// `vault` actions.
#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Copy the vault (an age file under your vault passphrase) to FILE.
    Export {
        /// Destination.
        file: PathBuf,
    },
    /// Merge the keys of a vault file into the local vault; never drops a key.
    Import {
        /// Vault file to merge.
        file: PathBuf,
    },
}
