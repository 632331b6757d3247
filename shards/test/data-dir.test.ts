// Data directories the node must refuse, with a clear error and without
// touching a byte, and the ones it must accept (fresh, or a crashed
// initialization to start over).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SeededRng, groupId } from '@flotilla/core';
import { open } from 'lmdb';
import { describe, expect, it } from 'vitest';
import { DATA_FORMAT_VERSION, IDENTITY_FILE, STORE_FILE, STORE_LOCK_FILE } from '../src/storage/data-dir.js';
import { DataDirError } from '../src/storage/errors.js';
import { NodeStore } from '../src/storage/node-store.js';
import { SHARD, bytes, closeStore, commitAndApply, confState, openStore, putEntry, tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

/** Name → sha256 of every file in the directory (flat: a data directory has no subdirectories). */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) out[name] = createHash('sha256').update(readFileSync(join(dir, name))).digest('hex');
  return out;
}

function garbage(seed: number, length: number): Buffer {
  const rng = new SeededRng(seed);
  return Buffer.from(Uint8Array.from({ length }, () => rng.intBelow(256)));
}

/** A data directory of node 1 with a shard, ~2 MiB of data and a log, closed. */
async function populatedDir(): Promise<string> {
  const dir = join(tempDir(), 'node-1');
  const store = await openStore(dir, 1);
  await store.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }) });
  for (let round = 0; round < 4; round++) {
    const first = store.storage(SHARD).lastIndex() + 1;
    await commitAndApply(
      store,
      SHARD,
      Array.from({ length: 128 }, (_, i) => putEntry(first + i, 1, bytes(`key-${round}-${i}`), new Uint8Array(2048).fill(i))),
    );
  }
  await closeStore(store);
  return dir;
}

async function openError(dir: string, nodeId: number): Promise<DataDirError> {
  let caught: unknown;
  try {
    const store = await NodeStore.open({ dir, nodeId });
    await store.close();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DataDirError);
  return caught as DataDirError;
}

interface BadDir {
  readonly name: string;
  /** Damages a populated directory of node 1; returns the node id to open it as. */
  readonly damage: (dir: string) => number | void | Promise<number | void>;
  readonly code: DataDirError['code'];
  /** Which path the error names: the directory or one of its files. */
  readonly path: (dir: string) => string;
  /** Words the message must contain besides the path: what was expected. */
  readonly expected: readonly string[];
  /**
   * Whether LMDB opened the store before refusing it: it then registers and
   * releases a reader slot in its lock file, so only that file's bytes may change.
   */
  readonly lmdbOpened?: boolean;
}

const identityOf = (dir: string) => JSON.parse(readFileSync(join(dir, IDENTITY_FILE), 'utf8')) as Record<string, unknown>;
const writeIdentity = (dir: string, fields: Record<string, unknown>) => writeFileSync(join(dir, IDENTITY_FILE), `${JSON.stringify(fields)}\n`);
const identityPath = (dir: string) => join(dir, IDENTITY_FILE);
const storePath = (dir: string) => join(dir, STORE_FILE);

