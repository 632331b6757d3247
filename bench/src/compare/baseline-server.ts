// The no-consensus baseline: Flotilla's HTTP stack (createHttpServer: fastify, routing, validation, error
// mapping) over an in-memory map instead of a cluster. No Raft, no disk, no forwarding: what the HTTP API
// alone can do on the machine the bench runs on, the ceiling the cluster is measured against.
//
//   node dist/compare/baseline-server.js --http 127.0.0.1:8200
//
// One JSON line on stdout once listening ({"ready":true,"http":URL}); SIGINT or SIGTERM stops it.
import { parseArgs } from 'node:util';
import { createHttpServer } from '@flotilla/server';
import { MemoryKvStore } from '@flotilla/server/testing';
import { pino } from 'pino';

const { values } = parseArgs({ options: { http: { type: 'string', default: '127.0.0.1:0' } }, strict: true });
const [host, port] = values.http.split(':');
if (host === undefined || port === undefined || !/^\d+$/.test(port)) throw new RangeError(`--http is HOST:PORT, got "${values.http}"`);
const logger = pino({ level: 'warn' }, pino.destination(2));
const http = await createHttpServer({ store: new MemoryKvStore(), logger: logger as never });
const url = await http.listen({ host, port: Number(port) });
console.log(JSON.stringify({ ready: true, http: url }));
await new Promise<void>((resolve) => {
  process.once('SIGINT', resolve);
  process.once('SIGTERM', resolve);
});
await http.close();
