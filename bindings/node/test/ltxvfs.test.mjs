// The ltxvfs npm package as installed from its `npm pack` tarball into a scratch project
// with better-sqlite3 (`make node-test`), against the replica the real litestream wrote for
// the golden SQL tests (sql-tests/replica: TXID 1 is setup/schema.sql, TXID 2 adds
// changes.sql).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import Database from 'better-sqlite3';
import * as ltxvfs from 'ltxvfs';

const require = createRequire(import.meta.url);
const replica = process.env.LTXVFS_TEST_REPLICA;
assert.ok(replica && fs.existsSync(replica), 'set LTXVFS_TEST_REPLICA to sql-tests/replica');
const url = `file://${path.resolve(replica)}`;

test('the package ships the library, for ESM and CommonJS', () => {
  const lib = ltxvfs.getLoadablePath();
  assert.ok(fs.statSync(lib).isFile());
  assert.match(lib, /node_modules\/ltxvfs\/lib\/libltxvfs\.so$/);
  const cjs = require('ltxvfs');
  assert.equal(cjs.getLoadablePath(), lib);
  assert.equal(typeof cjs.open, 'function');
  const pkg = path.dirname(path.dirname(lib));
  assert.ok(fs.existsSync(path.join(pkg, 'index.d.ts')));
});

test('open and query', () => {
  const db = ltxvfs.open(url, { poll: 0 });
  assert.equal(db.prepare('SELECT count(*) FROM orders').pluck().get(), 1980);
  assert.equal(db.prepare("SELECT count(*) FROM customers WHERE city = 'Porto'").pluck().get(), 8);
  const doc = db.prepare("SELECT length(body) FROM documents WHERE name = 'manual'").pluck().get();
  assert.equal(doc, 120000);
  db.close();
});

test('pragmas', () => {
  const db = ltxvfs.open(url, { poll: 0 });
  assert.equal(db.pragma('ltx_txid', { simple: true }), '0000000000000002');
  assert.ok(Date.parse(db.pragma('ltx_time', { simple: true })) > Date.parse('2026-01-01'));
  db.prepare('SELECT count(*) FROM orders').get();
  const stats = JSON.parse(db.pragma('ltx_stats', { simple: true }));
  assert.ok(stats.pages_read > 0);
  db.close();
});

test('time travel', () => {
  const past = ltxvfs.open(url, { poll: 0, txid: '1' });
  assert.equal(past.prepare('SELECT count(*) FROM orders').pluck().get(), 2000);
  past.close();
  const db = ltxvfs.open(url, { poll: 0 });
  assert.equal(db.pragma("ltx_txid = '1'", { simple: true }), '0000000000000001');
  assert.equal(db.prepare('SELECT count(*) FROM products').pluck().get(), 40);
  db.pragma('ltx_time = latest');
  assert.equal(db.prepare('SELECT count(*) FROM products').pluck().get(), 41);
  assert.throws(() => ltxvfs.open(url, { poll: 0, time: new Date('2000-01-01T00:00:00Z') }), /ltxvfs/);
  db.close();
});

test('read-only', () => {
  const db = ltxvfs.open(url, { poll: 0 });
  assert.throws(() => db.prepare("INSERT INTO products VALUES ('SKU-X', 'x', 1)").run(), { code: 'SQLITE_READONLY' });
  db.close();
});

test('errors say why', () => {
  assert.throws(() => ltxvfs.open('file:///nonexistent/replica'), /nonexistent\/replica is not a directory/);
  assert.throws(() => ltxvfs.open(url, { cache_size: 'lots' }), /cache_size/);
  assert.throws(() => ltxvfs.open(url, { cahce_size: '1MiB' }), /unknown setting "cahce_size"/);
});

test('by hand: load, register, default VFS; unmapped names are errors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ltxvfs-node-'));
  const control = new Database(':memory:');
  ltxvfs.load(control);
  const mapped = path.join(dir, 'app.db');
  assert.equal(ltxvfs.register(control, mapped, url, { poll: 0 }), mapped);
  assert.equal(ltxvfs.setDefaultVfs(control, true), 'ltx');
  try {
    const db = new Database(mapped, { readonly: true });
    assert.equal(db.prepare('SELECT count(*) FROM customers').pluck().get(), 400);
    db.close();
    const unmapped = path.join(dir, 'other.db');
    assert.throws(() => new Database(unmapped), /unable to open database file/);
    assert.match(ltxvfs.lastError(control), /no replica/);
    assert.ok(!fs.existsSync(unmapped), 'an unmapped name must not become an empty database');
  } finally {
    assert.notEqual(ltxvfs.setDefaultVfs(control, false), 'ltx');
  }
  // The default VFS is back: plain names are local files again.
  const local = new Database(path.join(dir, 'local.db'));
  local.exec('CREATE TABLE t(x)');
  local.close();
  control.close();
});

test('fork', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ltxvfs-fork-'));
  const past = `file://${path.join(dir, 'past')}`;
  assert.equal(ltxvfs.fork(url, past, { txid: 1 }), '0000000000000001');
  const latest = `file://${path.join(dir, 'latest')}`;
  assert.equal(ltxvfs.fork(url, latest), '0000000000000002');
  const old = ltxvfs.open(past, { poll: 0 });
  assert.equal(old.prepare('SELECT count(*) FROM orders').pluck().get(), 2000);
  old.close();
  const now = ltxvfs.open(latest, { poll: 0 });
  assert.equal(now.prepare('SELECT count(*) FROM orders').pluck().get(), 1980);
  now.close();
  assert.equal(ltxvfs.fork(url, `file://${path.join(dir, 'at-time')}`, { time: new Date() }), '0000000000000002');
  assert.throws(() => ltxvfs.fork(url, past), /no LTX files/);
});
