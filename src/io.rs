//! The bridge between SQLite's threads and the async store: one lazily started tokio runtime
//! of the extension's own, rebuilt in a forked child.
//!
//! VFS threads hand it a future and wait on a channel with a timeout; they never `block_on`,
//! which panics when the host thread already runs inside a tokio runtime. Nothing outside this
//! module and `store` names tokio.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

const WORKER_THREADS: usize = 2;

/// The runtime and the process it was built in.
struct Owned {
    pid: u32,
    runtime: Runtime,
}

static RUNTIME: Mutex<Option<Owned>> = Mutex::new(None);

/// Why a bridged call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("the IO runtime could not start: {0}")]
    Runtime(String),
    #[error("the IO task ended without an answer")]
    TaskLost,
}

/// The runtime's handle, starting it (again, after a fork) if needed.
///
/// # Errors
/// [`BridgeError::Runtime`] if the runtime cannot start.
pub(crate) fn handle() -> Result<Handle, BridgeError> {
    let mut guard = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if let Some(owned) = guard.as_ref()
        && owned.pid == pid
    {
        return Ok(owned.runtime.handle().clone());
    }
    // A runtime inherited across fork() has no threads in this process: leak it rather than
    // run its destructor, which would wait for workers that do not exist here.
    if let Some(stale) = guard.take() {
        std::mem::forget(stale);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("ltxvfs-io")
        .enable_all()
        .build()
        .map_err(|e| BridgeError::Runtime(e.to_string()))?;
    let handle = runtime.handle().clone();
    *guard = Some(Owned { pid, runtime });
    Ok(handle)
}

/// Runs `fut` on the IO runtime and waits for its output, at most `timeout`. The future
/// keeps running to completion (or its own timeout) if the wait gives up.
///
/// # Errors
/// [`BridgeError`] if the runtime cannot start, the wait times out, or the task panicked.
pub fn run<F>(fut: F, timeout: Duration) -> Result<F::Output, BridgeError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(timeout).map_err(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => BridgeError::Timeout(timeout),
        std::sync::mpsc::RecvTimeoutError::Disconnected => BridgeError::TaskLost,
    })
}

/// Starts `fut` on the IO runtime and returns at once; it runs until it finishes.
///
/// # Errors
/// [`BridgeError::Runtime`] if the runtime cannot start.
pub fn spawn<F>(fut: F) -> Result<(), BridgeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    handle()?.spawn(fut);
    Ok(())
}

/// Sleeps on the IO runtime (for tasks running there).
pub async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// What wakes a background task of one replica: its own commits, its last connection
/// going. A wake while the task runs is kept for its next wait (one permit, not a count).
#[derive(Debug, Default)]
pub struct Wake(tokio::sync::Notify);

impl Wake {
    /// Wakes the task (now, or at its next wait).
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Waits until woken or until `deadline`, whichever comes first; with no deadline,
    /// until woken. A timer exists only while a deadline is waited for.
    pub async fn until(&self, deadline: Option<std::time::Instant>) {
        match deadline {
            None => self.0.notified().await,
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                let _ = tokio::time::timeout_at(at, self.0.notified()).await;
            }
        }
    }
}

/// A share of a budget of blocking work that runs at once, process-wide (see
/// [`Budget::run`]).
#[derive(Debug)]
pub struct Budget(tokio::sync::Semaphore);

impl Budget {
    /// A budget of `n` at once.
    pub const fn new(n: usize) -> Budget {
        Budget(tokio::sync::Semaphore::const_new(n))
    }

    /// Runs the blocking `work` on the runtime's blocking pool once the budget has room
    /// (so at most `n` of the pool's threads do this work, whatever the number of tasks
    /// waiting); `None` if it panicked or the budget was closed.
    pub async fn run<R, F>(&self, work: F) -> Option<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let _permit = self.0.acquire().await.ok()?;
        tokio::task::spawn_blocking(work).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_inside_a_tokio_runtime_without_block_on_panic() {
        let host = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out = host.block_on(async { run(async { 41 + 1 }, Duration::from_secs(5)) });
        assert_eq!(out.unwrap(), 42);
    }

    #[test]
    fn a_slow_future_times_out() {
        let slow = async { tokio::time::sleep(Duration::from_secs(5)).await };
        assert!(matches!(
            run(slow, Duration::from_millis(20)),
            Err(BridgeError::Timeout(_))
        ));
    }
}
