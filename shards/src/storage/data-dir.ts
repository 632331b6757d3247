import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fsyncDir, makeDirDurably, tempFileName, writeJsonDurably } from './durable-file.js';
import { DataDirError } from './errors.js';

// Callers that sync a directory after their own change (NodeStore's new store file) import it from here.
export { fsyncDir } from './durable-file.js';

/** Bumped on any incompatible change to the on-disk layout; a node refuses other versions. */
export const DATA_FORMAT_VERSION = 1;
export const IDENTITY_FILE = 'FLOTILLA';
export const STORE_FILE = 'store.mdb';
/** LMDB's lock file next to the store: runtime state only (reader table), rebuilt on open. */
export const STORE_LOCK_FILE = `${STORE_FILE}-lock`;
const IDENTITY_TEMP_FILE = tempFileName(IDENTITY_FILE);
const FORMAT_NAME = 'flotilla-data';

/**
 * `initializing`: the identity file was written, the store may be missing or
 * half-made; nothing in it was ever acknowledged, so it is rebuilt on start.
 * `ready`: the store was created and holds the node identity record; from
 * then on a missing or damaged store is an error, never a silent reset.
 */
type DataDirState = 'initializing' | 'ready';

export interface DataDirIdentity {
  readonly format: typeof FORMAT_NAME;
  readonly version: number;
  readonly nodeId: number;
  readonly state: DataDirState;
}

/**
 * Validates (or, when absent or empty, begins to initialize) a node's data
 * directory and returns the LMDB file path. Never modifies a directory it
 * rejects. `created` means the caller must create the store and then call
 * markDataDirReady.
 *
 * - missing or empty directory → created with an `initializing` identity file;
 * - identity file present → format, version and node id must match; an
 *   unfinished initialization is started over, a ready directory's store
 *   must look like an intact LMDB file (checkStoreFile);
 * - anything else in the directory without an identity file → foreign.
 */
export function prepareDataDir(dir: string, nodeId: number): { storePath: string; created: boolean } {
  const identityPath = join(dir, IDENTITY_FILE);
  const storePath = join(dir, STORE_FILE);
  if (!existsSync(dir)) makeDirDurably(dir);
  if (!statSync(dir).isDirectory()) {
    throw new DataDirError('DATA_DIR_FOREIGN', dir, 'is not a directory; expected a Flotilla data directory');
  }
  const names = readdirSync(dir);
  // Only a temp identity file: a crash during the very first write, before anything else existed.
  if (names.length === 0 || (names.length === 1 && names[0] === IDENTITY_TEMP_FILE)) {
    rmSync(join(dir, IDENTITY_TEMP_FILE), { force: true });
    writeIdentity(dir, { format: FORMAT_NAME, version: DATA_FORMAT_VERSION, nodeId, state: 'initializing' });
    return { storePath, created: true };
  }
  if (!names.includes(IDENTITY_FILE)) {
    throw new DataDirError(
      'DATA_DIR_FOREIGN',
      dir,
      `holds ${names.length} entries (${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}) but no ${IDENTITY_FILE} identity file; expected an empty directory or a Flotilla data directory (nothing was changed)`,
    );
  }
  const identity = readIdentity(identityPath);
  if (identity.version !== DATA_FORMAT_VERSION) {
    throw new DataDirError(
      'DATA_DIR_VERSION',
      identityPath,
      `data format version ${identity.version} is not supported; expected version ${DATA_FORMAT_VERSION}`,
    );
  }
  if (identity.nodeId !== nodeId) {
    throw new DataDirError(
      'DATA_DIR_NODE_MISMATCH',
      identityPath,
      `belongs to node ${identity.nodeId}; expected node ${nodeId} (refusing to start another node's replicas)`,
    );
  }
  if (identity.state === 'initializing') {
    // The store never served: whatever a crashed initialization left is ours to discard.
    for (const name of [STORE_FILE, STORE_LOCK_FILE, IDENTITY_TEMP_FILE]) rmSync(join(dir, name), { force: true });
    fsyncDir(dir);
    return { storePath, created: true };
  }
  if (!existsSync(storePath)) {
    throw new DataDirError('DATA_DIR_DAMAGED', storePath, `is missing although ${IDENTITY_FILE} says the store was created; expected the node's LMDB store`);
  }
  checkStoreFile(storePath);
  return { storePath, created: false };
}

