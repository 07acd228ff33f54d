//! The `ltx_*` pragmas of a main database (SQLITE_FCNTL_PRAGMA): time travel, what the
//! replica is at, its statistics, and the pragmas write mode refuses.

use super::main_db::{MainDb, Pragma};
use super::options;
use crate::ext::{OWN_ERROR_PRAGMA, SQL_TRAVEL_PRAGMA};
use crate::replica::{Snapshot, Target};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

impl MainDb {
    /// A pragma write mode cannot honour, refused with its reason.
    fn refused_in_write_mode(&self, name: &str, value: Option<&str>) -> Option<Pragma> {
        self.writing.as_ref()?;
        let v = value?.trim().trim_matches(['\'', '"']).to_ascii_lowercase();
        match (name, v.as_str()) {
            ("journal_mode", "wal") => Some(Pragma::Failed(
                "ltxvfs: journal_mode=WAL is not available in write mode: each COMMIT is stored from the rollback journal's page writes".into(),
            )),
            ("synchronous", "0" | "off") => Some(Pragma::Failed(
                "ltxvfs: synchronous=OFF is not available in write mode: COMMIT stores the transaction when SQLite syncs".into(),
            )),
            _ => None,
        }
    }

    /// `PRAGMA name` or `PRAGMA name = value`, through SQLITE_FCNTL_PRAGMA.
    pub(crate) fn pragma(&mut self, name: &str, value: Option<&str>) -> Pragma {
        let name = name.to_ascii_lowercase();
        let read_only = |v: String| match value {
            None => Pragma::Value(Some(v)),
            Some(_) => Pragma::Failed(format!("PRAGMA {name} is read-only")),
        };
        if let Some(refused) = self.refused_in_write_mode(&name, value) {
            return refused;
        }
        let snap = self.snapshot();
        match (name.as_str(), value) {
            ("ltx_txid" | "litestream_txid", Some(v)) => {
                let Some(txid) = options::parse_txid(v) else {
                    return Pragma::Failed(options::txid_form(v));
                };
                self.travel_or_fail(Target::Txid(txid))
            }
            ("ltx_time" | "litestream_time", Some(v)) => match options::parse_time(v) {
                Ok(target) => self.travel_or_fail(target),
                Err(e) => Pragma::Failed(e),
            },
            // ltx_set_time(t) on a connection that is not trusted (crate::ext::Kind).
            (SQL_TRAVEL_PRAGMA, Some(v)) if self.sql_time_travel => {
                match options::parse_time(v) {
                    Ok(target) => self.travel_or_fail(target),
                    Err(e) => Pragma::Failed(e),
                }
            }
            (SQL_TRAVEL_PRAGMA, _) => Pragma::Failed(
                "ltx_set_time: this connection's SQL may not move the database in time: the host opts in with the URI parameter sql_time_travel=1, or with LTXVFS_TRUSTED_SQL=1, or calls it on the connection the extension was loaded on (PRAGMA ltx_time = t does the same)".into(),
            ),
            ("ltx_wait_txid", Some(v)) => self.wait_txid(v),
            ("ltx_wait_txid", None) => Pragma::Failed(
                "usage: PRAGMA ltx_wait_txid = 'TXID [seconds]' or SELECT ltx_wait_txid(txid [, seconds])".into(),
            ),
            ("ltx_min_txid", Some(v)) => match options::parse_min_txid(v) {
                Ok(floor) => {
                    self.min_txid = floor;
                    Pragma::Value(Some(floor.map_or_else(String::new, |t| t.to_string())))
                }
                Err(e) => Pragma::Failed(format!("ltx_min_txid: {e}")),
            },
            ("ltx_min_txid", None) => Pragma::Value(Some(
                self.min_txid.map_or_else(String::new, |t| t.to_string()),
            )),
            _ => self.pragma_read(&name, snap, read_only),
        }
    }

    /// `ltx_wait_txid(txid [, seconds])` (the pragma's value is `TXID [seconds]`): returns
    /// once the replica holds `txid`, with the TXID reached, so the next read transaction
    /// sees it. The wait is the replica's `timeout` unless shorter.
    fn wait_txid(&mut self, value: &str) -> Pragma {
        let value = value.trim().trim_matches(['\'', '"']);
        let mut parts = value.split([' ', ',']).filter(|p| !p.is_empty());
        let (Some(bookmark), seconds, None) = (parts.next(), parts.next(), parts.next()) else {
            return Pragma::Failed(format!(
                "ltx_wait_txid: {value:?} is not a bookmark and an optional wait in seconds"
            ));
        };
        let Some(want) = options::parse_txid(bookmark) else {
            return Pragma::Failed(format!("ltx_wait_txid: {}", options::txid_form(bookmark)));
        };
        let timeout = self.replica.config().timeout;
        let wait = match seconds.map(str::parse::<f64>) {
            None => timeout,
            Some(Ok(s)) if s.is_finite() && s >= 0.0 => {
                Duration::from_secs_f64(s.min(timeout.as_secs_f64()))
            }
            Some(_) => {
                return Pragma::Failed(format!(
                    "ltx_wait_txid: the wait {:?} is not a number of seconds",
                    seconds.unwrap_or_default()
                ));
            }
        };
        if self.travel.is_some() {
            return Pragma::Failed(
                "ltx_wait_txid: this connection reads the past (ltx_time/txid); go back with ltx_set_time('latest')".into(),
            );
        }
        match self.replica.wait_txid(want, wait) {
            Ok(reached) => Pragma::Value(Some(reached.to_string())),
            Err(e) => {
                let message = format!("ltx_wait_txid: {e}");
                self.last_error = Some(message.clone());
                Pragma::Failed(message)
            }
        }
    }

