/* The C recipe of the README, run by tests/clients/run.sh: libsqlite3 (Debian's
 * libsqlite3-dev) loads the extension, then opens a replica by URI.
 *
 *   replica LIB URL    prints the replica's TXID and its orders, then why a missing replica
 *                      cannot open (the sentence behind SQLite's "unable to open")
 */
#include <sqlite3.h>
#include <stdio.h>

/* The sentence behind this thread's last failed open: SQLite itself only says "unable to open
 * database file". ltx_last_error() exists on every connection opened after the load. */
static void print_last_error(void) {
    sqlite3 *scratch;
    sqlite3_stmt *stmt;
    sqlite3_open(":memory:", &scratch);
    if (sqlite3_prepare_v2(scratch, "SELECT ltx_last_error()", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        printf("why: %s\n", (const char *)sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(scratch);
}

static int open_replica(const char *url, sqlite3 **db) {
    char uri[4096];
    /* The URL is percent-encoded by the caller if it has ?, & or # of its own. */
    snprintf(uri, sizeof uri, "file:app.db?vfs=ltx&replica=%s", url);
    return sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LIB REPLICA_URL\n", argv[0]);
        return 2;
    }
    /* 1. Load the extension on a throwaway connection: the ltx VFS must exist before an
     *    open names it, and stays registered for the process. */
    sqlite3 *boot;
    char *err = NULL;
    sqlite3_open(":memory:", &boot);
    sqlite3_enable_load_extension(boot, 1);
    if (sqlite3_load_extension(boot, argv[1], NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "load: %s\n", err);
        return 1;
    }
    sqlite3_close(boot);

    /* 2. Open the replica by URI, read-only. */
    sqlite3 *db;
    sqlite3_stmt *stmt;
    if (open_replica(argv[2], &db) != SQLITE_OK) {
        fprintf(stderr, "open: %s\n", sqlite3_errmsg(db));
        print_last_error();
        return 1;
    }
    sqlite3_prepare_v2(db, "SELECT ltx_txid(), count(*) FROM orders", -1, &stmt, NULL);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        fprintf(stderr, "query: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    printf("txid %s, %d orders\n", (const char *)sqlite3_column_text(stmt, 0), sqlite3_column_int(stmt, 1));
    sqlite3_finalize(stmt);
    sqlite3_close(db);

    /* 3. A replica that is not there: the open fails, and the extension says why. */
    if (open_replica("file:///nonexistent/app.db", &db) == SQLITE_OK) {
        fprintf(stderr, "a missing replica opened\n");
        return 1;
    }
    printf("open: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    print_last_error();
    return 0;
}
