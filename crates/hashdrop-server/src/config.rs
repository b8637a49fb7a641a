//! Layered configuration: built-in defaults → TOML file → `HASHDROP_*` environment →
//! command-line flags. Every field has a default so `hashdrop-server` runs with no
//! arguments at all.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Full server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory holding the SQLite file, blobs, secrets and the mail spool.
    pub data_dir: PathBuf,
    /// Base URL of every link handed out; defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// `sqlite://PATH` or `postgres://...`; defaults to `{data_dir}/hashdrop.db`.
    pub database_url: Option<String>,
    /// `file://DIR` (default `{data_dir}/blobs`) or
    /// `s3://BUCKET?endpoint=URL&region=R&path_style=BOOL` (credentials in [`S3Config`]).
    pub blob_store: Option<String>,
    /// `log` (writes `.eml` files under `{data_dir}/mail/`) or
    /// `smtp://[user:pass@]host:port?tls=none|starttls|tls`.
    pub mailer: String,
    /// Enables `DELETE /admin/reset`. Never in production.
    pub dev_mode: bool,
    /// Answer of `GET /api/cli/version`.
    pub cli_version: String,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed; empty
    /// (the default) keys every request by its TCP peer.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Time between SIGTERM and closing the listener, so load balancers see readyz 503.
    pub shutdown_grace_ms: u64,
    /// How long in-flight requests may still run after the listener closes.
    pub shutdown_timeout_secs: u64,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Storage and download limits.
    pub limits: Limits,
    /// Rate limiting.
    pub rate_limit: RateLimitConfig,
    /// Background jobs and cleaners.
    pub jobs: JobsConfig,
    /// SQLite snapshots.
    pub backup: BackupConfig,
    /// Credentials and client-facing endpoint of an `s3://` blob store.
    pub s3: S3Config,
    /// Optional PostgreSQL read replica for read-only owner endpoints.
    pub database_replica_url: Option<String>,
    /// This instance's name in the `X-Hashdrop-Instance` header and in logs;
    /// defaults to `{hostname}-{6 random hex}`.
    pub instance_id: Option<String>,
    /// Sender of outgoing mail.
    pub mail_from: String,
    /// Cache of the public file lookup.
    pub cache: CacheConfig,
    /// When set, `GET /metrics` requires `Authorization: Bearer {metrics_token}`.
    pub metrics_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./hashdrop-data"),
            public_url: None,
            database_url: None,
            blob_store: None,
            mailer: "log".into(),
            dev_mode: false,
            cli_version: env!("CARGO_PKG_VERSION").into(),
            trusted_proxies: Vec::new(),
            shutdown_grace_ms: 0,
            shutdown_timeout_secs: 30,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            rate_limit: RateLimitConfig::default(),
            jobs: JobsConfig::default(),
            backup: BackupConfig::default(),
            s3: S3Config::default(),
            database_replica_url: None,
            instance_id: None,
            mail_from: "Hashdrop <no-reply@localhost>".into(),
            cache: CacheConfig::default(),
            metrics_token: None,
        }
    }
}

/// One entry of `trusted_proxies`: an address (`10.0.0.10`) or a CIDR range
/// (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedProxy(ipnet::IpNet);

impl TrustedProxy {
    /// Whether `ip` is this proxy (or inside its range). IPv4 peers seen on an IPv6
    /// socket (`::ffff:a.b.c.d`) match their IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::str::FromStr for TrustedProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map(|n| TrustedProxy(n.trunc()))
            .map_err(|_| format!("trusted_proxies: {s:?} is not an IP address or CIDR range"))
    }
}

