#!/usr/bin/env node
// The `flotilla` command: run a node (`start`), a local 3-node cluster
// (`dev`, what `npm start` runs), or talk to a running node over HTTP
// (`put`, `get`, `del`, `scan`, `status`, ...), or run the benchmarks (`bench`).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { createHttpServer } from './http/app.js';
import { FlotillaNode, INITIAL_RANGE_COUNT_DEFAULT, type NodeOptions } from './node.js';
import { readyUrl } from './ready-line.js';

const USAGE = `usage:
  flotilla dev    [--dir ./flotilla-dev] [--nodes 3] [--port 7100] [--http-port 8100] [--ranges ${INITIAL_RANGE_COUNT_DEFAULT}]
  flotilla start  --id N --dir DIR --listen HOST:PORT --http HOST:PORT [--peers ID=HOST:PORT,... [--cluster-token T] | --join http://HOST:PORT] [--ranges N] [--cores N] [--log-level info]
                  [--tick-ms 100] [--duty-ms 1000] [--down-after-ms 30000]   (heartbeat/duty interval; when the placement driver calls a silent node down)
                  [--consistency-check-ms 600000]   (least time between background consistency checks of a range this node leads; 0: off)
                  [--advertise HOST:PORT]   (the transport address peers dial, recorded in the meta range; default the --listen address)
  flotilla put    KEY VALUE [--url http://127.0.0.1:8101] [--if-version N]
  flotilla get    KEY       [--url ...] [--stale]
  flotilla del    KEY       [--url ...] [--if-version N]
  flotilla scan   [--start KEY] [--end KEY] [--limit N] [--url ...]
  flotilla status [--url ...] [--json]          (nodes and their state, replicas and leaders per node, moves in flight)
  flotilla split  RANGE_ID KEY [--url ...]   (KEY becomes the right half's first key; see \`status\` for range ids)
  flotilla move   RANGE_ID FROM_NODE TO_NODE [--url ...]
  flotilla transfer-leader RANGE_ID TO_NODE [--url ...]
  flotilla decommission NODE_ID [--url ...]   (moves its replicas off; \`recommission NODE_ID\` undoes it)
  flotilla pause | resume [--url ...]          (the placement driver plans nothing while paused)
  flotilla replication-factor N [--url ...]
  flotilla bench  [--target embedded|embedded-replicated|http|etcd] [--url URL,...] [--workloads write,a,b,c,f,scan] [--concurrency 1,16,64] ...
  flotilla bench compare [--workloads ...] [--concurrency 1,16,64,256] ...   (Flotilla vs etcd vs the no-consensus baseline)
  flotilla bench soak [--rate 500] [--duration-ms 600000] [--warmup-ms 60000] ...   (3 nodes at a fixed load, watched for growth)
                  (the benchmarks of @flotilla/bench; bench/README.md has every flag)
Keys and values are UTF-8 text on the command line (the HTTP API takes any bytes).`;

/** A usage mistake: printed with the usage, exit code 2. */
class UsageError extends Error {}

/** How long `dev` waits for each node to report ready before giving up. */
const NODE_START_TIMEOUT_MS = 30_000;
/** How long shutdown waits for a node process to exit after SIGTERM before SIGKILL. */
const NODE_STOP_TIMEOUT_MS = 10_000;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest);
    case 'dev':
      return dev(rest);
    case 'put':
    case 'get':
    case 'del':
    case 'scan':
    case 'status':
    case 'split':
    case 'move':
    case 'transfer-leader':
    case 'decommission':
    case 'recommission':
    case 'pause':
    case 'resume':
    case 'replication-factor':
      return client(command, rest);
    case 'bench':
      return bench(rest);
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

function hostPort(value: string, flag: string): { host: string; port: number } {
  const m = /^([^:]+):(\d{1,5})$/.exec(value);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || port > 65535) throw new UsageError(`${flag} must be HOST:PORT, got "${value}"`);
  return { host: m[1]!, port };
}

