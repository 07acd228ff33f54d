//! Per-database settings: URI parameters, then environment variables, then defaults.
//! Sizes take units (`64MiB`), durations too (`500ms`, `30s`).

use crate::error::{Error, Result};
use crate::replica::{CompactionConfig, ReplicaConfig, Target, Warm};
use std::time::Duration;

mod values;
pub(crate) use values::{parse_min_txid, parse_size, parse_time, parse_txid, txid_form};

pub(crate) const DEFAULT_CACHE_SIZE: u64 = 64 << 20;
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_POLL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_CACHE_DIR_SIZE: u64 = 1 << 30;
pub(crate) const DEFAULT_IDLE: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// Upper bounds of host-given settings: a value past them is a typo or an attack (an open
/// that waits for ever on a silent endpoint; a deadline that overflows the clock), refused
/// with the bound named.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_POLL: Duration = Duration::from_secs(24 * 3600);
const MAX_IDLE: Duration = Duration::from_secs(24 * 3600);
const MAX_SYNC: Duration = Duration::from_secs(3600);
/// Compaction intervals, snapshot interval, retentions: ten years (of 365.25 days, as
/// humantime counts them, so that the sentence reads "10years").
const MAX_LADDER: Duration = Duration::from_secs(315_576_000);
const MAX_CACHE_SIZE: u64 = 1 << 40;
const MAX_CACHE_DIR_SIZE: u64 = 1 << 50;
const MAX_COMPACTION_BUFFER: u64 = 4 << 30;

/// The URI parameters of a database opened through `ltx` (with Litestream's aliases), and
/// SQLite's own that may stand beside them. Any other is refused at the open, with a
/// sentence naming these: a misspelt setting must not be ignored silently.
pub(crate) const URI_PARAMETERS: [&str; 25] = [
    "replica",
    "cache_size",
    "cache_dir",
    "cache_dir_size",
    "timeout",
    "poll",
    "idle",
    "warm",
    "txid",
    "time",
    "hydrate",
    "write",
    "write_enabled",
    "sync",
    "sync_interval",
    "buffer",
    "buffer_path",
    "compaction",
    "snapshot_interval",
    "l0_retention",
    "retention",
    "compaction_buffer",
    "lease_ttl",
    "min_txid",
    "sql_time_travel",
];
const SQLITE_URI_PARAMETERS: [&str; 7] = [
    "vfs",
    "mode",
    "cache",
    "immutable",
    "nolock",
    "psow",
    "modeof",
];

/// Refuses a URI parameter that is neither ours nor SQLite's.
///
/// # Errors
/// [`Error::Config`] naming the first unknown parameter and the valid ones.
pub(crate) fn check_uri_parameters<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for key in keys {
        if !URI_PARAMETERS.contains(&key) && !SQLITE_URI_PARAMETERS.contains(&key) {
            return Err(Error::Config(format!(
                "unknown URI parameter {key:?} (ltx takes: {}; SQLite's own: {})",
                URI_PARAMETERS.join(", "),
                SQLITE_URI_PARAMETERS.join(", ")
            )));
        }
    }
    Ok(())
}

/// `sql_time_travel=1`: the host lets any connection's SQL move this database in time with
/// `ltx_set_time` (see `crate::ext::Kind`).
///
/// # Errors
/// [`Error::Config`] for a value that is not a switch.
pub(crate) fn sql_time_travel(uri: impl Fn(&str) -> Option<String>) -> Result<bool> {
    parse_write(uri("sql_time_travel").map(|v| ("URI parameter sql_time_travel".into(), v)))
}

/// A duration no longer than `max`, else an error naming `from` and the bound.
fn at_most(from: &str, d: Duration, max: Duration) -> Result<Duration> {
    if d > max {
        return Err(Error::Config(format!(
            "{from}: {} is longer than the most it may be, {}",
            humantime::format_duration(d),
            humantime::format_duration(max)
        )));
    }
    Ok(d)
}

