//! The README's sqlx recipe: sqlx takes no URI parameters of its own, so the extension is
//! loaded on a throwaway in-memory connection (which registers the `ltx` VFS for the
//! process), a name is mapped to the replica with `ltx_register`, and the name is opened
//! through `vfs=ltx`.
//!
//!     ltxvfs-client-sqlx LIB REPLICA_URL

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row};

/// `name` through the `ltx` VFS, read-only.
async fn open(name: &str) -> Result<sqlx::SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::new()
        .filename(name)
        .vfs("ltx")
        .read_only(true)
        .connect()
        .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(lib), Some(url)) = (args.get(1), args.get(2)) else {
        return Err("usage: ltxvfs-client-sqlx LIB REPLICA_URL".into());
    };
    let mut loader = SqliteConnectOptions::new()
        .filename(":memory:")
        .extension(lib.clone())
        .connect()
        .await?;

    // A replica that does not exist: SQLite says only "unable to open database file";
    // ltx_last_error() says why.
    sqlx::query("SELECT ltx_register('app.db', 'file:///nonexistent/app.db')")
        .execute(&mut loader)
        .await?;
    match open("app.db").await {
        Ok(_) => return Err("a missing replica opened".into()),
        Err(sqlx::Error::Database(e)) => println!("open: {}", e.message()),
        Err(e) => println!("open: {e}"),
    }
    let why: String = sqlx::query("SELECT ltx_last_error()")
        .fetch_one(&mut loader)
        .await?
        .get(0);
    println!("why: {why}");

    sqlx::query("SELECT ltx_register('app.db', ?)")
        .bind(url)
        .execute(&mut loader)
        .await?;
    let mut db = open("app.db").await?;
    let row = sqlx::query("SELECT ltx_txid(), count(*) FROM orders")
        .fetch_one(&mut db)
        .await?;
    let (txid, n): (String, i64) = (row.get(0), row.get(1));
    println!("txid {txid}, {n} orders");
    Ok(())
}