const badDirs: BadDir[] = [
  {
    name: 'a newer data format version',
    damage: (dir) => writeIdentity(dir, { ...identityOf(dir), version: DATA_FORMAT_VERSION + 1 }),
    code: 'DATA_DIR_VERSION',
    path: identityPath,
    expected: [`version ${DATA_FORMAT_VERSION + 1}`, `expected version ${DATA_FORMAT_VERSION}`],
  },
  { name: 'another node’s directory', damage: () => 2, code: 'DATA_DIR_NODE_MISMATCH', path: identityPath, expected: ['node 1', 'expected node 2'] },
  { name: 'a garbage identity file', damage: (dir) => writeFileSync(identityPath(dir), garbage(1, 300)), code: 'DATA_DIR_DAMAGED', path: identityPath, expected: ['not valid JSON', 'expected'] },
  {
    name: 'a truncated identity file',
    damage: (dir) => writeFileSync(identityPath(dir), readFileSync(identityPath(dir)).subarray(0, 20)),
    code: 'DATA_DIR_DAMAGED',
    path: identityPath,
    expected: ['not valid JSON', 'expected'],
  },
  { name: 'an empty identity file', damage: (dir) => writeFileSync(identityPath(dir), ''), code: 'DATA_DIR_DAMAGED', path: identityPath, expected: ['expected'] },
  {
    name: 'an identity file without a node id',
    damage: (dir) => writeIdentity(dir, { ...identityOf(dir), nodeId: 'one' }),
    code: 'DATA_DIR_DAMAGED',
    path: identityPath,
    expected: ['nodeId', 'expected'],
  },
  {
    name: 'an identity file in an unknown state',
    damage: (dir) => writeIdentity(dir, { ...identityOf(dir), state: 'migrating' }),
    code: 'DATA_DIR_DAMAGED',
    path: identityPath,
    expected: ['"migrating"', 'expected'],
  },
  { name: 'an identity file of another program', damage: (dir) => writeIdentity(dir, { format: 'other-db', version: 1 }), code: 'DATA_DIR_FOREIGN', path: identityPath, expected: ['"other-db"', 'expected "flotilla-data"'] },
  { name: 'a missing store with the identity file present', damage: (dir) => rmSync(storePath(dir)), code: 'DATA_DIR_DAMAGED', path: storePath, expected: ['missing', 'expected'] },
  { name: 'files but no identity file (foreign)', damage: (dir) => rmSync(identityPath(dir)), code: 'DATA_DIR_FOREIGN', path: (dir) => dir, expected: [IDENTITY_FILE, 'expected an empty directory'] },
  { name: 'a store replaced by garbage bytes', damage: (dir) => writeFileSync(storePath(dir), garbage(2, 64 * 1024)), code: 'DATA_DIR_DAMAGED', path: storePath, expected: ['magic', 'expected an intact LMDB store'] },
  { name: 'a store replaced by zeros', damage: (dir) => writeFileSync(storePath(dir), Buffer.alloc(64 * 1024)), code: 'DATA_DIR_DAMAGED', path: storePath, expected: ['not an LMDB meta page', 'expected'] },
  { name: 'a store truncated to nothing', damage: (dir) => truncateSync(storePath(dir), 0), code: 'DATA_DIR_DAMAGED', path: storePath, expected: ['empty', 'expected'] },
  { name: 'a store truncated inside its first page', damage: (dir) => truncateSync(storePath(dir), 100), code: 'DATA_DIR_DAMAGED', path: storePath, expected: ['cut short', 'expected'] },
  { name: 'a store truncated to one page', damage: (dir) => truncateSync(storePath(dir), 4096), code: 'DATA_DIR_DAMAGED', path: storePath, expected: ['truncated', 'expected'] },
  {
    // The header is intact; a child process reads the store and dies of SIGBUS instead of us.
    name: 'a store truncated to half its size',
    damage: (dir) => truncateSync(storePath(dir), Math.floor(statSync(storePath(dir)).size / 2 / 4096) * 4096),
    code: 'DATA_DIR_DAMAGED',
    path: storePath,
    expected: ['truncated', 'crashed with SIG', 'expected'],
    lmdbOpened: true,
  },
  {
    name: 'a store swapped in from another node',
    damage: async (dir) => {
      const foreign = await replacementStore(dir, { nodeId: 7 });
      rmSync(storePath(dir));
      writeFileSync(storePath(dir), readFileSync(foreign));
    },
    code: 'DATA_DIR_NODE_MISMATCH',
    path: storePath,
    expected: ['node 7', 'expected node 1'],
    lmdbOpened: true,
  },
  {
    name: 'a store reset to an empty LMDB file (no silent re-initialization)',
    damage: async (dir) => {
      const empty = await replacementStore(dir, {});
      rmSync(storePath(dir));
      writeFileSync(storePath(dir), readFileSync(empty));
    },
    code: 'DATA_DIR_DAMAGED',
    path: storePath,
    expected: ['no node identity record', 'expected the store of node 1'],
    lmdbOpened: true,
  },
];

/** A valid LMDB file made elsewhere: with a node identity record for `nodeId`, or none. */
async function replacementStore(dir: string, options: { nodeId?: number }): Promise<string> {
  const path = join(dir, '..', `replacement-${options.nodeId ?? 'empty'}.mdb`);
  const env = open({ path, maxDbs: 8 });
  const meta = env.openDB({ name: 'meta' });
  if (options.nodeId !== undefined) meta.putSync([0, 'node'], { nodeId: options.nodeId });
  else meta.putSync([9, 'x'], 1);
  await env.close();
  return path;
}

