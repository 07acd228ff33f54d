-- Bookmarks (issue #24): ltx_wait_txid(txid [, seconds]) returns once this connection's
-- replica holds txid, answering the TXID reached; a bookmark passed answers at once.
SELECT ltx_wait_txid(ltx_txid()) = ltx_txid();
SELECT ltx_wait_txid('1'), ltx_wait_txid('0x1', 0.5, 'main');
PRAGMA ltx_wait_txid = '1';
-- PRAGMA ltx_min_txid: the floor of the next read transactions ('' = none); reads go on.
PRAGMA ltx_min_txid;
PRAGMA ltx_min_txid = '1';
SELECT count(*) FROM orders;
PRAGMA ltx_min_txid = 0;
-- Expected errors: a bookmark from the future (or of another replica) fails within the
-- wait, naming both TXIDs; malformed bookmarks and waits; no bookmark.
SELECT ltx_wait_txid('00000000ffffffff', 0.2);
SELECT ltx_wait_txid('xyz');
SELECT ltx_wait_txid('12345678901234567');
SELECT ltx_wait_txid('1', 'soon');
SELECT ltx_wait_txid('1', -1);
SELECT ltx_wait_txid(NULL);
PRAGMA ltx_min_txid = 'nope';
-- Expected error: a direct call only, a database's view cannot make a reader wait.
ATTACH ':memory:' AS scratch;
CREATE VIEW scratch.w AS SELECT ltx_wait_txid('1');
SELECT * FROM scratch.w;
-- Expected error: a floor not reached fails the read, and ltx_last_error says why.
.open 'file:app.db?vfs=ltx&replica=file://@REPLICA@&poll=0&warm=off&timeout=1s'
PRAGMA ltx_min_txid = '00000000ffffffff';
SELECT count(*) FROM orders;
PRAGMA ltx_last_error;
