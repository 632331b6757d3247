// What the HTTP layer costs per request, apart from Raft. One process serves, on 127.0.0.1, over ONE
// MemoryKvStore (@flotilla/server/testing):
//   - floor:   a bare node:http handler for PUT and GET /kv/<key> (no routing library, no checks beyond
//              what a KV server must do): what a request costs Node itself, the floor any stack sits on;
//   - fastify: plain fastify with the same two routes and a Buffer body parser, no hooks: what fastify adds;
//   - app:     Flotilla's real HTTP stack, createHttpServer (server/src/http/app.ts), the same code the
//              compare-bench baseline (compare/baseline-server.ts) and every node run.
// A child process (this file with --client) drives each server in turn with the same bounded load over a
// keep-alive agent: `requests` requests at `concurrency` in flight, half PUT (16 B key, 100 B value, over
// `keyCount` keys) then half GET of those keys. The serving process does nothing else, so its
// process.cpuUsage() delta over a round is the servers' CPU, not the client's. Rounds alternate the servers
// so drift (other load on a shared machine) falls on all of them; the table takes each one's median round.
//
//   node dist/http-overhead-bench.js            5 rounds of 20,000 requests each, about 30 s on 2 cores
//   node dist/http-overhead-bench.js --quick    2 rounds of 2,000 (CI: checks that it runs)
//   node dist/http-overhead-bench.js --other-dist /tmp/before/server/dist
//                                               adds "other": createHttpServer from another build of
//                                               @flotilla/server (a before/after of a change, in one run)
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createHttpServer } from '@flotilla/server';
import { MemoryKvStore } from '@flotilla/server/testing';
import { fmt, printTable, ratio } from './report.js';
import { positiveInt } from './flags.js';

const KEY_PREFIX = 'bench-http-key-'; // + a zero-padded index: 16 B and more
const VALUE_BYTES = 100;

interface LoadMessage {
  readonly url: string;
  readonly requests: number;
  readonly concurrency: number;
  readonly keyCount: number;
}
interface DoneMessage {
  readonly wallMs: number;
  readonly failures: number;
  readonly firstFailure: string | undefined;
}

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    client: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    requests: { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    'key-count': { type: 'string', default: '1000' },
    'other-dist': { type: 'string' },
  },
  strict: true,
});

if (values.client) runClient();
else await runServers();

// ---- the client (child process) ----

function runClient(): void {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const value = Buffer.alloc(VALUE_BYTES, 0x61);
  process.on('message', (message: LoadMessage | 'exit') => {
    if (message === 'exit') {
      agent.destroy();
      process.disconnect();
      return;
    }
    void drive(agent, value, message).then((done) => process.send!(done));
  });
}

async function drive(agent: Agent, value: Buffer, load: LoadMessage): Promise<DoneMessage> {
  const url = new URL(load.url);
  const startedMs = performance.now();
  let failures = 0;
  let firstFailure: string | undefined;
  let next = 0;
  // The first half PUTs, the second GETs the same keys, so every GET finds its key and its reply carries the value.
  const half = Math.floor(load.requests / 2);
  const one = (index: number): Promise<void> =>
    new Promise((resolve) => {
      const put = index < half;
      const key = `${KEY_PREFIX}${String(index % load.keyCount).padStart(6, '0')}`;
      const req = httpRequest(
        { agent, host: url.hostname, port: url.port, method: put ? 'PUT' : 'GET', path: `/kv/${key}`, headers: put ? { 'content-type': 'application/octet-stream', 'content-length': VALUE_BYTES } : {} },
        (res) => {
          res.resume();
          res.on('end', () => {
            // A PUT answers 201 when it creates the key, 200 when it overwrites it.
            if (res.statusCode === undefined || res.statusCode < 200 || res.statusCode >= 300) {
              failures++;
              firstFailure ??= `${put ? 'PUT' : 'GET'} ${key}: ${res.statusCode}`;
            }
            resolve();
          });
        },
      );
      req.on('error', (err) => {
        failures++;
        firstFailure ??= String(err);
        resolve();
      });
      req.end(put ? value : undefined);
    });
  // Every PUT finishes before the first GET is sent: a GET of a key still being written would race it.
  const phase = async (end: number): Promise<void> => {
    const worker = async (): Promise<void> => {
      while (next < end) await one(next++);
    };
    await Promise.all(Array.from({ length: load.concurrency }, worker));
  };
  await phase(half);
  await phase(load.requests);
  return { wallMs: performance.now() - startedMs, failures, firstFailure };
}

// ---- the servers (this process) ----

interface Target {
  readonly name: string;
  readonly url: string;
  close(): Promise<void>;
}

