// `flotilla start`: one node in the foreground until SIGINT or SIGTERM. Once it serves it prints the ready
// line on stdout (ready-line.ts); its logs go to stderr.
import { resolve } from 'node:path';
import type { ShellLogger } from '@flotilla/shards';
import { AdvertiseError, advertisedAddress } from '../advertise.js';
import { createHttpServer } from '../http/app.js';
import { createNodeLogger, type LogFormat, type LogLevel } from '../logging.js';
import { FlotillaNode, INITIAL_RANGE_COUNT_DEFAULT, type NodeOptions } from '../node.js';
import { readyLine } from '../ready-line.js';
import { UsageError } from './exit-codes.js';
import { hostPortOf } from './options.js';

/** The exit code of a node stopped by a fatal error after it started (EX_SOFTWARE): apart from the CLI's classes. */
const FATAL_EXIT_CODE = 70;

export interface StartOptions {
  readonly id: number;
  readonly dir: string;
  readonly listen: string;
  readonly http: string;
  /** Absent: none (a one-node cluster, or a joining node). */
  readonly peers?: Record<number, string>;
  readonly join?: string;
  readonly clusterToken?: string;
  readonly ranges?: number;
  readonly cores?: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly tickMs?: number;
  readonly dutyMs?: number;
  readonly downAfterMs?: number;
  readonly consistencyCheckMs?: number;
  /** Node leases (on unless --no-node-leases): ARCHITECTURE.md, "Node leases". */
  readonly nodeLeases: boolean;
  /** The transport address peers dial; absent: --listen, which must then not be a wildcard. */
  readonly advertise?: string;
  /** The HTTP address others are told; absent: --http, which must then not be a wildcard. */
  readonly advertiseHttp?: string;
}

/** The addresses the node tells others (advertise.ts); a wildcard or port 0 is a usage error naming the flag to add. */
function advertisedAddresses(o: StartOptions): { transport: string; http: string } {
  try {
    return {
      transport: advertisedAddress({ listen: o.listen, advertise: o.advertise, flags: { listen: '--listen', advertise: '--advertise' } }),
      http: advertisedAddress({ listen: o.http, advertise: o.advertiseHttp, flags: { listen: '--http', advertise: '--advertise-http' } }),
    };
  } catch (err) {
    if (err instanceof AdvertiseError) throw new UsageError(err.message, 'start');
    throw err;
  }
}

/** The driver's timings from the time after which a silent node is down: suspect at a sixth of it. */
function placementTimingsOf(downAfterMs: number): NonNullable<NodeOptions['placement']> {
  return { downAfterMs, suspectAfterMs: Math.max(1, Math.floor(downAfterMs / 6)) };
}

export async function start(options: StartOptions): Promise<void> {
  const o = { ...options, peers: options.peers ?? {} };
  if (o.join !== undefined && Object.keys(o.peers).length > 0) throw new UsageError('start takes --join URL or --peers, not both', 'start');
  if (o.join !== undefined && o.clusterToken !== undefined) throw new UsageError('--cluster-token is for a static bootstrap (--peers); a joining node takes the cluster id from the member it joins through', 'start');
  if (o.peers[o.id] !== undefined) throw new UsageError(`--peers lists the other members; node ${o.id} is this one`, 'start');
  // Refused even for a node alone: it is the first member of a cluster others may join, and the meta
  // range records its transport address for good at its first start (a node never moves: meta-client.ts).
  const advertised = advertisedAddresses(o);
  const logger = createNodeLogger({ level: o.logLevel, format: o.logFormat, nodeId: o.id }) as unknown as ShellLogger & ReturnType<typeof createNodeLogger>;
  const node = await FlotillaNode.start({
    nodeId: o.id,
    dir: resolve(o.dir),
    listen: hostPortOf(o.listen),
    advertise: advertised.transport,
    peers: o.peers,
    httpAddress: advertised.http,
    ...(o.join === undefined ? {} : { join: o.join }),
    ...(o.clusterToken === undefined ? {} : { clusterToken: o.clusterToken }),
    initialRangeCount: o.ranges ?? INITIAL_RANGE_COUNT_DEFAULT,
    logger,
    onFatal: (err) => {
      logger.fatal({ err }, 'node stopping after a fatal error');
      process.exit(FATAL_EXIT_CODE);
    },
    ...(o.cores === undefined ? {} : { coreCount: o.cores }),
    ...(o.tickMs === undefined ? {} : { tickIntervalMs: o.tickMs }),
    ...(o.dutyMs === undefined ? {} : { metaDutyIntervalMs: o.dutyMs }),
    ...(o.downAfterMs === undefined ? {} : { placement: placementTimingsOf(o.downAfterMs) }),
    ...(o.consistencyCheckMs === undefined ? {} : { consistencyCheckIntervalMs: o.consistencyCheckMs }),
    ...(o.nodeLeases ? {} : { hostOptions: { nodeLeases: false } }),
  });
  const http = await createHttpServer({ store: node.store, logger, cluster: node.view });
  const boundUrl = await http.listen(hostPortOf(o.http));
  // The URL others are told, not the bound one: fastify names 127.0.0.1 for a wildcard listen, which on
  // another host is that host.
  const url = `http://${advertised.http}`;
  // One line on stdout says the node is serving (dev and the tests wait for it); logs go to stderr.
  console.log(readyLine({ nodeId: o.id, pid: process.pid, http: url, transport: node.transportAddress, listen: { http: o.http, transport: o.listen } }));
  logger.info({ http: url, transport: node.transportAddress, httpBound: boundUrl, transportBound: o.listen }, 'node serving');
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
}
