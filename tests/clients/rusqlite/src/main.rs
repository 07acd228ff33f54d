//! The README's Rust recipe: rusqlite with its bundled SQLite, `ltxvfs::register()`, then a
//! replica opened by URI.
//!
//! `ltxvfs-client-rusqlite URL` prints the replica's TXID and its orders, then why a missing
//! replica cannot open.

use rusqlite::{Connection, OpenFlags};

fn open_replica(url: &str) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        format!("file:app.db?vfs=ltx&replica={url}"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: ltxvfs-client-rusqlite REPLICA_URL")?;
    // The ltx VFS, and the ltx_* functions on every connection opened after.
    ltxvfs::register().map_err(|rc| format!("ltxvfs::register: SQLite error {rc}"))?;

    let db = open_replica(&url)?;
    let (txid, orders): (String, i64) =
        db.query_row("SELECT ltx_txid(), count(*) FROM orders", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    println!("txid {txid}, {orders} orders");

    // A replica that is not there: the open fails, and ltx_last_error() says why.
    let Err(e) = open_replica("file:///nonexistent/app.db") else {
        return Err("a missing replica opened".into());
    };
    println!("open: {e}");
    let why: String =
        Connection::open_in_memory()?.query_row("SELECT ltx_last_error()", [], |r| r.get(0))?;
    println!("why: {why}");
    Ok(())
}
