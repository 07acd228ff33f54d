-- The same replica, read from an S3 bucket (Litestream's S3 layout: app.db/0000/...).
.open 'file:app.db?vfs=ltx&replica=@S3REPLICA@'
PRAGMA ltx_txid;
SELECT count(*), sum(qty) FROM orders;
SELECT city, count(*) FROM customers GROUP BY city ORDER BY city;
SELECT name, length(body) FROM documents ORDER BY id;
PRAGMA integrity_check;
-- Expected error: a bucket that does not exist.
.open 'file:app.db?vfs=ltx&replica=s3://no-such-bucket/app.db%3Fendpoint=@S3ENDPOINT@%26region=us-east-1'
.open 'file:app.db?vfs=ltx&replica=@S3REPLICA@'
PRAGMA ltx_last_error;
