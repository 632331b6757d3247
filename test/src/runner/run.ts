/**
 * One fault run: a cluster of node processes behind the fault proxy, the
 * workload and the nemesis for the run's duration, healing, then the checks
 * — linearizable per key (final reads of every key through every node
 * included, so no acknowledged write may be missing), every replica caught
 * up and agreeing on its data, no node dead that the nemesis did not kill,
 * memory bounded.
 */
import { SeededRng } from '@flotilla/core';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster } from '../cluster/cluster.js';
import { Tmpfs } from '../cluster/tmpfs.js';
import { checkRegisterHistory, describeVerdict, type HistoryVerdict } from '../lin/index.js';
import { FakeClock, findLibfaketime } from '../nemesis/clock.js';
import { Nemesis, type ClockExcuse } from '../nemesis/executor.js';
import { describeSchedule, planSchedule, type AdminKind, type FaultKind } from '../nemesis/schedule.js';
import { Workload, type FailedAnswer, type WorkloadKey } from '../workload/workload.js';
import { checkConvergence, waitPlacementIdle } from './convergence.js';

export interface RunOptions {
  readonly seed: number;
  readonly nodeCount: number;
  readonly durationMs: number;
  readonly faults: readonly FaultKind[];
  readonly admin: readonly AdminKind[];
  readonly clientCount: number;
  readonly slotCount: number;
  readonly opsPerKey: number;
  readonly opsPerSec: number;
  readonly requestTimeoutMs: number;
  readonly valuePaddingBytes: number;
  readonly rangeCount: number;
  readonly tickMs: number;
  readonly rssBytesMax: number;
  /** Parent of the run's directory (node data and logs). */
  readonly dir: string;
  /** Keep the run's directory even when every check passed. */
  readonly keepDir: boolean;
  readonly nodeLogLevel: string;
  /** Search steps per key before the checker gives up (the key is then undecided, which fails the run). */
  readonly checkerStepsMax: number;
  readonly log: (line: string) => void;
  /** Aborting stops every node process and unmounts the small disk at once (the run then fails fast). */
  readonly signal?: AbortSignal;
}

export interface RunReport {
  readonly seed: number;
  readonly ok: boolean;
  readonly failures: readonly string[];
  /** The run's directory when kept (a failure keeps it). */
  readonly dir: string | null;
  readonly operationCount: number;
  readonly unknownCount: number;
  readonly verdict: HistoryVerdict['kind'];
}

/** Before the first fault: elections settle and every node serves. */
const WARMUP_MS = 2_000;
/** Each node must serve a read within this at start. */
const STARTUP_TIMEOUT_MS = 60_000;
/** After healing: writes must be acknowledged again within this. */
const RECOVERY_TIMEOUT_MS = 60_000;
/** Writes acknowledged after healing that show the cluster serves again. */
const RECOVERY_WRITES_MIN = 20;
const CONVERGENCE_TIMEOUT_MS = 60_000;
const PLACEMENT_IDLE_TIMEOUT_MS = 60_000;
/** Final reads: several keys at once, each through every node. */
const FINAL_READ_CONCURRENCY = 8;
const FINAL_READ_TIMEOUT_MS = 10_000;
/** The node whose data sits on a small filesystem: big enough for any run's data, small enough to fill in a blink. */
const SMALL_DISK_BYTES = 256 * 1024 * 1024;
/** Placement: a node silent this long is down and its replicas move (short enough for long runs to see repairs). */
const DOWN_AFTER_MS = 15_000;
const DUTY_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether this process can mount a tmpfs (the disk-full fault needs one); the reason if not. */
export function tmpfsUnavailableReason(dir: string): string | null {
  try {
    const probe = Tmpfs.mount({ name: `flotilla-faults-probe-${process.pid}`, mountPoint: join(dir, 'probe'), sizeBytes: 1024 * 1024 });
    probe.unmount();
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0]!;
  }
}