describe('bad data directories', () => {
  for (const c of badDirs) {
    it(`${c.name} → ${c.code}, naming the path and the expectation, files untouched`, async () => {
      const dir = await populatedDir();
      const nodeId = (await c.damage(dir)) ?? 1;
      const before = fingerprint(dir);
      const err = await openError(dir, nodeId);
      expect(err.code).toBe(c.code);
      expect(err.retryable).toBe(false);
      expect(err.path).toBe(c.path(dir));
      expect(err.message).toContain(c.path(dir));
      for (const word of c.expected) expect(err.message).toContain(word);
      // Again: the refusal is stable, not a one-off.
      expect((await openError(dir, nodeId)).code).toBe(c.code);

      const after = fingerprint(dir);
      expect(Object.keys(after)).toEqual(Object.keys(before)); // nothing created (no lock file litter), nothing removed
      if (c.lmdbOpened === true) {
        delete before[STORE_LOCK_FILE];
        delete after[STORE_LOCK_FILE];
      }
      expect(after).toEqual(before);
    });
  }

  it('a path that is a file, not a directory → DATA_DIR_FOREIGN', async () => {
    const path = join(tempDir(), 'not-a-dir');
    writeFileSync(path, 'hello');
    const err = await openError(path, 1);
    expect(err.code).toBe('DATA_DIR_FOREIGN');
    expect(err.message).toContain(path);
    expect(readFileSync(path, 'utf8')).toBe('hello');
  });

  it('the lock file of a refused store is only ever rewritten by LMDB, never created', async () => {
    const dir = await populatedDir();
    expect(existsSync(join(dir, STORE_LOCK_FILE))).toBe(true); // LMDB keeps it after a clean close
    rmSync(join(dir, STORE_LOCK_FILE));
    writeFileSync(storePath(dir), garbage(3, 8192));
    await openError(dir, 1);
    expect(existsSync(join(dir, STORE_LOCK_FILE))).toBe(false); // the header check refused it before LMDB ran
  });
});

describe('good data directories', () => {
  it('a missing directory is created and initialized; a reopen finds the same node', async () => {
    const dir = join(tempDir(), 'a', 'b');
    const store = await openStore(dir, 5);
    expect(identityOf(dir)).toEqual({ format: 'flotilla-data', version: DATA_FORMAT_VERSION, nodeId: 5, state: 'ready' });
    expect(readdirSync(dir).sort()).toEqual([IDENTITY_FILE, STORE_FILE, STORE_LOCK_FILE]);
    await store.createShard(groupId(3), { confState: confState({ voters: [5] }) });
    await closeStore(store);
    const again = await openStore(dir, 5);
    expect(again.shardIds()).toEqual([groupId(3)]);
  });

  it('an empty directory is initialized', async () => {
    const dir = tempDir();
    await openStore(dir, 1);
    expect(identityOf(dir)).toMatchObject({ nodeId: 1, state: 'ready' });
  });

  it('a directory holding only a temp identity file (crash during the first write) is initialized', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, `${IDENTITY_FILE}.tmp`), '{"format":"flot');
    await openStore(dir, 1);
    expect(readdirSync(dir).sort()).toEqual([IDENTITY_FILE, STORE_FILE, STORE_LOCK_FILE]);
  });

  const unfinished: { name: string; leave: (dir: string) => void }[] = [
    { name: 'no store yet', leave: () => {} },
    { name: 'an empty store file', leave: (dir) => writeFileSync(storePath(dir), '') },
    { name: 'a half-written store', leave: (dir) => writeFileSync(storePath(dir), garbage(4, 5000)) },
    { name: 'a store and a temp identity file', leave: (dir) => (writeFileSync(storePath(dir), garbage(5, 9000)), writeFileSync(join(dir, `${IDENTITY_FILE}.tmp`), '{')) },
  ];
  for (const u of unfinished) {
    it(`an initialization that crashed with ${u.name} starts over`, async () => {
      const dir = tempDir();
      writeIdentity(dir, { format: 'flotilla-data', version: DATA_FORMAT_VERSION, nodeId: 1, state: 'initializing' });
      u.leave(dir);
      const store = await openStore(dir, 1);
      expect(store.shardIds()).toEqual([]);
      expect(identityOf(dir)).toMatchObject({ state: 'ready' });
      await closeStore(store);
      await openStore(dir, 1);
    });
  }

  it('an unfinished initialization of another node is still refused', async () => {
    const dir = tempDir();
    writeIdentity(dir, { format: 'flotilla-data', version: DATA_FORMAT_VERSION, nodeId: 2, state: 'initializing' });
    mkdirSync(join(dir, 'keep'));
    const before = readdirSync(dir).sort();
    expect((await openError(dir, 1)).code).toBe('DATA_DIR_NODE_MISMATCH');
    expect(readdirSync(dir).sort()).toEqual(before);
  });
});
