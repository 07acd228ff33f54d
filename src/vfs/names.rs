//! Database names mapped to replicas, for drivers that cannot pass URI parameters
//! (better-sqlite3 is built with `SQLITE_USE_URI=0` and cannot name a VFS): the program maps
//! a plain file name to a replica URL and settings with `SELECT ltx_register(name, url,
//! settings)`, makes `ltx` the default VFS, and opens the name as usual. The key is the full
//! path SQLite hands to xOpen, so `app.db` registered in one directory is not `app.db`
//! opened from another.

use super::options;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The settings a name may carry: the URI parameters of a `file:` name opened through `ltx`.
const KEYS: [&str; 10] = [
    "replica",
    "cache_size",
    "cache_dir",
    "cache_dir_size",
    "timeout",
    "poll",
    "hydrate",
    "txid",
    "time",
    "sql_time_travel",
];

/// One name's settings, as URI parameters would give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping(Vec<(String, String)>);

impl Mapping {
    /// `replica` plus settings in query-string form (`cache_size=16MiB&poll=0`), checked as
    /// an open would check them, so that a mistake surfaces here rather than at the open.
    pub(crate) fn parse(replica: &str, settings: &str) -> Result<Mapping> {
        let mut params = vec![("replica".to_string(), replica.to_string())];
        for (key, value) in url::form_urlencoded::parse(settings.trim().as_bytes()) {
            if !KEYS.contains(&key.as_ref()) || key == "replica" {
                return Err(Error::Config(format!(
                    "unknown setting {key:?} (settings: {})",
                    KEYS.get(1..).unwrap_or_default().join(", ")
                )));
            }
            params.push((key.into_owned(), value.into_owned()));
        }
        let mapping = Mapping(params);
        crate::store::location::parse(replica)?;
        options::resolve(|k| mapping.get(k), |_| None)?;
        options::travel(|k| mapping.get(k))?;
        options::sql_time_travel(|k| mapping.get(k))?;
        Ok(mapping)
    }

    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

static NAMES: Mutex<Option<HashMap<String, Arc<Mapping>>>> = Mutex::new(None);

/// Maps `full_path` to `mapping`, or removes its mapping (`None`).
pub(crate) fn set(full_path: &str, mapping: Option<Mapping>) {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashMap::new);
    match mapping {
        Some(m) => names.insert(full_path.to_string(), Arc::new(m)),
        None => names.remove(full_path),
    };
}

/// The mapping of the name SQLite opens, if the program registered one.
pub(crate) fn get(full_path: &str) -> Option<Arc<Mapping>> {
    let names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names.as_ref()?.get(full_path).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_when_registered() {
        let m = Mapping::parse("s3://b/app.db", "cache_size=16MiB&poll=0").unwrap();
        assert_eq!(m.get("replica").as_deref(), Some("s3://b/app.db"));
        assert_eq!(m.get("poll").as_deref(), Some("0"));
        let percent = Mapping::parse("file:///r", "time=5%20minutes%20ago").unwrap();
        assert_eq!(percent.get("time").as_deref(), Some("5 minutes ago"));
        assert!(Mapping::parse("file:///r", "").is_ok());

        let unknown = Mapping::parse("file:///r", "cahce_size=1MiB").unwrap_err();
        assert!(unknown.to_string().contains("\"cahce_size\""), "{unknown}");
        let bad = Mapping::parse("file:///r", "timeout=soon").unwrap_err();
        assert!(bad.to_string().contains("timeout"), "{bad}");
        assert!(Mapping::parse("file:///r", "txid=zz").is_err());
        assert!(Mapping::parse("", "").is_err());
    }

    #[test]
    fn names_map_and_unmap() {
        let path = "/tmp/ltxvfs-names-test/app.db";
        assert_eq!(get(path), None);
        set(path, Some(Mapping::parse("file:///r", "").unwrap()));
        assert_eq!(
            get(path).and_then(|m| m.get("replica")).as_deref(),
            Some("file:///r")
        );
        set(path, None);
        assert_eq!(get(path), None);
    }
}
