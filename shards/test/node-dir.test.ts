// A node's data directory: NODE (identity and core count) and one store
// directory per worker core. Directories the node must refuse are refused
// with a stable code and without touching a byte. An interrupted creation
// is finished on the next start.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { AssertionError, SeededRng, groupId } from '@flotilla/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CORE_COUNT_MAX, NODE_DIR_FORMAT_VERSION, NODE_FILE, coreDirName, markNodeDirReady, openNodeStores, prepareNodeDir } from '../src/host/node-dir.js';
import { IDENTITY_FILE, STORE_FILE, STORE_LOCK_FILE } from '../src/storage/data-dir.js';
import { DataDirError } from '../src/storage/errors.js';
import { NodeStore } from '../src/storage/node-store.js';
import { SHARD, bytes, closeStore, commitAndApply, confState, errorCode, openStore, putEntry, tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

/** Every store openNodeStores returned in this test; closed after it (before useTempStores removes the directories). */
const opened = new Set<NodeStore>();
afterEach(async () => {
  vi.restoreAllMocks();
  for (const store of opened) await store.close();
  opened.clear();
});

async function openNode(dir: string, options: { nodeId?: number; coreCount?: number } = {}): Promise<NodeStore[]> {
  const stores = await openNodeStores({ dir, nodeId: options.nodeId ?? 1, coreCount: options.coreCount ?? 2 });
  for (const store of stores) opened.add(store);
  return stores;
}

async function closeNode(stores: readonly NodeStore[]): Promise<void> {
  for (const store of stores) {
    await store.close();
    opened.delete(store);
  }
}

async function openNodeError(dir: string, options: { nodeId?: number; coreCount?: number } = {}): Promise<DataDirError> {
  let caught: unknown;
  try {
    await closeNode(await openNode(dir, options));
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DataDirError);
  return caught as DataDirError;
}

/** Relative path → sha256 of every file ("dir" for directories), recursively. */
function fingerprint(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        out[relative(root, path)] = 'dir';
        walk(path);
      } else {
        out[relative(root, path)] = createHash('sha256').update(readFileSync(path)).digest('hex');
      }
    }
  };
  walk(root);
  return out;
}

function withoutLockFiles(print: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(print).filter(([path]) => !path.endsWith(STORE_LOCK_FILE)));
}

function garbage(seed: number, length: number): Buffer {
  const rng = new SeededRng(seed);
  return Buffer.from(Uint8Array.from({ length }, () => rng.intBelow(256)));
}

const nodePath = (dir: string) => join(dir, NODE_FILE);
const coreDir = (dir: string, core: number) => join(dir, coreDirName(core));
const nodeIdentityOf = (dir: string) => JSON.parse(readFileSync(nodePath(dir), 'utf8')) as Record<string, unknown>;
const writeNodeIdentity = (dir: string, fields: Record<string, unknown>) => writeFileSync(nodePath(dir), `${JSON.stringify(fields)}\n`);
const identity = (fields: { nodeId: number; coreCount: number; state: string }) => ({ format: 'flotilla-node', version: NODE_DIR_FORMAT_VERSION, ...fields });

/** A closed node directory of node 1 with 2 cores, each holding a shard with a few keys. */
async function populatedNodeDir(): Promise<string> {
  const dir = join(tempDir(), 'node-1');
  const stores = await openNode(dir, { nodeId: 1, coreCount: 2 });
  for (const [core, store] of stores.entries()) {
    const shardId = groupId(core + 1);
    await store.createShard(shardId, { confState: confState({ voters: [1, 2, 3] }) });
    await commitAndApply(store, shardId, Array.from({ length: 20 }, (_, i) => putEntry(i + 1, 1, bytes(`core-${core}-key-${i}`), new Uint8Array(512).fill(i))));
  }
  await closeNode(stores);
  return dir;
}

