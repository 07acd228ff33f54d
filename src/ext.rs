//! Registration and SQL functions. The loadable extension's entry point,
//! `sqlite3_ltxvfs_init`, is in `vfs::ffi` (it is FFI), which also turns SQLite's function
//! calls into calls of the safe bodies here.
//!
//! # Threat model (README "Security", issue #22)
//! Trusted: the host — its code, its environment, the URIs and plugin configuration it
//! passes, the API calls it makes (`register()`, loading the extension, the packages'
//! `register`/`default_vfs`/`fork`). Not trusted: SQL text run on the host's connections
//! (Datasette serves SELECT to anonymous visitors). So every SQL function is of one
//! [`Kind`]:
//! - [`Kind::Status`] answers, read-only, about the calling connection's own databases (or
//!   its thread's failed open) and changes nothing: on every connection. `ltx_txid()`,
//!   `ltx_time()`, `ltx_lag()`, `ltx_stats()`, `ltx_hydration()`, `ltx_last_error()` and
//!   Litestream's readers.
//! - [`Kind::Control`] changes state beyond its own statement (the process's default VFS,
//!   name mappings, a connection's place in time) or names a local path or an endpoint:
//!   only on trusted connections — the connection the extension was loaded on (loading is
//!   itself a trusted act), or every connection when the host sets `LTXVFS_TRUSTED_SQL=1`
//!   (or calls `trust_connection` from Rust). `ltx_register`, `ltx_default_vfs`,
//!   `ltx_set_time`/`litestream_set_time`. Exception, by the host's choice per database: a
//!   database opened with `sql_time_travel=1` lets any connection's SQL move it in time.
//!
//! PRAGMA statements are the host's to allow or not (a host that serves strangers allows
//! SELECT only, as Datasette does); the functions exist because SELECT reaches them.
//!
//! - `ltx_register(name, url [, settings])` maps a database name to a replica, for drivers
//!   that open plain file names; `ltx_register(name, NULL)` removes the mapping.
//! - `ltx_default_vfs(on)` makes `ltx` the default VFS (1) or gives the place back (0).
//! - `ltx_last_error()` is the sentence behind the calling connection's last error, or the
//!   calling thread's last failed open (SQLite itself only says "unable to open database
//!   file").
//! - The status functions, callable from SELECT where a PRAGMA cannot go (Datasette, ORMs):
//!   `ltx_txid()`, `ltx_time()`, `ltx_lag()`, `ltx_stats()`, `ltx_hydration()` and
//!   `ltx_set_time(t)`, with Litestream's names as aliases. Each answers for one database of
//!   the calling connection (`'main'` unless a schema name is given) exactly what the pragma
//!   of the same name answers: `vfs::ffi` asks the database's file for that pragma.

use crate::vfs::names::{self, Mapping};
use std::ffi::CStr;

/// Registers the `ltx` VFS with the SQLite linked into this program (e.g. rusqlite's
/// `bundled`), and the SQL functions on every connection opened after. Harmless to call more
/// than once.
///
/// # Errors
/// The SQLite result code if registration failed.
#[cfg(feature = "static")]
pub fn register() -> Result<(), i32> {
    match crate::vfs::ffi::register_linked() {
        0 => Ok(()),
        rc => Err(rc),
    }
}

/// `ltx_register(name, url [, settings])`: `args` are the SQL arguments as text (`None` for
/// NULL); `full_path` turns a name into the full path SQLite will open it by. Returns that
/// path, or the sentence of the SQL error.
pub(crate) fn ltx_register(
    args: &[Option<String>],
    full_path: impl FnOnce(&str) -> Option<String>,
) -> Result<String, String> {
    const USAGE: &str = "usage: ltx_register(name, replica_url [, 'setting=value&...'])";
    let (Some(Some(name)), Some(url)) = (args.first(), args.get(1)) else {
        return Err(USAGE.into());
    };
    let Some(path) = full_path(name) else {
        return Err(format!("ltx_register: {name:?} is not a file name"));
    };
    let mapping = match url {
        None => None,
        Some(url) => {
            let settings = args.get(2).cloned().flatten().unwrap_or_default();
            Some(Mapping::parse(url, &settings).map_err(|e| format!("ltx_register: {e}"))?)
        }
    };
    names::set(&path, mapping);
    Ok(path)
}

