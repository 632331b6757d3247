import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { assert } from '@flotilla/core';
import { IDENTITY_FILE, STORE_FILE } from '../storage/data-dir.js';
import { fsyncDir, makeDirDurably, tempFileName, writeJsonDurably } from '../storage/durable-file.js';
import { DirLock, LOCK_FILE } from '../storage/dir-lock.js';
import { DataDirError } from '../storage/errors.js';
import { NodeStore } from '../storage/node-store.js';

/** Bumped on any incompatible change to the node directory layout; a node refuses other versions. */
export const NODE_DIR_FORMAT_VERSION = 1;
/** The node directory's identity file, next to the `core-<i>` store directories. */
export const NODE_FILE = 'NODE';
const NODE_TEMP_FILE = tempFileName(NODE_FILE);
const NODE_FORMAT_NAME = 'flotilla-node';
const CORE_DIR_PREFIX = 'core-';
/**
 * Worker cores per node, each with its own worker thread and LMDB environment
 * (file, map, fsync; ARCHITECTURE.md, storage, says why one per core); 64 is
 * the largest machine we plan for. The
 * count is fixed for the directory's life, so a larger one is more likely a
 * typo than a machine, and is refused before anything is written.
 */
export const CORE_COUNT_MAX = 64;

/**
 * `initializing`: NODE was written; some core stores may not exist yet. None
 * of them ever served (markNodeDirReady was never reached), so the missing
 * ones are created on the next open.
 * `ready`: every core store was created. From then on a missing core
 * directory is damage, never a silent reset: it held replicas' votes and logs.
 */
type NodeDirState = 'initializing' | 'ready';

interface NodeIdentity {
  readonly format: typeof NODE_FORMAT_NAME;
  readonly version: number;
  readonly nodeId: number;
  readonly coreCount: number;
  readonly state: NodeDirState;
}

/** The store directory of worker core `core` inside a node directory. */
export function coreDirName(core: number): string {
  return `${CORE_DIR_PREFIX}${core}`;
}

export interface NodeDirOptions {
  readonly dir: string;
  readonly nodeId: number;
  readonly coreCount: number;
}

/**
 * Takes the node directory's lock (DirLock on `<dir>/LOCK`): one process,
 * and one open within it, per node directory. Call it before anything else
 * opens or modifies the directory, and release the lock after the last
 * store is closed. A missing directory is created; an existing one that
 * holds anything but a node directory's files is refused as foreign before
 * the lock file is made (a directory we refuse is never modified). Throws
 * DataDirLockedError (DATA_DIR_LOCKED) when the lock is held, and then has
 * changed nothing.
 */
export function lockNodeDir(dir: string): DirLock {
  if (!existsSync(dir)) makeDirDurably(dir);
  if (!statSync(dir).isDirectory()) throw new DataDirError('DATA_DIR_FOREIGN', dir, 'is not a directory; expected a Flotilla node directory');
  const names = readdirSync(dir).sort();
  const ours = names.includes(NODE_FILE) || names.includes(LOCK_FILE) || (names.length === 1 && names[0] === NODE_TEMP_FILE);
  if (names.length > 0 && !ours) throw foreignDirError(dir, names);
  return DirLock.acquire(dir);
}

/**
 * Opens (or creates) a node's data directory and every core's store: the
 * stores, indexed by core. The caller owns them and must close each one.
 * prepareNodeDir, NodeStore.open for each core directory, then
 * markNodeDirReady. The caller holds lockNodeDir's lock (Host.start takes
 * it). Throws what they throw. When core i is refused, the
 * cores before it were opened (LMDB rewrites their lock files) and are closed
 * again before the error is rethrown.
 */
export async function openNodeStores(options: NodeDirOptions): Promise<NodeStore[]> {
  const coreDirs = prepareNodeDir(options);
  const stores: NodeStore[] = [];
  try {
    // One at a time, so a failure leaves a known prefix of open stores to close.
    for (const dir of coreDirs) stores.push(await NodeStore.open({ dir, nodeId: options.nodeId }));
    markNodeDirReady(options);
  } catch (err) {
    // The first error is the one that matters; a failing close must not hide it.
    await Promise.allSettled(stores.map((store) => store.close()));
    throw err;
  }
  return stores;
}

