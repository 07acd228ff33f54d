//! One integration test binary, a module per topic (see `it/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "it/encoder.rs"]
mod encoder;
#[path = "it/ltx_fixtures.rs"]
mod ltx_fixtures;
#[path = "it/malformed.rs"]
mod malformed;
#[path = "it/util.rs"]
mod util;
