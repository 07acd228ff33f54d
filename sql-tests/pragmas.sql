-- The replica's position: TXID as 16 hex digits, time of the newest transaction.
PRAGMA ltx_txid;
PRAGMA ltx_time;
-- Litestream VFS names answer the same.
PRAGMA litestream_txid;
PRAGMA litestream_time;
-- Statistics after a query (fresh process, so the numbers are this script's own).
SELECT count(*) FROM orders;
PRAGMA ltx_stats;
-- No error so far.
PRAGMA ltx_last_error;
-- Time travel: back to the first transaction (before sql-tests/setup/changes.sql), and back.
PRAGMA ltx_txid = '1';
PRAGMA ltx_txid;
SELECT count(*) FROM orders;
SELECT count(*) FROM products;
PRAGMA ltx_time = latest;
PRAGMA ltx_txid;
SELECT count(*) FROM orders;
-- Expected errors: not a TXID; a time before anything was replicated.
PRAGMA ltx_txid = 'later';
PRAGMA ltx_time = '2000-01-01T00:00:00Z';
