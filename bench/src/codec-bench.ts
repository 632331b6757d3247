// Micro benchmarks (tinybench) of the codecs and the thread handoff that sit on
// every message a node sends or receives:
//   - batch codec: encodeBatch / decodeBatch of one loop turn's Raft messages
//     to one peer (64 shards' appends of 4 entries × 16 B, plus 64 idle shards'
//     heartbeats). Every message between nodes goes through it, on both ends;
//   - command codec: encodeCommand / decodeCommand of a put (16 B key, 16 B
//     value): once per proposal, then once per applied entry on every replica;
//   - handoff: one round trip of a buffer to a worker thread and back, which is
//     how the Host passes batches to its worker cores: a 64 KiB ArrayBuffer
//     transferred (what the Host does), the same bytes structured-cloned (what
//     not transferring would cost), and a 256 B transferred and cloned one (a
//     quiet loop turn). The transfer÷clone lines say what transferring saves
//     over cloning per batch on the machine the bench runs on.
// Every task keeps a checksum of what it produced or received, so no work is
// optimized away, and is verified after its run: the checksum must equal what
// the inputs imply for that many iterations, and the last outputs must equal
// the inputs field by field (bytes compared byte by byte); any difference fails
// the run with a non-zero exit.
//
//   node dist/codec-bench.js            full run (each task ~1 s, about 10 s in all)
//   node dist/codec-bench.js --quick    tiny time budget, a second or two (CI)
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { SeededRng, assert, groupId, nodeId, type AppendMessage, type Entry, type HeartbeatMessage } from '@flotilla/core';
import { decodeBatch, decodeCommand, encodeBatch, encodeCommand, type Envelope, type KvCommand } from '@flotilla/shards';
import { Bench, type Task } from 'tinybench';
import { commandLine, finishRun, fmt, gc, hex32, printTable, ratio, startRun, writeResults } from './report.js';

interface BenchParameters {
  readonly mode: 'full' | 'quick';
  readonly taskTimeMs: number;
  readonly taskIterationsMin: number;
  readonly warmupTimeMs: number;
  readonly warmupIterationsMin: number;
  /** Shards with an append in the batch, and the entries (of entryPayloadBytes each) in each append. */
  readonly appendShardCount: number;
  readonly entriesPerAppend: number;
  readonly entryPayloadBytes: number;
  /** Idle shards with only a heartbeat in the batch. */
  readonly heartbeatShardCount: number;
  /** Distinct put commands, all encoded or decoded once per iteration. */
  readonly commandCount: number;
  readonly commandKeyBytes: number;
  readonly commandValueBytes: number;
  readonly handoffLargeBytes: number;
  readonly handoffSmallBytes: number;
  readonly seed: number;
}

// Full: 8 tasks × (1 s + 0.25 s warm-up).
const FULL: BenchParameters = {
  mode: 'full',
  taskTimeMs: 1_000,
  taskIterationsMin: 10,
  warmupTimeMs: 250,
  warmupIterationsMin: 16,
  appendShardCount: 64,
  entriesPerAppend: 4,
  entryPayloadBytes: 16,
  heartbeatShardCount: 64,
  commandCount: 256,
  commandKeyBytes: 16,
  commandValueBytes: 16,
  handoffLargeBytes: 64 * 1024,
  handoffSmallBytes: 256,
  seed: 1,
};

// Quick: the same inputs and every check, with a time budget too small for meaningful numbers.
const QUICK: BenchParameters = { ...FULL, mode: 'quick', taskTimeMs: 50, taskIterationsMin: 3, warmupTimeMs: 5, warmupIterationsMin: 2 };

type TaskGroup = 'batch' | 'command' | 'handoff';

/** One task's work, its checksum, and the check of both after the run. */
interface Workload {
  readonly name: string;
  readonly group: TaskGroup;
  /** What one op is, for the table. */
  readonly what: string;
  /** Codec calls or round trips per tinybench iteration (the timer cannot resolve one command's codec call). */
  readonly opsPerIteration: number;
  /** Encoded bytes per op (codecs) or buffer bytes each way (handoff). */
  readonly bytesPerOp: number;
  readonly async: boolean;
  readonly iterate: () => void | Promise<void>;
  /** Before each phase (warm-up, run): counters back to zero. */
  readonly reset: () => void;
  /** After the run: throws unless the checksum and the last outputs match the inputs. */
  readonly verify: () => void;
  readonly iterationCount: () => number;
  readonly checksum: () => number;
}

