-- The primary database of the sql-tests replica. Deterministic, so that a regenerated
-- replica gives the same query results (only ltx_time and the file layout may change).
PRAGMA page_size = 4096;
PRAGMA journal_mode = WAL;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE products(sku TEXT PRIMARY KEY, title TEXT NOT NULL, price_cents INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE orders(
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    sku TEXT NOT NULL REFERENCES products(sku),
    qty INTEGER NOT NULL,
    placed_at TEXT NOT NULL
);
CREATE INDEX orders_by_customer ON orders(customer_id, placed_at);
CREATE TABLE documents(id INTEGER PRIMARY KEY, name TEXT NOT NULL, body BLOB NOT NULL);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
INSERT INTO customers(name, city)
SELECT printf('customer %03d', i),
       CASE i % 4 WHEN 0 THEN 'Lisbon' WHEN 1 THEN 'Oslo' WHEN 2 THEN 'Kyoto' ELSE 'Quito' END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
INSERT INTO products SELECT printf('SKU-%03d', i), printf('product %d', i), 100 * i + 99 FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO orders(customer_id, sku, qty, placed_at)
SELECT 1 + (i * 7919) % 400, printf('SKU-%03d', 1 + (i * 31) % 40), 1 + i % 5,
       date('2026-01-01', '+' || (i % 300) || ' days')
FROM n;

-- 120 KB: about thirty overflow pages.
INSERT INTO documents(name, body) VALUES
    ('manual', CAST(printf('%.*c', 120000, 'x') AS BLOB)),
    ('note', CAST('short note' AS BLOB));
