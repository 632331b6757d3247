// The systems the compare run measures side by side, each started on loopback as child processes of the
// bench and stopped by it (by the ids it spawned, never by name): a 3-node Flotilla cluster (`flotilla
// start` processes), a 3-node etcd cluster (Debian's etcd-server), and the no-consensus baseline.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readyUrl } from '@flotilla/server';
import { HttpClient } from '../load/targets.js';

export interface RunningSystem {
  readonly name: string;
  /** Client URLs, one per member. */
  readonly urls: readonly string[];
  readonly pids: readonly number[];
  /** Each member's data directory (in `pids` order; none for a system that keeps nothing on disk), removed by stop. */
  readonly dataDirs: readonly string[];
  stop(): Promise<void>;
}

/** How long a member may take to say it is serving. */
const START_TIMEOUT_MS = 60_000;
/** How long a member may take to exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

/** `count` TCP ports free on 127.0.0.1 right now (bound, read, released: a small race, fine on a bench machine). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** Where etcd is on PATH, or undefined (the compare run then skips it and says how to install it). */
export function etcdBinary(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path.length > 0 ? path : undefined;
}

export const ETCD_INSTALL_HINT = 'etcd is not installed: on Debian or Ubuntu, `sudo apt-get install etcd-server` (any etcd 3.4+ on PATH works)';

class Children {
  private readonly all: ChildProcess[] = [];

  spawn(command: string, args: string[], name: string): ChildProcess {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => (tail = (tail + chunk.toString()).slice(-4_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('exit', (code, signal) => {
      if (!this.stopping) process.stderr.write(`\n${name} (pid ${child.pid}) exited (${signal ?? `code ${code}`}); its last output:\n${tail}\n`);
    });
    this.all.push(child);
    return child;
  }

  stopping = false;

  get pids(): number[] {
    return this.all.map((c) => c.pid!);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.all.map(
        (child) =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
            child.once('exit', () => {
              clearTimeout(timer);
              done();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }

  /** Last resort on exit of the bench itself: nothing it started outlives it. */
  killNow(): void {
    for (const c of this.all) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}

const everyChildren = new Set<Children>();
process.once('exit', () => {
  for (const c of everyChildren) c.killNow();
});

/** Polls `check` until it resolves true, every 100 ms, up to START_TIMEOUT_MS. */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function started(name: string, children: Children, dir: string, urls: string[], dataDirs: readonly string[], ready: () => Promise<void>): Promise<RunningSystem> {
  const stop = async () => {
    await children.stop();
    everyChildren.delete(children);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await ready();
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, urls, pids: children.pids, dataDirs, stop };
}

/**
 * A local Flotilla cluster: `members` `flotilla start` processes on loopback (data under a temp dir named
 * `<tempDirPrefix>…`, removed by stop), `ranges` ranges pre-split over the key space, `cores` worker cores
 * each, and `nodeArgs` added to every start's arguments. Resolved once every range has a leader.
 */
export async function startFlotilla(o: { members: number; ranges: number; cores: number; tempDirPrefix?: string; nodeArgs?: readonly string[] }): Promise<RunningSystem> {
  const cli = join(dirname(fileURLToPath(import.meta.resolve('@flotilla/server'))), 'cli.js');
  const dir = mkdtempSync(join(os.tmpdir(), o.tempDirPrefix ?? 'flotilla-compare-'));
  const ports = await freePorts(o.members * 2);
  const ids = Array.from({ length: o.members }, (_, i) => i + 1);
  const transport = (id: number) => `127.0.0.1:${ports[id - 1]}`;
  const dataDir = (id: number) => join(dir, `node-${id}`);
  const children = new Children();
  everyChildren.add(children);
  const ready = ids.map((id) => {
    const peers = ids.filter((p) => p !== id).map((p) => `${p}=${transport(p)}`);
    const args = [cli, 'start', '--id', String(id), '--dir', dataDir(id), '--listen', transport(id), '--http', `127.0.0.1:${ports[o.members + id - 1]}`];
    args.push('--log-level', 'warn', '--ranges', String(o.ranges), '--cores', String(o.cores), ...(o.nodeArgs ?? []));
    if (peers.length > 0) args.push('--peers', peers.join(','));
    return readyUrl(children.spawn(process.execPath, args, `flotilla node ${id}`), { name: `flotilla node ${id}`, timeoutMs: START_TIMEOUT_MS });
  });
  const urls: string[] = [];
  return started('flotilla', children, dir, urls, ids.map(dataDir), async () => {
    urls.push(...(await Promise.all(ready)));
    const client = new HttpClient(urls, 5_000);
    try {
      await until('every Flotilla range has a leader', async () => {
        const res = await client.request('GET', '/ranges');
        const ranges = (JSON.parse(res.body.toString('utf8')) as { ranges: { leader: number }[] }).ranges;
        return res.status === 200 && ranges.length > o.ranges && ranges.every((r) => r.leader > 0);
      });
    } finally {
      client.close();
    }
  });
}

/** A local etcd cluster of `members` on loopback (data under a temp dir); resolved once every member serves a read. */
export async function startEtcd(o: { members: number; binary: string }): Promise<RunningSystem> {
  const dir = mkdtempSync(join(os.tmpdir(), 'etcd-compare-'));
  const ports = await freePorts(o.members * 2);
  const names = Array.from({ length: o.members }, (_, i) => `etcd-${i + 1}`);
  const peerUrl = (i: number) => `http://127.0.0.1:${ports[o.members + i]}`;
  const urls = names.map((_, i) => `http://127.0.0.1:${ports[i]}`);
  const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
  const children = new Children();
  everyChildren.add(children);
  for (const [i, name] of names.entries()) {
    children.spawn(
      o.binary,
      [
        '--name', name,
        '--data-dir', join(dir, name),
        '--listen-client-urls', urls[i]!,
        '--advertise-client-urls', urls[i]!,
        '--listen-peer-urls', peerUrl(i),
        '--initial-advertise-peer-urls', peerUrl(i),
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', `compare-${process.pid}`,
        '--log-level', 'error',
      ],
      name,
    );
  }
  return started('etcd', children, dir, urls, names.map((n) => join(dir, n)), async () => {
    const client = new HttpClient(urls, 5_000);
    try {
      for (let i = 0; i < urls.length; i++) {
        await until(`${names[i]} serves a read`, async () => (await client.request('POST', '/v3/kv/range', JSON.stringify({ key: 'AA==' }), { 'content-type': 'application/json' }, i)).status === 200);
      }
    } finally {
      client.close();
    }
  });
}

/** The no-consensus baseline: Flotilla's HTTP stack over an in-memory map, one process (compare/baseline-server.ts). */
export async function startBaseline(): Promise<RunningSystem> {
  const dir = mkdtempSync(join(os.tmpdir(), 'baseline-compare-'));
  const [port] = await freePorts(1);
  const children = new Children();
  everyChildren.add(children);
  const server = fileURLToPath(new URL('./baseline-server.js', import.meta.url));
  const ready = readyUrl(children.spawn(process.execPath, [server, '--http', `127.0.0.1:${port}`], 'baseline'), { name: 'baseline', timeoutMs: START_TIMEOUT_MS });
  const urls: string[] = [];
  return started('baseline', children, dir, urls, [], async () => {
    urls.push(await ready);
  });
}