export async function runFaults(o: RunOptions): Promise<RunReport> {
  // Clock faults are never skipped: without libfaketime the run would pass having tested no clock at all.
  const libfaketime = o.faults.includes('clock') ? findLibfaketime() : undefined;
  const dir = mkdtempSync(join(o.dir, `flotilla-faults-${o.seed}-`));
  // The run's clock — what the schedule, the history and the log lines share — starts once the cluster serves.
  let runStart: number | undefined;
  const runMs = () => performance.now() - runStart!;
  const stamp = () => (runStart === undefined ? '[ setup  ]' : `[${(runMs() / 1000).toFixed(1).padStart(6)} s]`);
  const log = (line: string) => o.log(`${stamp()} ${line}`);
  const failures: string[] = [];

  let faults = o.faults;
  if (faults.includes('disk-full')) {
    const reason = tmpfsUnavailableReason(dir);
    if (reason !== null) {
      log(`disk-full fault SKIPPED: ${reason}`);
      faults = faults.filter((f) => f !== 'disk-full');
    }
  }
  const schedule = planSchedule({ seed: o.seed, nodeCount: o.nodeCount, durationMs: o.durationMs, warmupMs: WARMUP_MS, faults, admin: o.admin });
  log(`seed ${o.seed}: ${o.nodeCount} nodes, ${(o.durationMs / 1000).toFixed(0)} s, data and logs in ${dir}`);
  log('schedule (start, length, fault):');
  for (const line of describeSchedule(schedule)) o.log(line);
  const clock =
    schedule.clockNode === null
      ? undefined
      : new FakeClock({ node: schedule.clockNode, file: join(dir, `n${schedule.clockNode}.faketime`), library: libfaketime!, nowMs: () => performance.now() });
  if (clock !== undefined) log(`node ${clock.node} runs under libfaketime (${libfaketime}), its time in ${join(dir, `n${clock.node}.faketime`)}`);

  const rng = new SeededRng(o.seed ^ 0x27d4eb2f);
  const cluster = await Cluster.start({
    nodeCount: o.nodeCount,
    dir,
    rangeCount: o.rangeCount,
    tickMs: o.tickMs,
    dutyMs: DUTY_MS,
    downAfterMs: DOWN_AFTER_MS,
    logLevel: o.nodeLogLevel,
    random: () => rng.nextFloat(),
    nowMs: () => (runStart === undefined ? 0 : runMs()),
    ...(schedule.diskNode === null ? {} : { smallDisk: { nodeId: schedule.diskNode, sizeBytes: SMALL_DISK_BYTES, name: `flotilla-faults-${process.pid}-n${schedule.diskNode}` } }),
    ...(clock === undefined ? {} : { clock }),
  });
  const onAbort = () => {
    log('aborted: stopping every node');
    void cluster.stop();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let verdict: HistoryVerdict | undefined;
  let operationCount = 0;
  let unknownCount = 0;
  try {
    log(`cluster up: ${cluster.nodeIds.map((n) => `node ${n} ${cluster.urlOf(n)} (pid ${cluster.pidOf(n)}, peers dial ${cluster.network.addressOf(n)})`).join('; ')}`);
    await waitServing(cluster, STARTUP_TIMEOUT_MS);

    const urls = new Map(cluster.nodeIds.map((n) => [n, cluster.urlOf(n)]));
    runStart = performance.now();
    const workload = new Workload({ seed: o.seed, clientCount: o.clientCount, slotCount: o.slotCount, opsPerKey: o.opsPerKey, opsPerSec: o.opsPerSec, requestTimeoutMs: o.requestTimeoutMs, valuePaddingBytes: o.valuePaddingBytes, urls, nowMs: runMs });
    const nemesis = new Nemesis(cluster, schedule, runMs, () => workload.result().keys.map((k) => k.bytes));
    workload.start();
    nemesis.start();
    let lastEvent = 0;
    const echoEvents = () => {
      for (; lastEvent < nemesis.events.length; lastEvent++) log(`nemesis: ${nemesis.events[lastEvent]!.what}`);
    };
    const aborted = () => o.signal?.aborted === true;
    while (runMs() < o.durationMs && !aborted()) {
      await sleep(Math.min(500, o.durationMs - runMs()));
      echoEvents();
    }
    await nemesis.stop();
    echoEvents();
    if (aborted()) throw new Error('aborted before the checks');
    // A node that died on its own, or did not come back, gets one more start: the checks need every node.
    for (const n of cluster.nodeIds) {
      if (cluster.stateOf(n) !== 'stopped') continue;
      try {
        await cluster.restart(n);
        log(`node ${n} started again for the checks`);
      } catch (err) {
        failures.push(`node ${n} does not start after the faults: ${(err as Error).message}`);
      }
    }
    const healedAtMs = runMs();
    log('every fault healed; waiting for writes to be acknowledged again');
    const recoveryDeadline = performance.now() + RECOVERY_TIMEOUT_MS;
    while (workload.writesAcknowledgedSince(healedAtMs) < RECOVERY_WRITES_MIN && performance.now() < recoveryDeadline) await sleep(200);
    const recovered = workload.writesAcknowledgedSince(healedAtMs);
    if (recovered < RECOVERY_WRITES_MIN) failures.push(`only ${recovered} writes acknowledged within ${RECOVERY_TIMEOUT_MS} ms after healing`);
    else log(`${recovered} writes acknowledged ${((runMs() - healedAtMs) / 1000).toFixed(1)} s after healing`);
    const result = await workload.stop();

    log(`final reads: ${result.keys.length} keys through each of ${cluster.nodeIds.length} nodes`);
    const unanswered = await finalReads(workload, result.keys, cluster.nodeIds, o.clientCount);
    for (const u of unanswered.slice(0, 10)) failures.push(`final read with no answer after healing: ${u}`);
    if (unanswered.length > 10) failures.push(`… and ${unanswered.length - 10} more final reads with no answer`);

    const ops = workload.result().operations;
    operationCount = ops.length;
    unknownCount = ops.filter((op) => op.output === null).length;
    const byKind = new Map<string, number>();
    for (const op of ops) {
      const condition = op.input.kind !== 'get' && op.input.ifVersion !== undefined ? (op.input.ifVersion === 0 ? ' if-absent' : ' if-match') : '';
      const kind = `${op.input.kind}${condition} → ${op.output?.kind ?? 'unknown'}`;
      byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    }
    log(`history: ${ops.length} operations on ${result.keys.length} keys, ${unknownCount} with unknown outcome`);
    for (const [k, v] of [...byKind].sort()) o.log(`    ${k.padEnd(32)} ${v}`);
    log('answers per node (node, method, status or error → count), failures only:');
    for (const [k, v] of [...result.outcomes].filter(([k]) => !/ (200|204|404|412)( |$)/.test(k)).sort()) o.log(`    ${k.padEnd(40)} ${v}`);
    for (const r of result.unexpectedRefusals.slice(0, 10)) failures.push(`unexpected refusal: ${r}`);
    // A request to a node that ran unpaused all along must be answered within the client's timeout (above the server's deadline)
    // — unless the node's deadlines ran on a clock held back or slowed meanwhile.
    const excused = (node: number, fromMs: number, toMs: number) => nemesis.clockExcuses.some((x: ClockExcuse) => x.node === node && x.fromMs <= toMs && fromMs <= x.toMs);
    const hung = result.failedAnswers.filter(
      (a) => a.what.endsWith(' timeout') && cluster.runningThroughout(a.node, a.atMs - o.requestTimeoutMs, a.atMs) && !excused(a.node, a.atMs - o.requestTimeoutMs, a.atMs),
    );
    const excusedCount = result.failedAnswers.filter((a) => a.what.endsWith(' timeout') && excused(a.node, a.atMs - o.requestTimeoutMs, a.atMs)).length;
    if (excusedCount > 0) log(`${excusedCount} requests timed out at a node whose clock was held back or slow meanwhile (owed no answer in time)`);
    if (hung.length > 0) {
      const first = hung.slice(0, 5).map((a) => `node ${a.node} ${a.what.replace(/ timeout$/, '')} at ${(a.atMs / 1000).toFixed(1)} s`).join('; ');
      failures.push(`${hung.length} requests to running nodes got no answer within ${o.requestTimeoutMs} ms, e.g. ${first}`);
    }
    if (result.missingRetryAfter.length > 0) failures.push(`${result.missingRetryAfter.length} answers 503/507 without Retry-After, e.g. ${result.missingRetryAfter.slice(0, 5).join('; ')}`);

    const checkStart = performance.now();
    verdict = checkRegisterHistory(ops, { stepsMax: o.checkerStepsMax });
    const undecided = verdict.keys.filter((k) => k.result.kind === 'unknown').length;
    log(`linearizability: ${verdict.kind} (${verdict.keys.length} keys, ${undecided} undecided, ${((performance.now() - checkStart) / 1000).toFixed(1)} s)`);
    if (verdict.kind !== 'linearizable') failures.push(`history is ${verdict.kind === 'violation' ? 'NOT linearizable' : 'undecided'}:\n${describeVerdict(verdict)}`);

    if (!(await waitPlacementIdle(cluster, PLACEMENT_IDLE_TIMEOUT_MS))) log(`placement still had operators in flight after ${PLACEMENT_IDLE_TIMEOUT_MS} ms`);
    const convergence = await checkConvergence(cluster, CONVERGENCE_TIMEOUT_MS);
    for (const line of convergence.lines) o.log(`    ${line}`);
    failures.push(...convergence.failures);

    log(`reads answered under a node lease (since each node's process last started): ${(await leaseReadCounts(cluster)).join(', ')}`);
    for (const d of diskFullFindings(nemesis, result.failedAnswers, cluster)) log(d);
    if (clock !== undefined) log(`node ${clock.node}'s clock ended ${(clock.spec.offsetMs / 1000).toFixed(1)} s off true time`);
  } catch (err) {
    failures.push(`run aborted: ${(err as Error).stack ?? String(err)}`);
  } finally {
    const deaths = cluster.exits.filter((e) => !e.expected);
    for (const d of deaths) failures.push(`node ${d.nodeId} (pid ${d.pid}) died at ${(d.atMs / 1000).toFixed(1)} s (${d.signal ?? `exit code ${d.code}`}); the nemesis did not kill it. Its log ends:\n${d.logTail}`);
    for (const [n, rss] of cluster.rssMax()) {
      const line = `node ${n}: resident memory at most ${(rss / 1024 / 1024).toFixed(0)} MiB`;
      if (rss > o.rssBytesMax) failures.push(`${line}, over the bound of ${(o.rssBytesMax / 1024 / 1024).toFixed(0)} MiB`);
      else log(line);
    }
    o.signal?.removeEventListener('abort', onAbort);
    await cluster.stop();
  }
  if (o.signal?.aborted === true) failures.push('aborted (SIGINT or SIGTERM)');
  const ok = failures.length === 0;
  const keep = !ok || o.keepDir;
  if (!keep) rmSync(dir, { recursive: true, force: true });
  return { seed: o.seed, ok, failures, dir: keep ? dir : null, operationCount, unknownCount, verdict: verdict?.kind ?? 'unknown' };
}

/** Every node answers a linearizable read (200 or 404) before the run starts. */
async function waitServing(cluster: Cluster, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (const n of cluster.nodeIds) {
    for (;;) {
      try {
        const res = await fetch(`${cluster.urlOf(n)}/kv/%08startup`, { signal: AbortSignal.timeout(3_000) });
        await res.arrayBuffer();
        if (res.status === 200 || res.status === 404) break;
      } catch {
        // not yet
      }
      if (performance.now() > deadline) throw new Error(`node ${n} serves no read within ${timeoutMs} ms of starting`);
      await sleep(200);
    }
  }
}

/** Each node's `flotilla_core_lease_reads_total` (shows whether the run's reads met leases at all). */
async function leaseReadCounts(cluster: Cluster): Promise<string[]> {
  return Promise.all(
    cluster.nodeIds.map(async (n) => {
      try {
        const res = await fetch(`${cluster.urlOf(n)}/metrics`, { signal: AbortSignal.timeout(3_000) });
        const text = await res.text();
        const counts = [...text.matchAll(/^flotilla_core_lease_reads_total(?:\{[^}]*\})? (\d+)$/gm)].map((m) => Number(m[1]));
        return `node ${n}: ${counts.length === 0 ? 'no counter' : counts.reduce((a, b) => a + b, 0)}`;
      } catch {
        return `node ${n}: no answer`;
      }
    }),
  );
}

