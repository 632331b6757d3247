import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DataDirError } from './errors.js';

/** Bumped on any incompatible change to the on-disk layout; a node refuses other versions. */
export const DATA_FORMAT_VERSION = 1;
export const IDENTITY_FILE = 'FLOTILLA';
export const STORE_FILE = 'store.mdb';
const FORMAT_NAME = 'flotilla-data';

export interface DataDirIdentity {
  readonly format: typeof FORMAT_NAME;
  readonly version: number;
  readonly nodeId: number;
}

/**
 * Validates (or, when absent or empty, initializes) a node's data directory
 * and returns the LMDB file path. Never modifies a directory it rejects.
 *
 * - missing or empty directory → created with an identity file;
 * - identity file present → format, version and node id must match;
 * - anything else in the directory without an identity file → foreign.
 */
export function prepareDataDir(dir: string, nodeId: number): { storePath: string; created: boolean } {
  const identityPath = join(dir, IDENTITY_FILE);
  const storePath = join(dir, STORE_FILE);
  if (!existsSync(dir) || (statSync(dir).isDirectory() && readdirSync(dir).length === 0)) {
    mkdirSync(dir, { recursive: true });
    writeIdentity(dir, { format: FORMAT_NAME, version: DATA_FORMAT_VERSION, nodeId });
    return { storePath, created: true };
  }
  if (!statSync(dir).isDirectory()) {
    throw new DataDirError('DATA_DIR_FOREIGN', dir, 'is not a directory; expected a Flotilla data directory');
  }
  if (!existsSync(identityPath)) {
    throw new DataDirError(
      'DATA_DIR_FOREIGN',
      dir,
      `holds files but no ${IDENTITY_FILE} identity file; expected an empty directory or a Flotilla data directory (nothing was changed)`,
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
  if (!existsSync(storePath)) {
    // The identity file is written first on creation; a crash before LMDB created its store
    // leaves only that file. Nothing can have been stored yet, so finishing the creation loses nothing.
    const others = readdirSync(dir).filter((f) => f !== IDENTITY_FILE && f !== `${IDENTITY_FILE}.tmp`);
    if (others.length === 0) return { storePath, created: true };
    throw new DataDirError('DATA_DIR_DAMAGED', storePath, `is missing although ${IDENTITY_FILE} and other files exist; expected the node's LMDB store`);
  }
  return { storePath, created: false };
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
    throw new DataDirError('DATA_DIR_DAMAGED', path, 'lacks an integer version or nodeId');
  }
  return p as DataDirIdentity;
}

/** Writes the identity file durably: temp file, fsync, rename, fsync of the directory. */
function writeIdentity(dir: string, identity: DataDirIdentity): void {
  const tmp = join(dir, `${IDENTITY_FILE}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${JSON.stringify(identity)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, IDENTITY_FILE));
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