/** The driver's timings from the time after which a silent node is down: suspect at a sixth of it. */
function placementTimingsOf(downAfterMs: number): NonNullable<NodeOptions['placement']> {
  return { downAfterMs, suspectAfterMs: Math.max(1, Math.floor(downAfterMs / 6)) };
}

function positiveInt(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer, got "${value}"`);
  return n;
}

function nonNegativeInt(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`${flag} must be a non-negative integer, got "${value}"`);
  return n;
}

async function start(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      id: { type: 'string' },
      dir: { type: 'string' },
      listen: { type: 'string' },
      http: { type: 'string' },
      peers: { type: 'string', default: '' },
      join: { type: 'string' },
      'cluster-token': { type: 'string' },
      ranges: { type: 'string' },
      cores: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      'tick-ms': { type: 'string' },
      'duty-ms': { type: 'string' },
      'down-after-ms': { type: 'string' },
      advertise: { type: 'string' },
      'consistency-check-ms': { type: 'string' },
    },
    strict: true,
  });
  if (values.id === undefined || values.dir === undefined || values.listen === undefined || values.http === undefined) {
    throw new UsageError('start needs --id, --dir, --listen and --http');
  }
  const nodeId = positiveInt(values.id, '--id', 0);
  if (values.join !== undefined && values.peers.length > 0) throw new UsageError('start takes --join URL or --peers, not both');
  if (values.join !== undefined && values['cluster-token'] !== undefined) throw new UsageError('--cluster-token is for a static bootstrap (--peers); a joining node takes the cluster id from the member it joins through');
  const peers: Record<number, string> = {};
  for (const entry of values.peers.split(',').filter((e) => e.length > 0)) {
    const [id, address] = entry.split('=');
    const peerId = positiveInt(id, '--peers id', 0);
    if (address === undefined || peerId === nodeId) throw new UsageError(`--peers entries are ID=HOST:PORT of other nodes, got "${entry}"`);
    hostPort(address, '--peers address');
    peers[peerId] = address;
  }
  if (values.advertise !== undefined) hostPort(values.advertise, '--advertise');
  const logger = pino({ level: values['log-level'], base: { nodeId } }, pino.destination(2)) as unknown as ShellLogger & pino.Logger;
  const node = await FlotillaNode.start({
    nodeId,
    dir: resolve(values.dir),
    listen: hostPort(values.listen, '--listen'),
    ...(values.advertise === undefined ? {} : { advertise: values.advertise }),
    peers,
    httpAddress: values.http,
    ...(values.join === undefined ? {} : { join: values.join }),
    ...(values['cluster-token'] === undefined ? {} : { clusterToken: values['cluster-token'] }),
    initialRangeCount: positiveInt(values.ranges, '--ranges', INITIAL_RANGE_COUNT_DEFAULT),
    logger,
    onFatal: (err) => {
      logger.fatal({ err }, 'node stopping after a fatal error');
      process.exit(70);
    },
    ...(values.cores === undefined ? {} : { coreCount: positiveInt(values.cores, '--cores', 1) }),
    ...(values['tick-ms'] === undefined ? {} : { tickIntervalMs: positiveInt(values['tick-ms'], '--tick-ms', 100) }),
    ...(values['duty-ms'] === undefined ? {} : { metaDutyIntervalMs: positiveInt(values['duty-ms'], '--duty-ms', 1_000) }),
    ...(values['down-after-ms'] === undefined ? {} : { placement: placementTimingsOf(positiveInt(values['down-after-ms'], '--down-after-ms', 30_000)) }),
    ...(values['consistency-check-ms'] === undefined ? {} : { consistencyCheckIntervalMs: nonNegativeInt(values['consistency-check-ms'], '--consistency-check-ms') }),
  });
  const http = await createHttpServer({ store: node.store, logger, cluster: node.view });
  const url = await http.listen(hostPort(values.http, '--http'));
  // One line on stdout says the node is serving (dev waits for it); logs go to stderr.
  console.log(JSON.stringify({ ready: true, nodeId, http: url, transport: node.transportAddress }));
  logger.info({ http: url, transport: node.transportAddress }, 'node serving');
  await new Promise<void>((resolveStop) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      resolveStop();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  // Stop accepting and finish in-flight requests, then close the store (Host, cores, LMDB, transport).
  await http.close();
  logger.info({}, 'stopped');
  return 0;
}

/** The benchmarks `flotilla bench <name>` runs; without a name, ycsb-bench. */
const BENCH_SCRIPTS: ReadonlyMap<string, string> = new Map([
  ['compare', 'compare-bench.js'],
  ['soak', 'soak-bench.js'],
]);

/**
 * `flotilla bench`: runs the benchmarks of @flotilla/bench (ycsb-bench, or the one BENCH_SCRIPTS names,
 * e.g. compare-bench for `bench compare`) in a child process with the rest of the arguments. The bench
 * package depends on this one, not the other way round: it is found where it is installed next to it (in
 * this repository, always).
 */
async function bench(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const named = sub === undefined ? undefined : BENCH_SCRIPTS.get(sub);
  const script = named ?? 'ycsb-bench.js';
  let path: string;
  try {
    path = fileURLToPath(new URL(`dist/${script}`, import.meta.resolve('@flotilla/bench/package.json')));
  } catch {
    console.error('flotilla bench needs the @flotilla/bench package (in this repository: npm ci && npm run build)');
    return 1;
  }
  if (!existsSync(path)) {
    console.error(`${path} is missing: build the benchmarks first (npm run build)`);
    return 1;
  }
  const child = spawn(process.execPath, [path, ...(named === undefined ? args : rest)], { stdio: 'inherit' });
  return new Promise((done) => {
    child.once('exit', (code, signal) => done(code ?? (signal === null ? 1 : 128)));
  });
}

async function dev(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      dir: { type: 'string', default: './flotilla-dev' },
      nodes: { type: 'string', default: '3' },
      port: { type: 'string', default: '7100' },
      'http-port': { type: 'string', default: '8100' },
      ranges: { type: 'string' },
      'log-level': { type: 'string', default: 'warn' },
    },
    strict: true,
  });
  const count = positiveInt(values.nodes, '--nodes', 3);
  const basePort = positiveInt(values.port, '--port', 7100);
  const baseHttp = positiveInt(values['http-port'], '--http-port', 8100);
  const root = resolve(values.dir);
  mkdirSync(root, { recursive: true });
  const ids = Array.from({ length: count }, (_, i) => i + 1);
  const transport = (id: number) => `127.0.0.1:${basePort + id}`;
  const self = fileURLToPath(import.meta.url);
  const children = new Map<number, ChildProcess>();
  let stopping = false;

  const stopAll = async (): Promise<void> => {
    stopping = true;
    await Promise.all(
      [...children.values()].map(
        (child) =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const timer = setTimeout(() => child.kill('SIGKILL'), NODE_STOP_TIMEOUT_MS);
            child.once('exit', () => {
              clearTimeout(timer);
              done();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  };

  const ready = ids.map((id) => {
    const peers = ids.filter((p) => p !== id).map((p) => `${p}=${transport(p)}`).join(',');
    const child = spawn(
      process.execPath,
      [
        self,
        'start',
        '--id',
        String(id),
        '--dir',
        join(root, `node-${id}`),
        '--listen',
        transport(id),
        '--http',
        `127.0.0.1:${baseHttp + id}`,
        '--log-level',
        values['log-level'],
        ...(peers.length > 0 ? ['--peers', peers] : []),
        ...(values.ranges === undefined ? [] : ['--ranges', values.ranges]),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.set(id, child);
    child.once('exit', (code, signal) => {
      if (stopping) return;
      console.error(`node ${id} (pid ${child.pid}) exited (${signal ?? `code ${code}`}); stopping the cluster`);
      void stopAll().then(() => process.exit(1));
    });
    return readyUrl(child, { name: `node ${id}`, timeoutMs: NODE_START_TIMEOUT_MS, onOtherLine: (line) => process.stdout.write(`[node ${id}] ${line}\n`) });
  });
  let urls: string[];
  try {
    urls = await Promise.all(ready);
  } catch (err) {
    console.error((err as Error).message);
    await stopAll();
    return 1;
  }
  const first = urls[0]!;
  console.log(`Flotilla dev cluster: ${count} node${count === 1 ? '' : 's'} on loopback, data under ${root}`);
  for (const [i, url] of urls.entries()) console.log(`  node ${i + 1}  ${url}   (pid ${children.get(i + 1)!.pid})`);
  console.log(`
Try it:
  curl -X PUT --data-binary 'hello' ${first}/kv/greeting
  curl ${urls[urls.length - 1]}/kv/greeting
  curl '${first}/kv?limit=10'
Ctrl-C stops the cluster (data stays in ${root}).`);
  await new Promise<void>((resolveStop) => {
    process.once('SIGINT', () => resolveStop());
    process.once('SIGTERM', () => resolveStop());
  });
  console.log('stopping the cluster…');
  await stopAll();
  return 0;
}

type ClientCommand = 'put' | 'get' | 'del' | 'scan' | 'status' | 'split' | 'move' | 'transfer-leader' | 'decommission' | 'recommission' | 'pause' | 'resume' | 'replication-factor';

async function client(command: ClientCommand, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:8101' },
      'if-version': { type: 'string' },
      stale: { type: 'boolean', default: false },
      start: { type: 'string' },
      end: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const json = (body: unknown) => ({ method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const base = values.url.replace(/\/+$/, '');
  const keyUrl = (key: string | undefined) => {
    if (key === undefined || key.length === 0) throw new UsageError(`${command} needs a KEY`);
    return `${base}/kv/${encodeURIComponent(key)}`;
  };
  const conditional: Record<string, string> = values['if-version'] === undefined ? {} : { 'if-match': `"${positiveInt(values['if-version'], '--if-version', 1)}"` };
  let response: Response;
  switch (command) {
    case 'put':
      if (positionals[1] === undefined) throw new UsageError('put needs KEY and VALUE');
      response = await fetch(keyUrl(positionals[0]), { method: 'PUT', body: positionals[1], headers: conditional });
      break;
    case 'get':
      response = await fetch(`${keyUrl(positionals[0])}${values.stale ? '?consistency=stale' : ''}`);
      break;
    case 'del':
      response = await fetch(keyUrl(positionals[0]), { method: 'DELETE', headers: conditional });
      break;
    case 'scan': {
      const q = new URLSearchParams();
      if (values.start !== undefined) q.set('start', values.start);
      if (values.end !== undefined) q.set('end', values.end);
      if (values.limit !== undefined) q.set('limit', values.limit);
      q.set('encoding', 'utf8');
      response = await fetch(`${base}/kv?${q.toString()}`);
      break;
    }
    case 'status':
      return status(base, { json: values.json });
    case 'move': {
      const [rangeId, from, to] = positionals.map((p, i) => positiveInt(p, ['RANGE_ID', 'FROM_NODE', 'TO_NODE'][i] ?? 'argument', 1));
      if (to === undefined) throw new UsageError('move needs RANGE_ID FROM_NODE TO_NODE');
      response = await fetch(`${base}/ranges/${rangeId}/move`, json({ from, to }));
      break;
    }
    case 'transfer-leader': {
      const [rangeId, to] = positionals.map((p, i) => positiveInt(p, ['RANGE_ID', 'TO_NODE'][i] ?? 'argument', 1));
      if (to === undefined) throw new UsageError('transfer-leader needs RANGE_ID TO_NODE');
      response = await fetch(`${base}/ranges/${rangeId}/transfer-leader`, json({ to }));
      break;
    }
    case 'decommission':
    case 'recommission': {
      if (positionals[0] === undefined) throw new UsageError(`${command} needs NODE_ID`);
      response = await fetch(`${base}/nodes/${positiveInt(positionals[0], 'NODE_ID', 1)}/${command}`, { method: 'POST' });
      break;
    }
    case 'pause':
    case 'resume':
      response = await fetch(`${base}/placement/settings`, { ...json({ paused: command === 'pause' }), method: 'PUT' });
      break;
    case 'replication-factor':
      if (positionals[0] === undefined) throw new UsageError('replication-factor needs N');
      response = await fetch(`${base}/placement/settings`, { ...json({ replicationFactor: positiveInt(positionals[0], 'N', 1) }), method: 'PUT' });
      break;
    case 'split': {
      if (positionals[0] === undefined || positionals[1] === undefined || positionals[1].length === 0) throw new UsageError('split needs RANGE_ID and KEY');
      const rangeId = positiveInt(positionals[0], 'RANGE_ID', 1);
      response = await fetch(`${base}/ranges/${rangeId}/split`, { method: 'POST', body: JSON.stringify({ key: positionals[1] }), headers: { 'content-type': 'application/json' } });
      break;
    }
  }
  const body = await response.text();
  const version = response.headers.get('etag');
  if (!response.ok) {
    console.error(`${response.status} ${body}`);
    return 1;
  }
  if (command === 'get' && version !== null) console.error(`version ${version.replace(/"/g, '')}`);
  if (command === 'put' && version !== null) console.log(`ok, version ${version.replace(/"/g, '')}`);
  else if (body.length > 0) console.log(body);
  else console.log('ok');
  return 0;
}

/**
 * Budget of each call `status` makes to the node for what it knows locally
 * (/cluster, /ready): the node answers those at once whatever the cluster's
 * state, so this only covers a loaded machine or a hung process.
 */
const STATUS_NODE_TIMEOUT_MS = 3_000;
/** Budget of the call to the placement driver (it runs where the meta range is led, which may be nowhere): past it, the node's own view. */
const STATUS_PLACEMENT_TIMEOUT_MS = 2_000;

/**
 * One GET for `status`: `ok` with its JSON body on a 2xx; otherwise why not
 * (no answer in time, refused, an error status with its body) and the body
 * if it was JSON (/ready's 503 carries its reasons).
 */
async function statusGet(url: string, timeoutMs: number): Promise<{ ok: true; body: unknown } | { ok: false; problem: string; body?: unknown }> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      return { ok: false, problem: `${response.status} ${text}` };
    }
    return response.ok ? { ok: true, body } : { ok: false, problem: `${response.status} ${text}`, body };
  } catch (err) {
    const e = err as { name?: string; message?: string; cause?: { code?: string } };
    if (e.name === 'TimeoutError') return { ok: false, problem: `no answer within ${timeoutMs} ms` };
    return { ok: false, problem: e.cause?.code ?? e.message ?? String(err) };
  }
}

