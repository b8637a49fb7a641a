//! One Redis connection shared by everything a component sends to Redis, with the
//! failure policy the scale-out mode relies on (ARCHITECTURE.md §5): every call is
//! bounded by a short timeout, a failed call drops the connection, and a new one is
//! tried lazily at most every [`RECONNECT_EVERY`], so a dead Redis costs requests
//! almost nothing and a Redis that comes back is used again without anyone acting.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// Longest a single Redis call may take before the caller gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(100);
/// Least time between two connection attempts while Redis is unreachable.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(2);
// Connecting includes the TCP and RESP handshakes, so it gets a little longer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// State of an optional dependency, as readiness reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Working as configured.
    Ok,
    /// Configured but unreachable; the instance serves without it.
    Degraded,
    /// Not configured or switched off.
    Disabled,
}

impl Health {
    /// The readiness spelling: `ok`, `degraded` or `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Disabled => "disabled",
        }
    }
}

/// A lazily (re)connected Redis connection.
pub struct RedisLink {
    client: redis::Client,
    what: &'static str,
    conn: tokio::sync::RwLock<Option<MultiplexedConnection>>,
    last_attempt: Mutex<Option<Instant>>,
    // Starts true so the first failure is logged; flips log once per transition.
    up: AtomicBool,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("RedisLink")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link to `url` (`redis://` or `rediss://`). Nothing is connected yet, so a
    /// Redis that is down at startup does not stop the server. `what` names the user
    /// in log lines ("rate limits", "file cache").
    pub fn new(url: &str, what: &'static str) -> anyhow::Result<Self> {
        Ok(RedisLink {
            client: redis::Client::open(url)?,
            what,
            conn: tokio::sync::RwLock::new(None),
            last_attempt: Mutex::new(None),
            up: AtomicBool::new(true),
        })
    }

    /// Whether the last call (or connection attempt) succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(what = self.what, "redis reachable again");
            } else {
                tracing::warn!(
                    what = self.what,
                    "redis unreachable; serving without it until it is back"
                );
            }
        }
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        if let Some(c) = self.conn.read().await.as_ref() {
            return Some(c.clone());
        }
        {
            let mut last = self.last_attempt.lock().expect("redis link lock");
            if last.is_some_and(|t| t.elapsed() < RECONNECT_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(Ok(c)) => {
                *self.conn.write().await = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::debug!(what = self.what, error = %e, "redis connect failed");
                self.set_up(false);
                None
            }
            Err(_) => {
                self.set_up(false);
                None
            }
        }
    }

    /// Runs `call` on the connection within [`CALL_TIMEOUT`]. `None` means Redis
    /// could not answer (unreachable, slow or erroring); the caller then serves
    /// without it.
    pub async fn run<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(CALL_TIMEOUT, call(conn)).await {
            Ok(Ok(v)) => {
                self.set_up(true);
                Some(v)
            }
            Ok(Err(e)) => {
                tracing::debug!(what = self.what, error = %e, "redis call failed");
                self.drop_connection().await;
                None
            }
            Err(_) => {
                // A connection that stalled once is likely to stall again; a fresh
                // one (after RECONNECT_EVERY) is the cheaper bet for every caller.
                self.drop_connection().await;
                None
            }
        }
    }

    async fn drop_connection(&self) {
        *self.conn.write().await = None;
        *self.last_attempt.lock().expect("redis link lock") = Some(Instant::now());
        self.set_up(false);
    }

    /// PING, for readiness: [`Health::Ok`] or [`Health::Degraded`].
    pub async fn health(&self) -> Health {
        let pong = self
            .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await;
        if pong.is_some() {
            Health::Ok
        } else {
            Health::Degraded
        }
    }
}