describe('creating and reopening a node directory', () => {
  it('a missing directory gets NODE and one store per core; a reopen finds the same stores', async () => {
    const dir = join(tempDir(), 'a', 'b');
    const stores = await openNode(dir, { nodeId: 3, coreCount: 3 });
    expect(nodeIdentityOf(dir)).toEqual(identity({ nodeId: 3, coreCount: 3, state: 'ready' }));
    expect(readdirSync(dir).sort()).toEqual([NODE_FILE, 'core-0', 'core-1', 'core-2']);
    expect(stores.map((s) => s.dir)).toEqual([0, 1, 2].map((core) => coreDir(dir, core)));
    expect(stores.map((s) => s.nodeId)).toEqual([3, 3, 3]);
    for (const core of [0, 1, 2]) expect(readdirSync(coreDir(dir, core)).sort()).toEqual([IDENTITY_FILE, STORE_FILE, STORE_LOCK_FILE]);

    await stores[1]!.createShard(groupId(7), { confState: confState({ voters: [3] }) });
    await closeNode(stores);
    const nodeBytes = readFileSync(nodePath(dir));
    const again = await openNode(dir, { nodeId: 3, coreCount: 3 });
    expect(again.map((s) => s.shardIds())).toEqual([[], [groupId(7)], []]);
    expect(readFileSync(nodePath(dir))).toEqual(nodeBytes); // a ready NODE is never rewritten
  });

  it('an empty directory is created with the requested core count', async () => {
    const dir = tempDir();
    const stores = await openNode(dir, { nodeId: 1, coreCount: 1 });
    expect(stores).toHaveLength(1);
    expect(nodeIdentityOf(dir)).toEqual(identity({ nodeId: 1, coreCount: 1, state: 'ready' }));
  });

  it(`accepts up to CORE_COUNT_MAX (${CORE_COUNT_MAX}) cores`, async () => {
    const stores = await openNode(tempDir(), { coreCount: CORE_COUNT_MAX });
    expect(stores).toHaveLength(CORE_COUNT_MAX);
  });

  const badCounts = [0, -1, 1.5, Number.NaN, CORE_COUNT_MAX + 1];
  for (const coreCount of badCounts) {
    it(`a core count of ${coreCount} is a RangeError and creates nothing`, async () => {
      const dir = join(tempDir(), 'node');
      await expect(openNode(dir, { coreCount })).rejects.toThrow(RangeError);
      expect(existsSync(dir)).toBe(false);
    });
  }

  it('a node id that is not a positive integer is a RangeError and creates nothing', async () => {
    const dir = join(tempDir(), 'node');
    await expect(openNode(dir, { nodeId: 0 })).rejects.toThrow(RangeError);
    expect(existsSync(dir)).toBe(false);
  });
});

interface BadNodeDir {
  readonly name: string;
  /** Damages a populated node directory (node 1, 2 cores); returns how to open it, if not as node 1 with 2 cores. */
  readonly damage: (dir: string) => { nodeId?: number; coreCount?: number } | void | Promise<void>;
  readonly code: DataDirError['code'];
  /** Which path the error names. */
  readonly path: (dir: string) => string;
  /** Words the message must contain besides the path: what was found and what was expected. */
  readonly expected: readonly string[];
  /** Refused by core 1's store: core 0 was opened and closed first, which rewrites only its LMDB lock file. */
  readonly coreRefused?: boolean;
}

