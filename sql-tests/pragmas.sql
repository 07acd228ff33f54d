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
-- Expected error: moving to a past TXID is not supported yet.
PRAGMA ltx_txid = '0000000000000001';
