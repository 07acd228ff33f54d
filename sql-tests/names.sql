-- Drivers that open plain file names: map a name to the replica, make ltx the default VFS,
-- open the name. (The full path of a name is printed; @WORK@ is the script's directory.)
-- These functions change the process, so they exist only where the host trusts the SQL
-- (README "Security"): on the connection the extension was loaded on. Expected errors: the
-- connection .open made is not that one; loading the extension on it makes it one.
SELECT ltx_register('mapped.db', 'file://@REPLICA@');
SELECT ltx_default_vfs(1);
.load @LIB@
SELECT ltx_register('mapped.db', 'file://@REPLICA@', 'poll=0&cache_size=8MiB');
SELECT ltx_default_vfs(1);
.open mapped.db
SELECT count(*) FROM orders;
PRAGMA ltx_txid;
-- Settings travel with the name: this one opens at the first transaction.
.load @LIB@
SELECT ltx_register('past.db', 'file://@REPLICA@', 'txid=1&poll=0');
.open past.db
SELECT count(*) FROM orders;
-- Expected error: a name nobody mapped is an error, never an empty database.
.open unmapped.db
.open mapped.db
PRAGMA ltx_last_error;
-- Expected errors: a setting that does not exist; a bad value; too few arguments.
.load @LIB@
SELECT ltx_register('x.db', 'file://@REPLICA@', 'cahce_size=1MiB');
SELECT ltx_register('x.db', 'file://@REPLICA@', 'poll=often');
SELECT ltx_register('x.db');
SELECT ltx_default_vfs('maybe');
-- Unmapping, and the default VFS given back: plain names are local files again.
SELECT ltx_register('mapped.db', NULL);
SELECT ltx_default_vfs(0);
.open local.db
.load @LIB@
CREATE TABLE t(x);
INSERT INTO t VALUES ('a local database');
SELECT x FROM t;
-- The functions are direct-only: a view cannot call them.
CREATE VIEW v AS SELECT ltx_default_vfs(1);
SELECT * FROM v;
-- Why the last open failed, from any connection, as a function too.
.open unmapped.db
.open :memory:
SELECT ltx_last_error();