/** Records that the store exists and holds the node's identity; call once it is durable. */
export function markDataDirReady(dir: string, nodeId: number): void {
  writeIdentity(dir, { format: FORMAT_NAME, version: DATA_FORMAT_VERSION, nodeId, state: 'ready' });
}

function readIdentity(path: string): DataDirIdentity {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new DataDirError('DATA_DIR_DAMAGED', path, `is not valid JSON (${(err as Error).message}); expected a Flotilla identity file`);
  }
  const p = parsed as Partial<DataDirIdentity> | null;
  if (p === null || typeof p !== 'object' || p.format !== FORMAT_NAME) {
    throw new DataDirError('DATA_DIR_FOREIGN', path, `has format ${JSON.stringify(p?.format)}; expected "${FORMAT_NAME}"`);
  }
  if (!Number.isSafeInteger(p.version) || !Number.isSafeInteger(p.nodeId)) {
    throw new DataDirError('DATA_DIR_DAMAGED', path, 'lacks an integer version or nodeId; expected a Flotilla identity file');
  }
  if (p.state !== 'initializing' && p.state !== 'ready') {
    throw new DataDirError('DATA_DIR_DAMAGED', path, `has state ${JSON.stringify(p.state)}; expected "initializing" or "ready"`);
  }
  return p as DataDirIdentity;
}

function writeIdentity(dir: string, identity: DataDirIdentity): void {
  writeJsonDurably({ dir, name: IDENTITY_FILE, value: identity });
}

// The LMDB file header as laid out by the LMDB inside lmdb-js 3.5.6
// (dependencies/lmdb/libraries/liblmdb/mdb.c: MDB_page_header, MDB_meta).
// Pages 0 and 1 are meta pages; each starts with a 24-byte page header.
const LMDB_PAGE_FLAGS_OFFSET = 18; // u16 mp_flags
const LMDB_PAGE_FLAG_META = 0x08; // P_META
const LMDB_META_MAGIC_OFFSET = 24; // u32 mm_magic
const LMDB_META_VERSION_OFFSET = 28; // u32 mm_version (low 16 bits)
const LMDB_META_PAGE_SIZE_OFFSET = 48; // u32 mm_dbs[FREE_DBI].md_pad = mm_psize
const LMDB_META_LAST_PAGE_OFFSET = 144; // u64 mm_last_pg
const LMDB_META_BYTES = 152; // through mm_last_pg
const LMDB_MAGIC = 0xbeefc0de;
const LMDB_DATA_VERSION = 2;
const LMDB_PAGE_BYTES_MIN = 512;
const LMDB_PAGE_BYTES_MAX = 0x10000; // MAX_PAGESIZE
/** A full read of a suspicious store (see checkStoreFile); generous, since a node cannot start without it. */
const STORE_VERIFY_TIMEOUT_MS = 10 * 60 * 1000;

/**
 * Refuses store files that would crash the process instead of failing: with
 * lmdb-js 3.5.6, opening a file LMDB rejects (bad magic or version, too
 * short) dies with SIGSEGV in its error path, and reading a page past the end
 * of a truncated file dies with SIGBUS. So the header is checked here first.
 *
 * A file shorter than its meta pages' last page is usually truncated, but
 * LMDB also leaves such files legitimately, now and then, when the last
 * pages are free. So a short file is not refused outright: only then is the
 * whole store read in a child process, which dies instead of us if it is
 * damaged.
 * Damage inside pages (LMDB has no checksums) is not detected here.
 */