/// A size no larger than `max`, else an error naming `from` and the bound.
fn size_at_most(from: &str, n: u64, max: u64) -> Result<u64> {
    if n > max {
        return Err(Error::Config(format!(
            "{from}: {n} bytes is more than the most it may be, {} GiB",
            max >> 30
        )));
    }
    Ok(n)
}

/// Resolves a database's settings. `uri` returns a URI parameter of the database's name;
/// `env` an environment variable.
///
/// # Errors
/// [`Error::NoReplicaUrl`] without a replica URL; [`Error::Config`] naming a setting whose
/// value cannot be parsed.
pub(crate) fn resolve(
    uri: impl Fn(&str) -> Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ReplicaConfig> {
    let pick = |param: &str, vars: &[&str]| {
        uri(param)
            .map(|v| (format!("URI parameter {param}"), v))
            .or_else(|| {
                vars.iter()
                    .find_map(|var| env(var).map(|v| (var.to_string(), v)))
            })
            .filter(|(_, v)| !v.is_empty())
    };
    let (_, url) = pick("replica", &["LTXVFS_REPLICA_URL", "LITESTREAM_REPLICA_URL"])
        .ok_or(Error::NoReplicaUrl)?;
    let cache_size = match pick("cache_size", &["LTXVFS_CACHE_SIZE"]) {
        Some((from, v)) => size_at_most(
            &from,
            parse_size(&v).ok_or_else(|| {
                Error::Config(format!("{from}: {v:?} is not a size (e.g. 64MiB)"))
            })?,
            MAX_CACHE_SIZE,
        )?,
        None => DEFAULT_CACHE_SIZE,
    };
    let timeout = match pick("timeout", &["LTXVFS_TIMEOUT"]) {
        Some((from, v)) => at_most(
            &from,
            humantime::parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::Config(format!("{from}: {v:?} is not a duration (e.g. 30s)"))
                })?,
            MAX_TIMEOUT,
        )?,
        None => DEFAULT_TIMEOUT,
    };
    let poll = match pick("poll", &["LTXVFS_POLL"]) {
        Some((from, v)) => at_most(
            &from,
            duration_or_zero(&from, &v, "1s, or 0 for never")?,
            MAX_POLL,
        )?,
        None => DEFAULT_POLL,
    };
    let cache_dir_size = match pick("cache_dir_size", &["LTXVFS_CACHE_DIR_SIZE"]) {
        Some((from, v)) => size_at_most(
            &from,
            parse_size(&v)
                .ok_or_else(|| Error::Config(format!("{from}: {v:?} is not a size (e.g. 1GiB)")))?,
            MAX_CACHE_DIR_SIZE,
        )?,
        None => DEFAULT_CACHE_DIR_SIZE,
    };
    let idle = match pick("idle", &["LTXVFS_IDLE"]) {
        Some((from, v)) => at_most(
            &from,
            duration_or_zero(&from, &v, "10s, or 0 to poll while open")?,
            MAX_IDLE,
        )?,
        None => DEFAULT_IDLE,
    };
    let warm = match pick("warm", &["LTXVFS_WARM"]) {
        Some((from, v)) => Warm::parse(&v)
            .ok_or_else(|| Error::Config(format!("{from}: {v:?} is not one of auto, on, off")))?,
        None => Warm::Auto,
    };
    Ok(ReplicaConfig {
        url,
        cache_size,
        timeout,
        poll,
        idle,
        warm,
        hydrate: pick("hydrate", &["LTXVFS_HYDRATE"]).map(|(_, p)| p.into()),
        cache_dir: pick("cache_dir", &["LTXVFS_CACHE_DIR"]).map(|(_, p)| p.into()),
        cache_dir_size,
        write: parse_write(
            pick("write", &[]).or_else(|| pick("write_enabled", &["LITESTREAM_WRITE_ENABLED"])),
        )?,
        sync: parse_sync(
            pick("sync", &["LTXVFS_SYNC"])
                .or_else(|| pick("sync_interval", &["LITESTREAM_SYNC_INTERVAL"])),
        )?,
        buffer: pick("buffer", &["LTXVFS_BUFFER"])
            .or_else(|| pick("buffer_path", &["LITESTREAM_BUFFER_PATH"]))
            .map(|(_, p)| p.into()),
        compaction: compaction(&pick)?,
        lease_ttl: match pick("lease_ttl", &["LTXVFS_LEASE_TTL"]) {
            Some((_, v)) if matches!(v.trim(), "off" | "0") => None,
            Some((from, v)) => Some(at_most(
                &from,
                humantime::parse_duration(v.trim())
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(100))
                    .ok_or_else(|| {
                        Error::Config(format!("{from}: {v:?} is not off or a duration (e.g. 10s)"))
                    })?,
                MAX_TIMEOUT,
            )?),
            None => Some(DEFAULT_LEASE_TTL),
        },
    })
}