/** Reads every key through every node (recorded in the history); answers the reads that got no answer. */
async function finalReads(workload: Workload, keys: readonly WorkloadKey[], nodes: readonly number[], firstClient: number): Promise<string[]> {
  const unanswered: string[] = [];
  let next = 0;
  const worker = async (lane: number) => {
    while (next < keys.length) {
      const key = keys[next++]!;
      for (const node of nodes) {
        const out = await workload.runOperation(firstClient + lane, node, key, { kind: 'get' }, { timeoutMs: FINAL_READ_TIMEOUT_MS });
        if (out === null || out === 'no-effect') unanswered.push(`key ${key.name} via node ${node}`);
      }
    }
  };
  await Promise.all(Array.from({ length: FINAL_READ_CONCURRENCY }, (_, lane) => worker(lane)));
  return unanswered;
}

/** A node that died this soon after space returned died of the full disk. */
const DISK_FULL_AFTERMATH_MS = 10_000;

/** What the node with the full disk answered, and whether it lived through the episode and its aftermath. */
function diskFullFindings(nemesis: Nemesis, failed: readonly FailedAnswer[], cluster: Cluster): string[] {
  const lines: string[] = [];
  for (const d of nemesis.diskFull) {
    const counts = new Map<string, number>();
    for (const a of failed) if (a.node === d.node && a.atMs >= d.fullAtMs && a.atMs <= d.freedAtMs) counts.set(a.what, (counts.get(a.what) ?? 0) + 1);
    const answers = [...counts].map(([what, n]) => `${what} ×${n}`).join(', ');
    const death = cluster.exits.find((e) => e.nodeId === d.node && !e.expected && e.atMs >= d.fullAtMs && e.atMs <= d.freedAtMs + DISK_FULL_AFTERMATH_MS);
    const fate = death === undefined ? 'it stayed up' : `it DIED at ${(death.atMs / 1000).toFixed(1)} s (${death.signal ?? `exit code ${death.code}`})`;
    lines.push(`disk full on node ${d.node} from ${(d.fullAtMs / 1000).toFixed(1)} s to ${(d.freedAtMs / 1000).toFixed(1)} s (${(d.bytesFilled / 1024 / 1024).toFixed(1)} MiB filled): ${fate}; its failed answers meanwhile: ${answers || 'none'}`);
  }
  return lines;
}