const badNodeDirs: BadNodeDir[] = [
  { name: 'a garbage NODE file', damage: (dir) => writeFileSync(nodePath(dir), garbage(1, 200)), code: 'DATA_DIR_DAMAGED', path: nodePath, expected: ['JSON', 'expected'] },
  { name: 'an empty NODE file', damage: (dir) => writeFileSync(nodePath(dir), ''), code: 'DATA_DIR_DAMAGED', path: nodePath, expected: ['JSON', 'expected'] },
  { name: 'a NODE file of another program', damage: (dir) => writeNodeIdentity(dir, { format: 'other-db', version: 1 }), code: 'DATA_DIR_FOREIGN', path: nodePath, expected: ['"other-db"', 'expected "flotilla-node"'] },
  { name: 'a NODE file holding JSON null', damage: (dir) => writeFileSync(nodePath(dir), 'null'), code: 'DATA_DIR_FOREIGN', path: nodePath, expected: ['expected "flotilla-node"'] },
  {
    name: 'a newer node directory version',
    damage: (dir) => writeNodeIdentity(dir, { ...nodeIdentityOf(dir), version: NODE_DIR_FORMAT_VERSION + 1 }),
    code: 'DATA_DIR_VERSION',
    path: nodePath,
    expected: [`version ${NODE_DIR_FORMAT_VERSION + 1}`, `expected version ${NODE_DIR_FORMAT_VERSION}`],
  },
  { name: 'a NODE file with a string version', damage: (dir) => writeNodeIdentity(dir, { ...nodeIdentityOf(dir), version: '1' }), code: 'DATA_DIR_DAMAGED', path: nodePath, expected: ['version', 'expected an integer'] },
  { name: 'a NODE file without a core count', damage: (dir) => writeNodeIdentity(dir, { ...nodeIdentityOf(dir), coreCount: undefined }), code: 'DATA_DIR_DAMAGED', path: nodePath, expected: ['core count', 'expected a positive integer'] },
  { name: 'a NODE file in an unknown state', damage: (dir) => writeNodeIdentity(dir, { ...nodeIdentityOf(dir), state: 'migrating' }), code: 'DATA_DIR_DAMAGED', path: nodePath, expected: ['"migrating"', 'expected'] },
  { name: 'another node’s directory', damage: () => ({ nodeId: 2 }), code: 'DATA_DIR_NODE_MISMATCH', path: nodePath, expected: ['node 1', 'expected node 2'] },
  {
    name: 'fewer cores than it was created with',
    damage: () => ({ coreCount: 1 }),
    code: 'DATA_DIR_CORES_MISMATCH',
    path: nodePath,
    expected: ['created with 2 cores; started with 1 (the core count is fixed per data directory)'],
  },
  { name: 'more cores than it was created with', damage: () => ({ coreCount: 3 }), code: 'DATA_DIR_CORES_MISMATCH', path: nodePath, expected: ['created with 2 cores; started with 3'] },
  { name: 'files but no NODE file', damage: (dir) => rmSync(nodePath(dir)), code: 'DATA_DIR_FOREIGN', path: (dir) => dir, expected: [NODE_FILE, 'expected an empty directory'] },
  {
    name: 'a core directory missing from a ready directory (no silent reset)',
    damage: (dir) => rmSync(coreDir(dir, 1), { recursive: true }),
    code: 'DATA_DIR_DAMAGED',
    path: (dir) => coreDir(dir, 1),
    expected: ['missing', 'expected the store of core 1'],
  },
  {
    name: 'a core directory that is a file',
    damage: (dir) => (rmSync(coreDir(dir, 0), { recursive: true }), writeFileSync(coreDir(dir, 0), 'x')),
    code: 'DATA_DIR_DAMAGED',
    path: (dir) => coreDir(dir, 0),
    expected: ['not a directory', 'expected the store directory of core 0'],
  },
  { name: 'a core directory beyond the core count', damage: (dir) => mkdirSync(coreDir(dir, 2)), code: 'DATA_DIR_DAMAGED', path: (dir) => dir, expected: ['core-2', 'expected core-0 to core-1 only'] },
  {
    name: 'a core store of another node',
    damage: (dir) => {
      const path = join(coreDir(dir, 1), IDENTITY_FILE);
      writeFileSync(path, readFileSync(path, 'utf8').replace('"nodeId":1', '"nodeId":9'));
    },
    code: 'DATA_DIR_NODE_MISMATCH',
    path: (dir) => join(coreDir(dir, 1), IDENTITY_FILE),
    expected: ['node 9', 'expected node 1'],
    coreRefused: true,
  },
  {
    name: 'a core store replaced by garbage',
    damage: (dir) => writeFileSync(join(coreDir(dir, 1), STORE_FILE), garbage(2, 64 * 1024)),
    code: 'DATA_DIR_DAMAGED',
    path: (dir) => join(coreDir(dir, 1), STORE_FILE),
    expected: ['magic', 'expected an intact LMDB store'],
    coreRefused: true,
  },
];

