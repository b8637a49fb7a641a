//! Coalescing a check many callers ask for at once.

use std::future::Future;
use std::time::Instant;

/// The last result of a shared check and when it finished. A caller waits for the
/// check in flight and takes any result that finished after it arrived; only then
/// does it run the check itself. At most one check runs at a time, however many
/// callers there are, and no caller gets a result older than its own arrival.
#[derive(Debug)]
pub struct Coalesced<T>(tokio::sync::Mutex<Option<(Instant, T)>>);

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Coalesced(tokio::sync::Mutex::new(None))
    }
}

impl<T: Copy> Coalesced<T> {
    /// A result no older than this call.
    pub async fn fresh<F, Fut>(&self, check: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let arrived = Instant::now();
        let mut last = self.0.lock().await;
        if let Some((finished, result)) = *last {
            if finished >= arrived {
                return result;
            }
        }
        let result = check().await;
        *last = Some((Instant::now(), result));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_callers_share_one_check_and_later_ones_run_anew() {
        let shared = Arc::new(Coalesced::<u32>::default());
        let runs = Arc::new(AtomicU32::new(0));
        let check = |runs: Arc<AtomicU32>| async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            runs.fetch_add(1, Ordering::SeqCst) + 1
        };
        let first = {
            let (s, r) = (shared.clone(), runs.clone());
            tokio::spawn(async move { s.fresh(|| check(r)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        // Arrives while the first check runs: its result finished after this
        // caller arrived, so it is taken as is.
        let second = shared.fresh(|| check(runs.clone())).await;
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(second, 1);
        // A caller arriving after that result finished runs the check again.
        assert_eq!(shared.fresh(|| check(runs.clone())).await, 2);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