/**
 * `flotilla status`: the placement driver's view of the cluster when it can
 * be reached, else this node's own; and whether this node is ready. Every
 * call has a client-side timeout, so it answers within a few seconds
 * whatever the cluster's state.
 */
async function status(base: string, o: { json: boolean }): Promise<number> {
  if (o.json) {
    const placement = await statusGet(`${base}/placement`, STATUS_PLACEMENT_TIMEOUT_MS);
    if (!placement.ok) {
      console.error(`${base}/placement: ${placement.problem}`);
      return 1;
    }
    console.log(JSON.stringify(placement.body));
    return 0;
  }
  const [cluster, placement, ready] = await Promise.all([
    statusGet(`${base}/cluster`, STATUS_NODE_TIMEOUT_MS),
    statusGet(`${base}/placement`, STATUS_PLACEMENT_TIMEOUT_MS),
    statusGet(`${base}/ready`, STATUS_NODE_TIMEOUT_MS),
  ]);
  if (!cluster.ok) {
    console.error(`${base}/cluster: ${cluster.problem}`);
    return 1;
  }
  // /ready answers 503 with its reasons; anything else is reported as it came.
  const readyBody = ready.body as Partial<ReadyJson> | undefined;
  const readiness: ReadyJson | string = typeof readyBody?.ready === 'boolean' && Array.isArray(readyBody.reasons) ? (readyBody as ReadyJson) : ready.ok ? 'unreadable answer' : ready.problem;
  console.log(statusText(cluster.body as ClusterJson, placement.ok ? { view: placement.body as PlacementJson } : { problem: placement.problem }, readiness));
  return 0;
}