export function checkStoreFile(storePath: string): void {
  const damaged = (detail: string) => new DataDirError('DATA_DIR_DAMAGED', storePath, `${detail}; expected an intact LMDB store (nothing was changed)`);
  const sizeBytes = statSync(storePath).size;
  if (sizeBytes === 0) throw damaged('is empty');
  const head = readHead(storePath, LMDB_PAGE_BYTES_MAX * 2);
  const meta0 = readMeta(head, 0);
  if (typeof meta0 === 'string') throw damaged(`page 0 ${meta0}`);
  const pageBytes = meta0.pageBytes;
  if (!(pageBytes >= LMDB_PAGE_BYTES_MIN && pageBytes <= LMDB_PAGE_BYTES_MAX && (pageBytes & (pageBytes - 1)) === 0)) {
    throw damaged(`declares a page size of ${pageBytes} B`);
  }
  if (sizeBytes < 2 * pageBytes) throw damaged(`is ${sizeBytes} B, shorter than its two ${pageBytes} B meta pages (truncated)`);
  const meta1 = readMeta(head, pageBytes);
  if (typeof meta1 === 'string') throw damaged(`page 1 ${meta1}`);
  const lastPage = Math.max(meta0.lastPage, meta1.lastPage);
  const neededBytes = (lastPage + 1) * pageBytes;
  if (sizeBytes >= neededBytes) return;
  const verdict = readWholeStore(storePath);
  if (verdict !== undefined) throw damaged(`is ${sizeBytes} B but its last page ${lastPage} ends at ${neededBytes} B, and reading it ${verdict} (truncated)`);
}

function readHead(path: string, bytesMax: number): Buffer {
  const buffer = Buffer.alloc(bytesMax);
  const fd = openSync(path, 'r');
  try {
    const n = readSync(fd, buffer, 0, bytesMax, 0);
    return buffer.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function readMeta(head: Buffer, offset: number): { pageBytes: number; lastPage: number } | string {
  if (head.byteLength < offset + LMDB_META_BYTES) return `is cut short (file of ${head.byteLength} B)`;
  if ((head.readUInt16LE(offset + LMDB_PAGE_FLAGS_OFFSET) & LMDB_PAGE_FLAG_META) === 0) return 'is not an LMDB meta page';
  const magic = head.readUInt32LE(offset + LMDB_META_MAGIC_OFFSET);
  if (magic !== LMDB_MAGIC) return `has magic 0x${magic.toString(16)}, not LMDB's 0x${LMDB_MAGIC.toString(16)}`;
  const version = head.readUInt32LE(offset + LMDB_META_VERSION_OFFSET) & 0xffff;
  if (version !== LMDB_DATA_VERSION) return `has LMDB data version ${version}; expected ${LMDB_DATA_VERSION}`;
  return {
    pageBytes: head.readUInt32LE(LMDB_META_PAGE_SIZE_OFFSET), // page 0 declares it for both
    lastPage: Number(head.readBigUInt64LE(offset + LMDB_META_LAST_PAGE_OFFSET)),
  };
}

/**
 * Reads every key and value of every sub-database in a child process. Returns
 * undefined when that worked, otherwise how it failed. Read-only: LMDB only
 * registers and releases a reader slot in the lock file.
 */
function readWholeStore(storePath: string): string | undefined {
  const lmdbPath = createRequire(import.meta.url).resolve('lmdb');
  const script = `
    const { open } = require(process.argv[1]);
    const env = open({ path: process.argv[2], readOnly: true, maxDbs: 64, encoding: 'binary', keyEncoding: 'binary' });
    // Names first: opening a sub-database while the main database's cursor is open broke that cursor (MDB_BAD_TXN, lmdb 3.5.6).
    for (const key of [...env.getKeys({})]) {
      let db;
      try { db = env.openDB({ name: key.toString(), encoding: 'binary', keyEncoding: 'binary', create: false }); } catch { continue; }
      for (const { value } of db.getRange({})) if (value === undefined) process.exit(3);
    }
    process.exit(0);`;
  const result = spawnSync(process.execPath, ['-e', script, lmdbPath, storePath], { stdio: 'ignore', timeout: STORE_VERIFY_TIMEOUT_MS });
  if (result.error !== undefined) return `failed (${result.error.message})`;
  if (result.signal !== null) return `crashed with ${result.signal}`;
  if (result.status !== 0) return `exited with status ${result.status}`;
  return undefined;
}
