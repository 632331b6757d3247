// The placement driver's shell over the pure scheduler: heartbeats in, node liveness, warm-up, operators
// carried out one step at a time through a fake port, replica collection. Time is the nowMs argument.
import { describe, expect, it } from 'vitest';
import { SCHEDULER_CONFIG_DEFAULTS, type Step } from '../src/cluster.js';
import { PlacementDriver, type DriverConfig, type StepOutcome } from '../src/driver.js';
import type { RangeReport, StoreHeartbeat } from '../src/heartbeat.js';

const { paused: _p, replicationFactor: _r, ...scheduler } = SCHEDULER_CONFIG_DEFAULTS;
const CONFIG: DriverConfig = { scheduler: { ...scheduler, movesInFlightMax: 8 }, suspectAfterMs: 500, downAfterMs: 2_000, operatorTimeoutMs: 10_000, stepRetryMs: 300, rateFreshMs: 3_000 };
const b = (s: string) => Buffer.from(s);

interface Sent {
  rangeId: number;
  step: Step;
  epoch: number;
}

function driverWith(o: { answer?: (s: Sent) => StepOutcome | undefined; paused?: boolean; config?: Partial<DriverConfig> } = {}) {
  const sent: Sent[] = [];
  const applied = { count: 0 };
  const logs: string[] = [];
  const log = { info: (_f: unknown, m: string) => logs.push(m), warn: (_f: unknown, m: string) => logs.push(m), debug: () => undefined };
  const driver = new PlacementDriver({
    startMs: 0,
    config: { ...CONFIG, ...o.config },
    settings: { paused: o.paused ?? false, replicationFactor: 3 },
    ports: {
      runStep: async (rangeId, step, at) => {
        const s = { rangeId, step, epoch: at.epoch };
        sent.push(s);
        return o.answer?.(s);
      },
      stepApplied: () => applied.count++,
      log,
    },
  });
  return { driver, sent, logs, applied };
}

function report(rangeId: number, o: Partial<RangeReport> & { voters: number[] }): RangeReport {
  return {
    rangeId,
    start: b(`r${rangeId}`),
    end: b(`r${rangeId}~`),
    epoch: 1,
    term: 6,
    votersOutgoing: [],
    learners: [],
    lastIndex: 100,
    progress: o.voters.map((nodeId) => ({ nodeId, match: 100 })),
    keyCount: 10,
    sizeBytes: 1000,
    writeCount: 0,
    readCount: 0,
    ...o,
  };
}

let heartbeatSeq = 0;

/** A full heartbeat (every replica and led range), each with a new seq of session 1. */
function heartbeat(nodeId: number, leading: RangeReport[], replicas: { rangeId: number; epoch: number }[] = []): StoreHeartbeat {
  return { nodeId, usedBytes: 0, availableBytes: 1e9, session: 1, seq: ++heartbeatSeq, base: 0, replicas, leading, removed: [] };
}

/** What changed since heartbeat `base` of `session` (StoreHeartbeat's delta). */
function delta(nodeId: number, o: { session?: number; seq: number; base: number; leading?: RangeReport[]; replicas?: { rangeId: number; epoch: number }[]; removed?: number[] }): StoreHeartbeat {
  return { nodeId, usedBytes: 0, availableBytes: 1e9, session: o.session ?? 1, seq: o.seq, base: o.base, replicas: o.replicas ?? [], leading: o.leading ?? [], removed: o.removed ?? [] };
}

