-- Committed after replication starts, as the replica's second transaction.
BEGIN;
UPDATE customers SET city = 'Porto' WHERE id % 50 = 0;
DELETE FROM orders WHERE id % 100 = 0;
INSERT INTO products VALUES ('SKU-999', 'late addition', 999);
COMMIT;
