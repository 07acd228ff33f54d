//! Per-database settings: URI parameters, then environment variables, then defaults.
//! Sizes take units (`64MiB`), durations too (`500ms`, `30s`).

use crate::error::{Error, Result};
use crate::replica::ReplicaConfig;
use std::time::Duration;

pub(crate) const DEFAULT_CACHE_SIZE: u64 = 64 << 20;
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_POLL: Duration = Duration::from_secs(1);

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
        Some((from, v)) => parse_size(&v)
            .ok_or_else(|| Error::Config(format!("{from}: {v:?} is not a size (e.g. 64MiB)")))?,
        None => DEFAULT_CACHE_SIZE,
    };
    let timeout = match pick("timeout", &["LTXVFS_TIMEOUT"]) {
        Some((from, v)) => humantime::parse_duration(&v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Error::Config(format!("{from}: {v:?} is not a duration (e.g. 30s)")))?,
        None => DEFAULT_TIMEOUT,
    };
    let poll = match pick("poll", &["LTXVFS_POLL"]) {
        Some((_, v)) if v.trim() == "0" => Duration::ZERO,
        Some((from, v)) => humantime::parse_duration(&v).map_err(|_| {
            Error::Config(format!(
                "{from}: {v:?} is not a duration (e.g. 1s, or 0 for never)"
            ))
        })?,
        None => DEFAULT_POLL,
    };
    Ok(ReplicaConfig {
        url,
        cache_size,
        timeout,
        poll,
    })
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB`, `10MB` (binary units for KiB/MiB/GiB, decimal for
/// KB/MB/GB, `K`/`M`/`G` alone binary).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

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
}