impl TryFrom<String> for TrustedProxy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<TrustedProxy> for String {
    fn from(p: TrustedProxy) -> String {
        p.0.to_string()
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_m_cost_kib: u32,
    /// Argon2id iterations.
    pub argon2_t_cost: u32,
    /// Argon2id parallelism.
    pub argon2_p_cost: u32,
    /// Access token lifetime.
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_token_ttl_secs: u64,
    /// OTP lifetime.
    pub otp_ttl_secs: u64,
    /// Wrong OTP guesses before the code is burned.
    pub otp_max_attempts: u32,
    /// Unverified accounts older than this are deleted by a cleaner.
    pub unverified_user_ttl_secs: u64,
    /// JWT signing secret; generated into `{data_dir}/secrets.toml` when absent.
    pub jwt_secret: Option<String>,
    /// Key for token/OTP hashes, user hashes and signed URLs; generated when absent.
    pub hmac_secret: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            argon2_m_cost_kib: 19456,
            argon2_t_cost: 2,
            argon2_p_cost: 1,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            otp_ttl_secs: 10 * 60,
            otp_max_attempts: 5,
            unverified_user_ttl_secs: 24 * 3600,
            jwt_secret: None,
            hmac_secret: None,
        }
    }
}

/// Storage and download limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes across all users (pending + uploaded).
    pub global_bytes: u64,
    /// Bytes per user.
    pub user_bytes: u64,
    /// Files per user (pending + uploaded).
    pub user_files: u64,
    /// Largest single object.
    pub file_max_bytes: u64,
    /// Downloads per file per UTC day.
    pub daily_downloads_per_file: u64,
    /// Lifetime of a signed upload URL.
    pub upload_url_ttl_secs: u64,
    /// Lifetime of a signed download URL.
    pub download_url_ttl_secs: u64,
    /// Pending uploads older than this are swept.
    pub pending_upload_ttl_secs: u64,
    /// A blob PUT whose body pauses this long is cut off with 408 (local store).
    pub upload_idle_timeout_secs: u64,
}

const GIB: u64 = 1024 * 1024 * 1024;

pub use hashdrop_wire::DEFAULT_FILE_MAX_BYTES;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            global_bytes: 50 * 1024 * 1024 * 1024,
            user_bytes: 10 * GIB,
            user_files: 1000,
            file_max_bytes: DEFAULT_FILE_MAX_BYTES,
            daily_downloads_per_file: 100,
            // A 2 GiB upload is one PUT: an hour lets it through at 0.6 MB/s.
            upload_url_ttl_secs: 3600,
            download_url_ttl_secs: 5 * 60,
            // Longer than an upload URL lives, so no upload is swept while it may
            // still arrive.
            pending_upload_ttl_secs: 2 * 3600,
            upload_idle_timeout_secs: 30,
        }
    }
}

/// One endpoint group's pair of token buckets.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupLimit {
    /// Requests per minute for the whole group (bucket size = one minute's worth).
    pub global_per_minute: u32,
    /// Requests per minute per client IP or user; 0 = no per-key bucket.
    pub per_key_per_minute: u32,
    /// Requests per hour per client IP or user (a second, slower per-key bucket of
    /// this size, refilled over an hour); 0 = none.
    #[serde(default)]
    pub per_key_per_hour: u32,
}

