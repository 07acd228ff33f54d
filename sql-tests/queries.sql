-- Aggregates over the whole table (every leaf page of orders).
SELECT count(*), sum(qty), min(placed_at), max(placed_at) FROM orders;
-- Group by and order by.
SELECT city, count(*) FROM customers GROUP BY city ORDER BY city;
-- A three-way join with an aggregate.
SELECT c.city, p.sku, sum(o.qty) AS units
FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.sku = o.sku
GROUP BY c.city, p.sku ORDER BY units DESC, c.city, p.sku LIMIT 5;
-- An index range scan: the plan uses orders_by_customer, the rows come from it.
EXPLAIN QUERY PLAN SELECT placed_at, qty FROM orders WHERE customer_id = 42 AND placed_at >= '2026-06-01';
SELECT placed_at, qty FROM orders WHERE customer_id = 42 AND placed_at >= '2026-06-01' ORDER BY placed_at;
-- A WITHOUT ROWID table: lookups by its primary key.
SELECT sku, title, price_cents FROM products WHERE sku IN ('SKU-001', 'SKU-040', 'SKU-999');
SELECT count(*), sum(price_cents) FROM products;
-- A BLOB spanning overflow pages, and a small one.
SELECT name, length(body), hex(substr(body, 1, 4)), hex(substr(body, 119997, 4)) FROM documents ORDER BY id;
SELECT count(*) FROM documents WHERE body = CAST(printf('%.*c', 120000, 'x') AS BLOB);
-- The second transaction's changes are visible.
SELECT count(*) FROM customers WHERE city = 'Porto';
SELECT count(*) FROM orders WHERE id % 100 = 0;