/** Ranges 1..count, each on nodes 1–3, led round-robin. */
function threeNodeRanges(count: number): Map<number, RangeReport[]> {
  const byLeader = new Map<number, RangeReport[]>([[1, []], [2, []], [3, []]]);
  for (let id = 1; id <= count; id++) byLeader.get(((id - 1) % 3) + 1)!.push(report(id, { voters: [1, 2, 3] }));
  return byLeader;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('PlacementDriver', () => {
  it('plans nothing until it heard from every node, counting nodes it knows only from range configurations', async () => {
    const { driver, sent } = driverWith();
    const ranges = threeNodeRanges(6);
    // Nodes 1 and 2 report; node 3 is named by every range but silent (not recorded either).
    driver.onHeartbeat(heartbeat(1, ranges.get(1)!), 100);
    driver.onHeartbeat(heartbeat(2, ranges.get(2)!), 100);
    driver.pass(200);
    await settle();
    expect(driver.isWarm(200)).toBe(false);
    expect(driver.status(200).operators).toEqual([]);
    // Once node 3 reports, the cluster is balanced: still nothing to do, and node 3's voters were never "excess".
    driver.onHeartbeat(heartbeat(3, ranges.get(3)!), 300);
    driver.pass(300);
    await settle();
    expect(driver.isWarm(300)).toBe(true);
    expect(sent).toEqual([]);
    expect(driver.status(300).nodes.map((n) => [n.nodeId, n.state, n.replicaCount, n.leaderCount])).toEqual([
      [1, 'up', 6, 2],
      [2, 'up', 6, 2],
      [3, 'up', 6, 2],
    ]);
  });

  it('moves a replica onto a new node step by step: learner, caught up, one joint change; then it is done', async () => {
    const { driver, sent, logs } = driverWith({ answer: (s) => (s.step.kind === 'addLearner' ? { epoch: s.epoch + 1, voters: [1, 2, 3], votersOutgoing: [], learners: [4] } : undefined) });
    driver.setMembers([1, 2, 3, 4].map((nodeId) => ({ nodeId, state: 'up' as const })));
    const ranges = threeNodeRanges(6);
    for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, ranges.get(n)!), 100);
    driver.onHeartbeat(heartbeat(4, []), 100);
    driver.pass(100);
    await settle();
    // 18 replicas over 4 nodes want about four on node 4; snapshotsInFlightPerNodeMax of them start at once.
    const moves = driver.status(100).operators;
    expect(moves.length).toBe(CONFIG.scheduler.snapshotsInFlightPerNodeMax);
    expect(moves.every((op) => op.kind === 'moveReplica' && op.to === 4)).toBe(true);
    expect(sent.map((s) => s.step)).toEqual(moves.map(() => ({ kind: 'addLearner', node: 4 })));
    // The same step is not sent again before stepRetryMs, even without news.
    driver.pass(200);
    await settle();
    expect(sent.length).toBe(moves.length);

    // Follow the first move: its range reports the learner behind, then caught up.
    const op = moves[0]! as (typeof moves)[number] & { kind: 'moveReplica'; from: number };
    const leader = [1, 2, 3].find((n) => ranges.get(n)!.some((r) => r.rangeId === op.rangeId))!;
    const leaderNode = leader === op.from ? [1, 2, 3].find((n) => n !== op.from)! : leader;
    const withLearner = (match: number) =>
      report(op.rangeId, { voters: [1, 2, 3], learners: [4], epoch: 2, progress: [...[1, 2, 3].map((nodeId) => ({ nodeId, match: 100 })), { nodeId: 4, match }] });
    driver.onHeartbeat(heartbeat(leader, [withLearner(0)]), 400);
    driver.pass(400);
    await settle();
    expect(sent.filter((s) => s.rangeId === op.rangeId).map((s) => s.step.kind)).toEqual(['addLearner']);
    driver.onHeartbeat(heartbeat(leader, [withLearner(100)]), 500);
    driver.pass(500);
    await settle();
    const next = sent.filter((s) => s.rangeId === op.rangeId).map((s) => s.step);
    // The leaving replica leads: the lead moves first; otherwise straight to the joint change.
    if (leader === op.from) expect(next[1]).toMatchObject({ kind: 'transferLeader' });
    else expect(next[1]).toEqual({ kind: 'replaceVoter', add: 4, remove: op.from });
    // The range reports the move done (led by a staying node): the operator finishes.
    const after = [1, 2, 3, 4].filter((n) => n !== op.from);
    driver.onHeartbeat(heartbeat(leaderNode, [report(op.rangeId, { voters: after, epoch: 4, term: 7 })]), 600);
    driver.pass(600);
    await settle();
    expect(driver.status(600).operators.some((o) => o.rangeId === op.rangeId)).toBe(false);
    expect(logs).toContain('operator finished');
  });

  it('asks for a pass as soon as a step applied: an operator its outcome finishes frees its slot without waiting for a report', async () => {
    // Range 1 on nodes 1-3 led by 1, with node 4 a caught-up learner: an operator adding node 4 is at its promotion.
    const { driver, sent, applied, logs } = driverWith({
      answer: (s) => (s.step.kind === 'promote' ? { epoch: 3, voters: [1, 2, 3, 4], votersOutgoing: [], learners: [] } : undefined),
    });
    driver.setMembers([1, 2, 3, 4].map((nodeId) => ({ nodeId, state: 'up' as const })));
    const range = report(1, { voters: [1, 2, 3], learners: [4], epoch: 2, progress: [2, 3, 4].map((nodeId) => ({ nodeId, match: 100 })) });
    driver.onHeartbeat(heartbeat(1, [range]), 100);
    for (const n of [2, 3, 4]) driver.onHeartbeat(heartbeat(n, []), 100);
    driver.submit({ kind: 'addReplica', rangeId: 1, epoch: 2, node: 4, reason: 'admin' }, 100);
    driver.pass(100);
    await settle();
    expect(sent.map((s) => s.step)).toEqual([{ kind: 'promote', node: 4 }]);
    expect(applied.count).toBe(1);
    expect(driver.status(100).operators).toHaveLength(1);
    // The pass the shell runs on that request, with no heartbeat in between: the outcome says node 4 votes.
    // (The same pass plans the range's fourth voter away: replicas above the factor are excess.)
    driver.pass(100);
    await settle();
    expect(driver.status(100).operators.map((o) => o.kind)).not.toContain('addReplica');
    expect(logs).toContain('operator finished');
  });

  it('does not promote a re-added learner on the match its removed replica had: it waits for a report', async () => {
    // Range 1 on nodes 1-3 led by 1, node 4 a caught-up learner (match 100); the removal of that learner and its
    // re-adding each come back as outcomes, with no report in between.
    const outcomes: Record<string, StepOutcome> = {
      removeNode: { epoch: 3, voters: [1, 2, 3], votersOutgoing: [], learners: [] },
      addLearner: { epoch: 4, voters: [1, 2, 3], votersOutgoing: [], learners: [4] },
    };
    const { driver, sent } = driverWith({ answer: (s) => outcomes[s.step.kind] });
    driver.setMembers([1, 2, 3, 4].map((nodeId) => ({ nodeId, state: 'up' as const })));
    const range = report(1, { voters: [1, 2, 3], learners: [4], epoch: 2, progress: [2, 3, 4].map((nodeId) => ({ nodeId, match: 100 })) });
    driver.onHeartbeat(heartbeat(1, [range]), 100);
    for (const n of [2, 3, 4]) driver.onHeartbeat(heartbeat(n, []), 100);
    driver.submit({ kind: 'removeReplica', rangeId: 1, epoch: 2, node: 4, reason: 'admin' }, 100);
    driver.pass(100);
    await settle();
    driver.pass(100);
    await settle();
    expect(driver.status(100).operators).toEqual([]);
    driver.submit({ kind: 'addReplica', rangeId: 1, epoch: 3, node: 4, reason: 'admin' }, 100);
    driver.pass(100);
    await settle();
    driver.pass(100);
    await settle();
    // Learner 4 is back, empty: no promotion until its leader reports it caught up.
    expect(sent.map((s) => s.step.kind)).toEqual(['removeNode', 'addLearner']);
    const withLearner = report(1, { voters: [1, 2, 3], learners: [4], epoch: 4, progress: [...[2, 3].map((nodeId) => ({ nodeId, match: 110 })), { nodeId: 4, match: 110 }], lastIndex: 110 });
    driver.onHeartbeat(heartbeat(1, [withLearner]), 200);
    driver.pass(200);
    await settle();
    expect(sent.map((s) => s.step.kind)).toEqual(['removeNode', 'addLearner', 'promote']);
  });

  it('calls a silent node suspect, then down, and rebuilds its replicas on a spare node', async () => {
    const { driver, sent } = driverWith();
    driver.setMembers([1, 2, 3, 4].map((nodeId) => ({ nodeId, state: 'up' as const })));
    const ranges = threeNodeRanges(3);
    const beat = (nowMs: number, nodes: number[]) => {
      for (const n of nodes) driver.onHeartbeat(heartbeat(n, n === 3 ? [] : (ranges.get(n) ?? [])), nowMs);
    };
    // Node 3's range is led by node 1 from now on (node 3 stops).
    ranges.get(1)!.push(...ranges.get(3)!.map((r) => ({ ...r, term: r.term + 1 })));
    ranges.set(3, []);
    beat(0, [1, 2, 3, 4]);
    // Balanced apart from the empty node 4, which attracts moves; pause to watch liveness alone.
    driver.setSettings({ paused: true, replicationFactor: 3 });
    beat(400, [1, 2, 4]);
    expect(driver.status(400).nodes.find((n) => n.nodeId === 3)!.state).toBe('up');
    beat(1_000, [1, 2, 4]);
    expect(driver.status(1_000).nodes.find((n) => n.nodeId === 3)!.state).toBe('suspect');
    driver.pass(1_000);
    beat(2_100, [1, 2, 4]);
    expect(driver.status(2_100).nodes.find((n) => n.nodeId === 3)!.state).toBe('down');
    driver.pass(2_100);
    await settle();
    expect(sent).toEqual([]); // paused: nothing planned
    driver.setSettings({ paused: false, replicationFactor: 3 });
    driver.pass(2_200);
    await settle();
    // One replica per range to rebuild, on the only spare node: as many at once as it may receive.
    const ops = driver.status(2_200).operators;
    expect(ops.length).toBe(CONFIG.scheduler.snapshotsInFlightPerNodeMax);
    expect(ops.every((op) => op.kind === 'moveReplica' && op.from === 3 && op.to === 4 && op.reason === 'repair')).toBe(true);
  });

  it('answers a heartbeat with the replicas their ranges dropped; an empty one only once it outlived an operator and nothing adds it', () => {
    const { driver } = driverWith();
    driver.onHeartbeat(heartbeat(1, [report(7, { voters: [1, 2, 4], epoch: 5 }), report(8, { voters: [1, 2, 3], epoch: 3 })]), 0);
    // Node 3: range 7 removed it (its replica is at epoch 4); range 8 still has it; range 9 unknown; range 7's copy
    // on node 5 is empty (epoch 0: maybe a learner being added) and stays.
    expect(driver.onHeartbeat(heartbeat(3, [], [{ rangeId: 7, epoch: 4 }, { rangeId: 8, epoch: 3 }, { rangeId: 9, epoch: 1 }]), 10).collect).toEqual([7]);
    expect(driver.onHeartbeat(heartbeat(5, [], [{ rangeId: 7, epoch: 0 }]), 10).collect).toEqual([]);
    // Up to date with the range: kept even if the driver's view is stale.
    expect(driver.onHeartbeat(heartbeat(6, [], [{ rangeId: 7, epoch: 5 }]), 10).collect).toEqual([]);
    // The empty copy on node 5 that nobody adds: collected once it outlived an operator's lifetime.
    expect(driver.onHeartbeat(heartbeat(5, [], [{ rangeId: 7, epoch: 0 }]), 10 + CONFIG.operatorTimeoutMs).collect).toEqual([]);
    expect(driver.onHeartbeat(heartbeat(5, [], [{ rangeId: 7, epoch: 0 }]), 11 + CONFIG.operatorTimeoutMs).collect).toEqual([7]);
  });

  it('does not collect a replica an operator is adding, though the range report predates the change', () => {
    const { driver } = driverWith();
    driver.onHeartbeat(heartbeat(1, [report(7, { voters: [1, 2, 3], epoch: 5 })]), 0);
    // Node 4's stale replica of range 7 (epoch 4) is collected while nothing adds it...
    expect(driver.onHeartbeat(heartbeat(4, [], [{ rangeId: 7, epoch: 4 }]), 10).collect).toEqual([7]);
    // ...but not once an operator moves range 7 onto node 4: the leader's next report will name it.
    driver.submit({ kind: 'moveReplica', rangeId: 7, epoch: 5, from: 3, to: 4, reason: 'admin' }, 20);
    expect(driver.onHeartbeat(heartbeat(4, [], [{ rangeId: 7, epoch: 4 }]), 30).collect).toEqual([]);
  });

  it("counts each node's replicas, leads and load as the per-range view shows them, without building it", () => {
    const { driver } = driverWith({ paused: true });
    // Joint configurations, learners, a node that goes down (its leads count no more), rates that expire.
    const reports = (writeCount: number) =>
      Array.from({ length: 40 }, (_, i) => {
        const id = i + 1;
        // A voter being demoted is in the outgoing voters and the learners at once: one replica.
        const o = id % 5 === 0 ? { votersOutgoing: [1, 4], learners: [4] } : id % 7 === 0 ? { learners: [4] } : {};
        return report(id, { voters: [1, 2, 3], writeCount: writeCount * id, ...o });
      });
    for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, reports(0).filter((r) => r.rangeId % 3 === n % 3)), 0);
    driver.onHeartbeat(heartbeat(4, []), 0);
    for (const n of [1, 2]) driver.onHeartbeat(heartbeat(n, reports(10).filter((r) => r.rangeId % 3 === n % 3)), 1_000);
    const expected = (nowMs: number) => {
      const snapshot = driver.snapshot(nowMs);
      return snapshot.nodes.map((n) => {
        const held = snapshot.ranges.filter((r) => [...r.voters, ...r.votersOutgoing, ...r.learners].includes(n.nodeId)).length;
        const led = snapshot.ranges.filter((r) => r.leader === n.nodeId);
        return [n.nodeId, n.state, held, led.length, led.reduce((sum, r) => sum + r.writesPerSec, 0)];
      });
    };
    const actual = (nowMs: number) => driver.status(nowMs).nodes.map((n) => [n.nodeId, n.state, n.replicaCount, n.leaderCount, n.writesPerSec]);
    expect(actual(1_000), 'fresh rates').toEqual(expected(1_000));
    expect(actual(1_000).find(([id]) => id === 1)![4]).toBeGreaterThan(0);
    expect(actual(1_000).find(([id]) => id === 4)![2]).toBe(12);
    // Node 3 falls silent past downAfterMs; the others stay up, and the rates they last reported expire.
    const later = 1_000 + CONFIG.rateFreshMs + 1;
    for (const n of [1, 2, 4]) driver.onHeartbeat(heartbeat(n, []), later);
    expect(actual(later), 'node 3 down, rates expired').toEqual(expected(later));
    expect(actual(later).map(([id, state, , , writes]) => [id, state, writes])).toEqual([[1, 'up', 0], [2, 'up', 0], [3, 'down', 0], [4, 'up', 0]]);
  });

  it('takes load rates from successive reports of one leader, and how long a range has stayed hot', () => {
    const { driver } = driverWith();
    const hot = CONFIG.scheduler.splitLoadOpsPerSec;
    const at = (nowMs: number, writeCount: number, readCount: number) => driver.onHeartbeat(heartbeat(1, [report(1, { voters: [1], writeCount, readCount, loadSplitKey: b('r1m') })]), nowMs);
    at(0, 0, 0);
    at(1_000, hot, hot); // 2× the threshold for a second
    at(3_000, 3 * hot, hot); // hot (ops/s = hot) for two more
    const range = driver.snapshot(3_000).ranges[0]!;
    expect([range.writesPerSec, range.readsPerSec, range.hotForSec]).toEqual([hot, 0, 2]);
    // The node's load is what the ranges it leads serve.
    expect(driver.status(3_000).nodes.map((n) => [n.nodeId, n.writesPerSec, n.readsPerSec])).toEqual([[1, hot, 0]]);
    expect(Buffer.from(range.splitKey!).toString()).toBe('r1m');
    at(4_000, 3 * hot, hot); // idle: no longer hot
    expect(driver.snapshot(4_000).ranges[0]!.hotForSec).toBe(0);
  });

  it('drops an operator that runs past its timeout, so the next pass plans from what the range is', async () => {
    const { driver, logs } = driverWith();
    driver.setMembers([1, 2, 3, 4].map((nodeId) => ({ nodeId, state: 'up' as const })));
    const ranges = threeNodeRanges(3);
    for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, ranges.get(n)!), 0);
    driver.onHeartbeat(heartbeat(4, []), 0);
    driver.pass(0);
    await settle();
    expect(driver.status(0).operators.length).toBeGreaterThan(0);
    for (const n of [1, 2, 3, 4]) driver.onHeartbeat(heartbeat(n, ranges.get(n) ?? []), CONFIG.operatorTimeoutMs);
    driver.setSettings({ paused: true, replicationFactor: 3 });
    driver.pass(CONFIG.operatorTimeoutMs + 1);
    expect(driver.status(CONFIG.operatorTimeoutMs + 1).operators).toEqual([]);
    expect(logs).toContain('operator timed out; the next pass plans again');
  });
  describe('delta heartbeats', () => {
    it('takes a delta on top of the heartbeat it builds on, and one resent from an earlier base; asks for everything otherwise', () => {
      const { driver } = driverWith();
      driver.onHeartbeat(delta(1, { seq: 5, base: 0, leading: [report(1, { voters: [1, 2, 3] })], replicas: [{ rangeId: 1, epoch: 1 }, { rangeId: 2, epoch: 1 }] }), 0);
      // Range 2 destroyed, range 3 created, range 1 split (epoch 2): only what changed.
      expect(driver.onHeartbeat(delta(1, { seq: 6, base: 5, leading: [report(1, { voters: [1, 2, 3], epoch: 2 })], replicas: [{ rangeId: 1, epoch: 2 }, { rangeId: 3, epoch: 2 }], removed: [2] }), 10)).toEqual({ collect: [], resync: false, describe: [] });
      expect(driver.snapshot(10).ranges.map((r) => [r.rangeId, r.epoch])).toEqual([[1, 2]]);
      // Its answer lost, the node sends what changed since 5 again, with more: still placeable.
      expect(driver.onHeartbeat(delta(1, { seq: 7, base: 5, replicas: [{ rangeId: 1, epoch: 2 }] }), 20).resync).toBe(false);
      // A base the driver never took (a new driver's first delta), or another session (the node restarted): everything, please.
      expect(driver.onHeartbeat(delta(1, { seq: 9, base: 8 }), 30)).toEqual({ collect: [], resync: true, describe: [] });
      expect(driver.onHeartbeat(delta(1, { session: 2, seq: 8, base: 7 }), 30).resync).toBe(true);
      expect(driver.onHeartbeat(delta(4, { seq: 2, base: 1 }), 30).resync).toBe(true);
      // A refused delta is not a heartbeat: node 4 is still unknown, and node 1 was last heard at 20.
      expect(driver.status(30).nodes.map((n) => [n.nodeId, n.silentMs])).toEqual([[1, 10], [2, null], [3, null]]);
    });

    it('collects a replica its range dropped though the holder\'s deltas never name it again', () => {
      const { driver } = driverWith();
      driver.onHeartbeat(heartbeat(1, [report(7, { voters: [1, 2, 3], epoch: 5 })]), 0);
      const full = heartbeat(3, [], [{ rangeId: 7, epoch: 5 }]);
      expect(driver.onHeartbeat(full, 0).collect).toEqual([]);
      // Node 3's replica is quiet, so its deltas are empty; the range's next report no longer has node 3.
      expect(driver.onHeartbeat(delta(3, { seq: full.seq + 1, base: full.seq }), 10).collect).toEqual([]);
      driver.onHeartbeat(heartbeat(1, [report(7, { voters: [1, 2, 4], epoch: 6 })]), 20);
      expect(driver.onHeartbeat(delta(3, { seq: full.seq + 2, base: full.seq + 1 }), 30).collect).toEqual([7]);
      // Looked at once: the next empty delta names nothing (the node destroys it and reports it removed).
      expect(driver.onHeartbeat(delta(3, { seq: full.seq + 3, base: full.seq + 2 }), 40).collect).toEqual([]);
    });

    it('a new driver that heard the holder before the range collects the stale replica when the report comes', () => {
      const { driver } = driverWith();
      // Node 3's heartbeat first: range 7 is unknown yet, so nothing is decided.
      const full = heartbeat(3, [], [{ rangeId: 7, epoch: 4 }, { rangeId: 8, epoch: 0 }]);
      expect(driver.onHeartbeat(full, 0).collect).toEqual([]);
      driver.onHeartbeat(heartbeat(1, [report(7, { voters: [1, 2, 4], epoch: 5 }), report(8, { voters: [1, 2, 4], epoch: 5 })]), 10);
      // Its deltas are empty (the replicas are quiet): the reports alone put them up for a look.
      expect(driver.onHeartbeat(delta(3, { seq: full.seq + 1, base: full.seq }), 20).collect).toEqual([7]);
      // The empty one goes once it outlived an operator, counted from when it was first seen.
      expect(driver.onHeartbeat(delta(3, { seq: full.seq + 2, base: full.seq + 1 }), CONFIG.operatorTimeoutMs).collect).toEqual([]);
      expect(driver.onHeartbeat(delta(3, { seq: full.seq + 3, base: full.seq + 2 }), CONFIG.operatorTimeoutMs + 1).collect).toEqual([8]);
    });

    it('an empty replica left over is collected once it outlived an operator, though deltas do not name it again', () => {
      const { driver } = driverWith();
      driver.onHeartbeat(heartbeat(1, [report(7, { voters: [1, 2, 3], epoch: 5 })]), 0);
      const full = heartbeat(5, [], [{ rangeId: 7, epoch: 0 }]);
      expect(driver.onHeartbeat(full, 0).collect).toEqual([]);
      expect(driver.onHeartbeat(delta(5, { seq: full.seq + 1, base: full.seq }), CONFIG.operatorTimeoutMs).collect).toEqual([]);
      expect(driver.onHeartbeat(delta(5, { seq: full.seq + 2, base: full.seq + 1 }), CONFIG.operatorTimeoutMs + 1).collect).toEqual([7]);
    });

    it('an empty replica of a range no leader reports is collected once it outlived an operator, a replica with data never', () => {
      // A driver that took over after a merge does not know the merged-away range: its empty replica on node 2
      // is named by nobody but the holder (node simulation seed 12030 kept it forever).
      const { driver } = driverWith();
      const full = heartbeat(2, [], [{ rangeId: 1024, epoch: 0 }, { rangeId: 1025, epoch: 3 }]);
      expect(driver.onHeartbeat(full, 0).collect).toEqual([]);
      expect(driver.onHeartbeat(delta(2, { seq: full.seq + 1, base: full.seq }), CONFIG.operatorTimeoutMs).collect).toEqual([]);
      expect(driver.onHeartbeat(delta(2, { seq: full.seq + 2, base: full.seq + 1 }), CONFIG.operatorTimeoutMs + 1).collect).toEqual([1024]);
      // The one with data waits for its range's report, however long (node 2 destroyed the empty one).
      expect(driver.onHeartbeat(delta(2, { seq: full.seq + 3, base: full.seq + 2, replicas: [{ rangeId: 1025, epoch: 3 }], removed: [1024] }), 10 * CONFIG.operatorTimeoutMs).collect).toEqual([]);
    });

    it('describes a replica with data of an unknown range, and collects it once another range holds its first key at a higher epoch', () => {
      // Node simulation seed 40030: node 4 was down while range 7 merged into range 1, and the driver that saw
      // the merge has since been replaced; range 7 is gone from every report, its replica on node 4 stays.
      const { driver } = driverWith({ paused: true });
      const covering = (epoch: number) => report(1, { voters: [1, 2, 3], start: b('a'), end: null, epoch });
      driver.onHeartbeat(heartbeat(1, [covering(5)], [{ rangeId: 1, epoch: 5 }]), 0);
      for (const node of [2, 3]) driver.onHeartbeat(heartbeat(node, [], [{ rangeId: 1, epoch: 5 }]), 0);
      const full = { ...heartbeat(4, [], [{ rangeId: 7, epoch: 2 }]), described: [] };
      let seq = full.seq;
      const next = (nowMs: number, described: { rangeId: number; epoch: number; start: Buffer; end: Buffer | null }[] = [], replicas: { rangeId: number; epoch: number }[] = []) => {
        seq++;
        return driver.onHeartbeat({ ...delta(4, { seq, base: seq - 1, replicas }), described }, nowMs);
      };
      expect(driver.onHeartbeat(full, 0)).toEqual({ collect: [], resync: false, describe: [] });
      // A split's right half is unknown until its leader's first report: nothing is asked at once.
      expect(next(5_000)).toEqual({ collect: [], resync: false, describe: [] });
      expect(next(10_000)).toEqual({ collect: [], resync: false, describe: [7] });
      // Its first key, 'm', is range 1's at epoch 5, past the 2 the replica applied: taken in by a merge.
      expect(next(10_100, [{ rangeId: 7, epoch: 2, start: b('m'), end: null }])).toEqual({ collect: [7], resync: false, describe: [] });
    });

    it('keeps a described replica whose first key no range reports at a higher epoch, or while a replica left of it lags', () => {
      const { driver } = driverWith({ paused: true });
      // Range 1 ends at 'k'; range 3 covers 'k'.. at epoch 2 only.
      driver.onHeartbeat(heartbeat(1, [report(1, { voters: [1, 2, 3], start: b('a'), end: b('k'), epoch: 6 }), report(3, { voters: [1, 2, 3], start: b('k'), end: null, epoch: 2 })]), 0);
      for (const node of [2, 3]) driver.onHeartbeat(heartbeat(node, []), 0);
      const full = { ...heartbeat(4, [], [{ rangeId: 7, epoch: 2 }, { rangeId: 8, epoch: 3 }, { rangeId: 1, epoch: 5 }]), described: [] };
      let seq = full.seq;
      const next = (nowMs: number, described: { rangeId: number; epoch: number; start: Buffer; end: Buffer | null }[] = [], replicas: { rangeId: number; epoch: number }[] = []) => {
        seq++;
        return driver.onHeartbeat({ ...delta(4, { seq, base: seq - 1, replicas }), described }, nowMs);
      };
      driver.onHeartbeat(full, 0);
      expect([...next(10_000).describe].sort()).toEqual([7, 8]);
      // Range 7's first key 'm' is range 3's, but at epoch 2, not past the replica's: maybe the last copy of a live range.
      // Range 8's first key 'c' is range 1's at epoch 6: merged away, but node 4's replica of range 1 lags
      // (epoch 5 of 6) and starts left of 'c': it may be the merge's target, waiting for range 8 here.
      const described = [
        { rangeId: 7, epoch: 2, start: b('m'), end: null },
        { rangeId: 8, epoch: 3, start: b('c'), end: b('k') },
      ];
      expect(next(10_100, described)).toEqual({ collect: [], resync: false, describe: [] });
      expect(next(20_000)).toEqual({ collect: [], resync: false, describe: [] });
      // Once range 1's replica there caught up, range 8 goes; range 7 never does.
      expect(next(20_100, [], [{ rangeId: 1, epoch: 6 }]).collect).toEqual([8]);
      expect(next(30_100, [], [{ rangeId: 8, epoch: 3 }]).collect).toEqual([8]);
      expect(next(90_000).collect).toEqual([8]);
    });

    it('an empty replica of an unknown range waits while the driver is not warm', () => {
      // Node 3 is recorded but never heard, and the down timeout is long: range 9 may be one node 3 leads.
      const { driver } = driverWith({ config: { downAfterMs: 5 * CONFIG.operatorTimeoutMs } });
      driver.setMembers([{ nodeId: 2, state: 'up' }, { nodeId: 3, state: 'up' }]);
      const full = heartbeat(2, [], [{ rangeId: 9, epoch: 0 }]);
      expect(driver.onHeartbeat(full, 0).collect).toEqual([]);
      expect(driver.onHeartbeat(delta(2, { seq: full.seq + 1, base: full.seq }), 2 * CONFIG.operatorTimeoutMs).collect).toEqual([]);
      // Node 3 heard from, leading nothing of range 9: now it goes.
      driver.onHeartbeat(heartbeat(3, []), 2 * CONFIG.operatorTimeoutMs);
      expect(driver.onHeartbeat(delta(2, { seq: full.seq + 2, base: full.seq + 1 }), 2 * CONFIG.operatorTimeoutMs + 1).collect).toEqual([9]);
    });

    it('a replica reported without its range among the led ones no longer leads it', () => {
      const { driver } = driverWith();
      const full = heartbeat(1, [report(7, { voters: [1, 2, 3] })], [{ rangeId: 7, epoch: 1 }]);
      driver.onHeartbeat(full, 0);
      expect(driver.snapshot(0).ranges[0]!.leader).toBe(1);
      driver.onHeartbeat(delta(1, { seq: full.seq + 1, base: full.seq, replicas: [{ rangeId: 7, epoch: 1 }] }), 10);
      expect(driver.snapshot(10).ranges[0]!.leader).toBe(0);
      // The new leader's report names it.
      driver.onHeartbeat(heartbeat(2, [report(7, { voters: [1, 2, 3], term: 7 })]), 20);
      expect(driver.snapshot(20).ranges[0]!.leader).toBe(2);
    });

    it('a range not reported for rateFreshMs has no load: leaders report every range that served any', () => {
      const { driver } = driverWith();
      const at = (nowMs: number, writeCount: number) => driver.onHeartbeat(heartbeat(1, [report(1, { voters: [1], writeCount })]), nowMs);
      at(0, 0);
      at(1_000, 500);
      expect(driver.snapshot(1_000 + CONFIG.rateFreshMs).ranges[0]!.writesPerSec).toBe(500);
      expect(driver.snapshot(1_001 + CONFIG.rateFreshMs).ranges[0]!.writesPerSec).toBe(0);
      // Unreported, its leader still leads it while that node is not down.
      expect(driver.snapshot(999 + CONFIG.downAfterMs).ranges[0]!.leader).toBe(1);
      expect(driver.snapshot(1_000 + CONFIG.downAfterMs).ranges[0]!.leader).toBe(0);
    });
  });
  it("takes a split's answer as done at once, the range its left half until its leader reports again", async () => {
    const splitKey = b('r1m');
    const { driver, sent, applied } = driverWith({ answer: (s) => (s.step.kind === 'split' ? { split: { left: { end: splitKey, epoch: 2 } } } : undefined) });
    const ranges = threeNodeRanges(3);
    ranges.get(1)![0] = report(1, { voters: [1, 2, 3], sizeBytes: CONFIG.scheduler.splitSizeBytes, sizeSplitKey: splitKey });
    for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, ranges.get(n)!), 0);
    driver.pass(0);
    expect(sent.map((s) => [s.rangeId, s.step.kind])).toEqual([[1, 'split']]);
    await settle();
    expect(applied.count).toBe(1);
    // No report yet: the answer alone ends the operator, and the range is its left half, not split again.
    driver.pass(10);
    expect(driver.status(10).operators).toEqual([]);
    const left = driver.range(1, 10)!;
    expect([Buffer.from(left.end!).toString(), left.epoch, left.sizeBytes, left.splitKey]).toEqual(['r1m', 2, CONFIG.scheduler.splitSizeBytes / 2, undefined]);
    expect(sent).toHaveLength(1);
  });

  describe('work per pass', () => {
    it('plans only when something it reads changed: a report, a node\'s state, an operator; or every 10 s', () => {
      const { driver } = driverWith();
      const ranges = threeNodeRanges(30);
      for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, ranges.get(n)!), 0);
      driver.pass(0);
      const first = driver.planCount;
      expect(first).toBe(1);
      // Quiet: heartbeats that carry nothing, pass after pass.
      for (let t = 1; t <= 4; t++) {
        for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, []), t * 100);
        driver.pass(t * 100);
      }
      expect(driver.planCount).toBe(first);
      // A report taken: the next pass plans.
      driver.onHeartbeat(heartbeat(1, [report(1, { voters: [1, 2, 3], lastIndex: 200 })]), 500);
      driver.pass(500);
      expect(driver.planCount).toBe(first + 1);
      // Load rates of that report expire rateFreshMs after it: one more plan then, and none after.
      const beat = (nowMs: number, nodes = [1, 2, 3]) => {
        for (const n of nodes) driver.onHeartbeat(heartbeat(n, []), nowMs);
        driver.pass(nowMs);
      };
      const expired = 500 + CONFIG.rateFreshMs + 1;
      beat(expired);
      expect(driver.planCount).toBe(first + 2);
      beat(expired + 100);
      expect(driver.planCount).toBe(first + 2);
      // Node 3 falls silent: suspect is a state the plan reads.
      beat(expired + 200, [1, 2]);
      beat(expired + 100 + CONFIG.suspectAfterMs, [1, 2]);
      expect(driver.planCount).toBe(first + 3);
    });

    it('at many ranges, plans at most once per range count ÷ 100 ms, unless settings or node states changed', () => {
      const { driver } = driverWith({ paused: true });
      const ranges = threeNodeRanges(3_000); // plans at least 30 ms apart
      for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, ranges.get(n)!), 0);
      driver.pass(0);
      expect(driver.planCount).toBe(1);
      const reportAt = (nowMs: number, lastIndex: number) => {
        driver.onHeartbeat(heartbeat(1, [report(1, { voters: [1, 2, 3], lastIndex })]), nowMs);
        driver.pass(nowMs);
      };
      // Reports keep coming: dirty, but the plans wait out the interval.
      reportAt(10, 200);
      reportAt(29, 201);
      expect(driver.planCount).toBe(1);
      reportAt(30, 202);
      expect(driver.planCount).toBe(2);
      // Still dirty from a report deferred: a later pass with nothing new plans it once the interval is up.
      reportAt(40, 203);
      driver.pass(59);
      expect(driver.planCount).toBe(2);
      driver.pass(60);
      expect(driver.planCount).toBe(3);
      // A member's admin state (a node state) and the settings plan at once.
      driver.setMembers([{ nodeId: 3, state: 'decommissioning' }] as Parameters<typeof driver.setMembers>[0]);
      driver.pass(61);
      expect(driver.planCount).toBe(4);
      driver.setSettings({ paused: false, replicationFactor: 3 });
      driver.pass(62);
      expect(driver.planCount).toBe(5);
      // A clock that went back plans at once (it waits out no interval measured from the future).
      reportAt(92, 204);
      expect(driver.planCount).toBe(6);
      reportAt(93, 205);
      expect(driver.planCount).toBe(6);
      reportAt(20, 206);
      expect(driver.planCount).toBe(7);
      // So does a node's state: node 2 falls silent past suspectAfterMs.
      for (const n of [1, 3]) driver.onHeartbeat(heartbeat(n, []), 62 + CONFIG.suspectAfterMs);
      driver.pass(62 + CONFIG.suspectAfterMs);
      expect(driver.planCount).toBe(8);
    });

    it('splits a range reported over the split size at the next pass, between plans, within the split budget', () => {
      const { driver, sent } = driverWith({ config: { scheduler: { ...CONFIG.scheduler, splitsInFlightMax: 2 } } });
      const ranges = threeNodeRanges(3_000); // plans at least 30 ms apart
      for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, ranges.get(n)!), 0);
      driver.pass(0);
      expect(driver.planCount).toBe(1);
      const big = (rangeId: number, o: Partial<RangeReport> & { voters?: number[] } = {}) =>
        report(rangeId, { voters: [1, 2, 3], sizeBytes: CONFIG.scheduler.splitSizeBytes, sizeSplitKey: b(`r${rangeId}m`), ...o });
      const splitsSent = () => sent.filter((s) => s.step.kind === 'split').map((s) => s.rangeId);
      // Ranges 1 and 4 grew: split now, 5 ms into a 30 ms plan interval (no plan ran).
      driver.onHeartbeat(heartbeat(1, [big(1), big(4)]), 5);
      driver.pass(5);
      expect(driver.planCount).toBe(1);
      expect(splitsSent()).toEqual([1, 4]);
      // The budget is spent: range 7 waits (and the plan, once due, keeps to the budget too).
      driver.onHeartbeat(heartbeat(1, [big(7)]), 10);
      driver.pass(10);
      expect(splitsSent()).toEqual([1, 4]);
      // Wanted by other rules: a range short of voters (the plan's replicate rule comes first), and a
      // merge's target — a frozen range names it — wait for the plan.
      const { driver: d2, sent: sent2 } = driverWith();
      const r2 = threeNodeRanges(3_000);
      for (const n of [1, 2, 3]) d2.onHeartbeat(heartbeat(n, r2.get(n)!), 0);
      d2.pass(0);
      const frozen = { targetRangeId: 10, index: 90, term: 6, epoch: 2 };
      d2.onHeartbeat(heartbeat(1, [big(1, { voters: [1, 2] }), report(13, { voters: [1, 2, 3], epoch: 2, frozen }), big(10)]), 5);
      d2.pass(5);
      expect(sent2.filter((s) => s.step.kind === 'split')).toEqual([]);
      // Paused, or with a node not up: nothing between plans either.
      const { driver: d3, sent: sent3 } = driverWith({ paused: true });
      for (const n of [1, 2, 3]) d3.onHeartbeat(heartbeat(n, r2.get(n)!), 0);
      d3.pass(0);
      d3.onHeartbeat(heartbeat(1, [big(1)]), 5);
      d3.pass(5);
      expect(sent3).toEqual([]);
      const { driver: d4, sent: sent4 } = driverWith();
      for (const n of [1, 2, 3]) d4.onHeartbeat(heartbeat(n, r2.get(n)!), 0);
      d4.pass(0);
      const beat = (nowMs: number, leading: RangeReport[]) => {
        d4.onHeartbeat(heartbeat(1, leading), nowMs);
        d4.onHeartbeat(heartbeat(2, []), nowMs);
        d4.pass(nowMs);
      };
      // Node 3 turns suspect: that plan runs at once; range 4 grows 5 ms later, inside the plan interval.
      beat(CONFIG.suspectAfterMs, []);
      expect(d4.planCount).toBe(2);
      beat(CONFIG.suspectAfterMs + 5, [big(4)]);
      expect(sent4.filter((s) => s.step.kind === 'split')).toEqual([]);
      // The plan, once due, splits it by its own rules.
      beat(CONFIG.suspectAfterMs + 30, []);
      expect(d4.planCount).toBe(3);
      expect(sent4.filter((s) => s.step.kind === 'split').map((s) => s.rangeId)).toEqual([4]);
    });

    it('plans at least every 10 s though nothing changed (disk use is not a change)', () => {
      const { driver } = driverWith();
      const ranges = threeNodeRanges(3);
      const beat = (nowMs: number) => {
        for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, []), nowMs);
        driver.pass(nowMs);
      };
      for (const n of [1, 2, 3]) driver.onHeartbeat(heartbeat(n, ranges.get(n)!), 0);
      driver.pass(0);
      for (let t = 1; t < 10; t++) beat(CONFIG.rateFreshMs + t * 100);
      expect(driver.planCount).toBe(2); // the first, and the one after the rates expired
      beat(CONFIG.rateFreshMs + 100 + 10_000);
      expect(driver.planCount).toBe(3);
    });

    it('names a decommissioning node drained once no range has it, and none before it is warm', () => {
      const { driver } = driverWith();
      driver.setMembers([{ nodeId: 1, state: 'up' }, { nodeId: 2, state: 'up' }, { nodeId: 3, state: 'up' }, { nodeId: 4, state: 'decommissioning' }]);
      driver.onHeartbeat(heartbeat(1, [report(1, { voters: [1, 2, 4] })]), 0);
      expect(driver.drained(0)).toEqual([]); // not warm: nodes 2-4 unheard
      for (const n of [2, 3, 4]) driver.onHeartbeat(heartbeat(n, []), 0);
      expect(driver.drained(0)).toEqual([]); // range 1 still has node 4
      driver.onHeartbeat(heartbeat(1, [report(1, { voters: [1, 2, 3], epoch: 2 })]), 10);
      expect(driver.drained(10)).toEqual([4]);
    });
  });
});