/// Rate limiting per endpoint group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Master switch.
    pub enabled: bool,
    /// `memory` (per instance) or `redis://...` (shared; falls back to per-instance
    /// buckets while Redis is unreachable).
    pub backend: String,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_key_prefix: String,
    /// login, delete account (per IP).
    pub auth: GroupLimit,
    /// register, which sends mail (per IP).
    pub register: GroupLimit,
    /// login attempts per account (keyed by the normalized email, whatever the IP).
    pub login_account: GroupLimit,
    /// verify (per IP).
    pub otp: GroupLimit,
    /// refresh, revoke (per IP).
    pub token: GroupLimit,
    /// presign, complete, part URLs (per user).
    pub upload: GroupLimit,
    /// files/all (per user).
    pub list: GroupLimit,
    /// resolve, get, hash, salt, delete (per user).
    pub file_meta: GroupLimit,
    /// download redirect, share facts, share page (per IP).
    pub download: GroupLimit,
    /// The local store's signed blob GET and PUT (per IP): each part of a multipart
    /// upload is one PUT, so a 4 GiB upload makes 512 of them.
    pub blob: GroupLimit,
    /// cli/version, metrics, openapi.json (global only); healthz and readyz are
    /// never rate limited.
    pub health: GroupLimit,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let g = |global_per_minute, per_key_per_minute| GroupLimit {
            global_per_minute,
            per_key_per_minute,
            per_key_per_hour: 0,
        };
        let hourly = |global_per_minute, per_key_per_minute, per_key_per_hour| GroupLimit {
            global_per_minute,
            per_key_per_minute,
            per_key_per_hour,
        };
        RateLimitConfig {
            enabled: true,
            backend: "memory".into(),
            redis_key_prefix: "hashdrop".into(),
            auth: g(300, 10),
            register: hourly(300, 0, 3),
            login_account: hourly(0, 5, 30),
            otp: g(300, 10),
            token: g(1200, 60),
            upload: g(600, 30),
            list: g(6000, 120),
            file_meta: g(6000, 300),
            download: g(60000, 600),
            blob: g(120000, 6000),
            health: g(60000, 0),
        }
    }
}

/// Background jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Run the worker in this process.
    pub worker_enabled: bool,
    /// Attempts before a job is marked dead.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Cap on the retry delay.
    pub backoff_max_ms: u64,
    /// Idle poll interval of the worker.
    pub poll_interval_ms: u64,
    /// Schedule the cleaners.
    pub cleaners_enabled: bool,
    /// Interval between cleaner runs.
    pub cleaner_interval_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            worker_enabled: true,
            max_attempts: 8,
            backoff_base_ms: 2000,
            backoff_max_ms: 3600 * 1000,
            poll_interval_ms: 1000,
            cleaners_enabled: true,
            cleaner_interval_secs: 900,
        }
    }
}

/// SQLite snapshots (`VACUUM INTO`, stored in the blob store under `backups/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Interval between snapshots; 0 disables the schedule.
    pub interval_secs: u64,
    /// Snapshots kept in the blob store; older ones are deleted after each backup.
    pub keep: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            interval_secs: 24 * 3600,
            keep: 7,
        }
    }
}

/// Settings of an `s3://` blob store that do not belong in its URL: credentials (kept
/// out of the URL so it can be logged) and the endpoint clients are sent to.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Access key id; with the secret unset too, `AWS_ACCESS_KEY_ID` is used.
    pub access_key_id: Option<String>,
    /// Secret access key; with the key id unset too, `AWS_SECRET_ACCESS_KEY` is used.
    pub secret_access_key: Option<String>,
    /// Base URL put into presigned URLs when clients reach the store through
    /// another address than the server does (a CORS proxy, a public hostname).
    pub public_endpoint: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("public_endpoint", &self.public_endpoint)
            .finish()
    }
}

/// Cache of the public file lookup (see `cache.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `none` or `redis://...` (shared by every instance; bypassed while unreachable).
    pub backend: String,
    /// Lifetime of an entry, and so the longest a missed invalidation can linger.
    pub ttl_secs: u64,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_key_prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: "none".into(),
            ttl_secs: 60,
            redis_key_prefix: "hashdrop".into(),
        }
    }
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--public-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// `--database-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "public_url",
    "database_url",
    "blob_store",
    "mailer",
    "dev_mode",
    "cli_version",
    "trusted_proxies",
    "shutdown_grace_ms",
    "shutdown_timeout_secs",
    "auth",
    "limits",
    "rate_limit",
    "jobs",
    "backup",
    "s3",
    "database_replica_url",
    "instance_id",
    "mail_from",
    "cache",
    "metrics_token",
];

