-- Untrusted SQL (README "Security", issue #22): a connection the host opened, with the
-- extension loaded elsewhere, as Datasette serves SELECT to visitors. Expected errors: the
-- functions that change the process or a connection's place in time do not exist or refuse.
SELECT ltx_default_vfs(1);
SELECT ltx_register('/etc/passwd', 'file:///tmp/other', 'hydrate=/tmp/x');
SELECT ltx_set_time('2000-01-01T00:00:00Z');
SELECT litestream_set_time('latest');
-- The status functions still answer, about this connection's own databases.
SELECT ltx_txid(), typeof(ltx_stats());
-- No error of its own: ltx_last_error() is NULL, whatever other connections did.
SELECT ltx_last_error() IS NULL;
-- A database whose host allowed it (sql_time_travel=1) may be moved in time by SQL.
ATTACH 'file:old.db?vfs=ltx&replica=file://@REPLICA@&poll=0&sql_time_travel=1' AS old;
SELECT ltx_set_time('latest', 'old');
-- Expected error: a URI parameter that does not exist is refused, not ignored.
ATTACH 'file:typo.db?vfs=ltx&replica=file://@REPLICA@&cahce_size=1MiB' AS typo;
SELECT ltx_last_error();
-- Expected errors: host-given settings past their bounds, and a bad endpoint port.
ATTACH 'file:slow.db?vfs=ltx&replica=file://@REPLICA@&timeout=100000h' AS slow;
SELECT ltx_last_error();
ATTACH 'file:port.db?vfs=ltx&replica=s3://b/p%3Fendpoint%3Dhttp://u:secret@127.0.0.1:1x' AS port;
SELECT ltx_last_error();
