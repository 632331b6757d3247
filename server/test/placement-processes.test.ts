// The placement driver against `flotilla start` processes over HTTP: 17 ranges on 3 nodes, two more join
// and the driver balances them in under a write load (no acknowledged write lost); then kill -9 of a node
// (its replicas are rebuilt elsewhere) and kill -9 of the node running the driver while a move is in flight
// (the next driver finishes or undoes it, every range stays available and ends whole).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, describe, expect, it } from 'vitest';
import { untilMoveInFlight, type OperatorView } from './support/move-in-flight.js';
import { startNodeProcess, type NodeProcess as Node } from './support/node-process.js';

const REQUEST_TIMEOUT_MS = 3_000;
const RANGE_COUNT = 16;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface DriverView {
  nodes: { nodeId: number; state: string; replicaCount: number; leaderCount: number }[];
  rangeCount: number;
  operators: OperatorView[];
}
/** Moves asked for, at most, for one to be seen in flight before the driver dies (one finishes in a few hundred ms). */
const MOVE_ATTEMPTS_MAX = 5;

const pathOf = (key: Uint8Array): string => [...key].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

function startNode(o: { id: number; dir: string; transport: number; http: number; peers?: string; join?: string }): Promise<Node> {
  return startNodeProcess(o.id, [
    '--dir', o.dir, '--listen', `127.0.0.1:${o.transport}`, '--http', `127.0.0.1:${o.http}`,
    ...(o.peers === undefined ? [] : ['--peers', o.peers]), ...(o.join === undefined ? [] : ['--join', o.join]),
    '--ranges', String(RANGE_COUNT), '--tick-ms', '20', '--cores', '1', '--duty-ms', '100', '--down-after-ms', '3000', '--log-level', 'error',
  ]);
}