describe('refused node directories', () => {
  for (const c of badNodeDirs) {
    it(`${c.name} → ${c.code}, naming the path and the expectation, files untouched`, async () => {
      const dir = await populatedNodeDir();
      const options = (await c.damage(dir)) ?? {};
      const before = fingerprint(dir);
      const err = await openNodeError(dir, options);
      expect(err.code).toBe(c.code);
      expect(err.retryable).toBe(false);
      expect(err.path).toBe(c.path(dir));
      expect(err.message).toContain(c.path(dir));
      for (const word of c.expected) expect(err.message).toContain(word);
      // Again: the refusal is stable, not a one-off.
      expect((await openNodeError(dir, options)).code).toBe(c.code);

      const after = fingerprint(dir);
      expect(Object.keys(after)).toEqual(Object.keys(before)); // nothing created, nothing removed
      expect(c.coreRefused === true ? withoutLockFiles(after) : after).toEqual(c.coreRefused === true ? withoutLockFiles(before) : before);
    });
  }

  it('a home folder → DATA_DIR_FOREIGN, untouched', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, '.bashrc'), 'export EDITOR=vi\n');
    mkdirSync(join(dir, 'projects'));
    writeFileSync(join(dir, 'projects', 'notes.txt'), 'hello');
    const before = fingerprint(dir);
    const err = await openNodeError(dir);
    expect(err.code).toBe('DATA_DIR_FOREIGN');
    expect(err.message).toContain('.bashrc');
    expect(fingerprint(dir)).toEqual(before);
  });

  it('a single-store data directory of the old layout → DATA_DIR_FOREIGN, untouched', async () => {
    const dir = tempDir();
    const store = await openStore(dir, 1);
    await store.createShard(SHARD, { confState: confState({ voters: [1] }) });
    await closeStore(store);
    const before = fingerprint(dir);
    const err = await openNodeError(dir, { nodeId: 1, coreCount: 1 });
    expect(err.code).toBe('DATA_DIR_FOREIGN');
    expect(err.message).toContain(`${IDENTITY_FILE}, ${STORE_FILE}`);
    expect(err.message).toContain('not a node directory');
    expect(fingerprint(dir)).toEqual(before); // refused before LMDB ran: not even the lock file changed
  });

  it('a path that is a file → DATA_DIR_FOREIGN, untouched', async () => {
    const path = join(tempDir(), 'not-a-dir');
    writeFileSync(path, 'hello');
    const err = await openNodeError(path);
    expect(err.code).toBe('DATA_DIR_FOREIGN');
    expect(err.message).toContain(path);
    expect(readFileSync(path, 'utf8')).toBe('hello');
  });

  it('an unfinished creation of another node is still refused', async () => {
    const dir = tempDir();
    writeNodeIdentity(dir, identity({ nodeId: 2, coreCount: 2, state: 'initializing' }));
    const before = fingerprint(dir);
    expect((await openNodeError(dir, { nodeId: 1 })).code).toBe('DATA_DIR_NODE_MISMATCH');
    expect(fingerprint(dir)).toEqual(before);
  });
});

describe('interrupted creation', () => {
  it('a directory holding only NODE.tmp (crash during the first write) is created', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, `${NODE_FILE}.tmp`), '{"format":"flot');
    await openNode(dir);
    expect(readdirSync(dir).sort()).toEqual([NODE_FILE, 'core-0', 'core-1']);
    expect(nodeIdentityOf(dir)).toMatchObject({ state: 'ready' });
  });

  it('a crash after writing NODE, before any core store: the next open creates every core store', async () => {
    const dir = tempDir();
    writeNodeIdentity(dir, identity({ nodeId: 1, coreCount: 3, state: 'initializing' }));
    const stores = await openNode(dir, { coreCount: 3 });
    expect(stores.map((s) => s.shardIds())).toEqual([[], [], []]);
    expect(readdirSync(dir).sort()).toEqual([NODE_FILE, 'core-0', 'core-1', 'core-2']);
    expect(nodeIdentityOf(dir)).toEqual(identity({ nodeId: 1, coreCount: 3, state: 'ready' }));
  });

  it('a failure creating core 1 closes core 0 and leaves NODE initializing; the next open finishes the creation', async () => {
    const dir = tempDir();
    const realOpen = NodeStore.open.bind(NodeStore);
    const returned: NodeStore[] = [];
    const openSpy = vi.spyOn(NodeStore, 'open').mockImplementation(async (options) => {
      if (options.dir === coreDir(dir, 1)) throw new Error('no space left on device (injected)');
      const store = await realOpen(options);
      returned.push(store);
      return store;
    });
    const closeSpy = vi.spyOn(NodeStore.prototype, 'close');
    await expect(openNode(dir)).rejects.toThrow('injected');
    expect(returned).toHaveLength(1);
    expect(closeSpy.mock.contexts).toHaveLength(1);
    expect(closeSpy.mock.contexts[0]).toBe(returned[0]);
    expect(nodeIdentityOf(dir)).toEqual(identity({ nodeId: 1, coreCount: 2, state: 'initializing' }));
    expect(readdirSync(dir).sort()).toEqual([NODE_FILE, 'core-0']);

    openSpy.mockRestore();
    const stores = await openNode(dir);
    expect(stores.map((s) => s.dir)).toEqual([coreDir(dir, 0), coreDir(dir, 1)]);
    expect(nodeIdentityOf(dir)).toMatchObject({ state: 'ready' });
  });

  it('a crash while marking NODE ready: the leftover NODE.tmp is removed and NODE marked ready', async () => {
    const dir = tempDir();
    await closeNode(await openNode(dir));
    writeNodeIdentity(dir, identity({ nodeId: 1, coreCount: 2, state: 'initializing' }));
    writeFileSync(join(dir, `${NODE_FILE}.tmp`), '{"format":"flotilla-node","vers');
    await openNode(dir);
    expect(readdirSync(dir).sort()).toEqual([NODE_FILE, 'core-0', 'core-1']);
    expect(nodeIdentityOf(dir)).toMatchObject({ state: 'ready' });
  });
});