async function runServers(): Promise<void> {
  const quick = values.quick;
  const rounds = values.rounds === undefined ? (quick ? 2 : 5) : positiveInt(values.rounds, '--rounds');
  const requests = values.requests === undefined ? (quick ? 2_000 : 20_000) : positiveInt(values.requests, '--requests');
  const concurrency = positiveInt(values.concurrency, '--concurrency');
  const keyCount = positiveInt(values['key-count'], '--key-count');

  const store = new MemoryKvStore();
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const targets: Target[] = [await startFloor(store), await startFastify(store)];
  if (values['other-dist'] !== undefined) {
    const other = (await import(pathToFileURL(`${values['other-dist']}/index.js`).href)) as typeof import('@flotilla/server');
    targets.push(await startApp('other', other.createHttpServer, store, logger));
  }
  // Last, so it closes last: createHttpServer closes its store on close(), and the store is shared.
  targets.push(await startApp('app', createHttpServer, store, logger));

  const child = fork(fileURLToPath(import.meta.url), ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const cpuMicrosByTarget = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  const wallMsByTarget = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  try {
    console.log(`http-overhead-bench: ${rounds} rounds × ${fmt(requests)} requests (half PUT ${VALUE_BYTES} B, half GET) at ${concurrency} in flight, ${fmt(keyCount)} keys`);
    // A warm-up round per server (not counted): JIT, sockets, the store's keys.
    for (const target of targets) await roundOf(child, target, { requests: Math.min(requests, 4_000), concurrency, keyCount });
    for (let round = 0; round < rounds; round++) {
      // Alternate the order so no server always runs first or last in a round.
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const target of order) {
        const { cpuMicros, wallMs } = await roundOf(child, target, { requests, concurrency, keyCount });
        cpuMicrosByTarget.get(target.name)!.push(cpuMicros / requests);
        wallMsByTarget.get(target.name)!.push(wallMs);
      }
    }
  } finally {
    child.send('exit');
    for (const target of targets) await target.close();
  }

  const floorMicros = median(cpuMicrosByTarget.get('floor')!);
  const rows = targets.map((t) => {
    const micros = median(cpuMicrosByTarget.get(t.name)!);
    const wallMs = median(wallMsByTarget.get(t.name)!);
    return [t.name, fmt(micros, 1), cpuMicrosByTarget.get(t.name)!.map((m) => fmt(m, 1)).join(' '), fmt(micros - floorMicros, 1), ratio(micros / floorMicros), fmt(requests / (wallMs / 1000))];
  });
  printTable(['server', 'cpu µs/req (median)', 'per round', 'over floor µs', '÷floor', 'req/s'], rows);
  // The same round's servers ran back to back, so a ratio within a round cancels most of the drift between rounds.
  const pairedRatio = (over: string, under: string): number =>
    median(cpuMicrosByTarget.get(over)!.map((micros, round) => micros / cpuMicrosByTarget.get(under)![round]!));
  const pairs: [string, string][] = [['app', 'floor'], ['fastify', 'floor'], ['app', 'fastify']];
  if (cpuMicrosByTarget.has('other')) pairs.push(['other', 'fastify'], ['app', 'other']);
  console.log(`per-round ratios (median): ${pairs.map(([over, under]) => `${over}÷${under} ${ratio(pairedRatio(over, under))}`).join(', ')}`);
}

async function roundOf(child: ChildProcess, target: Target, load: Omit<LoadMessage, 'url'>): Promise<{ cpuMicros: number; wallMs: number }> {
  const before = process.cpuUsage();
  child.send({ url: target.url, ...load } satisfies LoadMessage);
  const [done] = (await once(child, 'message')) as [DoneMessage];
  const used = process.cpuUsage(before);
  if (done.failures > 0) throw new Error(`${target.name}: ${done.failures} of ${load.requests} requests failed; first: ${done.firstFailure}`);
  return { cpuMicros: used.user + used.system, wallMs: done.wallMs };
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function listenOn(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** node:http alone: the same replies (200, ETag, JSON { version } or the value bytes) with nothing else. */
async function startFloor(store: MemoryKvStore): Promise<Target> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const key = Buffer.from((req.url ?? '/').slice('/kv/'.length), 'latin1');
    if (req.method === 'PUT') {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        void store.put(key, Buffer.concat(chunks)).then(({ version }) => {
          res.writeHead(200, { etag: `"${version}"`, 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify({ version }));
        });
      });
      return;
    }
    void store.get(key).then((found) => {
      if (found === undefined) res.writeHead(404).end();
      else res.writeHead(200, { etag: `"${found.version}"`, 'content-type': 'application/octet-stream' }).end(found.value);
    });
  });
  const url = await listenOn(server);
  return { name: 'floor', url, close: () => new Promise<void>((resolve) => server.close(() => resolve())).then(() => server.closeAllConnections()) };
}

/** fastify with defaults, no logger, no hooks: what the framework costs before any of ours. */
async function startFastify(store: MemoryKvStore): Promise<Target> {
  // The fastify @flotilla/server runs on (bench does not depend on fastify itself), so both measure one version.
  const fastifyPath = createRequire(fileURLToPath(import.meta.resolve('@flotilla/server'))).resolve('fastify');
  const { default: fastify } = (await import(pathToFileURL(fastifyPath).href)) as typeof import('fastify');
  const app = fastify();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  app.put('/kv/*', async (request, reply) => {
    const key = Buffer.from(request.url.slice('/kv/'.length), 'latin1');
    const { version } = await store.put(key, request.body as Buffer);
    return reply.header('etag', `"${version}"`).send({ version });
  });
  app.get('/kv/*', async (request, reply) => {
    const found = await store.get(Buffer.from(request.url.slice('/kv/'.length), 'latin1'));
    if (found === undefined) return reply.code(404).send();
    return reply.header('etag', `"${found.version}"`).type('application/octet-stream').send(found.value);
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { name: 'fastify', url, close: () => app.close() };
}

async function startApp(name: string, create: typeof createHttpServer, store: MemoryKvStore, logger: unknown): Promise<Target> {
  const http = await create({ store, logger: logger as never });
  const url = await http.listen({ host: '127.0.0.1', port: 0 });
  // "other" closing the shared store would fail the rounds after it; close() is only reached at the end.
  return { name, url, close: () => http.close() };
}