impl Config {
    /// Loads defaults, then `config_file` (if any), then `HASHDROP_*` variables
    /// (nested keys with `__`, e.g. `HASHDROP_LIMITS__USER_BYTES`), then flags.
    pub fn load(config_file: Option<&Path>, flags: &FlagOverrides) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = config_file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        // HASHDROP_CONFIG names the file, it is not a config key.
        fig = fig
            .merge(
                Env::prefixed("HASHDROP_")
                    .filter(|k| {
                        // Only our own keys: the CLI and the test suites use other
                        // HASHDROP_* variables that must not break server startup.
                        // Keys are still upper case here; figment lowercases later.
                        let top = k.as_str().split("__").next().unwrap_or("");
                        TOP_LEVEL_KEYS.iter().any(|t| t.eq_ignore_ascii_case(top))
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(flags));
        Ok(fig.extract()?)
    }

    /// Effective public URL without trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Effective database URL.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("hashdrop.db").display()),
        }
    }

    /// Effective instance id: the configured one, else `{hostname}-{random}`.
    pub fn instance_id(&self) -> String {
        if let Some(id) = self.instance_id.as_deref().filter(|s| !s.trim().is_empty()) {
            return id.trim().to_string();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "hashdrop".into());
        // Two processes on one host (or containers sharing a hostname) still differ.
        format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
    }

    /// Effective blob store URL.
    pub fn blob_store_url(&self) -> String {
        match &self.blob_store {
            Some(u) => u.clone(),
            None => format!("file://{}", self.data_dir.join("blobs").display()),
        }
    }
}

/// `url` with its password (if any) replaced, for printing configuration.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("hidden"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Annotated example configuration printed by `hashdrop-server example-config`.
pub const EXAMPLE_CONFIG: &str = r#"# hashdrop-server configuration. Every key is optional; shown values are the defaults.
# Precedence: built-in defaults < this file (--config / HASHDROP_CONFIG) <
# HASHDROP_* environment variables (nested keys joined with "__", e.g.
# HASHDROP_LIMITS__USER_BYTES=1000000) < command-line flags.

listen = "127.0.0.1:8080"          # --listen / HASHDROP_LISTEN
data_dir = "./hashdrop-data"       # --data-dir / HASHDROP_DATA_DIR: db, blobs, secrets, mail
# public_url = "https://drop.example.com"   # --public-url; default http://{listen}
# database_url = "postgres://user@db/hashdrop"  # default sqlite://{data_dir}/hashdrop.db
# blob_store = "file:///var/lib/hashdrop/blobs" # default file://{data_dir}/blobs
# blob_store = "s3://hashdrop?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true"
#   (endpoint default https://s3.{region}.amazonaws.com, region us-east-1, path_style false)
mailer = "log"                     # writes each mail as {data_dir}/mail/*.eml, or
                                   # "smtp://[user:pass@]host:port?tls=none|starttls|tls"
mail_from = "Hashdrop <no-reply@localhost>"
# database_replica_url = "postgres://user@replica/hashdrop"  # read-only owner endpoints
# instance_id = "web-1"            # X-Hashdrop-Instance header; default {hostname}-{random}
dev_mode = false                   # true enables DELETE /admin/reset
trusted_proxies = []               # e.g. ["10.0.0.10", "10.1.0.0/16"]: the load balancers whose
                                   # X-Forwarded-For is believed; [] = key clients by TCP peer
# metrics_token = "..."            # GET /metrics then wants "Authorization: Bearer ..."
shutdown_grace_ms = 0              # readyz answers 503 this long before the listener closes
shutdown_timeout_secs = 30         # then in-flight requests get this long to finish

[auth]
argon2_m_cost_kib = 19456
argon2_t_cost = 2
argon2_p_cost = 1
access_token_ttl_secs = 900
refresh_token_ttl_secs = 2592000
otp_ttl_secs = 600
otp_max_attempts = 5
unverified_user_ttl_secs = 86400
# jwt_secret / hmac_secret: generated into {data_dir}/secrets.toml on first start.
# Set them explicitly (identical on every instance) when running several servers.

