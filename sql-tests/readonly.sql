-- Expected errors: the replica is read-only, whatever the statement.
INSERT INTO products VALUES ('SKU-1000', 'nope', 1);
UPDATE customers SET city = 'Nowhere';
DELETE FROM orders;
CREATE TABLE t(x);
-- Reads still work after the refusals.
SELECT count(*) FROM products;
-- A temporary table lives in the default VFS's temp files, not in the replica.
CREATE TEMP TABLE scratch AS SELECT sku FROM products WHERE price_cents > 3500;
SELECT count(*) FROM scratch;