describe('PlacementDriver: merges', () => {
  // Range 1 [a, m) and range 2 [m, z), both on nodes 1-3, led by node 1.
  const left = (o: Partial<Omit<RangeReport, 'voters'>> = {}) => report(1, { voters: [1, 2, 3], start: b('a'), end: b('m'), epoch: 3, ...o });
  const right = (o: Partial<Omit<RangeReport, 'voters'>> = {}) => report(2, { voters: [1, 2, 3], start: b('m'), end: b('z'), epoch: 2, ...o });
  const replicas = (rightEpoch: number, core?: number) => [{ rangeId: 1, epoch: 3 }, { rangeId: 2, epoch: rightEpoch, ...(core === undefined ? {} : { core }) }];

  it('refuses an operator on a range a merge holds, and a merge of ranges one node keeps in two stores', () => {
    const { driver } = driverWith({ paused: true });
    for (const node of [1, 2, 3]) driver.onHeartbeat(heartbeat(node, node === 1 ? [left(), right()] : [], replicas(2, node === 3 ? 1 : undefined)), 0);
    expect(driver.sameStore(3, 1, 2)).toBe(false);
    expect(driver.sameStore(2, 1, 2)).toBe(true);
    driver.submit({ kind: 'merge', rangeId: 2, epoch: 2, targetId: 1, targetEpoch: 3, reason: 'admin' }, 10);
    // Its target is held: no other operator may change it meanwhile.
    expect(() => driver.submit({ kind: 'transferLeader', rangeId: 1, epoch: 3, from: 1, to: 2, reason: 'admin' }, 10)).toThrow(/held by the merge of range 2/);
    // The merge itself abandons before its freeze: node 3 keeps the two ranges in different stores.
    driver.pass(20);
    expect(driver.status(20).operators).toEqual([]);
  });

  it('drops a frozen range whose first key another range reports at a higher epoch, rather than resume its merge', () => {
    // Node simulation seed 82065: range 2 merged into range 1, which split again (range 5 took [p, z)) before
    // reporting; the view kept range 2 frozen, and its resumed merge stepped a range that was no more.
    const { driver } = driverWith({ paused: true });
    const frozen = { targetRangeId: 1, index: 40, term: 3, epoch: 3 };
    for (const node of [1, 2, 3]) driver.onHeartbeat(heartbeat(node, node === 1 ? [left(), right({ epoch: 3, frozen })] : [], replicas(3)), 0);
    driver.pass(10);
    expect(driver.status(10).operators.map((op) => `${op.kind} ${op.rangeId} ${op.reason}`)).toEqual(['merge 2 resume']);
    const { driver: other, sent: otherSent } = driverWith({ paused: true });
    const grown = report(5, { voters: [1, 2, 3], start: b('p'), end: b('z'), epoch: 5 });
    for (const node of [1, 2, 3]) other.onHeartbeat(heartbeat(node, node === 1 ? [left({ end: b('m') }), right({ epoch: 3, frozen, start: b('p') }), grown] : [], replicas(3)), 0);
    other.pass(10);
    expect(other.status(10).operators).toEqual([]);
    expect(other.snapshot(10).ranges.map((r) => r.rangeId)).toEqual([1, 5]);
    expect(otherSent).toEqual([]);
  });

  it('names the neighbour a node holds, the left one first, for a replica added there to share its store', () => {
    const { driver } = driverWith({ paused: true });
    const third = report(3, { voters: [1, 2, 3], start: b('z'), end: null, epoch: 1 });
    driver.onHeartbeat(heartbeat(1, [left(), right(), third], [{ rangeId: 1, epoch: 3 }, { rangeId: 2, epoch: 2 }, { rangeId: 3, epoch: 1 }]), 0);
    driver.onHeartbeat(heartbeat(4, [], [{ rangeId: 3, epoch: 1 }]), 0);
    expect(driver.neighbourOn(2, 1)).toBe(1);
    expect(driver.neighbourOn(2, 4)).toBe(3);
    expect(driver.neighbourOn(1, 4)).toBeUndefined();
    expect(driver.neighbourOn(99, 1)).toBeUndefined();
  });

  it('names the neighbour a merge alignment moves the range towards, and never one that takes part in no merge', () => {
    // Node 1 holds ranges 1 and 3 on both sides of range 2. Range 1 is unsplittable (like the meta range).
    const { driver } = driverWith({ paused: true, config: { scheduler: { ...CONFIG.scheduler, unsplittable: [1] } } });
    const third = report(3, { voters: [1, 2, 4], start: b('z'), end: null, epoch: 1 });
    const second = report(2, { voters: [2, 3, 4], start: b('m'), end: b('z'), epoch: 2 });
    driver.onHeartbeat(heartbeat(1, [left(), second, third], [{ rangeId: 1, epoch: 3 }, { rangeId: 3, epoch: 1 }]), 0);
    expect(driver.neighbourOn(2, 1)).toBe(3);
    const { driver: other } = driverWith({ paused: true });
    other.onHeartbeat(heartbeat(1, [left(), second, third], [{ rangeId: 1, epoch: 3 }, { rangeId: 3, epoch: 1 }]), 0);
    expect(other.neighbourOn(2, 1)).toBe(1);
    other.submit({ kind: 'moveReplica', rangeId: 2, epoch: 2, from: 3, to: 1, reason: 'merge', mergeWith: 3 }, 0);
    expect(other.neighbourOn(2, 1)).toBe(3);
  });

  it('a frozen range holds itself and its target; the target covering it drops it from the view', () => {
    const { driver } = driverWith({ paused: true });
    const frozen = { targetRangeId: 1, index: 40, term: 6, epoch: 3 };
    for (const node of [1, 2, 3]) driver.onHeartbeat(heartbeat(node, node === 1 ? [left(), right({ epoch: 3, frozen })] : [], replicas(3)), 0);
    expect(() => driver.submit({ kind: 'split', rangeId: 1, epoch: 3, key: b('c'), reason: 'admin' }, 10)).toThrow(/frozen for a merge into it/);
    expect(() => driver.submit({ kind: 'split', rangeId: 2, epoch: 3, key: b('p'), reason: 'admin' }, 10)).toThrow(/its freeze/);
    expect(driver.snapshot(10).ranges.map((r) => r.rangeId)).toEqual([1, 2]);
    driver.onHeartbeat(heartbeat(1, [left({ end: b('z'), epoch: 4 })], [{ rangeId: 1, epoch: 4 }]), 20);
    expect(driver.snapshot(20).ranges.map((r) => r.rangeId)).toEqual([1]);
  });

  it('collects a replica of a merged-away range left on a node, unless that node\'s target replica is behind the merge', () => {
    const { driver } = driverWith({ paused: true });
    for (const node of [1, 2, 3]) driver.onHeartbeat(heartbeat(node, node === 1 ? [left(), right()] : [], replicas(2)), 0);
    // Range 1 took range 2 in, at epoch 4.
    driver.onHeartbeat(heartbeat(1, [left({ end: b('z'), epoch: 4 })], [{ rangeId: 1, epoch: 4 }]), 10);
    // Node 4 was moved off both while down and still holds a replica of range 2: nothing needs it.
    expect(driver.onHeartbeat(heartbeat(4, [], [{ rangeId: 2, epoch: 2 }]), 20).collect).toEqual([2]);
    // Node 2's replica of range 1 has not applied the merge yet: its merge gate needs its replica of range 2.
    expect(driver.onHeartbeat(heartbeat(2, [], [{ rangeId: 1, epoch: 3 }, { rangeId: 2, epoch: 3 }]), 30).collect).toEqual([]);
    expect(driver.onHeartbeat(heartbeat(2, [], [{ rangeId: 1, epoch: 4 }, { rangeId: 2, epoch: 3 }]), 40).collect).toEqual([2]);
  });

  it('looks again at a merged-away replica kept for its target, though the holder\'s deltas never name it again', () => {
    // Node simulation seed 79303: the target's replica on the node was itself stale and collected later; the
    // source's replica, quiet, was in no delta after the one that kept it, and stayed for good.
    const { driver } = driverWith({ paused: true });
    for (const node of [1, 2, 3]) driver.onHeartbeat(heartbeat(node, node === 1 ? [left(), right()] : [], replicas(2)), 0);
    driver.onHeartbeat(heartbeat(1, [left({ end: b('z'), epoch: 4 })], [{ rangeId: 1, epoch: 4 }]), 10);
    const keptThenCollected = (node: number, firstCollect: number[], last: { replicas?: { rangeId: number; epoch: number }[]; removed?: number[] }) => {
      const full = heartbeat(node, [], [{ rangeId: 1, epoch: 3 }, { rangeId: 2, epoch: 3 }]);
      expect(driver.onHeartbeat(full, 20).collect).toEqual(firstCollect);
      expect(driver.onHeartbeat(delta(node, { seq: full.seq + 1, base: full.seq }), 30).collect).toEqual([]);
      expect(driver.onHeartbeat(delta(node, { seq: full.seq + 2, base: full.seq + 1, ...last }), 40).collect).toEqual([2]);
    };
    // Node 2 (a voter of range 1): its replica of range 1 applies the merge.
    keptThenCollected(2, [], { replicas: [{ rangeId: 1, epoch: 4 }] });
    // Node 4 (moved off range 1): its stale replica of range 1 is collected first, then goes.
    keptThenCollected(4, [1], { removed: [1] });
  });
});
