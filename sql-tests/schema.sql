-- The schema and header facts of the replica, read through the VFS.
.tables
.schema orders
PRAGMA page_size;
PRAGMA page_count;
-- The primary is in WAL mode; the VFS presents a rollback-journal database.
PRAGMA journal_mode;
PRAGMA integrity_check;
PRAGMA foreign_key_check;