/**
 * Validates (or, when missing or empty, begins to create) a node's data
 * directory: `NODE` (identity: format, version, node id, core count) and one
 * NodeStore directory `core-<i>` per worker core (ARCHITECTURE.md: one LMDB
 * environment per core). Returns the core directories, indexed by core, for
 * NodeStore.open (in this thread or in each core's worker). Once every one of
 * them has been opened, call markNodeDirReady. The caller holds the
 * directory's lock (lockNodeDir) throughout.
 *
 * - missing or empty directory (LOCK aside) → NODE is written durably, `initializing`;
 * - NODE present → format, version, node id and core count must match. While
 *   initializing, missing core directories are fine (NodeStore.open creates
 *   them). A ready directory must have every one;
 * - anything else in the directory without NODE → DATA_DIR_FOREIGN.
 *
 * Throws RangeError for a node id or core count out of range and DataDirError
 * for a directory it refuses, and then has changed nothing.
 */
export function prepareNodeDir(options: NodeDirOptions): string[] {
  const { dir, nodeId, coreCount } = options;
  if (!Number.isSafeInteger(nodeId) || nodeId <= 0) throw new RangeError(`node id must be a positive integer, got ${nodeId} (${dir})`);
  if (!Number.isSafeInteger(coreCount) || coreCount < 1 || coreCount > CORE_COUNT_MAX) {
    throw new RangeError(`core count must be an integer from 1 to ${CORE_COUNT_MAX}, got ${coreCount} (${dir})`);
  }
  if (!existsSync(dir)) makeDirDurably(dir);
  if (!statSync(dir).isDirectory()) throw new DataDirError('DATA_DIR_FOREIGN', dir, 'is not a directory; expected a Flotilla node directory');
  const coreDirs = Array.from({ length: coreCount }, (_, core) => join(dir, coreDirName(core)));
  // The lock file is not part of the layout: lockNodeDir made it, maybe in a directory that is otherwise new.
  const names = readdirSync(dir)
    .filter((name) => name !== LOCK_FILE)
    .sort();
  // Only a temp NODE file: a crash during the very first write, before anything else existed.
  if (names.length === 0 || (names.length === 1 && names[0] === NODE_TEMP_FILE)) {
    rmSync(join(dir, NODE_TEMP_FILE), { force: true });
    writeNodeIdentity(dir, { format: NODE_FORMAT_NAME, version: NODE_DIR_FORMAT_VERSION, nodeId, coreCount, state: 'initializing' });
    return coreDirs;
  }
  if (!names.includes(NODE_FILE)) throw foreignDirError(dir, names);
  const identity = readMatchingIdentity(options);
  checkCoreDirs(dir, names, identity);
  if (identity.state === 'initializing' && names.includes(NODE_TEMP_FILE)) {
    // A crash while marking NODE ready: NODE still says initializing, which is true.
    rmSync(join(dir, NODE_TEMP_FILE));
    fsyncDir(dir);
  }
  return coreDirs;
}

/**
 * Records in NODE that every core store exists, after NodeStore.open has
 * resolved for each of prepareNodeDir's directories. From then on a missing
 * core directory is refused instead of created empty. Does nothing for a
 * directory already ready: a ready NODE is never rewritten.
 */
export function markNodeDirReady(options: NodeDirOptions): void {
  const identity = readMatchingIdentity(options);
  if (identity.state === 'ready') return;
  for (let core = 0; core < options.coreCount; core++) {
    const identityPath = join(options.dir, coreDirName(core), IDENTITY_FILE);
    assert(existsSync(identityPath), () => `${identityPath} is missing: mark node directory ${options.dir} ready only after opening every core store`);
  }
  writeNodeIdentity(options.dir, { ...identity, state: 'ready' });
}

/** Reads NODE and checks it belongs to this node with this many cores. */
function readMatchingIdentity(expected: NodeDirOptions): NodeIdentity {
  const nodePath = join(expected.dir, NODE_FILE);
  const identity = readNodeIdentity(nodePath);
  if (identity.nodeId !== expected.nodeId) {
    throw new DataDirError('DATA_DIR_NODE_MISMATCH', nodePath, `belongs to node ${identity.nodeId}; expected node ${expected.nodeId} (refusing to start another node's replicas)`);
  }
  if (identity.coreCount !== expected.coreCount) {
    throw new DataDirError(
      'DATA_DIR_CORES_MISMATCH',
      nodePath,
      `created with ${identity.coreCount} ${identity.coreCount === 1 ? 'core' : 'cores'}; started with ${expected.coreCount} (the core count is fixed per data directory)`,
    );
  }
  return identity;
}

