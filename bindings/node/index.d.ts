import type { Database, Options } from 'better-sqlite3';

/** The extension's settings, as its URI parameters name them. */
export interface Settings {
  /** Memory cache for decompressed pages, e.g. "64MiB". */
  cache_size?: string | number;
  /** Also keep pages on disk in this directory, across restarts and processes. */
  cache_dir?: string;
  /** The disk cache's budget, e.g. "1GiB". */
  cache_dir_size?: string | number;
  /** Longest wait for one store operation, retries included, e.g. "30s". */
  timeout?: string;
  /** How often to look for new transactions, e.g. "1s"; 0: never. */
  poll?: string | number;
  /** Keep a local copy of the whole database at this path. */
  hydrate?: string;
  /** Open at this past TXID (hexadecimal). */
  txid?: string;
  /** Open as of this time (RFC 3339, "5 minutes ago", or a Date). */
  time?: string | Date;
}

export interface OpenOptions extends Settings {
  /** The file name the database is opened by: a label, nothing is read or written there. */
  name?: string;
  /** Options for better-sqlite3's constructor (readonly is always true). */
  database?: Options;
}

export declare const SETTINGS: readonly string[];
/** The path of the extension library inside this package. */
export declare function getLoadablePath(): string;
/** Loads the extension into a better-sqlite3 Database (registers the `ltx` VFS for the process). */
export declare function load(db: Database): void;
/** Maps file name `name` to a replica; returns the full path it maps. */
export declare function register(db: Database, name: string, replicaUrl: string | null, options?: Settings): string;
/** Makes `ltx` the default VFS (true) or gives the place back (false); returns the default's name. */
export declare function setDefaultVfs(db: Database, on: boolean): string;
/** Why the extension's last operation in this process failed, or null. */
export declare function lastError(db: Database): string | null;
/** Opens a replica as a read-only better-sqlite3 Database. */
export declare function open(replicaUrl: string, options?: OpenOptions): Database;
/** Where a fork's state is taken: a TXID (a number or hexadecimal text), or a time. */
export interface ForkOptions {
  txid?: number | bigint | string;
  time?: Date | string;
}
/** Makes at `target` (holding no LTX files) a replica whose state is `source`'s at that TXID or
 * time (the newest by default); returns its TXID as 16 hex digits. */
export declare function fork(source: string, target: string, options?: ForkOptions): string;

declare const ltxvfs: {
  SETTINGS: typeof SETTINGS;
  getLoadablePath: typeof getLoadablePath;
  load: typeof load;
  register: typeof register;
  setDefaultVfs: typeof setDefaultVfs;
  lastError: typeof lastError;
  open: typeof open;
  fork: typeof fork;
};
export default ltxvfs;
