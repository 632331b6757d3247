// Power failures of `flotilla start` processes, emulated by the LD_PRELOAD shim in
// shards/test-support/power-failure: each node's data lives in a watched directory, and a power
// failure is SIGKILL plus rebuilding that directory from what was synced. A node must then restart
// (or refuse with a stable error code) and lose nothing it acknowledged:
// - at bootstrap: a first start cut at each of its identity and directory syncs;
// - after a join: a 4th node (strict mode) and a 5th (metadata mode) cut right after they report ready;
// - under load (strict mode): one node, then all three, cut mid-load.
// README.md in that folder says what strict and metadata mode keep.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { PowerFailDisk, buildPowerFailTools, type DurabilityEvent, type PowerFailMode } from '@flotilla/shards/test-support/power-failure';
import { afterAll, describe, expect, it } from 'vitest';
import { CLUSTER_TOKEN_DEFAULT, deriveClusterId, readClusterIdentity } from '../src/cluster-identity.js';
import { readyUrl } from '../src/ready-line.js';
import { untilTrue } from './support/until.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
/** Node start, module load and LMDB open take 1–3 s here; 30 s means it hangs. */
const READY_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 3_000;
/** Reads after a restart may wait for elections in every range first. */
const READ_TIMEOUT_MS = 10_000;
/** A restarted node may answer 503 (a deadline passed while its ranges elected): a client retries the same value, a few times. */
const PUT_ATTEMPTS = 5;
/** The tail of a node's stderr kept for failure messages and refusals. */
const STDERR_KEPT_CHARS = 4_000;
/** Writer lanes of the load; each write has its own deadline, and the phases are bounded in count and, by their waits, in time. */
const WRITER_LANES = 8;
const WRITES_PER_PHASE_MAX = 4_000;
/** Writes a phase has acknowledged before its power failure, and after a restart, before it goes on. */
const ACKED_PER_STEP_MIN = 40;
/** Bound of each of those waits: a few seconds' work here, so only a stuck cluster reaches it. */
const PHASE_WAIT_MS = 20_000;
/** Replicas of every user range report the same applied index within this long after the load stops. */
const CONVERGE_TIMEOUT_MS = 20_000;
const RANGE_COUNT = 4;
/**
 * Three to six times what each took on a 2-CPU machine with a load average of 5 (40, 10 and 14 s). The
 * bootstrap test's 36 cuts each start and stop processes: at CI's load average of 8 it ran past 120 s
 * (stops 27 and 28), so it has six times its quiet 40 s.
 */
const BOOTSTRAP_TEST_TIMEOUT_MS = 240_000;
const JOIN_TEST_TIMEOUT_MS = 60_000;
const LOAD_TEST_TIMEOUT_MS = 60_000;
/** Bootstrap cuts run two at a time: each is a node start and a restart, mostly module loading. */
const BOOTSTRAP_CUTS_IN_PARALLEL = 2;

const root = mkdtempSync(join(tmpdir(), 'flotilla-powerfail-'));
const built = buildPowerFailTools(join(root, 'bin'));
if ('unavailable' in built) console.warn(`power-failure tests skipped: ${built.unavailable}`);
const tools = 'unavailable' in built ? undefined : built;