/** Core directories must be exactly core-0 … core-(coreCount - 1); a ready directory must have all of them. */
function checkCoreDirs(dir: string, names: readonly string[], identity: NodeIdentity): void {
  const expected = new Set(Array.from({ length: identity.coreCount }, (_, core) => coreDirName(core)));
  const unexpected = names.filter((name) => name.startsWith(CORE_DIR_PREFIX) && !expected.has(name));
  if (unexpected.length > 0) {
    throw new DataDirError(
      'DATA_DIR_DAMAGED',
      dir,
      `holds ${listNames(unexpected)} besides the ${identity.coreCount} core directories its ${NODE_FILE} file records; expected ${coreDirName(0)} to ${coreDirName(identity.coreCount - 1)} only (nothing was changed)`,
    );
  }
  for (let core = 0; core < identity.coreCount; core++) {
    const coreDir = join(dir, coreDirName(core));
    if (!names.includes(coreDirName(core))) {
      if (identity.state === 'initializing') continue; // never created: NodeStore.open creates it
      throw new DataDirError(
        'DATA_DIR_DAMAGED',
        coreDir,
        `is missing although ${NODE_FILE} says every core store was created; expected the store of core ${core} (refusing to start it empty: its replicas' state would be lost)`,
      );
    }
    // statSync follows symlinks: a core directory may live on another disk.
    if (!statSync(coreDir).isDirectory()) throw new DataDirError('DATA_DIR_DAMAGED', coreDir, `is not a directory; expected the store directory of core ${core}`);
  }
}

function readNodeIdentity(path: string): NodeIdentity {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new DataDirError('DATA_DIR_DAMAGED', path, `cannot be read as JSON (${(err as Error).message}); expected a Flotilla node identity file`);
  }
  const p = parsed as Partial<NodeIdentity> | null;
  if (p === null || typeof p !== 'object' || p.format !== NODE_FORMAT_NAME) {
    throw new DataDirError('DATA_DIR_FOREIGN', path, `has format ${JSON.stringify(p?.format)}; expected "${NODE_FORMAT_NAME}"`);
  }
  // The version first: another version's other fields may mean something else.
  if (!Number.isSafeInteger(p.version)) throw new DataDirError('DATA_DIR_DAMAGED', path, `has version ${JSON.stringify(p.version)}; expected an integer`);
  if (p.version !== NODE_DIR_FORMAT_VERSION) {
    throw new DataDirError('DATA_DIR_VERSION', path, `node directory format version ${p.version} is not supported; expected version ${NODE_DIR_FORMAT_VERSION}`);
  }
  if (!Number.isSafeInteger(p.nodeId)) throw new DataDirError('DATA_DIR_DAMAGED', path, `has node id ${JSON.stringify(p.nodeId)}; expected an integer`);
  if (!Number.isSafeInteger(p.coreCount) || p.coreCount! < 1) {
    throw new DataDirError('DATA_DIR_DAMAGED', path, `has core count ${JSON.stringify(p.coreCount)}; expected a positive integer`);
  }
  if (p.state !== 'initializing' && p.state !== 'ready') {
    throw new DataDirError('DATA_DIR_DAMAGED', path, `has state ${JSON.stringify(p.state)}; expected "initializing" or "ready"`);
  }
  return p as NodeIdentity;
}

function writeNodeIdentity(dir: string, identity: NodeIdentity): void {
  writeJsonDurably({ dir, name: NODE_FILE, value: identity });
}

function foreignDirError(dir: string, names: readonly string[]): DataDirError {
  // The layout before per-core environments: a store directory where a node directory belongs.
  const singleStore = names.includes(IDENTITY_FILE) || names.includes(STORE_FILE);
  const hint = singleStore ? `; it looks like one store's data directory (${IDENTITY_FILE}, ${STORE_FILE}), not a node directory of per-core stores` : '';
  return new DataDirError(
    'DATA_DIR_FOREIGN',
    dir,
    `holds ${names.length} entries (${listNames(names)}) but no ${NODE_FILE} identity file${hint}; expected an empty directory or a Flotilla node directory (nothing was changed)`,
  );
}

function listNames(names: readonly string[]): string {
  return `${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}`;
}
