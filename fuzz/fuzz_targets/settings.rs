//! The settings parsers on hostile text: replica URLs (every scheme), settings strings as
//! `ltx_register` and URIs give them (sizes, durations, TXIDs, times). The input is split at
//! its first newline into URL and settings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (url, settings) = text.split_once('\n').unwrap_or((&text, ""));
    ltxvfs::fuzzing::parse_settings(url, settings);
});