/// The writer's ladder (`compaction=30s,5m,1h`, or `off`) and retention settings.
fn compaction(
    pick: &impl Fn(&str, &[&str]) -> Option<(String, String)>,
) -> Result<CompactionConfig> {
    let mut c = CompactionConfig::default();
    if let Some((from, v)) = pick("compaction", &["LTXVFS_COMPACTION"]) {
        c.levels = match v.trim() {
            "off" | "0" => Vec::new(),
            list => list
                .split(',')
                .map(|d| {
                    humantime::parse_duration(d.trim())
                        .ok()
                        .filter(|d| !d.is_zero())
                })
                .collect::<Option<Vec<_>>>()
                .filter(|levels| (1..=8).contains(&levels.len()))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{from}: {v:?} is not off or 1 to 8 durations (e.g. 30s,5m,1h)"
                    ))
                })?,
        };
        for level in &c.levels {
            at_most(&from, *level, MAX_LADDER)?;
        }
    }
    let duration = |name: &str, var: &str, default: Duration| match pick(name, &[var]) {
        Some((from, v)) => humantime::parse_duration(v.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Error::Config(format!("{from}: {v:?} is not a duration (e.g. 24h)")))
            .and_then(|d| at_most(&from, d, MAX_LADDER)),
        None => Ok(default),
    };
    c.snapshot_interval = duration(
        "snapshot_interval",
        "LTXVFS_SNAPSHOT_INTERVAL",
        c.snapshot_interval,
    )?;
    c.l0_retention = duration("l0_retention", "LTXVFS_L0_RETENTION", c.l0_retention)?;
    c.retention = duration("retention", "LTXVFS_RETENTION", c.retention)?;
    if let Some((from, v)) = pick("compaction_buffer", &["LTXVFS_COMPACTION_BUFFER"]) {
        c.buffer = parse_size(&v)
            .filter(|&n| n >= 1 << 20)
            .ok_or_else(|| Error::Config(format!("{from}: {v:?} is not a size of 1MiB or more")))
            .and_then(|n| size_at_most(&from, n, MAX_COMPACTION_BUFFER))?;
    }
    Ok(c)
}

/// `sync=commit` (the default): each COMMIT is stored before it returns; `sync=1s`: commits
/// wait in the buffer file and ship once per interval.
fn parse_sync(value: Option<(String, String)>) -> Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some((_, v)) if v.trim().eq_ignore_ascii_case("commit") => Ok(None),
        Some((from, v)) => humantime::parse_duration(v.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{from}: {v:?} is not commit or a duration (e.g. 1s)"
                ))
            })
            .and_then(|d| at_most(&from, d, MAX_SYNC))
            .map(Some),
    }
}

/// A duration with units, or a bare `0`; the error names the setting and shows `example`.
fn duration_or_zero(from: &str, v: &str, example: &str) -> Result<Duration> {
    if v.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(v)
        .map_err(|_| Error::Config(format!("{from}: {v:?} is not a duration (e.g. {example})")))
}