describe('preparing the directory for stores opened elsewhere (one per worker)', () => {
  it('prepareNodeDir returns the core directories; NODE stays initializing until markNodeDirReady', async () => {
    const dir = tempDir();
    const options = { dir, nodeId: 4, coreCount: 2 };
    const coreDirs = prepareNodeDir(options);
    expect(coreDirs).toEqual([coreDir(dir, 0), coreDir(dir, 1)]);
    expect(readdirSync(dir)).toEqual([NODE_FILE]);
    expect(nodeIdentityOf(dir)).toEqual(identity({ nodeId: 4, coreCount: 2, state: 'initializing' }));
    for (const coreDir of coreDirs) await openStore(coreDir, 4);
    markNodeDirReady(options);
    expect(nodeIdentityOf(dir)).toEqual(identity({ nodeId: 4, coreCount: 2, state: 'ready' }));
    const nodeBytes = readFileSync(nodePath(dir));
    markNodeDirReady(options);
    expect(prepareNodeDir(options)).toEqual(coreDirs);
    expect(readFileSync(nodePath(dir))).toEqual(nodeBytes); // a ready NODE is never rewritten
  });

  it('marking a directory ready before every core store exists is an assertion failure', async () => {
    const dir = tempDir();
    const options = { dir, nodeId: 1, coreCount: 2 };
    const [first] = prepareNodeDir(options);
    await openStore(first!, 1);
    expect(() => markNodeDirReady(options)).toThrow(AssertionError);
    expect(nodeIdentityOf(dir)).toMatchObject({ state: 'initializing' });
  });

  it('markNodeDirReady checks NODE like prepareNodeDir does', async () => {
    const dir = await populatedNodeDir();
    expect(errorCode(() => markNodeDirReady({ dir, nodeId: 1, coreCount: 3 }))).toBe('DATA_DIR_CORES_MISMATCH');
    expect(errorCode(() => markNodeDirReady({ dir, nodeId: 2, coreCount: 2 }))).toBe('DATA_DIR_NODE_MISMATCH');
  });
});

describe('failure while opening', () => {
  it('stores opened before a refused core are closed before the error is rethrown', async () => {
    const dir = await populatedNodeDir();
    writeFileSync(join(coreDir(dir, 1), STORE_FILE), garbage(3, 64 * 1024));
    const realOpen = NodeStore.open.bind(NodeStore);
    const returned: NodeStore[] = [];
    vi.spyOn(NodeStore, 'open').mockImplementation(async (options) => {
      const store = await realOpen(options);
      returned.push(store);
      return store;
    });
    const closeSpy = vi.spyOn(NodeStore.prototype, 'close');
    expect((await openNodeError(dir)).code).toBe('DATA_DIR_DAMAGED');
    expect(returned.map((s) => s.dir)).toEqual([coreDir(dir, 0)]);
    expect(closeSpy.mock.contexts).toHaveLength(1);
    expect(closeSpy.mock.contexts[0]).toBe(returned[0]);
    await expect(returned[0]!.persist([])).rejects.toThrow('is closed');
  });
});
