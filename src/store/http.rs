//! One HTTP client per distinct set of client options, shared by every replica in the
//! process: a thousand replicas of one store share one connection pool and one TLS
//! configuration instead of building their own (measured: ~700 KB of memory per idle S3
//! replica before, docs/performance.md).
//!
//! A pooled connection belongs to the tokio runtime that opened it, so the shared client does
//! all its IO on the extension's own runtime (`io`), whichever runtime awaits the request (a
//! host's, or a test's): clients shared across runtimes otherwise fail with "error sending
//! request" once one runtime picks up another's idle connection.

use crate::io;
use object_store::client::{ClientOptions, HttpClient, HttpConnector, SpawnedReqwestConnector};
use std::collections::HashMap;
use std::sync::Mutex;

/// The clients made so far, keyed by their options' full description; cleared in a forked
/// child, whose parent's connections are not its own (DESIGN.md decision 6).
static CLIENTS: Mutex<Option<(u32, HashMap<String, HttpClient>)>> = Mutex::new(None);

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SharedConnector;

impl HttpConnector for SharedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // Options are compared whole (timeouts, certificate checks, plain HTTP, headers):
        // two stores share a client only if it would be the same client.
        let key = format!("{options:?}");
        let pid = std::process::id();
        let mut guard = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
        let (_, clients) = match guard.as_mut() {
            Some(entry) if entry.0 == pid => entry,
            _ => guard.insert((pid, HashMap::new())),
        };
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let runtime = io::handle().map_err(|e| object_store::Error::Generic {
            store: "ltxvfs",
            source: Box::new(e),
        })?;
        let client = SpawnedReqwestConnector::new(runtime).connect(options)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}
