// kill -9 of the node leading the most ranges while clients write over HTTP: no acknowledged write is
// lost, every range serves writes again through the survivors, the writes the kill cost stay within
// what a failover can cost, and the killed node, restarted on its own data directory and ports, catches
// up with every range it holds and serves every acknowledged write from its own replicas.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REQUEST_DEADLINE_MS_DEFAULT } from '../src/kv/store.js';
import { killNodeProcess, startNodeProcess, type NodeProcess as Node } from './support/node-process.js';
import { until, untilTrue } from './support/until.js';

/** A client's guard against a hang: past the server's own request deadline, so the server answers first. */
const REQUEST_TIMEOUT_MS = REQUEST_DEADLINE_MS_DEFAULT + 5_000;
const CONCURRENCY = 8;
const TICK_MS = 20;
/** User ranges (`--ranges`), split on the first key byte; the meta range makes one more. */
const USER_RANGE_COUNT = 4;
/** First key bytes, one inside each user range: [0x00, 0x40), [0x40, 0x80), [0x80, 0xc0), [0xc0, ∞). */
const RANGE_KEY_BYTES = [0x10, 0x50, 0x90, 0xd0] as const;

/** The core's default election timeout (core/src/raft.ts), randomized in [t, 2t) ticks. */
const ELECTION_TIMEOUT_TICKS = 10;
/** The Host's default: a request (or forward) unanswered this long fails REQUEST_TIMEOUT, a write's outcome then unknown. */
const HOST_REQUEST_TIMEOUT_TICKS = 50;
/** The Host calls a silent peer down after one election timeout (LIVENESS_TIMEOUT_TICKS_DEFAULT). */
const LIVENESS_TIMEOUT_TICKS = ELECTION_TIMEOUT_TICKS;

/**
 * What the kill may cost, at most: writes that fail or end with an unknown outcome. Each writer lane has
 * one request in flight at a time and loses at most two writes to the kill:
 * - the one in flight when it lands: sent to the victim's HTTP port it dies with the connection; sent to
 *   a survivor that handed it to the victim (which led its range) it ends TIMEOUT when the forward times
 *   out, after HOST_REQUEST_TIMEOUT_TICKS;
 * - one more, sent to a survivor that still thought the victim alive (for LIVENESS_TIMEOUT_TICKS after
 *   the kill) and handed it over: TIMEOUT too. It takes HOST_REQUEST_TIMEOUT_TICKS to fail, by when the
 *   survivors call the victim down and hand it nothing more (asserted below: 50 > 10 ticks).
 * The failovers themselves cost waits, not failures: each range the victim led elects a new leader within
 * two election timeouts after the liveness timeout (pre-vote and vote: a round trip more), and a write to
 * a range without a leader is retried by the survivor's store until its deadline. Even one after the
 * other, the elections of every range the victim may lead (all USER_RANGE_COUNT + 1) fit in that deadline
 * (asserted below), so a lane never gives up on one. Two lanes' worth of slack would hide a real fault:
 * the bound is exact.
 */
const KILL_FAILURES_MAX = 2 * CONCURRENCY;
/** Each leader change the kill did not cause (an election on a stalled 2-core machine) may cost the writes in flight to its range. */
const FAILURES_PER_OTHER_ELECTION_MAX = CONCURRENCY;
if (!(HOST_REQUEST_TIMEOUT_TICKS > LIVENESS_TIMEOUT_TICKS)) throw new Error('a forward must outlive the liveness timeout for the bound above');
if (!(TICK_MS * (LIVENESS_TIMEOUT_TICKS + (USER_RANGE_COUNT + 1) * 2 * ELECTION_TIMEOUT_TICKS) < REQUEST_DEADLINE_MS_DEFAULT)) {
  throw new Error('every election the kill causes must fit in one request deadline for the bound above');
}

/** Writes acknowledged on every user range before the kill, and again after it (through the survivors only). */
const ACKED_PER_RANGE_MIN = 25;
/** Bound of each wait: far beyond what it needs here (a second or two), so only a stuck cluster reaches it. */
const WAIT_TIMEOUT_MS = 30_000;
/** Bounds the load in count as well as in time. */
const WRITES_PER_LANE_MAX = 10_000;
/** Read-backs in flight at once. */
const READ_CONCURRENCY = 8;

