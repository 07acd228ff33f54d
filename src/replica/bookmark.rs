//! Bookmarks: waiting until this process's replica holds a TXID another process committed
//! (read-your-writes across processes). A bookmark ahead of the replica does not wait for
//! the follower's cadence: it polls at once (a listing after the newest key seen), then again
//! after a short back-off, until the replica reaches it or the wait is over.

use super::Replica;
use crate::io;
use crate::ltx::Txid;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first pause between polls for a bookmark, doubled after each poll up to
/// [`BACKOFF_MAX`]: a bookmark is normally reached by the first poll (the writer's COMMIT
/// has returned, so its file is in the store); the back-off only covers a writer that ships
/// later (`sync=<duration>`) without hammering the store.
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// A bookmark the replica did not reach within the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReached {
    pub want: Txid,
    pub reached: Txid,
    /// The wait asked for (at most the replica's `timeout`).
    pub waited: Duration,
    /// The store's last answer, when a poll failed.
    pub error: Option<String>,
}

impl std::fmt::Display for NotReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bookmark {} not reached within {:.1}s: the replica is at TXID {}",
            self.want,
            self.waited.as_secs_f64(),
            self.reached
        )?;
        match &self.error {
            Some(e) => write!(f, " ({e})"),
            None => write!(
                f,
                " (a bookmark of another replica, or of a commit not yet stored?)"
            ),
        }
    }
}

impl Replica {
    /// Returns once the replica's current state is at `want` or past it (so a read
    /// transaction begun after sees it), answering the TXID reached; waits at most `wait`
    /// (and never longer than the replica's `timeout`).
    ///
    /// # Errors
    /// [`NotReached`] naming both TXIDs when the wait is over first.
    pub fn wait_txid(self: &Arc<Self>, want: Txid, wait: Duration) -> Result<Txid, NotReached> {
        let wait = wait.min(self.timeout());
        let now = self.current().txid;
        if now >= want {
            return Ok(now);
        }
        let me = self.clone();
        let deadline = Instant::now() + wait;
        let waited = io::run(
            async move {
                let mut pause = BACKOFF_START;
                loop {
                    // A poll begun after this instant: one under way already listed too soon.
                    me.poll_unless_fresh(Instant::now(), Duration::ZERO).await;
                    let reached = me.current().txid;
                    let left = deadline.saturating_duration_since(Instant::now());
                    if reached >= want || left.is_zero() {
                        return reached;
                    }
                    io::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(BACKOFF_MAX);
                }
            },
            // A poll under way when the wait ends is left to finish on its own.
            wait + Duration::from_millis(50),
        );
        let reached = self.current().txid;
        match waited {
            Ok(r) if r >= want => Ok(r),
            _ if reached >= want => Ok(reached),
            _ => Err(NotReached {
                want,
                reached,
                waited: wait,
                error: self.follow_status().1,
            }),
        }
    }
}
