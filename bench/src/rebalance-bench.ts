// Rebalancing onto a new node (the placement driver, issue 6): load data into 16 ranges on 3 nodes,
// measure a client write load, then start a 4th node and measure the same load while the driver moves
// replicas and leaders onto it, until the cluster is balanced again. Reports the time to rebalance, the
// bytes the new node ended up holding, seconds per GiB moved, and client ops/s and p99 during the
// rebalance relative to before it (measured in the same run). Nodes run in this process (worker-thread
// cores, TCP on loopback), so the client competes with them for the same CPUs, before and during alike.
//
//   node dist/rebalance-bench.js                                   full: 64 MiB of 1 KiB values, 5 s of load before and after
//   node dist/rebalance-bench.js --data-mib 1024 --value-bytes 65536  issue 19's size: 1 GiB
//   node dist/rebalance-bench.js --quick                           CI: 2 MiB, 1 s
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { FlotillaNode, createHttpServer, type HttpServer } from '@flotilla/server';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { pino } from 'pino';
import { FlagError, benchArgs, flagsOrExit, positiveInt } from './flags.js';
import { commandLine, fmt, loadAverageText, machineInfo, printTable, ratio, writeResults } from './report.js';

const USAGE = {
  name: 'rebalance-bench',
  text: `rebalance-bench: 3 nodes loaded with data, a 4th joins under a write load; rebalance time, MB/s, and client ops/s and p99 before, during and after.

  --data-mib <n>      data loaded before node 4 joins (default 64; quick: 2)
  --value-bytes <n>   size of each loaded value (default 1024); large values load 1 GiB in minutes, not tens
  --snapshot-flow <send|both|off>  snapshot flow control on the nodes (default send: the send rate adapts; both: the receive rate too; off: the fixed rate it replaced)
  --quick             CI: tiny and short
  -h, --help          this text`,
};
const { values } = benchArgs(USAGE, { options: { quick: { type: 'boolean', default: false }, 'data-mib': { type: 'string' }, 'value-bytes': { type: 'string' }, 'snapshot-flow': { type: 'string' } }, strict: true });
const QUICK = values.quick === true;
const { DATA_BYTES, VALUE_BYTES, SNAPSHOT_FLOW } = flagsOrExit(USAGE, () => ({
  DATA_BYTES: (values['data-mib'] === undefined ? (QUICK ? 2 : 64) : positiveInt(values['data-mib'], '--data-mib')) * 1024 * 1024,
  VALUE_BYTES: values['value-bytes'] === undefined ? 1024 : positiveInt(values['value-bytes'], '--value-bytes'),
  SNAPSHOT_FLOW: flowMode(values['snapshot-flow'] ?? 'send', '--snapshot-flow'),
}));
const BASELINE_MS = QUICK ? 1_000 : 5_000;
/** Clients writing 16 B values throughout, each one request at a time. */
const CLIENT_COUNT = 32;
const RANGE_COUNT = 16;
/** A rebalance that takes longer is reported as not finished (and the run fails). */
const REBALANCE_TIMEOUT_MS = QUICK ? 90_000 : 600_000;
/** Latency samples kept per phase, at most (reservoir by position: every op until full, then none). */
const LATENCY_SAMPLES_MAX = 1_000_000;

function flowMode(value: string, flag: string): 'send' | 'both' | 'off' {
  if (value === 'send' || value === 'both' || value === 'off') return value;
  throw new FlagError(`${flag} is send, both or off, got "${value}"`);
}

const logger = pino({ level: process.env['FLOTILLA_BENCH_LOG'] ?? 'silent' });

interface DriverView {
  nodes: { nodeId: number; state: string; replicaCount: number; leaderCount: number; usedBytes: number }[];
  operators: unknown[];
}

function balanced(v: DriverView, nodeCount: number): boolean {
  if (v.nodes.length !== nodeCount || v.operators.length > 0) return false;
  for (const count of [(n: DriverView['nodes'][number]) => n.replicaCount, (n: DriverView['nodes'][number]) => n.leaderCount]) {
    const counts = v.nodes.map(count);
    const mean = counts.reduce((a, c) => a + c, 0) / counts.length;
    if (counts.some((c) => Math.abs(c - mean) > 1)) return false;
  }
  return true;
}

