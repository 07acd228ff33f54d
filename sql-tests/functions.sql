-- Status as SQL functions, for clients that only run SELECT (Datasette, ORMs): each answers
-- what the pragma of the same name answers, for 'main' or the schema given.
SELECT ltx_txid(), ltx_time();
PRAGMA ltx_txid;
-- Litestream's names answer the same; litestream_lag is an integer: whole seconds since
-- the last poll (here the open's own: poll=0).
SELECT litestream_txid(), litestream_time(), typeof(litestream_lag()), litestream_lag() >= 0;
SELECT json_extract(ltx_stats(), '$.txid'), json_extract(ltx_stats(), '$.page_size');
SELECT json_type(ltx_lag(), '$.txn_age'), ltx_hydration();
-- Functions that only answer may sit in a database's view.
ATTACH ':memory:' AS scratch;
CREATE VIEW scratch.status AS SELECT ltx_txid() AS txid;
SELECT txid FROM scratch.status;
-- Several replicas attached: a schema name says which.
ATTACH 'file:past.db?vfs=ltx&replica=file://@REPLICA@&poll=0&txid=1' AS past;
SELECT ltx_txid('past'), ltx_time('past'), ltx_txid('main');
SELECT count(*) FROM past.orders, (SELECT 1);
-- Travel, as PRAGMA ltx_time = T: the answer is the TXID reached, read from the next
-- transaction on. It moves the connection for its later statements, so SQL may call it only
-- where the host trusts it (README "Security"). Expected error: not on this connection, which
-- .open made; loading the extension on it is the host's trust.
SELECT ltx_set_time('latest');
.load @LIB@
SELECT litestream_set_time('latest', 'past');
SELECT ltx_txid('past'), count(*) FROM past.orders;
SELECT ltx_set_time('latest');
-- Expected errors: a database not read through ltx; a schema the connection does not have;
-- a time before anything was replicated; not a time; no time.
SELECT ltx_txid('scratch');
SELECT ltx_stats('nowhere');
SELECT ltx_set_time('2000-01-01T00:00:00Z');
SELECT ltx_set_time('soon');
SELECT ltx_set_time(NULL);
-- Expected error: travel is a direct call only, a database's view cannot move a connection.
CREATE VIEW scratch.travel AS SELECT ltx_set_time('latest');
SELECT * FROM scratch.travel;
-- A connection whose database is not a replica gets a sentence, not a wrong answer.
.open :memory:
SELECT ltx_txid();