/** Every node process this file started, so afterAll ends exactly those. */
const started = new Set<ChildProcess>();
afterAll(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface NodeRun {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  /** After stdio closed, so stderr() is complete. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface NodeConfig {
  readonly id: number;
  readonly dir: string;
  readonly transport: number;
  readonly http: number;
  readonly peers?: string;
  readonly join?: string;
}

function flagsOf(c: NodeConfig): string[] {
  return [
    '--id', String(c.id), '--dir', c.dir, '--listen', `127.0.0.1:${c.transport}`, '--http', `127.0.0.1:${c.http}`,
    ...(c.peers === undefined ? [] : ['--peers', c.peers]), ...(c.join === undefined ? [] : ['--join', c.join]),
    '--ranges', String(RANGE_COUNT), '--tick-ms', '20', '--cores', '1', '--log-level', 'warn',
  ];
}

function spawnNode(c: NodeConfig, env: NodeJS.ProcessEnv = process.env): NodeRun {
  const child = spawn(process.execPath, [CLI, 'start', ...flagsOf(c)], { stdio: ['ignore', 'pipe', 'pipe'], env });
  started.add(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT_CHARS);
  });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return { child, stderr: () => stderr, closed };
}

type Outcome = { readonly url: string } | { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stderr: string };

/** Waits for the ready line or the exit, whichever comes first. */
async function outcomeOf(run: NodeRun, name: string): Promise<Outcome> {
  try {
    return { url: await readyUrl(run.child, { name, timeoutMs: READY_TIMEOUT_MS }) };
  } catch (err) {
    if (run.child.exitCode === null && run.child.signalCode === null) throw err; // a timeout, not an exit
    return { ...(await run.closed), stderr: run.stderr() };
  }
}

async function startReady(c: NodeConfig, env?: NodeJS.ProcessEnv): Promise<{ run: NodeRun; url: string }> {
  const run = spawnNode(c, env);
  const outcome = await outcomeOf(run, `node ${c.id}`);
  if (!('url' in outcome)) throw new Error(`node ${c.id} did not start: exit ${outcome.signal ?? outcome.code}\n${outcome.stderr}`);
  return { run, url: outcome.url };
}

async function stopHard(run: NodeRun): Promise<void> {
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
  await run.closed;
}

let diskCount = 0;
function newDisk(mode: PowerFailMode): PowerFailDisk {
  const base = join(root, `disk-${diskCount++}`);
  return new PowerFailDisk({ tools: tools!, dir: join(base, 'watched'), imageDir: join(base, 'image'), mode });
}

/** A PUT that wrote: 201 when it created the key, 200 when it overwrote it. */
function written(status: number | undefined): boolean {
  return status === 200 || status === 201;
}

async function put(url: string, key: string, value: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${url}/kv/${key}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return undefined; // refused or timed out: outcome unknown
  }
}

async function get(url: string, key: string): Promise<{ status: number; body: string } | string> {
  try {
    const res = await fetch(`${url}/kv/${key}`, { signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return (err as Error).message;
  }
}

const readJson = (path: string): unknown => (existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined);

describe.skipIf(tools === undefined)('power failure of flotilla start processes', () => {
  it('a first start cut at any identity or directory sync restarts, or refuses with a stable code; a ready store is never replaced', async () => {
    const failures: string[] = [];
    let cuts = 0;
    for (const mode of ['strict', 'metadata'] as const) {
      // A first start run to the end tells where its syncs are; the cuts then land before each chosen one.
      const dry = newDisk(mode);
      const [transport, http] = (await freePorts(2)) as [number, number];
      const { run } = await startReady({ id: 1, dir: join(dry.dir, 'data'), transport, http }, dry.env());
      const points = crashPointsOf(dry.events(), mode);
      await stopHard(run);
      cuts += points.length;
      let next = 0;
      await Promise.all(Array.from({ length: BOOTSTRAP_CUTS_IN_PARALLEL }, async () => {
        for (let i = next++; i < points.length; i = next++) {
          const failure = await cutFirstStart(mode, points[i]!);
          if (failure !== undefined) failures.push(failure);
        }
      }));
    }
    console.log(`power failure at bootstrap: ${cuts} cuts, ${failures.length} failed`);
    expect(failures).toEqual([]);
  }, BOOTSTRAP_TEST_TIMEOUT_MS);

  it('a node cut right after it joined restarts and serves (cluster.json is durable)', async () => {
    const transport = await freePorts(5);
    const http = await freePorts(5);
    const peersOf = (id: number) => [1, 2, 3].filter((j) => j !== id).map((j) => `${j}=127.0.0.1:${transport[j - 1]}`).join(',');
    const members = await Promise.all([1, 2, 3].map((id) => startReady({ id, dir: join(root, `join-n${id}`), transport: transport[id - 1]!, http: http[id - 1]!, peers: peersOf(id) })));
    const failures: string[] = [];
    for (const [id, mode] of [[4, 'strict'], [5, 'metadata']] as const) {
      const disk = newDisk(mode);
      const c = { id, dir: join(disk.dir, 'data'), transport: transport[id - 1]!, http: http[id - 1]!, join: members[0]!.url };
      const joined = await startReady(c, disk.env());
      await disk.powerFail([joined.run.child]);
      const restart = spawnNode(c, disk.env());
      const outcome = await outcomeOf(restart, `node ${id} (restart after a power failure right after joining, ${mode} mode)`);
      if (!('url' in outcome)) {
        failures.push(`${mode} mode: node ${id} did not restart after a power failure right after joining: exit ${outcome.signal ?? outcome.code}; cluster.json: ${JSON.stringify(existsSync(join(c.dir, 'cluster.json')) ? readFileSync(join(c.dir, 'cluster.json'), 'utf8') : null)}\n${outcome.stderr}`);
        continue;
      }
      const clusterIds = [readClusterIdentity(c.dir)?.clusterId, readClusterIdentity(join(root, 'join-n1'))?.clusterId];
      if (clusterIds[0] !== clusterIds[1]) failures.push(`${mode} mode: node ${id} restarted with cluster id ${clusterIds[0]}, the members' is ${clusterIds[1]}`);
      const key = `%20join${id}`;
      let status: number | undefined;
      for (let attempt = 0; attempt < PUT_ATTEMPTS && !written(status); attempt++) status = await put(outcome.url, key, `via-${id}`);
      const read = await get(members[1]!.url, key);
      if (!written(status) || typeof read === 'string' || read.body !== `via-${id}`) failures.push(`${mode} mode: node ${id} restarted but PUT ${status} through it ${PUT_ATTEMPTS} times, GET through node 2 ${JSON.stringify(read)}`);
      await stopHard(restart);
    }
    for (const m of members) await stopHard(m.run);
    expect(failures).toEqual([]);
  }, JOIN_TEST_TIMEOUT_MS);

  it('no acknowledged write is lost when one node, then all three, lose power mid-load; replicas converge', async () => {
    const transport = await freePorts(3);
    const http = await freePorts(3);
    const ids = [1, 2, 3];
    const disks = new Map(ids.map((id) => [id, newDisk('strict')]));
    const configOf = (id: number): NodeConfig => ({
      id, dir: join(disks.get(id)!.dir, 'data'), transport: transport[id - 1]!, http: http[id - 1]!,
      peers: ids.filter((j) => j !== id).map((j) => `${j}=127.0.0.1:${transport[j - 1]}`).join(','),
    });
    const nodes = new Map<number, { run: NodeRun; url: string }>();
    for (const [i, n] of (await Promise.all(ids.map((id) => startReady(configOf(id), disks.get(id)!.env())))).entries()) nodes.set(ids[i]!, n);
    const urls = ids.map((id) => `http://127.0.0.1:${http[id - 1]}`);

    // Unique keys spread over the four ranges (split on the first byte), each written once: a value read back is exact.
    const acked = new Map<string, string>();
    let seq = 0;
    /** A load phase: runs until stop() (or its count), counting what it got acknowledged. */
    const load = (phase: string) => {
      let stopped = false;
      let ackedCount = 0;
      const lane = async (laneNo: number) => {
        for (let writes = 0; !stopped && writes < WRITES_PER_PHASE_MAX / WRITER_LANES; writes++) {
          const n = seq++;
          const key = `%${['10', '50', '90', 'd0'][n % 4]}${phase}-${laneNo}-${n}`;
          const value = `${phase}${n}`;
          if (written(await put(urls[n % urls.length]!, key, value))) {
            acked.set(key, value);
            ackedCount++;
          } else await sleep(20); // a client's backoff, not a wait for anything
        }
      };
      const running = Promise.all(Array.from({ length: WRITER_LANES }, (_, laneNo) => lane(laneNo)));
      return {
        acked: () => ackedCount,
        /** Waits (bounded) until the phase has `count` more acknowledged writes than it had when called. */
        untilMore: async (what: string, count: number) => {
          const from = ackedCount;
          await untilTrue(`${count} writes acknowledged ${what}`, PHASE_WAIT_MS, () => ackedCount >= from + count, () => ({ phase, ackedCount, from }));
        },
        stop: async () => {
          stopped = true;
          await running;
        },
      };
    };
    const powerFail = async (victims: number[]) => {
      await Promise.all(victims.map((id) => disks.get(id)!.powerFail([nodes.get(id)!.run.child])));
      const restarted = await Promise.all(victims.map((id) => startReady(configOf(id), disks.get(id)!.env())));
      victims.forEach((id, i) => nodes.set(id, restarted[i]!));
    };

    // One node: the load keeps running on the other two while it is down and after it is back.
    const a = load('a');
    let ackedBeforeOne: number;
    try {
      await a.untilMore('before node 2 fails', ACKED_PER_STEP_MIN);
      ackedBeforeOne = acked.size;
      await powerFail([2]);
      await a.untilMore('after node 2 is back', ACKED_PER_STEP_MIN);
    } finally {
      await a.stop();
    }
    const b = load('b');
    try {
      await b.untilMore('with node 2 back', ACKED_PER_STEP_MIN);
    } finally {
      await b.stop();
    }
    // All three at once, mid-load: only what a quorum synced was acknowledged.
    const c = load('c');
    let ackedBeforeAll: number;
    try {
      await c.untilMore('before all three fail', ACKED_PER_STEP_MIN);
      ackedBeforeAll = acked.size;
      await powerFail(ids);
    } finally {
      await c.stop();
    }
    console.log(`power failure under load: ${acked.size} writes acknowledged (${ackedBeforeOne} before node 2 failed, ${ackedBeforeAll} before all three did)`);

    const lost: string[] = [];
    const entries = [...acked];
    for (const url of urls) {
      let next = 0;
      await Promise.all(Array.from({ length: WRITER_LANES }, async () => {
        for (let i = next++; i < entries.length; i = next++) {
          const [key, value] = entries[i]!;
          const read = await get(url, key);
          if (typeof read === 'string' || read.status !== 200 || read.body !== value) lost.push(`${key} via ${url}: ${JSON.stringify(read)}, acknowledged ${value}`);
        }
      }));
    }
    expect({ lostCount: lost.length, first: lost.slice(0, 20) }).toEqual({ lostCount: 0, first: [] });
    await convergence(urls);
    for (const n of nodes.values()) await stopHard(n.run);
  }, LOAD_TEST_TIMEOUT_MS);
});

/**
 * The cuts of a first start: before each sync of an identity file or directory and, in metadata mode,
 * each directory change (the node's own durability logic), and the first two events of each LMDB
 * file (its creation); later LMDB commits are LMDB's copy-on-write, covered by the load test. In
 * metadata mode a directory fsync changes nothing the entry events did not, so it is no new cut.
 */
function crashPointsOf(events: readonly DurabilityEvent[], mode: PowerFailMode): number[] {
  const points: number[] = [];
  const lmdbEventsSeen = new Map<string, number>();
  for (const e of events) {
    if (mode === 'metadata' && e.kind === 'fsync-dir') continue;
    if (/\.mdb(-lock)?$/.test(e.path)) {
      const seen = lmdbEventsSeen.get(e.path) ?? 0;
      lmdbEventsSeen.set(e.path, seen + 1);
      if (seen >= 2) continue;
    }
    points.push(e.index);
  }
  return points;
}

/**
 * One node's first start, power-failed before durability event `crashAt`, then restarted. Returns what
 * went wrong, or undefined: the restart served a write and a read with the cluster id it derives, or
 * refused with a stable code, and a store its FLOTILLA file called ready is the same file afterwards
 * (not silently made anew).
 */
async function cutFirstStart(mode: PowerFailMode, crashAt: number): Promise<string | undefined> {
  const disk = newDisk(mode);
  const [transport, http] = (await freePorts(2)) as [number, number];
  const config = { id: 1, dir: join(disk.dir, 'data'), transport, http };
  try {
    const first = spawnNode(config, disk.env({ crashAtEvent: crashAt }));
    await outcomeOf(first, `node 1 (cut at event ${crashAt})`);
    const cutAt = disk.events().at(-1);
    await disk.powerFail([first.child]);
    const where = `${mode} mode, cut before event ${crashAt} (${cutAt === undefined ? 'none' : `${cutAt.kind} ${cutAt.path.replace(disk.dir, '<dir>')}`})`;
    const coreDir = join(config.dir, 'core-0');
    const storeWasReady = (readJson(join(coreDir, 'FLOTILLA')) as { state?: string } | undefined)?.state === 'ready';
    const storeInode = storeWasReady ? statSync(join(coreDir, 'store.mdb')).ino : undefined;

    const second = spawnNode(config, disk.env());
    const outcome = await outcomeOf(second, `node 1 (restart after the cut at event ${crashAt})`);
    if (!('url' in outcome)) {
      if (outcome.code === 1 && /^flotilla: [A-Z][A-Z_]+: /m.test(outcome.stderr)) {
        console.log(`power failure at bootstrap, ${where}: restart refused: ${outcome.stderr.trim()}`);
        return undefined;
      }
      return `${where}: restart exited ${outcome.signal ?? outcome.code} without a stable error code:\n${outcome.stderr}`;
    }
    try {
      if (storeWasReady && statSync(join(coreDir, 'store.mdb')).ino !== storeInode) return `${where}: FLOTILLA said ready, yet the restart made core-0/store.mdb anew`;
      // The id a one-member cluster derives; anything else (the legacy id of a directory with replicas but no CLUSTER) would cut it off from peers it had.
      const clusterId = readClusterIdentity(config.dir)?.clusterId;
      const derived = deriveClusterId({ members: [{ nodeId: 1, address: `127.0.0.1:${transport}` }], token: CLUSTER_TOKEN_DEFAULT });
      if (clusterId !== derived) return `${where}: restarted with cluster id ${clusterId}, not the derived ${derived}`;
      const status = await put(outcome.url, '%10probe', 'after-restart');
      const read = await get(outcome.url, '%10probe');
      if (!written(status) || typeof read === 'string' || read.body !== 'after-restart') return `${where}: restarted, but PUT answered ${status} and GET ${JSON.stringify(read)}`;
      return undefined;
    } finally {
      await stopHard(second);
    }
  } finally {
    rmSync(join(disk.dir, '..'), { recursive: true, force: true });
  }
}

/** Every user range's replicas report one applied index (and commit), asked of each node. */
async function convergence(urls: readonly string[]): Promise<void> {
  type Ranges = { ranges: { rangeId: number; replicas: number[]; local: { commit: number; applied: number } }[] };
  const deadline = Date.now() + CONVERGE_TIMEOUT_MS;
  let last = '';
  for (;;) {
    const views = await Promise.all(urls.map(async (url) => {
      try {
        return (await (await fetch(`${url}/ranges`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })).json()) as Ranges;
      } catch {
        return undefined;
      }
    }));
    const byRange = new Map<number, string[]>();
    for (const view of views) {
      for (const r of view?.ranges ?? []) {
        if (r.rangeId === 1) continue; // the meta range takes the nodes' duty writes all the time
        byRange.set(r.rangeId, [...(byRange.get(r.rangeId) ?? []), `${r.local.commit}/${r.local.applied}`]);
      }
    }
    const converged = views.every((v) => v !== undefined) && byRange.size === RANGE_COUNT && [...byRange.values()].every((states) => states.length === 3 && new Set(states).size === 1);
    if (converged) return;
    last = JSON.stringify([...byRange]);
    if (Date.now() > deadline) throw new Error(`user ranges did not converge within ${CONVERGE_TIMEOUT_MS} ms: commit/applied per replica ${last}`);
    await sleep(200);
  }
}