[limits]
global_bytes = 53687091200         # 50 GiB across all users
user_bytes = 10737418240           # 10 GiB per user
user_files = 1000
file_max_bytes = 2148532224        # 2 GiB + 1 MiB per object: a 2 GiB file, encrypted
daily_downloads_per_file = 100
upload_url_ttl_secs = 3600         # one PUT of 2 GiB needs 0.6 MB/s to finish in time
download_url_ttl_secs = 300
pending_upload_ttl_secs = 7200     # longer than an upload URL lives
upload_idle_timeout_secs = 30      # a blob PUT pausing this long is cut off (408)

[rate_limit]
enabled = true
backend = "memory"                 # or "redis://127.0.0.1:6379" to share limits between instances
redis_key_prefix = "hashdrop"
# requests per minute: whole group, and per client IP / user (0 = none)
# per_key_per_hour adds a slower per-key bucket (N per hour, bursts of N).
auth = { global_per_minute = 300, per_key_per_minute = 10 }
register = { global_per_minute = 300, per_key_per_minute = 0, per_key_per_hour = 3 }
login_account = { global_per_minute = 0, per_key_per_minute = 5, per_key_per_hour = 30 }
otp = { global_per_minute = 300, per_key_per_minute = 10 }
token = { global_per_minute = 1200, per_key_per_minute = 60 }
upload = { global_per_minute = 600, per_key_per_minute = 30 }
list = { global_per_minute = 6000, per_key_per_minute = 120 }
file_meta = { global_per_minute = 6000, per_key_per_minute = 300 }
download = { global_per_minute = 60000, per_key_per_minute = 600 }
blob = { global_per_minute = 120000, per_key_per_minute = 6000 }   # local store: one request per 8 MiB part
health = { global_per_minute = 60000, per_key_per_minute = 0 }

[cache]
backend = "none"                   # or "redis://127.0.0.1:6379": public file lookups, shared
ttl_secs = 60
redis_key_prefix = "hashdrop"

[jobs]
worker_enabled = true
max_attempts = 8                   # then the job is "dead"; `hashdrop-server jobs retry ID`
backoff_base_ms = 2000
backoff_max_ms = 3600000
poll_interval_ms = 1000
cleaners_enabled = true
cleaner_interval_secs = 900

[backup]
interval_secs = 86400              # SQLite only; 0 disables
keep = 7                           # snapshots kept under backups/ in the blob store

# [s3]                             # only read with an s3:// blob_store
# access_key_id = "..."            # HASHDROP_S3__ACCESS_KEY_ID; else AWS_ACCESS_KEY_ID
# secret_access_key = "..."        # HASHDROP_S3__SECRET_ACCESS_KEY; else AWS_SECRET_ACCESS_KEY
# public_endpoint = "https://objects.example.com"  # base of the URLs clients get
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_to_defaults() {
        let parsed: Config = toml_parse(EXAMPLE_CONFIG);
        let d = Config::default();
        assert_eq!(parsed.listen, d.listen);
        assert_eq!(parsed.limits.user_bytes, d.limits.user_bytes);
        assert_eq!(parsed.rate_limit.download, d.rate_limit.download);
        assert_eq!(parsed.rate_limit.blob, d.rate_limit.blob);
        assert_eq!(parsed.rate_limit.register, d.rate_limit.register);
        assert_eq!(parsed.rate_limit.login_account, d.rate_limit.login_account);
        assert_eq!(parsed.jobs.max_attempts, d.jobs.max_attempts);
        assert_eq!(parsed.mail_from, d.mail_from);
        assert_eq!(parsed.cache.backend, d.cache.backend);
        assert_eq!(parsed.cache.ttl_secs, d.cache.ttl_secs);
    }

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("smtp://me:s3cret@mail.example.com:587?tls=starttls"),
            "smtp://me:hidden@mail.example.com:587?tls=starttls"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("log"), "log");
    }

    fn toml_parse(s: &str) -> Config {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(s))
            .extract()
            .unwrap()
    }
}
