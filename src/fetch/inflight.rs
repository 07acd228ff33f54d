//! Fetches under way, by page: a miss for a page another fetch is already bringing waits
//! for it instead of asking the store again (a scan's prefetch and a reader's miss, or two
//! connections missing the same page).

use crate::cache::PageKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    pages: Mutex<HashMap<PageKey, Arc<Notify>>>,
}

/// The pages one fetch claimed; dropping it (done or failed) releases them and wakes
/// whoever waits for them.
#[derive(Debug)]
pub(crate) struct Claim {
    owner: Arc<InFlight>,
    keys: Vec<PageKey>,
    done: Arc<Notify>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PageKey, Arc<Notify>>> {
        self.pages.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn contains(&self, key: &PageKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Claims `keys` for one fetch: those nobody fetches yet. Returns the claim, and which
    /// of `keys` it holds (in their order).
    pub(crate) fn claim(self: &Arc<Self>, keys: impl IntoIterator<Item = PageKey>) -> Claim {
        let done = Arc::new(Notify::new());
        let mut pages = self.lock();
        let keys = keys
            .into_iter()
            .filter(|k| {
                if pages.contains_key(k) {
                    return false;
                }
                pages.insert(*k, done.clone());
                true
            })
            .collect();
        drop(pages);
        Claim {
            owner: self.clone(),
            keys,
            done,
        }
    }

    /// Waits until no fetch holds `key` (returns at once if none does).
    pub(crate) async fn wait(&self, key: &PageKey) {
        loop {
            let notify = match self.lock().get(key) {
                Some(n) => n.clone(),
                None => return,
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the check below, so a release in between still wakes us.
            notified.as_mut().enable();
            if !self.contains(key) {
                return;
            }
            notified.await;
        }
    }
}

impl Claim {
    #[cfg(test)]
    pub(crate) fn keys(&self) -> &[PageKey] {
        &self.keys
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut pages = self.owner.lock();
        for k in &self.keys {
            if pages.get(k).is_some_and(|n| Arc::ptr_eq(n, &self.done)) {
                pages.remove(k);
            }
        }
        drop(pages);
        self.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_key as key;
    use std::time::Duration;

    #[test]
    fn a_claimed_page_is_not_claimed_twice_and_waiters_wake_on_release() {
        let inflight = Arc::new(InFlight::default());
        let first = inflight.claim([key(1), key(2)]);
        assert_eq!(first.keys(), &[key(1), key(2)]);
        let second = inflight.claim([key(2), key(3)]);
        assert_eq!(second.keys(), &[key(3)], "page 2 is the first fetch's");

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let waiter = {
            let inflight = inflight.clone();
            rt.spawn(async move { inflight.wait(&key(2)).await })
        };
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        assert!(!waiter.is_finished());
        drop(first);
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), waiter).await })
            .unwrap()
            .unwrap();
        assert!(!inflight.contains(&key(1)) && inflight.contains(&key(3)));
        drop(second);
        assert!(!inflight.contains(&key(3)));
    }
}
