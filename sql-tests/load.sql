-- Loading again, on the same connection, is harmless.
.load @LIB@
SELECT count(*) FROM products;
-- Other databases in the same process are untouched: an in-memory one and a local file
-- (Litestream's own VFS breaks every later open once it is loaded).
.open :memory:
CREATE TABLE t(x);
INSERT INTO t VALUES (1), (2);
SELECT sum(x) FROM t;
.open local.db
CREATE TABLE IF NOT EXISTS notes(body TEXT);
INSERT INTO notes VALUES ('a local, writable database');
SELECT body FROM notes;
-- Loading from that other connection is harmless too, and ltx still opens replicas.
.load @LIB@
.open 'file:app.db?vfs=ltx&replica=file://@REPLICA@'
SELECT count(*) FROM customers;
-- The replica URL may be percent-encoded.
.open 'file:app.db?vfs=ltx&replica=file%3A%2F%2F@REPLICA@'
SELECT count(*) FROM customers;