/// `ltx_fork(source_url, target_url [, txid_or_time])`: makes at `target_url` a replica
/// whose state is the source's at that TXID (hexadecimal), time (as `ltx_set_time` takes
/// it) or the newest (none, NULL or 'latest'). Returns the TXID as 16 hex digits, or the
/// sentence of the SQL error.
pub(crate) fn ltx_fork(args: &[Option<String>]) -> Result<String, String> {
    const USAGE: &str = "usage: ltx_fork(source_url, target_url [, txid_or_time])";
    let (Some(Some(source)), Some(Some(target))) = (args.first(), args.get(1)) else {
        return Err(USAGE.into());
    };
    let at = match args.get(2).cloned().flatten() {
        None => crate::replica::Target::Latest,
        Some(at) => match crate::vfs::options::parse_txid(&at) {
            Some(txid) => crate::replica::Target::Txid(txid),
            None => crate::vfs::options::parse_time(&at)
                .map_err(|e| format!("ltx_fork: {e}, or a TXID in hexadecimal"))?,
        },
    };
    let timeout = crate::vfs::options::DEFAULT_TIMEOUT;
    crate::writer::fork(source, target, at, timeout)
        .map(|txid| txid.to_string())
        .map_err(|e| format!("ltx_fork: {e}"))
}

/// The argument of `ltx_default_vfs`: 1/0, true/false, on/off, yes/no; a number is on when
/// not zero (drivers bind JavaScript numbers as reals: `1.0`).
pub(crate) fn switch(arg: Option<&str>) -> Option<bool> {
    let arg = arg?.trim().to_ascii_lowercase();
    match arg.as_str() {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        number => number
            .parse::<f64>()
            .ok()
            .filter(|n| !n.is_nan())
            .map(|n| n != 0.0),
    }
}

/// Which connections a SQL function exists on (see the module's threat model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Read-only answers about the calling connection's own databases: every connection.
    Status,
    /// Changes state beyond its own statement, or names a local path or an endpoint: only
    /// trusted connections.
    Control,
}

/// The pragma behind `ltx_last_error()`: a database file's own last error (its
/// connection's, its replica's follower or buffer), without the thread's failed open that
/// `PRAGMA ltx_last_error` falls back to.
pub(crate) const OWN_ERROR_PRAGMA: &str = "ltx_own_error";

/// The pragma `ltx_set_time(t)` asks on a connection that is not trusted: the database's
/// file travels only if its URI said `sql_time_travel=1`.
pub(crate) const SQL_TRAVEL_PRAGMA: &str = "ltx_sql_time";

/// The longest `ltx_wait_txid` on a connection that is not trusted. A function call cannot
/// be interrupted (`sqlite3_interrupt` and progress handlers act between VM steps), so a
/// stranger's wait holds a host thread as long as it lasts: bounded here near the time
/// limits hosts give a query (Datasette: 1 s), well past a bookmark's usual wait (two round
/// trips).
pub(crate) const UNTRUSTED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The wait `second` asks for, as the pragma takes it: on a connection that is not trusted,
/// at most [`UNTRUSTED_WAIT`] (one that is not a number is passed on, for the pragma's
/// sentence).
fn capped_wait(second: &str, trusted: bool) -> String {
    match second.trim().parse::<f64>() {
        Ok(s) if !trusted && (s.is_nan() || s > UNTRUSTED_WAIT.as_secs_f64()) => {
            UNTRUSTED_WAIT.as_secs_f64().to_string()
        }
        _ => second.to_owned(),
    }
}

/// A status function: `name([schema])`, or `name(value [, schema])` when it sets.
#[derive(Debug)]
pub(crate) struct StatusFunction {
    pub(crate) name: &'static CStr,
    /// The pragma whose answer it returns (`PRAGMA pragma` or `PRAGMA pragma = value`).
    pragma: &'static str,
    /// Takes a value first: `ltx_set_time(t)` is `PRAGMA ltx_time = t`.
    pub(crate) sets: bool,
    /// Answers an integer (Litestream's `litestream_lag`: whole seconds, `-1` if none), so
    /// that `litestream_lag() > 5` compares numbers; the others answer text, as the pragma.
    integer: bool,
    /// Takes an optional second value after the first (`ltx_wait_txid(txid [, seconds [,
    /// schema]])`), passed to the pragma after a space: `PRAGMA ltx_wait_txid = 'txid s'`.
    pub(crate) second: bool,
    /// Who may call it: the ones that move a connection in time are control functions.
    kind: Kind,
}