/** Clients writing until `stop` resolves; ops/s and exact latency percentiles (nearest rank). */
async function clientLoad(nodes: () => FlotillaNode[], stop: Promise<void>): Promise<{ ops: number; errors: number; seconds: number; p50Ms: number; p99Ms: number; maxMs: number; checksum: number }> {
  let stopped = false;
  void stop.then(() => (stopped = true));
  const latencies: number[] = [];
  let ops = 0;
  let errors = 0;
  let checksum = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENT_COUNT }, async (_, c) => {
      for (let i = 0; !stopped; i++) {
        const live = nodes();
        const node = live[(c + i) % live.length]!;
        const key = Buffer.from(`client/${c}/${i % 100}`);
        const t0 = performance.now();
        try {
          const { version } = await node.store.put(key, Buffer.from(`value-${String(i).padStart(8, '0')}`));
          const ms = performance.now() - t0;
          if (latencies.length < LATENCY_SAMPLES_MAX) latencies.push(ms);
          ops++;
          checksum = (checksum + version) >>> 0;
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(q * latencies.length) - 1))] ?? 0;
  return { ops, errors, seconds, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: latencies[latencies.length - 1] ?? 0, checksum };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadBefore = os.loadavg();
  const root = mkdtempSync(join(os.tmpdir(), 'flotilla-rebalance-bench-'));
  const ports = await freePorts(4);
  const address = (id: number) => `127.0.0.1:${ports[id - 1]}`;
  const base = (id: number) => ({ nodeId: id, dir: join(root, `n${id}`), listen: { host: '127.0.0.1', port: ports[id - 1]! }, coreCount: 1, metaDutyIntervalMs: 250, logger, hostOptions: { snapshotFlowControl: SNAPSHOT_FLOW } });
  const nodes: FlotillaNode[] = [];
  let http: HttpServer | undefined;
  try {
    nodes.push(
      ...(await Promise.all([1, 2, 3].map((id) => FlotillaNode.start({ ...base(id), peers: Object.fromEntries([1, 2, 3].filter((j) => j !== id).map((j) => [j, address(j)])), initialRangeCount: RANGE_COUNT })))),
    );
    const view = async (): Promise<DriverView> => (await nodes[0]!.view.placement()) as DriverView;
    const until = async (what: string, done: () => Promise<boolean>, timeoutMs: number) => {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        if (await done().catch(() => false)) return;
        if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
        await sleep(100);
      }
    };
    await until('the driver sees a balanced 3-node cluster', async () => balanced(await view(), 3), 60_000);

    // The data: 1 KiB values spread over every range (the first key byte picks the range).
    const valueCount = Math.ceil(DATA_BYTES / VALUE_BYTES);
    const value = Buffer.alloc(VALUE_BYTES, 0x61);
    for (let next = 0; next < valueCount; ) {
      const batch = Array.from({ length: Math.min(64, valueCount - next) }, () => next++);
      await Promise.all(batch.map((i) => nodes[i % 3]!.store.put(Buffer.from([i % 256, ...Buffer.from(`/data/${i}`)]), value)));
    }

    // Baseline: the client load alone.
    const before = await clientLoad(() => nodes, sleep(BASELINE_MS));

    // A 4th node joins; the same load runs until the driver has balanced replicas and leaders again.
    http = await createHttpServer({ store: nodes[0]!.store, logger, cluster: nodes[0]!.view });
    const url = await http.listen({ host: '127.0.0.1', port: 0 });
    const rebalanceStarted = performance.now();
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    // What the nodes' snapshot flow control allowed through the move, sampled as often as it decides.
    const flowSamples = new Map<number, { send: number[]; receive: number[] }>();
    const flowSampler = setInterval(() => {
      for (const n of nodes) {
        const rates = n.host.snapshotBytesPerSec();
        let s = flowSamples.get(n.host.nodeId);
        if (s === undefined) flowSamples.set(n.host.nodeId, (s = { send: [], receive: [] }));
        s.send.push(rates.send);
        if (rates.receive !== undefined) s.receive.push(rates.receive);
      }
    }, 250);
    const during = clientLoad(() => nodes, finished);
    nodes.push(await FlotillaNode.start({ ...base(4), peers: {}, join: url }));
    let rebalanceError: unknown;
    await until('replicas and leaders within one of the mean on 4 nodes', async () => {
      const v = await view();
      return balanced(v, 4) && v.nodes.find((n) => n.nodeId === 4)!.replicaCount > 0;
    }, REBALANCE_TIMEOUT_MS).catch((err: unknown) => (rebalanceError = err));
    const rebalanceSeconds = (performance.now() - rebalanceStarted) / 1000;
    finish();
    const duringLoad = await during;
    clearInterval(flowSampler);
    const mib = (bytesPerSec: number) => bytesPerSec / 1024 / 1024;
    const flow = [...flowSamples].sort(([a], [b]) => a - b).map(([nodeId, s]) => ({
      nodeId,
      sendMiBPerSecMin: mib(Math.min(...s.send)),
      sendMiBPerSecMean: mib(s.send.reduce((a, c) => a + c, 0) / s.send.length),
      ...(s.receive.length === 0 ? {} : { receiveMiBPerSecMin: mib(Math.min(...s.receive)), receiveMiBPerSecMean: mib(s.receive.reduce((a, c) => a + c, 0) / s.receive.length) }),
    }));
    if (rebalanceError !== undefined) throw rebalanceError;
    const final = await view();
    const newNode = final.nodes.find((n) => n.nodeId === 4)!;
    const movedGiB = newNode.usedBytes / 1024 ** 3;
    // The same load on the balanced 4-node cluster: what the move cost is judged against before and after.
    const after = await clientLoad(() => nodes, sleep(BASELINE_MS));

    console.log(`rebalance bench${QUICK ? ' (quick)' : ''}: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; load average before ${loadAverageText(loadBefore)}`);
    console.log(`${fmt(DATA_BYTES / 1024 / 1024)} MiB of ${VALUE_BYTES} B values in ${RANGE_COUNT} ranges on 3 nodes; ${CLIENT_COUNT} clients writing 16 B values; node 4 joins`);
    printTable(
      ['phase', 'ops/s', 'errors', 'p50 ms', 'p99 ms', 'max ms'],
      [
        ['before (baseline)', fmt(before.ops / before.seconds), fmt(before.errors), fmt(before.p50Ms, 2), fmt(before.p99Ms, 2), fmt(before.maxMs, 1)],
        ['during rebalance', fmt(duringLoad.ops / duringLoad.seconds), fmt(duringLoad.errors), fmt(duringLoad.p50Ms, 2), fmt(duringLoad.p99Ms, 2), fmt(duringLoad.maxMs, 1)],
        ['during ÷ before', ratio(duringLoad.ops / duringLoad.seconds / (before.ops / before.seconds)), '', ratio(duringLoad.p50Ms / before.p50Ms), ratio(duringLoad.p99Ms / before.p99Ms), ''],
        ['after (4 nodes)', fmt(after.ops / after.seconds), fmt(after.errors), fmt(after.p50Ms, 2), fmt(after.p99Ms, 2), fmt(after.maxMs, 1)],
      ],
    );
    console.log(
      `rebalanced in ${fmt(rebalanceSeconds, 1)} s: node 4 holds ${newNode.replicaCount} replicas / ${newNode.leaderCount} leaders, ${fmt(newNode.usedBytes / 1024 / 1024, 1)} MiB on disk → ${fmt(rebalanceSeconds / Math.max(movedGiB, 1e-9), 0)} s per GiB moved, ${fmt(newNode.usedBytes / 1e6 / rebalanceSeconds, 1)} MB/s`,
    );
    if (SNAPSHOT_FLOW !== 'off') {
      const text = (min: number | undefined, mean: number | undefined) => (min === undefined || mean === undefined ? '-' : `${fmt(min, 0)}/${fmt(mean, 0)}`);
      console.log(`snapshot flow control, MiB/s allowed during the move (min/mean): ${flow.map((f) => `node ${f.nodeId} send ${text(f.sendMiBPerSecMin, f.sendMiBPerSecMean)} receive ${text(f.receiveMiBPerSecMin, f.receiveMiBPerSecMean)}`).join('; ')}`);
    } else {
      console.log('snapshot flow control off: a fixed send rate');
    }
    console.log(`final: ${final.nodes.map((n) => `node ${n.nodeId} ${n.replicaCount}/${n.leaderCount}`).join(', ')} (replicas/leaders); checksum ${before.checksum ^ duringLoad.checksum ^ after.checksum}`);
    const file = writeResults('rebalance', startedAt, {
      command: commandLine(),
      machine: machineInfo(),
      loadAverageBefore: loadBefore,
      loadAverageAfter: os.loadavg(),
      parameters: { quick: QUICK, dataBytes: DATA_BYTES, valueBytes: VALUE_BYTES, rangeCount: RANGE_COUNT, clientCount: CLIENT_COUNT, baselineMs: BASELINE_MS, snapshotFlow: SNAPSHOT_FLOW },
      snapshotFlow: flow,
      before,
      during: duringLoad,
      after,
      rebalanceSeconds,
      megabytesPerSecond: newNode.usedBytes / 1e6 / rebalanceSeconds,
      newNode,
      secondsPerGiB: rebalanceSeconds / Math.max(movedGiB, 1e-9),
      final: final.nodes,
    });
    console.log(`results: ${file}`);
  } finally {
    await http?.close().catch(() => undefined);
    for (const n of nodes) await n.close().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