/// `write=1` (or Litestream's `write_enabled=true`): whether the database is opened
/// writable.
fn parse_write(value: Option<(String, String)>) -> Result<bool> {
    match value {
        None => Ok(false),
        Some((from, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => Ok(true),
            "0" | "false" | "off" | "no" => Ok(false),
            _ => Err(Error::Config(format!(
                "{from}: {v:?} is not 1 or 0 (true or false)"
            ))),
        },
    }
}

/// Where a connection starts reading: URI `txid=` or `time=` (time travel), else the newest.
///
/// # Errors
/// [`Error::Config`] naming the parameter whose value cannot be parsed, or both given.
pub(crate) fn travel(uri: impl Fn(&str) -> Option<String>) -> Result<Target> {
    match (uri("txid"), uri("time")) {
        (Some(_), Some(_)) => Err(Error::Config(
            "give URI parameter txid or time, not both".into(),
        )),
        (Some(t), None) => parse_txid(&t)
            .map(Target::Txid)
            .ok_or_else(|| Error::Config(format!("URI parameter txid: {}", txid_form(&t)))),
        (None, Some(t)) => {
            parse_time(&t).map_err(|e| Error::Config(format!("URI parameter time: {e}")))
        }
        (None, None) => Ok(Target::Latest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_beats_environment_beats_default() {
        let env = |k: &str| match k {
            "LITESTREAM_REPLICA_URL" => Some("file:///from-litestream-env".to_string()),
            "LTXVFS_CACHE_SIZE" => Some("1MiB".to_string()),
            _ => None,
        };
        let c = resolve(|_| None, env).unwrap();
        assert_eq!(c.url, "file:///from-litestream-env");
        assert_eq!(c.cache_size, 1 << 20);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.poll, DEFAULT_POLL);
        let off = |k: &str| (k == "poll").then(|| "0".to_string());
        assert_eq!(resolve(off, env).unwrap().poll, Duration::ZERO);

        let uri = |k: &str| (k == "replica").then(|| "file:///from-uri".to_string());
        assert_eq!(resolve(uri, env).unwrap().url, "file:///from-uri");
    }

    #[test]
    fn bad_values_name_their_setting() {
        let uri = |k: &str| match k {
            "replica" => Some("file:///r".to_string()),
            "cache_size" => Some("huge".to_string()),
            _ => None,
        };
        let err = resolve(uri, |_| None).unwrap_err().to_string();
        assert!(err.contains("URI parameter cache_size"), "{err}");
        assert!(matches!(
            resolve(|_| None, |_| None),
            Err(Error::NoReplicaUrl)
        ));
    }

    #[test]
    fn the_lease_ttl_is_ten_seconds_a_duration_or_off() {
        let uri = |ttl: Option<&'static str>| {
            move |k: &str| match k {
                "replica" => Some("s3://b/r".to_string()),
                "lease_ttl" => ttl.map(str::to_string),
                _ => None,
            }
        };
        let ttl = |v| resolve(uri(v), |_| None).map(|c| c.lease_ttl);
        assert_eq!(ttl(None).unwrap(), Some(DEFAULT_LEASE_TTL));
        assert_eq!(ttl(Some("2s")).unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(ttl(Some("off")).unwrap(), None);
        for bad in ["soon", "10ms"] {
            let err = ttl(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("URI parameter lease_ttl"), "{err}");
        }
        let c = resolve(uri(None), |k| {
            (k == "LTXVFS_LEASE_TTL").then(|| "off".into())
        });
        assert_eq!(c.unwrap().lease_ttl, None);
    }

    #[test]
    fn sync_is_commit_or_an_interval_with_litestream_names() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = resolve(with(&[("replica", "file:///r")]), |_| None).unwrap();
        assert_eq!((c.sync, c.buffer), (None, None));
        let c = resolve(
            with(&[
                ("replica", "file:///r"),
                ("sync", "500ms"),
                ("buffer", "/b"),
            ]),
            |_| None,
        )
        .unwrap();
        assert_eq!(c.sync, Some(Duration::from_millis(500)));
        assert_eq!(c.buffer.as_deref(), Some(std::path::Path::new("/b")));
        let c = resolve(
            with(&[("replica", "file:///r"), ("sync_interval", "2s")]),
            with(&[("LITESTREAM_BUFFER_PATH", "/lb")]),
        )
        .unwrap();
        assert_eq!(c.sync, Some(Duration::from_secs(2)));
        assert_eq!(c.buffer.as_deref(), Some(std::path::Path::new("/lb")));
        let c = resolve(
            with(&[("replica", "file:///r"), ("sync", "commit")]),
            |_| None,
        );
        assert_eq!(c.unwrap().sync, None);
        for bad in ["0", "soon"] {
            let err = resolve(
                move |k: &str| match k {
                    "replica" => Some("file:///r".to_string()),
                    "sync" => Some(bad.to_string()),
                    _ => None,
                },
                |_| None,
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("URI parameter sync") && err.contains("commit"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_compaction_ladder_takes_litestream_defaults_and_short_lists() {
        let uri = |pairs: Vec<(&'static str, &'static str)>| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = resolve(uri(vec![("replica", "file:///r")]), |_| None).unwrap();
        assert_eq!(c.compaction, CompactionConfig::default());
        assert_eq!(c.compaction.levels.len(), 3);
        let c = resolve(
            uri(vec![
                ("replica", "file:///r"),
                ("compaction", "2s, 6s"),
                ("snapshot_interval", "30s"),
                ("l0_retention", "1s"),
            ]),
            |_| None,
        )
        .unwrap()
        .compaction;
        assert_eq!(c.levels, [Duration::from_secs(2), Duration::from_secs(6)]);
        assert_eq!(c.snapshot_interval, Duration::from_secs(30));
        assert_eq!(c.l0_retention, Duration::from_secs(1));
        let off = resolve(
            uri(vec![("replica", "file:///r"), ("compaction", "off")]),
            |_| None,
        );
        assert!(off.unwrap().compaction.levels.is_empty());
        for bad in [
            ("compaction", "soon"),
            ("compaction", "0s"),
            ("retention", "x"),
        ] {
            let err = resolve(uri(vec![("replica", "file:///r"), bad]), |_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("URI parameter {}", bad.0)), "{err}");
        }
    }

    #[test]
    fn host_settings_have_upper_bounds_that_errors_name() {
        for (key, value, bound) in [
            ("timeout", "100000h", "1h"),
            ("poll", "2days", "1day"),
            ("idle", "1000000000000h", "1day"),
            ("sync", "2h", "1h"),
            ("compaction", "30s,5m,100000days", "10years"),
            ("retention", "100years", "10years"),
            ("cache_size", "2000GiB", "1024 GiB"),
            ("compaction_buffer", "5GiB", "4 GiB"),
        ] {
            let uri = move |k: &str| match k {
                "replica" => Some("file:///r".to_string()),
                k if k == key => Some(value.to_string()),
                _ => None,
            };
            let err = resolve(uri, |_| None).unwrap_err().to_string();
            assert!(
                err.contains(&format!("URI parameter {key}")) && err.contains(bound),
                "{key}={value}: {err}"
            );
        }
    }

    #[test]
    fn unknown_uri_parameters_are_refused_by_name() {
        assert!(
            check_uri_parameters(["replica", "mode", "vfs", "cache", "sql_time_travel"]).is_ok()
        );
        let err = check_uri_parameters(["replica", "cahce_size"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"cahce_size\"")
                && err.contains("cache_size")
                && err.contains("immutable"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_txid_is_quoted_in_its_sentence() {
        let err = travel(|k| (k == "txid").then(|| "zz".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"zz\" is not a TXID") && !err.contains("{"),
            "{err}"
        );
        assert!(sql_time_travel(|_| Some("1".into())).unwrap());
        assert!(!sql_time_travel(|_| None).unwrap());
        assert!(sql_time_travel(|_| Some("perhaps".into())).is_err());
    }
}
