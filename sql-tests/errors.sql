-- Expected error: a replica directory that does not exist.
.open 'file:app.db?vfs=ltx&replica=file:///nonexistent/replica'
-- The sentence behind it, from the next working connection (the shell does not print
-- sqlite3_log, where it also went).
.open 'file:app.db?vfs=ltx&replica=file://@REPLICA@'
PRAGMA ltx_last_error;
-- Expected error: no replica URL at all.
.open 'file:app.db?vfs=ltx'
.open 'file:app.db?vfs=ltx&replica=file://@REPLICA@'
PRAGMA ltx_last_error;
-- Expected error: a URL scheme this build cannot reach.
.open 'file:app.db?vfs=ltx&replica=ftp://example/app.db'
.open 'file:app.db?vfs=ltx&replica=file://@REPLICA@'
PRAGMA ltx_last_error;
-- Expected error: a directory with no LTX files in it.
.open 'file:app.db?vfs=ltx&replica=file:///usr'
.open 'file:app.db?vfs=ltx&replica=file://@REPLICA@'
PRAGMA ltx_last_error;
-- The working replica still answers, and other databases are untouched.
SELECT count(*) FROM customers;
.open :memory:
SELECT 'memory database still fine';