interface ClusterJson {
  nodeId: number;
  nodes: { nodeId: number; transport: string; state: string }[];
  ranges: { rangeId: number; leader: number; replicas: number[] }[];
}

interface ReadyJson {
  ready: boolean;
  reasons: string[];
}

interface PlacementJson {
  settings: { paused: boolean; replicationFactor: number };
  rangeCount: number;
  nodes: { nodeId: number; state: string; replicaCount: number; leaderCount: number; writesPerSec: number; readsPerSec: number; usedBytes: number; availableBytes: number; silentMs: number | null }[];
  operators: { kind: string; rangeId: number; reason: string; ageMs: number; lastStep: string | null; from?: number; to?: number; node?: number }[];
}

/**
 * The cluster at a glance: the driver's view of every node and what it is
 * doing — or this node's own view when the driver cannot be reached — then
 * whether the node asked is ready, and why not.
 */
function statusText(cluster: ClusterJson, driver: { view: PlacementJson } | { problem: string }, readiness: ReadyJson | string): string {
  const lines: string[] = [];
  if ('problem' in driver) {
    lines.push(`the placement driver is not reachable (${driver.problem}); node ${cluster.nodeId}'s view:`);
    for (const n of cluster.nodes) lines.push(`  node ${n.nodeId}  ${n.state.padEnd(6)} ${n.transport}`);
    lines.push(`  ${cluster.ranges.length} ranges held here, ${cluster.ranges.filter((r) => r.leader === 0).length} of them without a known leader`);
  } else {
    lines.push(...placementLines(driver.view));
  }
  if (typeof readiness === 'string') lines.push(`node ${cluster.nodeId}: readiness unknown (${readiness})`);
  else if (readiness.ready) lines.push(`node ${cluster.nodeId}: ready`);
  else {
    lines.push(`node ${cluster.nodeId}: NOT READY`);
    for (const reason of readiness.reasons) lines.push(`  ${reason}`);
  }
  return lines.join('\n');
}

