// One process per data directory: a second start on a live node's directory
// (another process, or a second open in this one) fails at once with
// DATA_DIR_LOCKED naming the holder's pid and changes nothing; the kernel
// drops the lock when its holder dies, even by SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeededRng, groupId } from '@flotilla/core';
import { MemoryNetwork } from '@flotilla/transport/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { NODE_FILE, lockNodeDir } from '../src/host/node-dir.js';
import { DirLock, LOCK_FILE } from '../src/storage/dir-lock.js';
import { DataDirError, DataDirLockedError } from '../src/storage/errors.js';
import { tempDir, useTempStores } from './support/fixtures.js';
import { silentLogger } from './support/host-cluster.js';

useTempStores();

const hosts: Host[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const host of hosts.splice(0)) await host.close();
});

async function startHost(dir: string): Promise<Host> {
  const host = await Host.start({
    nodeId: 1,
    dir,
    transport: new MemoryNetwork({ rng: new SeededRng(1) }).endpoint(1),
    coreCount: 1,
    coreMode: 'inline',
    ticker: { kind: 'manual' },
    logger: silentLogger(),
  });
  hosts.push(host);
  return host;
}

async function startError(dir: string): Promise<DataDirError> {
  let caught: unknown;
  try {
    await startHost(dir);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DataDirError);
  return caught as DataDirError;
}

/** Every entry under `root` (and root itself) with its size and modification time: what a refused open must not change. */
function listing(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    const s = statSync(dir);
    out[relative(root, dir) || '.'] = `dir mtime ${s.mtimeMs}`;
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else out[relative(root, path)] = `${st.size} B mtime ${st.mtimeMs} ${readFileSync(path).subarray(0, 64).toString('hex')}`;
    }
  };
  walk(root);
  return out;
}

const SHARDS_DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const TRANSPORT_DIST = fileURLToPath(new URL('../../transport/dist/testing/index.js', import.meta.url));
const CORE_DIST = fileURLToPath(new URL('../../core/dist/index.js', import.meta.url));

/**
 * Another process holding the directory: a Host (built code, inline core,
 * no ticks, so nothing changes on disk once it is ready) with one shard.
 * Resolves once it reported ready on stdout.
 */
async function holdInChild(dir: string): Promise<ChildProcess> {
  const script = `
    const { Host } = await import(${JSON.stringify(SHARDS_DIST)});
    const { MemoryNetwork } = await import(${JSON.stringify(TRANSPORT_DIST)});
    const { SeededRng } = await import(${JSON.stringify(CORE_DIST)});
    const logger = { child: () => logger, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };
    const host = await Host.start({ nodeId: 1, dir: process.argv[1], transport: new MemoryNetwork({ rng: new SeededRng(1) }).endpoint(1), coreCount: 1, coreMode: 'inline', ticker: { kind: 'manual' }, logger });
    await host.createShard({ shardId: 7, voters: [1] });
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('ready\n')) resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`lock holder exited (${signal ?? code}) before ready: ${stderr}`)));
  });
  return child;
}

async function killHard(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

describe('data directory lock', () => {
  it('refuses a second start while another process holds the directory, naming its pid and changing nothing; a SIGKILL releases it', async () => {
    const dir = join(tempDir(), 'node');
    const child = await holdInChild(dir);
    const before = listing(dir);

    const err = await startError(dir);
    expect(err).toBeInstanceOf(DataDirLockedError);
    expect(err.code).toBe('DATA_DIR_LOCKED');
    expect((err as DataDirLockedError).holderPid).toBe(child.pid);
    expect(err.message).toContain(`process ${child.pid}`);
    expect(err.message).toContain(join(dir, LOCK_FILE));
    expect(listing(dir), 'the refused start touched nothing').toEqual(before);

    // No stale lock to clean up: the kernel released it with the process.
    await killHard(child);
    const host = await startHost(dir);
    expect((await host.shards()).map((s) => s.shardId), "the killed holder's shard is there").toEqual([groupId(7)]);
  }, 30_000);

  it('refuses a second open of the directory in the same process until the first is closed', async () => {
    const dir = join(tempDir(), 'node');
    const first = await startHost(dir);
    await first.createShard({ shardId: groupId(3), voters: [1] });
    const before = listing(dir);

    const err = await startError(dir);
    expect(err.code).toBe('DATA_DIR_LOCKED');
    expect((err as DataDirLockedError).holderPid).toBe(process.pid);
    expect(err.message).toMatch(/this process/);
    expect(listing(dir), 'the refused start touched nothing').toEqual(before);

    await first.close();
    hosts.splice(hosts.indexOf(first), 1);
    const second = await startHost(dir);
    expect((await second.shards()).map((s) => s.shardId)).toEqual([groupId(3)]);
  }, 30_000);

  it('releases the lock when a start fails on a directory it refuses', async () => {
    const dir = join(tempDir(), 'node');
    const host = await startHost(dir);
    await host.close();
    hosts.length = 0;
    // Another node's directory: refused after the lock was taken; the lock must not stay held.
    const nodeFile = join(dir, NODE_FILE);
    writeFileSync(nodeFile, readFileSync(nodeFile, 'utf8').replace('"nodeId":1', '"nodeId":2'));
    expect((await startError(dir)).code).toBe('DATA_DIR_NODE_MISMATCH');
    const lock = DirLock.acquire(dir);
    expect(lock.held).toBe(true);
    lock.release();
    expect(lock.held).toBe(false);
  }, 30_000);

  it('refuses a foreign directory before making a lock file in it', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'notes.txt'), 'not a node');
    const before = listing(dir);
    let caught: unknown;
    try {
      lockNodeDir(dir);
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'DATA_DIR_FOREIGN' });
    expect(listing(dir)).toEqual(before);
  });

  it('creates a missing directory and records the holder pid in LOCK; release leaves the file, emptied', () => {
    const dir = join(tempDir(), 'a', 'b');
    const lock = lockNodeDir(dir);
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8')).toBe(`${process.pid}\n`);
    expect(() => lockNodeDir(dir)).toThrow(DataDirLockedError);
    lock.release();
    lock.release();
    expect(readFileSync(join(dir, LOCK_FILE), 'utf8')).toBe('');
    mkdirSync(join(dir, 'x'));
    // LOCK marks the directory as ours: another entry next to it is prepareNodeDir's to judge.
    lockNodeDir(dir).release();
  });
});