    fn travel_or_fail(&mut self, target: Target) -> Pragma {
        // The TXID that will be read: also, some drivers (Python's sqlite3) fail on the
        // nameless column SQLite makes of a pragma that returns nothing.
        match self.travel_to(target) {
            Ok(()) => Pragma::Value(Some(
                self.travel
                    .clone()
                    .unwrap_or_else(|| self.replica.current())
                    .txid
                    .to_string(),
            )),
            Err(e) => {
                let message = format!("ltxvfs: {e}");
                self.last_error = Some(message.clone());
                Pragma::Failed(message)
            }
        }
    }

    /// The pragmas that only answer (or refuse a value, through `read_only`).
    fn pragma_read(
        &mut self,
        name: &str,
        snap: Arc<Snapshot>,
        read_only: impl Fn(String) -> Pragma,
    ) -> Pragma {
        match name {
            "ltx_txid" | "litestream_txid" => read_only(snap.txid.to_string()),
            "ltx_time" | "litestream_time" => read_only(format_time(snap.timestamp_ms)),
            // The connection's own error, else its replica's (follower, buffer): never
            // another connection's; the pragma also says why this thread's last open failed.
            OWN_ERROR_PRAGMA => Pragma::Value(self.own_error()),
            "ltx_last_error" => Pragma::Value(Some(
                self.own_error()
                    .or_else(super::last_error)
                    .unwrap_or_default(),
            )),
            // How stale the data is: seconds since its newest transaction was written, and
            // since the follower last heard from the store (null: never, or not following).
            "ltx_lag" => read_only({
                let (since_poll, _) = self.replica.follow_status();
                format!(
                    "{{\"txn_age\":{:.3},\"since_poll\":{},\"following\":{}}}",
                    snap.age_seconds(),
                    since_poll.map_or("null".to_string(), |s| format!("{s:.3}")),
                    self.replica.follows_in_this_process()
                )
            }),
            "ltx_hydration" => read_only(
                self.replica
                    .hydration()
                    .map_or_else(|| "{\"state\":\"off\"}".to_string(), |h| h.report()),
            ),
            // Litestream's meaning: whole seconds since the last successful poll, -1 if none.
            "litestream_lag" => read_only(
                self.replica
                    .follow_status()
                    .0
                    .map_or("-1".to_string(), |s| format!("{}", s as i64)),
            ),
            "ltx_stats" => Pragma::Value(Some(self.stats_json(&snap))),
            "ltx_compaction" => read_only(
                self.writing
                    .as_ref()
                    .and_then(|w| w.compactor.as_ref())
                    .map_or_else(|| "{\"state\":\"off\"}".to_string(), |c| c.report()),
            ),
            "ltx_lease" => read_only(
                self.writing
                    .as_ref()
                    .and_then(|w| w.lease.as_ref())
                    .map_or_else(|| "{\"state\":\"off\"}".to_string(), |l| l.report()),
            ),
            _ => Pragma::NotOurs,
        }
    }

    /// The last error of this connection's file, else of its replica's buffer or follower.
    fn own_error(&self) -> Option<String> {
        self.last_error
            .clone()
            .or_else(|| {
                let w = self.writing.as_ref()?;
                w.buffered.as_ref()?.last_error()
            })
            .or_else(|| self.replica.follow_status().1)
    }

    fn stats_json(&self, snap: &Snapshot) -> String {
        let r = self.replica.stats();
        let s = self.replica.store().stats();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let disk = self.replica.disk_cache().map(|d| &d.stats);
        format!(
            concat!(
                "{{\"txid\":\"{}\",\"page_size\":{},\"pages\":{},\"files\":{},",
                "\"pages_read\":{},\"cache_hits\":{},\"cache_misses\":{},\"cache_bytes\":{},",
                "\"replans\":{},\"follow_advances\":{},\"follow_bridges\":{},\"named_advances\":{},\"local_reads\":{},\"pages_read_ahead\":{},\"pages_prefetched\":{},",
                "\"disk_hits\":{},\"disk_writes\":{},\"disk_rejects\":{},",
                "\"warm\":\"{}\",\"warm_pages\":{},\"warm_total\":{},\"page_map_bytes\":{},\"fresh_waits\":{},",
                "\"list_requests\":{},\"get_requests\":{},\"bytes_fetched\":{},\"pending_commits\":{}}}"
            ),
            snap.txid,
            snap.page_size,
            snap.size_pages(),
            snap.file_count(),
            n(&r.pages_read),
            n(&r.cache_hits),
            n(&r.cache_misses),
            self.replica.cache().bytes(),
            n(&r.replans),
            n(&r.follow_advances),
            n(&r.follow_bridges),
            n(&r.named_advances),
            n(&r.local_reads),
            n(&r.pages_read_ahead),
            n(&r.pages_prefetched),
            disk.map_or(0, |d| n(&d.hits)),
            disk.map_or(0, |d| n(&d.writes)),
            disk.map_or(0, |d| n(&d.rejects)),
            self.replica.warm_state(),
            n(&r.warm_pages),
            n(&r.warm_total),
            snap.page_map_bytes(),
            n(&r.fresh_waits),
            n(&s.list_requests),
            n(&s.get_requests),
            n(&s.bytes_fetched),
            snap.local.as_ref().map_or(0, |l| l.commits),
        )
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-21T05:07:37.123Z`.
fn format_time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
