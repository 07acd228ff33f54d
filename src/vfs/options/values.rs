//! The forms values are written in, wherever they come from (URI parameters, pragmas,
//! SQL functions): TXIDs, times, sizes.

use crate::ltx::Txid;
use crate::replica::Target;
use std::time::{Duration, SystemTime};

/// Why `text` is not a TXID, with the forms that are.
pub(crate) fn txid_form(text: &str) -> String {
    format!(
        "{text:?} is not a TXID (hexadecimal as PRAGMA ltx_txid prints it, e.g. 000000000000004b or 4b)"
    )
}

/// A floor for read transactions (URI `min_txid=`, `PRAGMA ltx_min_txid`): a TXID, or
/// nothing (empty, `0`, `none`) to clear it.
///
/// # Errors
/// The sentence for a value that is neither.
pub(crate) fn parse_min_txid(v: &str) -> std::result::Result<Option<Txid>, String> {
    let v = v.trim().trim_matches(['\'', '"']);
    if v.is_empty() || v == "0" || v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_txid(v).map(Some).ok_or_else(|| txid_form(v))
}

/// A TXID as Litestream writes it: hexadecimal, leading zeros optional; not 0.
pub(crate) fn parse_txid(s: &str) -> Option<Txid> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16)
        .ok()
        .filter(|&n| n != 0)
        .map(Txid)
}

/// A point in time: `latest` (or `now`), RFC 3339 (`2026-11-20T10:00:00Z`, fractions and
/// offsets allowed), or a relative `<duration> ago` (`5 minutes ago`, `1h30m ago`).
///
/// # Errors
/// A sentence saying which forms are accepted.
pub(crate) fn parse_time(s: &str) -> std::result::Result<Target, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if lower == "latest" || lower == "now" {
        return Ok(Target::Latest);
    }
    if let Some(ago) = lower.strip_suffix(" ago") {
        let d = humantime::parse_duration(ago.trim())
            .map_err(|e| format!("{t:?}: {e} (e.g. '5 minutes ago')"))?;
        return SystemTime::now()
            .checked_sub(d)
            .map(Target::Time)
            .ok_or_else(|| format!("{t:?} is before the epoch"));
    }
    humantime::parse_rfc3339_weak(t)
        .or_else(|_| humantime::parse_rfc3339(t))
        .or_else(|_| chrono_like_offset(t))
        .map(Target::Time)
        .map_err(|_| {
            format!("{t:?} is not a time: use RFC 3339 (2026-11-20T10:00:00Z), '<duration> ago', or latest")
        })
}

/// RFC 3339 with a numeric offset (`+02:00`), which humantime does not take: moved to UTC.
fn chrono_like_offset(t: &str) -> std::result::Result<SystemTime, ()> {
    let (body, sign, off) = match t.rfind(['+', '-']) {
        Some(i) if i > 10 => (&t[..i], &t[i..i + 1], &t[i + 1..]),
        _ => return Err(()),
    };
    let (h, m) = off.split_once(':').ok_or(())?;
    let secs = (h.parse::<u64>().map_err(|_| ())? * 60 + m.parse::<u64>().map_err(|_| ())?) * 60;
    let local = humantime::parse_rfc3339_weak(body).map_err(|_| ())?;
    let d = Duration::from_secs(secs);
    if sign == "+" {
        local.checked_sub(d)
    } else {
        local.checked_add(d)
    }
    .ok_or(())
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
    fn txids_and_times_parse_in_their_forms() {
        assert_eq!(parse_txid("000000000000004b"), Some(Txid(0x4b)));
        assert_eq!(parse_txid("4B"), Some(Txid(0x4b)));
        assert_eq!(parse_txid("0"), None);
        assert_eq!(parse_txid("12345678901234567"), None);
        assert_eq!(parse_txid("xyz"), None);
        assert_eq!(parse_time("latest"), Ok(Target::Latest));
        let t = |s: &str| match parse_time(s) {
            Ok(Target::Time(t)) => t,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(t("2026-11-20T10:00:00Z"), t("2026-11-20T12:00:00+02:00"));
        assert!(t("2026-11-20T10:00:00.250Z") > t("2026-11-20T10:00:00Z"));
        let ago = SystemTime::now()
            .duration_since(t("5 minutes ago"))
            .unwrap();
        assert!(
            ago >= Duration::from_secs(299) && ago < Duration::from_secs(310),
            "{ago:?}"
        );
        assert!(parse_time("yesterday-ish").is_err());
    }
}
