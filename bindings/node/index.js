'use strict';
// ltxvfs for Node: the SQLite extension (lib/libltxvfs.so) and helpers for better-sqlite3,
// which cannot pass URI parameters or name a VFS (it is built with SQLITE_USE_URI=0): a
// plain file name is mapped to the replica with ltx_register(), and `ltx` is the default VFS
// only while that name is opened.

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SETTINGS = ['cache_size', 'cache_dir', 'cache_dir_size', 'timeout', 'poll', 'hydrate', 'txid', 'time', 'sql_time_travel'];

/** The path of the extension library inside this package. */
function getLoadablePath() {
  const lib = path.join(__dirname, 'lib', 'libltxvfs.so');
  if (!fs.existsSync(lib)) {
    throw new Error(`ltxvfs: ${lib} is missing (this package ships a linux-x64 build only)`);
  }
  return lib;
}

/** Loads the extension into a better-sqlite3 Database: the `ltx` VFS is then registered for
 * the process. `db` gets every ltx_* SQL function (loading is the host's trust); connections
 * opened after get only the status functions (ltx_txid(), ...), unless LTXVFS_TRUSTED_SQL=1
 * (README "Security"). */
function load(db) {
  db.loadExtension(getLoadablePath());
}

/** Settings object to the query-string form ltx_register takes. */
function settingsString(options) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(options || {})) {
    if (!SETTINGS.includes(key)) {
      throw new TypeError(`ltxvfs: unknown setting ${JSON.stringify(key)} (settings: ${SETTINGS.join(', ')})`);
    }
    if (value === undefined || value === null) continue;
    params.append(key, value instanceof Date ? value.toISOString() : String(value));
  }
  return params.toString();
}

/** Maps the file name `name` to the replica at `replicaUrl` (settings in `options`), on a
 * connection that loaded the extension (only it has ltx_register). Returns the full path the
 * name maps. */
function register(db, name, replicaUrl, options) {
  return db.prepare('SELECT ltx_register(?, ?, ?)').pluck().get(name, replicaUrl, settingsString(options));
}

/** Makes `ltx` the default VFS (true) or gives the place back (false). Returns the name of
 * the default VFS after. */
function setDefaultVfs(db, on) {
  return db.prepare('SELECT ltx_default_vfs(?)').pluck().get(on ? 1 : 0);
}

/** The sentence behind the last failed open through the extension on this thread, or db's
 * own last error. */
function lastError(db) {
  return db.prepare('SELECT ltx_last_error()').pluck().get();
}

/** Makes at `target` (a replica URL holding no LTX files) a replica whose state is
 * `source`'s at `options.txid` (a number, or hexadecimal text), at `options.time` (a Date,
 * RFC 3339 text or '5 minutes ago'), or the newest state. Returns the TXID of the fork's
 * state as 16 hex digits; a writer (write=1) on `target` commits the next TXID. */
function fork(source, target, options = {}) {
  const { txid, time } = options;
  if (txid != null && time != null) throw new TypeError('ltxvfs.fork: give txid or time, not both');
  let at = null;
  if (txid != null) at = typeof txid === 'number' || typeof txid === 'bigint' ? txid.toString(16) : String(txid);
  else if (time != null) at = time instanceof Date ? time.toISOString() : String(time);
  const Database = require('better-sqlite3');
  // A connection the extension is loaded on: control functions are trusted there.
  const control = new Database(':memory:');
  try {
    load(control);
    return control.prepare('SELECT ltx_fork(?, ?, ?)').pluck().get(source, target, at);
  } finally {
    control.close();
  }
}

/** Opens the replica at `replicaUrl` as a read-only better-sqlite3 Database.
 * `options`: the extension's settings (cache_size, timeout, poll, hydrate, txid, time), plus
 * `name` (the label the database is opened by; nothing is read or written there) and
 * `database` (options for better-sqlite3's constructor). */
function open(replicaUrl, options = {}) {
  const Database = require('better-sqlite3');
  const { name, database, ...settings } = options;
  const settingsText = settingsString(settings);
  const label = name || path.join(os.tmpdir(),
    `ltxvfs-${crypto.createHash('sha256').update(`${replicaUrl}\n${settingsText}`).digest('hex').slice(0, 16)}.db`);
  const control = new Database(':memory:');
  try {
    load(control);
    register(control, label, replicaUrl, settings);
    setDefaultVfs(control, true);
    try {
      return new Database(label, { ...database, readonly: true });
    } catch (e) {
      const why = lastError(control);
      if (why) e.message = `${e.message}: ${why}`;
      throw e;
    } finally {
      setDefaultVfs(control, false);
    }
  } finally {
    control.close();
  }
}

module.exports = { getLoadablePath, load, register, setDefaultVfs, lastError, open, fork, SETTINGS };