/// A function that answers (`sets: false`) or moves its connection in time (`sets: true`,
/// a control function).
const fn status(name: &'static CStr, pragma: &'static str, sets: bool) -> StatusFunction {
    StatusFunction {
        name,
        pragma,
        sets,
        integer: false,
        second: false,
        kind: if sets { Kind::Control } else { Kind::Status },
    }
}

/// The status functions, ours and Litestream's names for them.
pub(crate) static STATUS_FUNCTIONS: [StatusFunction; 11] = [
    status(c"ltx_txid", "ltx_txid", false),
    status(c"ltx_time", "ltx_time", false),
    status(c"ltx_lag", "ltx_lag", false),
    status(c"ltx_stats", "ltx_stats", false),
    status(c"ltx_hydration", "ltx_hydration", false),
    status(c"ltx_set_time", "ltx_time", true),
    status(c"litestream_txid", "litestream_txid", false),
    status(c"litestream_time", "litestream_time", false),
    StatusFunction {
        integer: true,
        ..status(c"litestream_lag", "litestream_lag", false)
    },
    status(c"litestream_set_time", "litestream_time", true),
    // kind: status. Read-your-writes across processes: returns once the calling
    // connection's replica holds the bookmark. It changes nothing beyond the statement (the
    // replica only learns sooner what it would learn at its next poll), names no path or
    // endpoint, and is bounded by the replica's `timeout`.
    StatusFunction {
        second: true,
        kind: Kind::Status,
        ..status(c"ltx_wait_txid", "ltx_wait_txid", true)
    },
];

/// What a database's file said to a pragma a status function asked it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    /// An `ltx` file answered (or, for a setting, reached) this.
    Answered(Option<String>),
    /// An `ltx` file refused, with this sentence.
    Failed(String),
    /// The file is not one of ours (a local file, a memory database).
    NotLtx,
    /// The connection has no database of that schema name.
    NoSuchSchema,
}

/// A SQL function's result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SqlValue {
    Text(String),
    Integer(i64),
    Null,
}

impl From<Option<String>> for SqlValue {
    fn from(text: Option<String>) -> SqlValue {
        text.map_or(SqlValue::Null, SqlValue::Text)
    }
}