const pathOf = (key: Uint8Array): string => [...key].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

interface Ports {
  readonly transport: readonly number[];
  readonly http: readonly number[];
}

function startNode(o: { id: number; dir: string; ports: Ports }): Promise<Node> {
  const peers = o.ports.transport.map((p, i) => [i + 1, p] as const).filter(([id]) => id !== o.id).map(([id, p]) => `${id}=127.0.0.1:${p}`).join(',');
  return startNodeProcess(
    o.id,
    ['--dir', o.dir, '--listen', `127.0.0.1:${o.ports.transport[o.id - 1]}`, '--http', `127.0.0.1:${o.ports.http[o.id - 1]}`, '--peers', peers, '--ranges', String(USER_RANGE_COUNT), '--tick-ms', String(TICK_MS), '--cores', '1', '--log-level', 'warn'],
    20_000,
  );
}

/** Three nodes on one run of six free ports (two runs could overlap); every node started is in `nodes`, even if another fails. */
async function startCluster(root: string, nodes: Map<number, Node>): Promise<Ports> {
  const free = await freePorts(6);
  const ports = { transport: free.slice(0, 3), http: free.slice(3) };
  const started = await Promise.allSettled([1, 2, 3].map((id) => startNode({ id, dir: join(root, `n${id}`), ports })));
  for (const s of started) if (s.status === 'fulfilled') nodes.set(s.value.id, s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  return ports;
}

interface RangeView {
  readonly rangeId: number;
  readonly leader: number;
  readonly term: number;
  readonly local: { readonly role: string; readonly applied: number };
}

async function rangesOf(node: Node): Promise<RangeView[]> {
  const res = await fetch(`${node.url}/ranges`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  if (res.status !== 200) throw new Error(`node ${node.id} /ranges: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { ranges: RangeView[] }).ranges;
}

/** Runs `work` over `items`, `concurrency` at a time. */
async function eachLimited<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

describe('kill -9 under an HTTP write load (3 node processes)', () => {
  // Made when the tests run, not when they are collected: a filtered-out describe leaves no directory behind.
  let root = '';
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-failover-'));
  });
  const nodes = new Map<number, Node>();
  afterAll(async () => {
    for (const n of nodes.values()) await killNodeProcess(n);
    if (root !== '') rmSync(root, { recursive: true, force: true });
  });

  it('loses no acknowledged write, fails no more writes than a failover costs, and the restarted node catches up', async () => {
    const ports = await startCluster(root, nodes);
    const survey = async () => Object.fromEntries(await Promise.all([...nodes.values()].map(async (n) => [n.id, (await rangesOf(n).catch((err: unknown) => String(err)))] as const)));
    // Every replica knows its leader: a write racing the first elections is not what this test counts.
    await untilTrue('every replica on every node knows its leader', WAIT_TIMEOUT_MS, async () => (await Promise.all([...nodes.values()].map(rangesOf))).flat().every((r) => r.leader > 0), survey);
    const termsAtStart = new Map((await rangesOf(nodes.get(1)!)).map((r) => [r.rangeId, r.term]));

    const live = new Set(nodes.keys());
    const acked = new Map<string, string>();
    const ackedByRange = { beforeKill: [0, 0, 0, 0], afterKill: [0, 0, 0, 0] };
    /** Every write that failed or whose outcome is unknown, with when it was sent and ended (ms on performance.now()). */
    const failures: { node: number; what: string; sentMs: number; endedMs: number }[] = [];
    let killedAtMs: number | undefined;
    let stopped = false;
    let seq = 0;
    const writer = async (lane: number) => {
      for (let writes = 0; !stopped && writes < WRITES_PER_LANE_MAX; writes++) {
        const n = seq++;
        const ids = [...live];
        const node = nodes.get(ids[n % ids.length]!)!;
        const range = n % USER_RANGE_COUNT;
        // Unique keys, each written once: a value read back later is exactly the acknowledged one.
        const key = pathOf(Buffer.concat([Uint8Array.of(RANGE_KEY_BYTES[range]!), Buffer.from(`${lane}-${n}`)]));
        const value = `v${n}`;
        const sentMs = performance.now();
        const phase = killedAtMs === undefined ? 'beforeKill' : 'afterKill';
        try {
          const res = await fetch(`${node.url}/kv/${key}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
          const body = await res.text();
          if (res.ok) {
            acked.set(key, value);
            ackedByRange[phase][range]!++;
          } else {
            failures.push({ node: node.id, what: `${res.status} ${(JSON.parse(body) as { error?: { code?: string } }).error?.code}`, sentMs, endedMs: performance.now() });
          }
        } catch (err) {
          // The connection to the killed node, or the client's timeout: outcome unknown, not checked.
          const cause = (err as { cause?: { code?: string } }).cause?.code;
          failures.push({ node: node.id, what: `${(err as Error).name}${cause === undefined ? '' : ` ${cause}`}`, sentMs, endedMs: performance.now() });
        }
      }
    };
    const load = Promise.all(Array.from({ length: CONCURRENCY }, (_, lane) => writer(lane)));
    try {
      await untilTrue(`${ACKED_PER_RANGE_MIN} writes acknowledged on every range`, WAIT_TIMEOUT_MS, () => ackedByRange.beforeKill.every((c) => c >= ACKED_PER_RANGE_MIN), () => ackedByRange);
      const failuresBeforeKill = failures.length;
      const ranges = await rangesOf(nodes.get(1)!);
      const counts = new Map<number, number>();
      for (const r of ranges) counts.set(r.leader, (counts.get(r.leader) ?? 0) + 1);
      const victim = nodes.get([...counts].sort((a, b) => b[1] - a[1])[0]![0])!;
      const ledByVictim = counts.get(victim.id)!;
      const termsAtKill = new Map(ranges.map((r) => [r.rangeId, r.term]));
      live.delete(victim.id);
      killedAtMs = performance.now();
      await killNodeProcess(victim);

      await untilTrue(`${ACKED_PER_RANGE_MIN} writes acknowledged on every range after the kill`, WAIT_TIMEOUT_MS, () => ackedByRange.afterKill.every((c) => c >= ACKED_PER_RANGE_MIN), () => ({ ackedByRange, failures: failures.length }));
      stopped = true;
      await load;

      // Leader changes the kill did not cause: a term that moved on a range the victim did not lead, or
      // moved before the kill, or more than once on one it led (a split vote). Read through a survivor.
      const survivor = nodes.get([...live][0]!)!;
      const termsAtEnd = new Map((await rangesOf(survivor)).map((r) => [r.rangeId, r.term]));
      let otherElections = 0;
      for (const [rangeId, term] of termsAtEnd) {
        const ledByVictimAtKill = ranges.find((r) => r.rangeId === rangeId)!.leader === victim.id;
        otherElections += termsAtKill.get(rangeId)! - termsAtStart.get(rangeId)!;
        otherElections += Math.max(0, term - termsAtKill.get(rangeId)! - (ledByVictimAtKill ? 1 : 0));
      }
      const failuresMax = KILL_FAILURES_MAX + otherElections * FAILURES_PER_OTHER_ELECTION_MAX;
      const report = failures.map((f) => `node ${f.node} ${f.what}, sent ${Math.round(f.sentMs - killedAtMs!)} ms after the kill, ended ${Math.round(f.endedMs - killedAtMs!)} ms after it`);
      console.info(
        `failover: killed node ${victim.id} (leader of ${ledByVictim} of ${ranges.length} ranges); ${acked.size} writes acknowledged, ` +
          `per range ${JSON.stringify(ackedByRange)}; ${failures.length} failed or unknown (${failuresBeforeKill} before the kill; bound ${failuresMax}, ` +
          `${otherElections} elections the kill did not cause):\n  ${report.join('\n  ')}`,
      );
      expect(failures.length, `failed or unknown writes (bound ${KILL_FAILURES_MAX} for the kill + ${FAILURES_PER_OTHER_ELECTION_MAX} × ${otherElections} other elections):\n${report.join('\n')}`).toBeLessThanOrEqual(failuresMax);

      // Every acknowledged write is there, read linearizably through each survivor.
      const lost: string[] = [];
      const survivors = [...live].map((id) => nodes.get(id)!);
      await eachLimited([...acked], READ_CONCURRENCY, async ([key, value]) => {
        for (const s of survivors) {
          const res = await fetch(`${s.url}/kv/${key}`, { signal: AbortSignal.timeout(10_000) });
          const body = await res.text();
          if (res.status !== 200 || body !== value) lost.push(`${key} via node ${s.id}: ${res.status} ${body}`);
        }
      });
      expect(lost.slice(0, 10)).toEqual([]);

      // The victim comes back on its own directory and ports and catches up: every replica it holds
      // reaches the applied index its range's leader had when it came back (no write came after the load).
      const restarted = await startNode({ id: victim.id, dir: join(root, `n${victim.id}`), ports });
      nodes.set(restarted.id, restarted);
      const leaderApplied = new Map<number, { leader: number; applied: number }>();
      await untilTrue('every range led by a survivor', WAIT_TIMEOUT_MS, async () => {
        for (const s of survivors) {
          for (const r of await rangesOf(s)) if (r.local.role === 'leader') leaderApplied.set(r.rangeId, { leader: s.id, applied: r.local.applied });
        }
        return leaderApplied.size === ranges.length;
      }, () => [...leaderApplied]);
      let caughtUp: RangeView[] = [];
      await untilTrue(`node ${restarted.id} applied what the leaders had`, WAIT_TIMEOUT_MS, async () => {
        caughtUp = await rangesOf(restarted);
        return caughtUp.length === ranges.length && caughtUp.every((r) => r.local.applied >= leaderApplied.get(r.rangeId)!.applied);
      }, () => ({ leaders: [...leaderApplied], restarted: caughtUp.map((r) => [r.rangeId, r.local.applied]) }));

      // Every acknowledged write, from the restarted node's own replicas (a stale read is served locally) and linearizably through it.
      const missing: string[] = [];
      await eachLimited([...acked], READ_CONCURRENCY, async ([key, value]) => {
        for (const query of ['?consistency=stale', '']) {
          const res = await fetch(`${restarted.url}/kv/${key}${query}`, { signal: AbortSignal.timeout(10_000) });
          const body = await res.text();
          if (res.status !== 200 || body !== value) missing.push(`${key}${query} via restarted node ${restarted.id}: ${res.status} ${body}`);
        }
      });
      expect(missing.slice(0, 10)).toEqual([]);
      console.info(`failover: node ${restarted.id} restarted, caught up on ${caughtUp.length} ranges (${caughtUp.map((r) => `${r.rangeId}@${r.local.applied}`).join(' ')}), served all ${acked.size} acknowledged writes`);
    } finally {
      stopped = true;
      await load;
    }
  }, 120_000);
});

