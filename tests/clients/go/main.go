// The Go recipe of the README, run by tests/clients/run.sh: mattn/go-sqlite3 (Debian's
// golang-github-mattn-go-sqlite3-dev, built offline in GOPATH mode) opens a replica by URI.
//
//	replica LIB URL   prints the replica's TXID and its orders, then why a missing
//	                  replica cannot open
package main

import (
	"database/sql"
	"fmt"
	"os"

	"github.com/mattn/go-sqlite3"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: replica LIB REPLICA_URL")
		os.Exit(2)
	}
	lib, url := os.Args[1], os.Args[2]

	// A driver that loads the extension into each connection it opens. It loads after the
	// open, so the first open must not name the ltx VFS: open a throwaway :memory:
	// database first, which registers the VFS for the process.
	sql.Register("sqlite3_ltx", &sqlite3.SQLiteDriver{Extensions: []string{lib}})
	boot, err := sql.Open("sqlite3_ltx", ":memory:")
	check(err)
	check(boot.Ping())
	defer boot.Close()

	// Then replicas open by URI (go-sqlite3 passes "file:" names as URIs).
	db, err := sql.Open("sqlite3_ltx", "file:app.db?vfs=ltx&mode=ro&replica="+url)
	check(err)
	var txid string
	var orders int
	check(db.QueryRow("SELECT ltx_txid(), count(*) FROM orders").Scan(&txid, &orders))
	fmt.Printf("txid %s, %d orders\n", txid, orders)
	db.Close()

	// A replica that is not there: SQLite says only "unable to open database file";
	// ltx_last_error() says why.
	missing, err := sql.Open("sqlite3_ltx", "file:app.db?vfs=ltx&mode=ro&replica=file:///nonexistent/app.db")
	check(err)
	err = missing.Ping()
	if err == nil {
		fmt.Fprintln(os.Stderr, "a missing replica opened")
		os.Exit(1)
	}
	fmt.Printf("open: %v\n", err)
	var why string
	check(boot.QueryRow("SELECT ltx_last_error()").Scan(&why))
	fmt.Printf("why: %s\n", why)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