impl StatusFunction {
    /// Runs the function on its SQL arguments (as text, `None` for NULL); `ask(schema,
    /// pragma, value)` puts the pragma to that database's file; `trusted`: the calling
    /// connection is (a function that sets then asks its own pragma, else the one a
    /// database answers only if its URI allowed it). Returns the result, or the sentence
    /// of the SQL error.
    pub(crate) fn call(
        &self,
        args: &[Option<String>],
        trusted: bool,
        ask: impl FnOnce(&str, &str, Option<&str>) -> Asked,
    ) -> Result<SqlValue, String> {
        let name = self.name.to_string_lossy();
        let joined;
        let (value, schema) = if self.second {
            match args {
                [Some(value)] if trusted => (Some(value.as_str()), None),
                [Some(value)] => {
                    joined = format!("{value} {}", UNTRUSTED_WAIT.as_secs_f64());
                    (Some(joined.as_str()), None)
                }
                [Some(value), Some(second), rest @ ..] => {
                    joined = format!("{value} {}", capped_wait(second, trusted));
                    (Some(joined.as_str()), rest.first())
                }
                _ => {
                    return Err(format!(
                        "usage: {name}(txid [, seconds [, schema]]), txid as ltx_txid() prints it"
                    ));
                }
            }
        } else if self.sets {
            match args {
                [Some(value), rest @ ..] => (Some(value.as_str()), rest.first()),
                _ => {
                    return Err(format!(
                        "usage: {name}(time [, schema]), time as RFC 3339, '5 minutes ago' or 'latest'"
                    ));
                }
            }
        } else {
            (None, args.first())
        };
        let schema = match schema {
            None => "main",
            Some(Some(schema)) => schema.as_str(),
            Some(None) => return Err(format!("{name}: the schema name is NULL")),
        };
        let pragma = match (self.kind == Kind::Control, trusted) {
            (true, false) => SQL_TRAVEL_PRAGMA,
            _ => self.pragma,
        };
        match ask(schema, pragma, value) {
            Asked::Answered(None) => Ok(SqlValue::Null),
            Asked::Answered(Some(text)) if self.integer => text
                .parse()
                .map(SqlValue::Integer)
                .map_err(|_| format!("{name}: not an integer: {text:?}")),
            Asked::Answered(Some(text)) => Ok(SqlValue::Text(text)),
            Asked::Failed(sentence) => Err(sentence),
            Asked::NotLtx => Err(format!(
                "{name}: database {schema:?} of this connection is not read through the ltx VFS \
                 (open it as file:NAME?vfs=ltx&replica=URL)"
            )),
            Asked::NoSuchSchema => Err(format!(
                "{name}: this connection has no database {schema:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_as_people_write_them() {
        for on in ["1", "1.0", " TRUE ", "on", "yes", "2"] {
            assert_eq!(switch(Some(on)), Some(true), "{on}");
        }
        for off in ["0", "0.0", "false", "Off", "no"] {
            assert_eq!(switch(Some(off)), Some(false), "{off}");
        }
        for neither in ["maybe", "", "NaN"] {
            assert_eq!(switch(Some(neither)), None, "{neither}");
        }
        assert_eq!(switch(None), None);
    }

    fn text(args: &[Option<&str>]) -> Vec<Option<String>> {
        args.iter().map(|a| a.map(str::to_string)).collect()
    }

    #[test]
    fn register_maps_the_full_path_and_null_unmaps() {
        let full = |n: &str| Some(format!("/work/dir/{n}"));
        let path = ltx_register(&text(&[Some("r.db"), Some("file:///r")]), full).unwrap();
        assert_eq!(path, "/work/dir/r.db");
        assert!(names::get(&path).is_some());
        ltx_register(&text(&[Some("r.db"), None]), full).unwrap();
        assert!(names::get(&path).is_none());
    }

    #[test]
    fn register_refuses_what_an_open_would() {
        let full = |n: &str| Some(format!("/work/dir/{n}"));
        let err = |args: &[Option<&str>]| ltx_register(&text(args), full).unwrap_err();
        assert!(err(&[Some("x.db")]).starts_with("usage:"));
        assert!(err(&[None, Some("file:///r")]).starts_with("usage:"));
        let bad = err(&[Some("x.db"), Some("file:///r"), Some("poll=often")]);
        assert!(bad.contains("poll"), "{bad}");
        assert!(names::get("/work/dir/x.db").is_none());
        let nameless = ltx_register(&text(&[Some(""), Some("file:///r")]), |_| None);
        assert!(nameless.unwrap_err().contains("not a file name"));
    }

    fn function(name: &str) -> &'static StatusFunction {
        STATUS_FUNCTIONS
            .iter()
            .find(|f| f.name.to_str() == Ok(name))
            .unwrap()
    }

    #[test]
    fn status_functions_ask_their_pragma_of_main_or_the_schema_given() {
        let asked = |f: &str, args: &[Option<&str>]| {
            let mut seen = None;
            let out = function(f).call(&text(args), true, |schema, pragma, value| {
                seen = Some((
                    schema.to_string(),
                    pragma.to_string(),
                    value.map(str::to_string),
                ));
                Asked::Answered(Some("7".into()))
            });
            (out, seen.unwrap())
        };
        let (out, seen) = asked("ltx_txid", &[]);
        assert_eq!(out, Ok(SqlValue::Text("7".into())));
        assert_eq!(seen, ("main".into(), "ltx_txid".into(), None));
        let (_, seen) = asked("litestream_time", &[Some("aux")]);
        assert_eq!(seen, ("aux".into(), "litestream_time".into(), None));
        let (_, seen) = asked("ltx_set_time", &[Some("latest"), Some("aux")]);
        assert_eq!(
            seen,
            ("aux".into(), "ltx_time".into(), Some("latest".into()))
        );
        // On a connection that is not trusted, a function that sets asks the pragma its
        // database answers only if the host's URI allowed it.
        let mut seen = None;
        let _ = function("ltx_set_time").call(&text(&[Some("latest")]), false, |_, p, _| {
            seen = Some(p.to_string());
            Asked::Answered(None)
        });
        assert_eq!(seen.as_deref(), Some(SQL_TRAVEL_PRAGMA));
        assert_eq!(function("ltx_set_time").kind, Kind::Control);
        assert_eq!(function("ltx_txid").kind, Kind::Status);
        assert_eq!(function("ltx_wait_txid").kind, Kind::Status);
        let (out, seen) = asked("litestream_lag", &[]);
        assert_eq!(out, Ok(SqlValue::Integer(7)));
        assert_eq!(seen.1, "litestream_lag");
    }

    #[test]
    fn wait_txid_passes_its_bookmark_and_wait_as_one_pragma_value() {
        let asked = |args: &[Option<&str>]| {
            let mut seen = None;
            let out = function("ltx_wait_txid").call(&text(args), false, |schema, _, value| {
                seen = Some((schema.to_string(), value.map(str::to_string)));
                Asked::Answered(Some("5".into()))
            });
            (out, seen)
        };
        let (_, seen) = asked(&[Some("4b")]);
        assert_eq!(seen, Some(("main".into(), Some("4b 2".into()))));
        let (_, seen) = asked(&[Some("4b"), Some("1.5"), Some("aux")]);
        assert_eq!(seen, Some(("aux".into(), Some("4b 1.5".into()))));
        // A stranger's wait is capped: a function call holds its thread uninterruptibly.
        for long in ["30", "1e9", "inf", "NaN"] {
            let (_, seen) = asked(&[Some("4b"), Some(long)]);
            assert_eq!(seen, Some(("main".into(), Some("4b 2".into()))), "{long}");
        }
        let (_, seen) = asked(&[Some("4b"), Some("soon")]);
        assert_eq!(seen, Some(("main".into(), Some("4b soon".into()))));
        let trusted = |args: &[Option<&str>]| {
            let mut seen = None;
            let _ = function("ltx_wait_txid").call(&text(args), true, |_, _, value| {
                seen = value.map(str::to_string);
                Asked::Answered(None)
            });
            seen
        };
        assert_eq!(trusted(&[Some("4b")]), Some("4b".into()));
        assert_eq!(trusted(&[Some("4b"), Some("30")]), Some("4b 30".into()));
        for bad in [&[None][..], &[Some("4b"), None], &[]] {
            let (out, seen) = asked(bad);
            assert!(out.unwrap_err().starts_with("usage: ltx_wait_txid"));
            assert_eq!(seen, None);
        }
    }

    #[test]
    fn status_functions_say_why_they_cannot_answer() {
        let err = |f: &str, args: &[Option<&str>], asked: Asked| {
            function(f)
                .call(&text(args), true, |_, _, _| asked)
                .unwrap_err()
        };
        let e = err("ltx_txid", &[], Asked::NotLtx);
        assert!(
            e.contains("\"main\"") && e.contains("not read through the ltx VFS"),
            "{e}"
        );
        let e = err("ltx_lag", &[Some("nope")], Asked::NoSuchSchema);
        assert!(e.contains("no database \"nope\""), "{e}");
        assert_eq!(
            err("ltx_set_time", &[Some("x")], Asked::Failed("why".into())),
            "why"
        );
        assert!(err("ltx_set_time", &[None], Asked::NotLtx).starts_with("usage: ltx_set_time"));
        assert!(err("ltx_txid", &[None], Asked::NotLtx).contains("NULL"));
        let e = err("litestream_lag", &[], Asked::Answered(Some("soon".into())));
        assert!(e.contains("not an integer"), "{e}");
        let null = function("ltx_stats").call(&[], true, |_, _, _| Asked::Answered(None));
        assert_eq!(null, Ok(SqlValue::Null));
    }
}