describe('splits under an HTTP write load (3 node processes)', () => {
  // Made when the tests run, not when they are collected: a filtered-out describe leaves no directory behind.
  let root = '';
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-split-'));
  });
  const started = new Map<number, Node>();
  afterAll(async () => {
    for (const n of started.values()) await killNodeProcess(n);
    if (root !== '') rmSync(root, { recursive: true, force: true });
  });

  it('splits two ranges over HTTP while clients write through every node: no acknowledged write is lost, scans see every key once', async () => {
    await startCluster(root, started);
    const nodes = [1, 2, 3].map((id) => started.get(id)!);
    const acked = new Map<string, string>();
    let seq = 0;
    // Four key groups, one on each side of each split point: 0x10 | 0x30 in range 2 (split at 0x20), 0x50 | 0x70 in range 3 (at 0x60).
    const firstBytes = [0x10, 0x30, 0x50, 0x70];
    const ackedByGroup = { beforeSplits: [0, 0, 0, 0], afterSplits: [0, 0, 0, 0] };
    let splitsDone = false;
    let stopped = false;
    const writer = async (lane: number) => {
      for (let writes = 0; !stopped && writes < WRITES_PER_LANE_MAX; writes++) {
        const n = seq++;
        const group = n % 4;
        const keyBytes = Buffer.concat([Uint8Array.of(firstBytes[group]!), Buffer.from(`${lane}-${n}`)]);
        const value = `v${n}`;
        // Counted after both splits only if sent after them: it was routed across the new boundaries.
        const phase = splitsDone ? 'afterSplits' : 'beforeSplits';
        try {
          const res = await fetch(`${nodes[n % 3]!.url}/kv/${pathOf(keyBytes)}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
          if (res.ok) {
            acked.set(keyBytes.toString('hex'), value);
            ackedByGroup[phase][group]!++;
          }
          await res.arrayBuffer();
        } catch {
          // a timeout: outcome unknown, not checked
        }
      }
    };
    const load = Promise.all(Array.from({ length: CONCURRENCY }, (_, lane) => writer(lane)));
    try {
      await untilTrue(`${ACKED_PER_RANGE_MIN} writes acknowledged in each key group`, WAIT_TIMEOUT_MS, () => ackedByGroup.beforeSplits.every((c) => c >= ACKED_PER_RANGE_MIN), () => ackedByGroup);
      // 4 ranges on the first byte: range 2 is [0x0001, 0x40), range 3 is [0x40, 0x80). Split each in its middle, through different nodes.
      const split = async (node: Node, rangeId: number, at: number) => {
        const res = await fetch(`${node.url}/ranges/${rangeId}/split`, { method: 'POST', body: JSON.stringify({ keyBase64: Buffer.of(at).toString('base64') }), signal: AbortSignal.timeout(10_000) });
        expect(res.status, await res.clone().text()).toBe(200);
        return (await res.json()) as { left: { end: string }; right: { rangeId: number; start: string } };
      };
      const [a, b2] = await Promise.all([split(nodes[0]!, 2, 0x20), split(nodes[1]!, 3, 0x60)]);
      splitsDone = true;
      expect([a.left.end, a.right.start, b2.left.end, b2.right.start]).toEqual(['20', '20', '60', '60']);
      expect(a.right.rangeId).not.toBe(b2.right.rangeId);
      // Every half serves writes sent after both splits.
      await untilTrue(`${ACKED_PER_RANGE_MIN} writes acknowledged in each half after the splits`, WAIT_TIMEOUT_MS, () => ackedByGroup.afterSplits.every((c) => c >= ACKED_PER_RANGE_MIN), () => ackedByGroup);
    } finally {
      stopped = true;
      await load;
    }

    const lost: string[] = [];
    for (const [hex, value] of acked) {
      for (const n of nodes) {
        const res = await fetch(`${n.url}/kv/${pathOf(Buffer.from(hex, 'hex'))}`, { signal: AbortSignal.timeout(10_000) });
        const body = await res.text();
        if (res.status !== 200 || body !== value) lost.push(`${hex} via node ${n.id}: ${res.status} ${body}`);
      }
    }
    expect(lost.slice(0, 10)).toEqual([]);
    // One paged scan over [0x00 0x01, 0x80) through node 3 returns every acknowledged key once, in order.
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 1_000; pages++) {
      const q = new URLSearchParams({ limit: '500', encoding: 'base64' });
      if (cursor !== undefined) q.set('cursor', cursor);
      const res = await fetch(`${nodes[2]!.url}/kv?${q.toString()}&end=%80`, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(200);
      const page = (await res.json()) as { items: { key: string }[]; cursor: string | null };
      seen.push(...page.items.map((i) => Buffer.from(i.key, 'base64').toString('hex')));
      cursor = page.cursor ?? undefined;
      if (cursor === undefined) break;
    }
    expect(seen).toEqual([...acked.keys()].sort());
    console.info(`split under load: ${acked.size} acked writes (per key group ${JSON.stringify(ackedByGroup)}), all read back through every node and scanned once`);
  }, 60_000);
});