interface ResultRow {
  readonly name: string;
  readonly group: TaskGroup;
  readonly what: string;
  readonly opsPerIteration: number;
  readonly bytesPerOp: number;
  readonly sampleCount: number;
  readonly iterationCount: number;
  readonly opsPerSecond: number;
  readonly nsPerOp: number;
  /** p99 of the per-iteration latency, divided by the ops in one iteration. */
  readonly p99NsPerOp: number;
  readonly rmePercent: number;
  readonly mibPerSecond: number;
  /** Unsigned, as printed. */
  readonly checksum: number;
}

// ---------------------------------------------------------------------------
// Verification

/** Where two decoded values differ (Uint8Array and Buffer compare by bytes), or undefined if they do not. */
function difference(actual: unknown, expected: unknown, path: string): string | undefined {
  if (ArrayBuffer.isView(actual) || ArrayBuffer.isView(expected)) {
    if (!(actual instanceof Uint8Array) || !(expected instanceof Uint8Array)) return `${path}: not both bytes`;
    if (actual.byteLength !== expected.byteLength) return `${path}: ${actual.byteLength} bytes, expected ${expected.byteLength}`;
    for (let i = 0; i < actual.byteLength; i++) {
      if (actual[i] !== expected[i]) return `${path}[${i}]: ${actual[i]}, expected ${expected[i]}`;
    }
    return undefined;
  }
  if (Array.isArray(actual) || Array.isArray(expected)) {
    if (!Array.isArray(actual) || !Array.isArray(expected)) return `${path}: not both arrays`;
    if (actual.length !== expected.length) return `${path}: length ${actual.length}, expected ${expected.length}`;
    for (let i = 0; i < actual.length; i++) {
      const d = difference(actual[i], expected[i], `${path}[${i}]`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  if (typeof actual === 'object' && actual !== null && typeof expected === 'object' && expected !== null) {
    const a = actual as Record<string, unknown>;
    const e = expected as Record<string, unknown>;
    const keys = Object.keys(a).sort();
    const expectedKeys = Object.keys(e).sort();
    if (keys.join() !== expectedKeys.join()) return `${path}: fields ${keys.join()}, expected ${expectedKeys.join()}`;
    for (const k of keys) {
      const d = difference(a[k], e[k], `${path}.${k}`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  return Object.is(actual, expected) ? undefined : `${path}: ${String(actual)}, expected ${String(expected)}`;
}

function assertSame(task: string, actual: unknown, expected: unknown): void {
  const d = difference(actual, expected, 'value');
  assert(d === undefined, () => `${task}: decoded value differs from the input: ${d}`);
}

/** The int32 checksum `iterations` iterations of `perIteration` each must add up to. */
const repeatedSum = (iterations: number, perIteration: number): number => Math.imul(iterations, perIteration) | 0;

function assertChecksum(task: string, actual: number, expected: number, iterations: number): void {
  assert(iterations > 0, () => `${task}: no iterations ran`);
  assert(actual === expected, () => `${task}: checksum ${hex32(actual)} after ${iterations} iterations, expected ${hex32(expected)}`);
}

/** Folded into a codec task's checksum per encoded buffer: its length and two of its bytes. */
const bytesSum = (b: Uint8Array): number => (b.byteLength + b[b.byteLength >> 1]! + (b[b.byteLength - 2]! << 8)) | 0;

function randomBytes(rng: SeededRng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rng.nextUint32() & 0xff;
  return b;
}

// ---------------------------------------------------------------------------
// Batch codec

/** One loop turn's messages from a leader (node 1) to one follower (node 2). */
function messageBatch(params: BenchParameters): Envelope[] {
  const rng = new SeededRng(params.seed * 1_000_003 + 1);
  const envelopes: Envelope[] = [];
  for (let s = 0; s < params.appendShardCount; s++) {
    const term = 3 + (s % 5);
    const index = 1_000_000 + s * 997;
    const entries: Entry[] = Array.from({ length: params.entriesPerAppend }, (_, k) => ({
      term,
      index: index + 1 + k,
      type: 'normal',
      data: randomBytes(rng, params.entryPayloadBytes),
    }));
    const message: AppendMessage = { type: 'append', from: nodeId(1), to: nodeId(2), term, index, logTerm: term, commit: index - 3, entries };
    envelopes.push({ shardId: groupId(1_000 + s), message });
  }
  for (let s = 0; s < params.heartbeatShardCount; s++) {
    const message: HeartbeatMessage = { type: 'heartbeat', from: nodeId(1), to: nodeId(2), term: 7, commit: 500_000 + s * 31, round: 40_000 + s };
    envelopes.push({ shardId: groupId(5_000 + s), message });
  }
  return envelopes;
}

/** What a receiver reads of a decoded batch, folded into an int32: every envelope's header, every entry. */
function envelopesSum(envelopes: readonly Envelope[]): number {
  let sum = envelopes.length;
  for (const { shardId, message: m } of envelopes) {
    sum = (sum + shardId + m.from + m.term) | 0;
    if (m.type === 'append') {
      sum = (sum + m.index + m.commit) | 0;
      for (const e of m.entries) sum = (sum + e.index + e.data.byteLength + e.data[0]!) | 0;
    } else if (m.type === 'heartbeat') {
      sum = (sum + m.commit + m.round) | 0;
    }
  }
  return sum;
}

/**
 * A synchronous codec task: `run` once per iteration, its output folded into the checksum by `sum`.
 * Verified after the run: the checksum must be `expectedPerIteration` per iteration, and `check` must
 * accept the last output.
 */
function codecTask<T>(o: {
  name: string;
  group: TaskGroup;
  what: string;
  opsPerIteration: number;
  bytesPerOp: number;
  run: () => T;
  sum: (out: T) => number;
  expectedPerIteration: number;
  check: (last: T) => void;
}): Workload {
  let iterations = 0;
  let checksum = 0;
  let last: T | undefined;
  return {
    name: o.name,
    group: o.group,
    what: o.what,
    opsPerIteration: o.opsPerIteration,
    bytesPerOp: o.bytesPerOp,
    async: false,
    iterate: () => {
      last = o.run();
      checksum = (checksum + o.sum(last)) | 0;
      iterations++;
    },
    reset: () => {
      iterations = 0;
      checksum = 0;
    },
    verify: () => {
      assertChecksum(o.name, checksum, repeatedSum(iterations, o.expectedPerIteration), iterations);
      o.check(last!);
    },
    iterationCount: () => iterations,
    checksum: () => checksum,
  };
}

function batchWorkloads(params: BenchParameters): Workload[] {
  const batch = messageBatch(params);
  const encoded = encodeBatch(batch);
  const reference = Uint8Array.from(encoded);
  const shape = { group: 'batch' as const, what: `${batch.length} msgs, ${fmt(encoded.byteLength / 1024, 1)} KiB`, opsPerIteration: 1, bytesPerOp: encoded.byteLength };
  return [
    codecTask({
      ...shape,
      name: 'batch encode',
      run: () => encodeBatch(batch),
      sum: bytesSum,
      expectedPerIteration: bytesSum(reference),
      check: (last) => {
        assertSame('batch encode (bytes against the first encode)', last, reference);
        assertSame('batch encode', decodeBatch(last), batch);
      },
    }),
    codecTask({
      ...shape,
      name: 'batch decode',
      run: () => decodeBatch(encoded),
      sum: envelopesSum,
      expectedPerIteration: envelopesSum(batch),
      check: (last) => assertSame('batch decode', last, batch),
    }),
  ];
}

// ---------------------------------------------------------------------------
// KV command codec

/** Folded into the decode checksum per command: what the state machine reads of it. */
function commandSum(c: KvCommand): number {
  const value = c.op === 'put' ? c.value : undefined;
  return (c.key.byteLength + c.key[0]! + (value === undefined ? 0 : value.byteLength + value[value.byteLength - 1]!)) | 0;
}

function commandWorkloads(params: BenchParameters): Workload[] {
  const rng = new SeededRng(params.seed * 1_000_003 + 2);
  const commands: KvCommand[] = Array.from({ length: params.commandCount }, () => ({
    op: 'put',
    key: randomBytes(rng, params.commandKeyBytes),
    value: randomBytes(rng, params.commandValueBytes),
  }));
  const encoded = commands.map((c) => encodeCommand(c));
  const reference = encoded.map((b) => Uint8Array.from(b));
  const encodedBytesMean = encoded.reduce((n, b) => n + b.byteLength, 0) / encoded.length;
  const n = commands.length;
  const shape = { group: 'command' as const, what: `put k=${params.commandKeyBytes}B v=${params.commandValueBytes}B, ${fmt(encodedBytesMean)} B`, opsPerIteration: n, bytesPerOp: encodedBytesMean };
  // Outputs land in arrays made once: the tasks time the codec, not an array per iteration.
  const lastEncoded: Uint8Array[] = new Array<Uint8Array>(n);
  const lastDecoded: KvCommand[] = new Array<KvCommand>(n);
  const sumBy = <T>(items: readonly T[], f: (item: T) => number) => items.reduce((sum, item) => (sum + f(item)) | 0, 0);
  return [
    codecTask({
      ...shape,
      name: 'command encode',
      run: () => {
        for (let i = 0; i < n; i++) lastEncoded[i] = encodeCommand(commands[i]!);
        return lastEncoded;
      },
      sum: (out) => sumBy(out, bytesSum),
      expectedPerIteration: sumBy(reference, bytesSum),
      check: (last) => {
        assertSame('command encode (bytes against the first encode)', last, reference);
        assertSame('command encode', last.map((b, i) => decodeCommand(i + 1, b)), commands);
      },
    }),
    codecTask({
      ...shape,
      name: 'command decode',
      run: () => {
        for (let i = 0; i < n; i++) lastDecoded[i] = decodeCommand(i + 1, encoded[i]!);
        return lastDecoded;
      },
      sum: (out) => sumBy(out, commandSum),
      expectedPerIteration: sumBy(commands, commandSum),
      check: (last) => assertSame('command decode', last, commands),
    }),
  ];
}

// ---------------------------------------------------------------------------
// Cross-thread handoff

/** XORed by the worker into the sequence number it echoes, so an echo the worker never touched fails the checksum. */
const ECHO_MARK = 0x5a17c0de;

// A CommonJS script (an eval'd worker is one): reads the sequence number at
// the front, writes it XOR the mark into the last 4 bytes, and sends the
// message back the way it came (transferred back if it was transferred).
const ECHO_WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  const transferred = m instanceof ArrayBuffer;
  const view = transferred ? new DataView(m) : new DataView(m.buffer, m.byteOffset, m.byteLength);
  view.setUint32(view.byteLength - 4, (view.getUint32(0, true) ^ ${ECHO_MARK}) >>> 0, true);
  if (transferred) parentPort.postMessage(m, [m]);
  else parentPort.postMessage(m);
});
`;

/** A worker thread that echoes every message; one round trip outstanding at a time. */
class EchoWorker {
  private readonly worker = new Worker(ECHO_WORKER_SOURCE, { eval: true });
  private pending: { resolve: (m: unknown) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor() {
    this.worker.on('message', (m: unknown) => {
      const p = this.pending;
      this.pending = undefined;
      p?.resolve(m);
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      const p = this.pending;
      this.pending = undefined;
      p?.reject(err);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`echo worker exited with code ${code}`)));
  }

  /** Posts `value` (transferring `transfer`) and resolves with the echo. */
  roundTrip(value: unknown, transfer?: ArrayBuffer[]): Promise<unknown> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(this.pending === undefined, 'echo worker: a round trip is already outstanding');
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      if (transfer === undefined) this.worker.postMessage(value);
      else this.worker.postMessage(value, transfer);
    });
  }

  async terminate(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

/** The checksum `iterations` echoes (sequence numbers 1, 2, ...) must add up to. */
function echoChecksum(iterations: number): number {
  let sum = 0;
  for (let seq = 1; seq <= iterations; seq++) sum = (sum + ((seq ^ ECHO_MARK) >>> 0)) | 0;
  return sum;
}

function handoffWorkload(echo: EchoWorker, params: BenchParameters, bytes: number, how: 'transfer' | 'clone'): Workload {
  assert(bytes >= 8 && bytes % 4 === 0, () => `handoff buffer of ${bytes} B`);
  const size = bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
  const name = `handoff ${size} ${how === 'transfer' ? 'transferred' : 'cloned'}`;
  const rng = new SeededRng(params.seed * 1_000_003 + 3 + bytes);
  // The payload between the sequence number (front) and the worker's echo of it (back) must survive every round trip.
  const payload = randomBytes(rng, bytes);
  const originalTail = new DataView(payload.buffer).getUint32(bytes - 4, true);
  let iterations = 0;
  let checksum = 0;

  if (how === 'transfer') {
    let buffer = payload.slice().buffer;
    return {
      name,
      group: 'handoff',
      what: `round trip, ArrayBuffer ${size}, postMessage(buf, [buf]) both ways`,
      opsPerIteration: 1,
      bytesPerOp: bytes,
      async: true,
      iterate: async () => {
        const seq = ++iterations;
        const sent = buffer;
        new DataView(sent).setUint32(0, seq, true);
        const echoed = echo.roundTrip(sent, [sent]);
        if (sent.byteLength !== 0) throw new Error(`${name}: the buffer was not transferred (still ${sent.byteLength} B here)`);
        buffer = (await echoed) as ArrayBuffer;
        checksum = (checksum + new DataView(buffer).getUint32(bytes - 4, true)) | 0;
      },
      reset: () => {
        iterations = 0;
        checksum = 0;
      },
      verify: () => {
        assertChecksum(name, checksum, echoChecksum(iterations), iterations);
        assert(buffer instanceof ArrayBuffer && buffer.byteLength === bytes, () => `${name}: echoed ${String(buffer)}`);
        assertSame(name, new Uint8Array(buffer, 4, bytes - 8), payload.subarray(4, bytes - 4));
      },
      iterationCount: () => iterations,
      checksum: () => checksum,
    };
  }

  const sent = payload.slice();
  const sentView = new DataView(sent.buffer);
  let echoed: Uint8Array = new Uint8Array(0);
  return {
    name,
    group: 'handoff',
    what: `round trip, Uint8Array ${size}, postMessage(u8) (a copy each way)`,
    opsPerIteration: 1,
    bytesPerOp: bytes,
    async: true,
    iterate: async () => {
      const seq = ++iterations;
      sentView.setUint32(0, seq, true);
      echoed = (await echo.roundTrip(sent)) as Uint8Array;
      checksum = (checksum + new DataView(echoed.buffer, echoed.byteOffset, echoed.byteLength).getUint32(bytes - 4, true)) | 0;
    },
    reset: () => {
      iterations = 0;
      checksum = 0;
    },
    verify: () => {
      assertChecksum(name, checksum, echoChecksum(iterations), iterations);
      assert(echoed instanceof Uint8Array && echoed !== sent && echoed.byteLength === bytes, () => `${name}: echoed ${String(echoed)}`);
      // A clone: the worker wrote into its copy, never into ours.
      assert(sentView.getUint32(bytes - 4, true) === originalTail, () => `${name}: the worker wrote into the sender's buffer`);
      assertSame(name, echoed.subarray(4, bytes - 4), payload.subarray(4, bytes - 4));
    },
    iterationCount: () => iterations,
    checksum: () => checksum,
  };
}

// ---------------------------------------------------------------------------
// Running

async function runTasks(params: BenchParameters, workloads: readonly Workload[]): Promise<ResultRow[]> {
  const bench = new Bench({
    name: 'codec',
    time: params.taskTimeMs,
    iterations: params.taskIterationsMin,
    warmupTime: params.warmupTimeMs,
    warmupIterations: params.warmupIterationsMin,
    throws: true,
  });
  for (const w of workloads) {
    bench.add(w.name, w.iterate, {
      async: w.async,
      beforeAll: () => {
        w.reset();
        gc?.();
      },
    });
  }
  await bench.run();
  // The run phase came last, so each workload still holds its run's counters and outputs.
  return workloads.map((w) => {
    w.verify();
    return resultRow(w, bench.getTask(w.name)!);
  });
}

function resultRow(w: Workload, task: Task): ResultRow {
  const r = task.result;
  assert(r.state === 'completed', () => `task ${w.name} ended ${r.state}`);
  const opsPerSecond = (w.opsPerIteration * 1_000) / r.period;
  return {
    name: w.name,
    group: w.group,
    what: w.what,
    opsPerIteration: w.opsPerIteration,
    bytesPerOp: w.bytesPerOp,
    sampleCount: r.latency.samplesCount,
    iterationCount: w.iterationCount(),
    opsPerSecond,
    nsPerOp: (r.period * 1e6) / w.opsPerIteration,
    p99NsPerOp: (r.latency.p99 * 1e6) / w.opsPerIteration,
    rmePercent: r.latency.rme,
    mibPerSecond: (opsPerSecond * w.bytesPerOp) / (1024 * 1024),
    checksum: w.checksum() >>> 0,
  };
}

// ---------------------------------------------------------------------------
// Reporting

function printResults(rows: readonly ResultRow[]): void {
  printTable(
    ['task', 'one op', 'ops/iter', 'ops/s', 'ns/op', 'p99 ns/op', '±%', 'MiB/s', 'checksum'],
    rows.map((r) => [
      r.name,
      r.what,
      fmt(r.opsPerIteration),
      fmt(r.opsPerSecond),
      fmt(r.nsPerOp),
      fmt(r.p99NsPerOp),
      fmt(r.rmePercent, 1),
      fmt(r.mibPerSecond, 1),
      hex32(r.checksum),
    ]),
  );
}

interface HandoffRatio {
  readonly bytes: number;
  /** ops/s transferred ÷ ops/s cloned: above 1, transferring is faster. */
  readonly transferOverClone: number;
  /** What cloning costs over transferring per round trip (two copies: there and back). */
  readonly cloneExtraNsPerRoundTrip: number;
}

function handoffRatios(rows: readonly ResultRow[], sizes: readonly number[]): HandoffRatio[] {
  return sizes.map((bytes) => {
    const find = (how: string) => rows.find((r) => r.group === 'handoff' && r.bytesPerOp === bytes && r.name.endsWith(how))!;
    const transferred = find('transferred');
    const cloned = find('cloned');
    return { bytes, transferOverClone: transferred.opsPerSecond / cloned.opsPerSecond, cloneExtraNsPerRoundTrip: cloned.nsPerOp - transferred.nsPerOp };
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' } } });
  const quick = values.quick === true || process.env.FLOTILLA_BENCH_QUICK === '1';
  const params = quick ? QUICK : FULL;
  const run = startRun(`codec bench (${params.mode})`);
  console.log(
    `parameters: batch of ${params.appendShardCount} appends × ${params.entriesPerAppend} entries × ${params.entryPayloadBytes} B + ${params.heartbeatShardCount} heartbeats; ` +
      `${params.commandCount} puts per iteration; handoff ${params.handoffLargeBytes} B and ${params.handoffSmallBytes} B; ` +
      `${params.taskTimeMs} ms and ≥${params.taskIterationsMin} iterations per task after ${params.warmupTimeMs} ms / ≥${params.warmupIterationsMin} iterations of warm-up`,
  );
  console.log('ns/op and p99 ns/op = iteration latency (mean, p99) ÷ ops per iteration; a handoff op is one round trip to the worker and back.\n');

  const echo = new EchoWorker();
  let rows: ResultRow[];
  try {
    const handoffSizes = [params.handoffLargeBytes, params.handoffSmallBytes];
    const workloads = [
      ...batchWorkloads(params),
      ...commandWorkloads(params),
      ...handoffSizes.flatMap((bytes) => [handoffWorkload(echo, params, bytes, 'transfer'), handoffWorkload(echo, params, bytes, 'clone')]),
    ];
    rows = await runTasks(params, workloads);
  } finally {
    await echo.terminate();
  }
  const ratios = handoffRatios(rows, [params.handoffLargeBytes, params.handoffSmallBytes]);
  // (The process CPU includes the echo worker's thread: a handoff keeps two threads partly busy.)
  const end = finishRun(run);

  printResults(rows);
  const messagesPerBatch = params.appendShardCount + params.heartbeatShardCount;
  for (const r of rows.filter((row) => row.group === 'batch')) {
    console.log(`${r.name}: ${fmt(r.opsPerSecond * messagesPerBatch)} messages/s, ${fmt(r.nsPerOp / messagesPerBatch)} ns per message`);
  }
  for (const x of ratios) {
    console.log(
      `transfer÷clone at ${fmt(x.bytes)} B: ${ratio(x.transferOverClone)}× (ops/s transferred ÷ cloned; cloning costs ${fmt(x.cloneExtraNsPerRoundTrip)} ns more per round trip)`,
    );
  }
  console.log(`claimed: transfer beats clone 2–4× per batch; measured at ${fmt(params.handoffLargeBytes)} B: ${ratio(ratios[0]!.transferOverClone)}×`);
  console.log(`\n${end.text}`);
  if (params.mode === 'quick') console.log('quick mode: time budget too small for meaningful numbers; this run checks that the bench works and every decode matches its input.');

  const report = {
    benchmark: 'codec',
    startedAt: run.startedAt.toISOString(),
    finishedAt: end.finishedAt.toISOString(),
    command: commandLine(),
    machine: end.machine,
    parameters: params,
    results: rows,
    handoffRatios: ratios,
  };
  console.log(`wrote ${writeResults('codec', run.startedAt, report)}`);
}

await main();