/** The driver's view: settings, one line per node, the operators in flight. */
function placementLines(placement: PlacementJson): string[] {
  const lines: string[] = [];
  const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  lines.push(`${placement.rangeCount} ranges, replication factor ${placement.settings.replicationFactor}, scheduler ${placement.settings.paused ? 'PAUSED' : 'running'}`);
  lines.push('node  state            replicas  leaders  ops/s     used        free        last heard');
  for (const n of placement.nodes) {
    const heard = n.silentMs === null ? 'never' : `${(n.silentMs / 1000).toFixed(1)} s ago`;
    const ops = Math.round(n.writesPerSec + n.readsPerSec);
    lines.push(`${String(n.nodeId).padEnd(5)} ${n.state.padEnd(16)} ${String(n.replicaCount).padEnd(9)} ${String(n.leaderCount).padEnd(8)} ${String(ops).padEnd(9)} ${mib(n.usedBytes).padEnd(11)} ${mib(n.availableBytes).padEnd(11)} ${heard}`);
  }
  if (placement.operators.length === 0) lines.push('no operators in flight');
  else {
    lines.push(`${placement.operators.length} operator(s) in flight:`);
    for (const op of placement.operators) {
      const what = op.kind === 'moveReplica' || op.kind === 'transferLeader' ? `${op.from} → ${op.to}` : op.node !== undefined ? `node ${op.node}` : '';
      lines.push(`  range ${op.rangeId}: ${op.kind} ${what} (${op.reason}), ${(op.ageMs / 1000).toFixed(1)} s, last step ${op.lastStep ?? 'none'}`);
    }
  }
  return lines;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      console.error(`flotilla: ${(err as Error).message}\n\n${USAGE}`);
      process.exit(2);
    }
    const e = err as { code?: string; message?: string };
    console.error(`flotilla: ${e.code === undefined ? '' : `${e.code}: `}${e.message ?? String(err)}`);
    process.exit(1);
  },
);