async function json<T>(url: string, init?: RequestInit): Promise<T | undefined> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    return res.ok ? ((await res.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** Polls `check` until it returns a value; on a timeout the error carries `describe()` (what the cluster looked like). */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, describe: () => Promise<unknown> = async () => undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last seen: ${JSON.stringify(await describe().catch((err: unknown) => String(err)))}`);
    await sleep(200);
  }
}

function withinOne(counts: number[]): boolean {
  const mean = counts.reduce((a, c) => a + c, 0) / counts.length;
  return counts.every((c) => Math.abs(c - mean) <= 1);
}

describe('placement driver over 3 → 5 node processes, kill -9 twice', () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-placement-proc-'));
  const nodes = new Map<number, Node>();
  afterAll(() => {
    for (const n of nodes.values()) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  it('balances new nodes under load, rebuilds a killed node\'s replicas, and survives kill -9 of the driver mid-move', async () => {
    const transport = await freePorts(5);
    const http = await freePorts(5);
    const peersOf = (id: number) => [1, 2, 3].filter((j) => j !== id).map((j) => `${j}=127.0.0.1:${transport[j - 1]}`).join(',');
    for (const n of await Promise.all([1, 2, 3].map((id) => startNode({ id, dir: join(root, `n${id}`), transport: transport[id - 1]!, http: http[id - 1]!, peers: peersOf(id) })))) nodes.set(n.id, n);
    const live = () => [...nodes.values()];
    const view = async (): Promise<DriverView | undefined> => {
      for (const n of live()) {
        const v = await json<DriverView>(`${n.url}/placement`);
        if (v !== undefined) return v;
      }
      return undefined;
    };
    const clusterOf = async (n: Node) => json<{ ranges: { rangeId: number; leader: number; replicas: number[] }[] }>(`${n.url}/cluster`);
    const rangesOf = async (n: Node) => json<{ ranges: { rangeId: number; epoch: number; leader: number; replicas: number[]; learners: number[]; local: { role: string } }[] }>(`${n.url}/ranges`);
    const balancedOn = (v: DriverView, ids: number[]) => {
      const mine = v.nodes.filter((n) => ids.includes(n.nodeId));
      return mine.length === ids.length && v.operators.length === 0 && withinOne(mine.map((n) => n.replicaCount)) && withinOne(mine.map((n) => n.leaderCount)) && mine.every((n) => n.replicaCount > 0);
    };
    await until('the driver sees 17 ranges balanced on 3 nodes', async () => {
      const v = await view();
      return v !== undefined && v.rangeCount === RANGE_COUNT + 1 && balancedOn(v, [1, 2, 3]) ? v : undefined;
    }, 30_000);

    // A write load through every live node, for as long as the phase lasts; every acknowledged write is remembered.
    const acked = new Map<string, string>();
    let stopped = false;
    let seq = 0;
    const writer = async () => {
      while (!stopped) {
        const n = seq++;
        const ids = live();
        const node = ids[n % ids.length]!;
        const key = pathOf(Buffer.concat([Uint8Array.of((n * 37) % 256), Buffer.from(`/w${n % 500}`)]));
        try {
          const res = await fetch(`${node.url}/kv/${key}`, { method: 'PUT', body: `v${n}`, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
          if (res.ok) acked.set(key, `v${n}`); // 201 created, 200 overwritten
          else await sleep(20);
        } catch {
          await sleep(20); // unknown outcome (a later write to the key overwrites it)
        }
      }
    };
    const writers = Array.from({ length: 6 }, writer);
    try {
      for (const id of [4, 5]) nodes.set(id, await startNode({ id, dir: join(root, `n${id}`), transport: transport[id - 1]!, http: http[id - 1]!, join: nodes.get(1)!.url }));
      const v = await until('replicas and leaders within one of the mean on 5 nodes', async () => {
        const v = await view();
        return v !== undefined && balancedOn(v, [1, 2, 3, 4, 5]) ? v : undefined;
      }, 120_000, view);
      console.log(`placement over processes: balanced on 5 nodes: ${v.nodes.map((n) => `${n.nodeId}:${n.replicaCount}/${n.leaderCount}`).join(' ')}; ${acked.size} keys acknowledged`);
    } finally {
      stopped = true;
      await Promise.all(writers);
    }
    expect(acked.size).toBeGreaterThan(50);
    const check = async () => {
      for (const [key, value] of acked) {
        for (const n of live()) {
          const res = await fetch(`${n.url}/kv/${key}`, { signal: AbortSignal.timeout(10_000) });
          expect([key, n.id, res.status, await res.text()]).toEqual([key, n.id, 200, value]);
        }
      }
    };
    await check();

    // kill -9 of node 2: once it is down, its replicas are rebuilt on the other four.
    nodes.get(2)!.child.kill('SIGKILL');
    nodes.delete(2);
    await until('node 2 down and holding nothing, nothing in flight', async () => {
      const v = await view();
      const n2 = v?.nodes.find((n) => n.nodeId === 2);
      return v !== undefined && n2?.state === 'down' && n2.replicaCount === 0 && v.operators.length === 0 ? v : undefined;
    }, 150_000, async () => ({ view: await view(), ranges: await Promise.all(live().map(async (n) => [n.id, (await clusterOf(n))?.ranges.map((r) => `${r.rangeId}:${r.leader}[${r.replicas.join('')}]`).join(' ')])) }));
    await check();

    // kill -9 of the node running the driver while a move is in flight, seen so: the driver lists it with
    // a step sent, and the range's epoch already moved under it. The next driver finishes or undoes it.
    // Asked of every live node: /cluster lists a node's own replicas, and after the moves any one node may hold none of the meta range.
    const metaLeader = await until('the meta range\'s leader', async () => {
      for (const n of live()) {
        const leader = (await clusterOf(n))?.ranges.find((r) => r.rangeId === 1)?.leader;
        if (leader !== undefined && leader !== 0 && nodes.has(leader)) return leader;
      }
      return undefined;
    }, 10_000);
    const driverNode = nodes.get(metaLeader)!;
    const inFlight = await untilMoveInFlight({
      operators: async () => (await json<DriverView>(`${driverNode.url}/placement`))?.operators ?? [],
      epochOf: async (rangeId) => Math.max(0, ...(await Promise.all(live().map(async (n) => (await rangesOf(n))?.ranges.find((r) => r.rangeId === rangeId)?.epoch ?? 0)))),
      startMove: async () => {
        // A range on the driver's node, moved off another of its voters onto the live node it lacks.
        const target = (await clusterOf(driverNode))!.ranges.find((r) => r.rangeId !== 1 && r.replicas.length === 3 && [...nodes.keys()].some((id) => !r.replicas.includes(id)))!;
        const to = [...nodes.keys()].find((id) => !target.replicas.includes(id))!;
        // Refused (412) if the scheduler has an operator on that range now: the next look asks again.
        await json(`${driverNode.url}/ranges/${target.rangeId}/move`, { method: 'POST', body: JSON.stringify({ from: target.replicas.find((r) => r !== metaLeader), to }), headers: { 'content-type': 'application/json' } });
        return target.rangeId;
      },
      attemptsMax: MOVE_ATTEMPTS_MAX,
      timeoutMs: 60_000,
    });
    driverNode.child.kill('SIGKILL');
    nodes.delete(metaLeader);
    console.log(`driver on node ${metaLeader} killed mid-move: ${JSON.stringify(inFlight)}`);
    expect(inFlight).toMatchObject({ kind: 'moveReplica', lastStep: expect.any(String) });
    expect(inFlight.epochNow).toBeGreaterThan(inFlight.epoch);
    await until('a new driver; the killed nodes down and empty; nothing in flight; every range whole on live nodes', async () => {
      const v = await view();
      if (v === undefined || v.operators.length > 0) return undefined;
      for (const dead of [2, metaLeader]) {
        const n = v.nodes.find((x) => x.nodeId === dead);
        if (n === undefined || n.state !== 'down' || n.replicaCount !== 0) return undefined;
      }
      // Whole: as each range's leader reports it, 3 voters on live nodes and no learner left over from the move.
      const led = (await Promise.all(live().map(async (n) => (await rangesOf(n))?.ranges ?? []))).flat().filter((r) => r.local.role === 'leader');
      if (new Set(led.map((r) => r.rangeId)).size !== v.rangeCount) return undefined;
      return led.every((r) => r.replicas.length === 3 && r.learners.length === 0 && r.replicas.every((id) => nodes.has(id))) ? v : undefined;
    }, 150_000, async () => ({ view: await view(), ranges: await Promise.all(live().map(async (n) => [n.id, (await clusterOf(n))?.ranges.map((r) => `${r.rangeId}:${r.leader}[${r.replicas.join('')}]`).join(' ')])) }));
    await check();
  }, 400_000);
});
