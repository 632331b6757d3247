// The operations API (fastify plugin):
//
//   GET    /health                      200 { status: 'ok' } while the process serves HTTP (liveness: asks no quorum)
//   GET    /ready, /health?ready=1      200 { ready: true, reasons: [] } when this node can serve linearizable
//                                       traffic (HostKvStore.readiness); 503 NOT_READY with Retry-After and
//                                       { ready: false, reasons: [...], error } otherwise. Without a cluster view: ready.
//
// and, with a cluster view, the admin routes below (cluster, ranges,
// placement, nodes, metrics). Each route's JSON schema is its contract:
// fastify (ajv) checks params, query and body against it before the
// handler runs, and /openapi.json is generated from it. Bodies arrive as
// bytes, like every body (app.ts), and are parsed as JSON here whatever
// their Content-Type, so a client need not send one.
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError, FastifySchema } from 'fastify';
import { hostPortProblem } from '@flotilla/core';
import { REPLICATION_FACTOR_MAX } from '@flotilla/placement';
import { Deadline } from '../kv/store.js';
import type { HttpMetrics } from '../metrics/http-metrics.js';
import { ERROR_BODY_SCHEMA, ERROR_RESPONSE, HttpError, errorReply, schemaError } from './errors.js';

/** What GET /metrics answers: the text, and the content type naming its format (prom-client's registry says which). */
export interface MetricsExposition {
  readonly contentType: string;
  readonly text: string;
}

/** What /ready reports: whether this node can serve linearizable traffic, and if not, why (one line per reason). */
export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

/**
 * What a node tells about itself over HTTP. `cluster`, `ranges`, `metrics`
 * and `ready` answer from what the node knows locally, at once, whatever the
 * cluster's state; the others may need the meta range and take a deadline.
 */
export interface ClusterView {
  /** JSON: this node, its peers and their liveness, every range it holds with its leader. */
  cluster(): Promise<unknown>;
  /** JSON: every range this node holds a replica of. */
  ranges(): Promise<unknown>;
  /** The Prometheus text exposition (format 0.0.4) with its content type (server/src/metrics). */
  metrics(): Promise<MetricsExposition>;
  /** The HTTP latency histogram the server records each request in (app.ts); absent: none recorded. */
  readonly httpMetrics?: HttpMetrics;
  /** Whether this node can serve linearizable traffic now. */
  ready(): Promise<Readiness>;
  /** Splits a range at `key` (the right half's first key); JSON: both halves. */
  split(rangeId: number, key: Uint8Array, deadline: Deadline): Promise<unknown>;
  /** Records a joining node in the meta range; JSON: the membership it starts with. */
  join(node: { nodeId: number; address: string; httpAddress: string | null }, deadline: Deadline): Promise<unknown>;
  /** JSON: the placement driver's view (nodes with their state, operators in flight, settings, every range unless `ranges` is false), from wherever it runs. */
  placement(options?: { readonly ranges?: boolean }): Promise<unknown>;
  /** Changes the driver's settings (kept in the meta range); JSON: the settings now. */
  placementSettings(change: { paused?: boolean; replicationFactor?: number }, deadline: Deadline): Promise<unknown>;
  /** Sets a node's administrative state: `decommissioning` moves its replicas off, `up` stops that. */
  nodeState(nodeId: number, state: 'up' | 'decommissioning', deadline: Deadline): Promise<unknown>;
  /** Asks the driver to move a replica or a range's lead, or to merge a range into its left neighbour; JSON: the operator started. */
  operator(op: { kind: 'moveReplica'; rangeId: number; from: number; to: number } | { kind: 'transferLeader'; rangeId: number; to: number } | { kind: 'merge'; rangeId: number }): Promise<unknown>;
  /**
   * Checks that every replica of the range holds the same data as of one
   * Raft index (server/src/consistency.ts); JSON: the report, mismatch or
   * not. Runs on the check's own budget, not requestDeadlineMs (replicas
   * hash a big range over many ticks). Absent: no such route.
   */
  consistencyCheck?(rangeId: number): Promise<unknown>;
}

export interface AdminRoutesOptions {
  /** A cluster node's view of itself; absent when embedded: then only /health and /ready, and ready while up. */
  readonly view: ClusterView | undefined;
  /** Split keys longer than this get 413 KEY_TOO_LARGE. */
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  /** Each request's budget, from when its handler starts (the consistency check has its own). */
  readonly requestDeadlineMs: number;
}

export async function adminRoutes(app: FastifyInstance, options: AdminRoutesOptions): Promise<void> {
  const readiness = options.view === undefined ? async (): Promise<Readiness> => ({ ready: true, reasons: [] }) : options.view.ready.bind(options.view);
  app.get<{ Querystring: { ready?: string } }>('/health', { schema: HEALTH_SCHEMA }, async (request, reply) => {
    if (request.query.ready === '1' || request.query.ready === 'true') return readinessReply(await readiness(), options, reply);
    return { status: 'ok' };
  });
  app.get('/ready', { schema: READY_SCHEMA }, async (_request, reply) => readinessReply(await readiness(), options, reply));
  if (options.view !== undefined) clusterRoutes(app, options.view, options);
}

/** 200 when ready; otherwise NOT_READY's status from the table (503, with Retry-After), the reasons, and the usual error object. */
function readinessReply(readiness: Readiness, options: AdminRoutesOptions, reply: FastifyReply): unknown {
  if (readiness.ready) return { ready: true, reasons: [] };
  const mapped = errorReply(new HttpError('NOT_READY', `this node cannot serve linearizable traffic: ${readiness.reasons.join('; ')}`), options);
  return reply.code(mapped.statusCode).headers(mapped.headers).send({ ready: false, reasons: readiness.reasons, ...mapped.body });
}

interface IdParams {
  readonly id: string;
}
interface JoinBody {
  readonly nodeId: number;
  readonly address: string;
  readonly httpAddress?: string | null;
}
interface SplitBody {
  readonly key?: string;
  readonly keyBase64?: string;
}
interface SettingsBody {
  readonly paused?: boolean;
  readonly replicationFactor?: number;
}
interface MoveBody {
  readonly from: number;
  readonly to: number;
}
interface TransferBody {
  readonly to: number;
}

function clusterRoutes(app: FastifyInstance, view: ClusterView, options: AdminRoutesOptions): void {
  const deadline = (): Deadline => Deadline.after(options.requestDeadlineMs);
  app.get('/cluster', { schema: CLUSTER_SCHEMA }, async () => view.cluster());
  app.get('/ranges', { schema: RANGES_SCHEMA }, async () => view.ranges());
  app.post<{ Body: JoinBody }>('/cluster/join', { schema: JOIN_SCHEMA, ...jsonBody(JOIN_USAGE) }, async (request) => {
    const { nodeId, address, httpAddress } = request.body;
    joinAddressChecked('address', address);
    if (httpAddress != null) joinAddressChecked('httpAddress', httpAddress);
    return view.join({ nodeId, address, httpAddress: httpAddress ?? null }, deadline());
  });
  app.post<{ Params: IdParams; Body: SplitBody }>('/ranges/:id/split', { schema: SPLIT_SCHEMA, ...jsonBody(SPLIT_USAGE) }, async (request) =>
    view.split(Number(request.params.id), splitKeyOf(request.body, options.keyBytesMax), deadline()),
  );
  app.get<{ Querystring: { ranges?: string } }>('/placement', { schema: PLACEMENT_SCHEMA }, async (request) =>
    view.placement({ ranges: !(request.query.ranges === '0' || request.query.ranges === 'false') }),
  );
  app.put<{ Body: SettingsBody }>('/placement/settings', { schema: SETTINGS_SCHEMA, ...jsonBody(SETTINGS_USAGE) }, async (request) => {
    const { paused, replicationFactor } = request.body;
    return view.placementSettings({ ...(paused === undefined ? {} : { paused }), ...(replicationFactor === undefined ? {} : { replicationFactor }) }, deadline());
  });
  app.post<{ Params: IdParams }>('/nodes/:id/decommission', { schema: nodeStateSchema('decommission') }, async (request) =>
    view.nodeState(Number(request.params.id), 'decommissioning', deadline()),
  );
  app.post<{ Params: IdParams }>('/nodes/:id/recommission', { schema: nodeStateSchema('recommission') }, async (request) => view.nodeState(Number(request.params.id), 'up', deadline()));
  app.post<{ Params: IdParams; Body: MoveBody }>('/ranges/:id/move', { schema: MOVE_SCHEMA, ...jsonBody(MOVE_USAGE) }, async (request) =>
    view.operator({ kind: 'moveReplica', rangeId: Number(request.params.id), from: request.body.from, to: request.body.to }),
  );
  app.post<{ Params: IdParams; Body: TransferBody }>('/ranges/:id/transfer-leader', { schema: TRANSFER_SCHEMA, ...jsonBody(TRANSFER_USAGE) }, async (request) =>
    view.operator({ kind: 'transferLeader', rangeId: Number(request.params.id), to: request.body.to }),
  );
  app.post<{ Params: IdParams }>('/ranges/:id/merge', { schema: MERGE_SCHEMA }, async (request) => view.operator({ kind: 'merge', rangeId: Number(request.params.id) }));
  const consistencyCheck = view.consistencyCheck?.bind(view);
  if (consistencyCheck !== undefined) {
    app.post<{ Params: IdParams }>('/ranges/:id/consistency-check', { schema: CONSISTENCY_CHECK_SCHEMA }, async (request) => consistencyCheck(Number(request.params.id)));
  }
  app.get('/metrics', { schema: METRICS_SCHEMA }, async (_request, reply) => {
    const { contentType, text } = await view.metrics();
    return reply.type(contentType).send(text);
  });
}

/** What a route's JSON body looks like, for its error messages: the route's name and the body's shape. */
interface BodyUsage {
  /** e.g. "settings". */
  readonly what: string;
  /** e.g. '{"paused": true|false}'. */
  readonly shape: string;
}

/**
 * A route whose body is JSON: the body (bytes, see app.ts) is parsed before
 * validation. A body that is not JSON is told what it must be; a JSON body
 * that fails the schema is told what is wrong first, then the shape (not
 * "must be JSON": it was).
 */
function jsonBody(usage: BodyUsage): {
  preValidation: (request: FastifyRequest) => Promise<void>;
  schemaErrorFormatter: (errors: FastifySchemaValidationError[], dataVar: string) => Error;
} {
  return {
    preValidation: async (request) => {
      const body = request.body;
      try {
        request.body = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : '') as unknown;
      } catch {
        throw new HttpError('INVALID_ARGUMENT', `${usage.what} body must be JSON: ${usage.shape}`);
      }
    },
    schemaErrorFormatter: (errors, dataVar) => schemaError(errors, dataVar, `a ${usage.what} body is ${usage.shape}`),
  };
}

/** The split point, exactly one of text or base64 (the schema says which is there). */
function splitKeyOf(body: SplitBody, keyBytesMax: number): Uint8Array {
  const key = body.key === undefined ? Buffer.from(body.keyBase64 ?? '', 'base64') : Buffer.from(body.key, 'utf8');
  // base64 of nothing ('' or '==') passes the schema's pattern.
  if (key.byteLength === 0) throw new HttpError('INVALID_ARGUMENT', 'split key is empty');
  if (key.byteLength > keyBytesMax) throw new HttpError('KEY_TOO_LARGE', `split key of ${key.byteLength} B exceeds ${keyBytesMax} B`);
  return key;
}

// ---- schemas ----

const TAGS = ['operations'];

/** Admin routes take no query parameters. */
const NO_QUERY_SCHEMA = { type: 'object', additionalProperties: false, properties: {} } as const;

/** Decimal without a leading zero, in [1, 2^32 - 1 = 4294967295]: each branch fixes one more leading digit of the maximum. */
const ID_PATTERN =
  '^(?:[1-9][0-9]{0,8}|[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])$';

/** A node or range id in a path; validation messages quote the description. */
function idParamsSchema(what: 'node' | 'range'): FastifySchema['params'] {
  return { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: ID_PATTERN, description: `a ${what} id: a decimal integer in [1, 2^32)` } } };
}

/** A node id in a JSON body: a number, not a string. */
const NODE_ID_SCHEMA = { type: 'integer', minimum: 1, maximum: 0xffff_ffff, description: 'a node id: an integer in [1, 2^32)' } as const;

/**
 * The longest HOST:PORT a body may carry: a host name (253 characters, core's HOST_NAME_CHARS_MAX) and a
 * port, with room for brackets; an IPv6 address with a zone is shorter. Checked by the schema, so a
 * client's megabyte never reaches the parser.
 */
const HOST_PORT_LENGTH_MAX = 300;

/** What each of ClusterView's answers is documented as; the JSON itself is whatever the view returns. */
function jsonResponse(description: string): { 200: { description: string; type: 'object'; additionalProperties: true }; default: typeof ERROR_RESPONSE } {
  return { 200: { description, type: 'object', additionalProperties: true }, default: ERROR_RESPONSE };
}

const READINESS_SCHEMA = {
  type: 'object',
  required: ['ready', 'reasons'],
  properties: { ready: { type: 'boolean' }, reasons: { type: 'array', items: { type: 'string' }, description: 'Why this node is not ready, one line per reason.' } },
} as const;

const NOT_READY_RESPONSE = {
  description: 'NOT_READY: this node cannot serve linearizable traffic now (Retry-After); the reasons, and the usual error object.',
  type: 'object',
  required: ['ready', 'reasons', 'error'],
  properties: { ...READINESS_SCHEMA.properties, error: ERROR_BODY_SCHEMA.properties.error },
} as const;

const HEALTH_SCHEMA = {
  tags: TAGS,
  summary: 'Liveness: the process answers HTTP (asks no quorum)',
  operationId: 'health',
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { ready: { type: 'string', enum: ['1', 'true', '0', 'false', ''], description: 'a flag: 1 or true answers readiness instead, as /ready; 0, false or empty (absent) answers liveness' } },
  },
  response: {
    200: { description: '{ status: "ok" }, or with ready=1 the readiness', anyOf: [{ type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } }, READINESS_SCHEMA] },
    503: NOT_READY_RESPONSE,
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;

const READY_SCHEMA = {
  tags: TAGS,
  summary: 'Readiness: whether this node can serve linearizable traffic',
  operationId: 'ready',
  querystring: NO_QUERY_SCHEMA,
  response: { 200: { description: 'Ready', ...READINESS_SCHEMA }, 503: NOT_READY_RESPONSE, default: ERROR_RESPONSE },
} as const satisfies FastifySchema;

const CLUSTER_SCHEMA = {
  tags: TAGS,
  summary: 'This node, its peers and their liveness, every range it holds with its leader',
  operationId: 'cluster',
  querystring: NO_QUERY_SCHEMA,
  response: jsonResponse("This node's view of the cluster"),
} as const satisfies FastifySchema;

const RANGES_SCHEMA = {
  tags: TAGS,
  summary: 'Every range this node holds a replica of',
  operationId: 'ranges',
  querystring: NO_QUERY_SCHEMA,
  response: jsonResponse("This node's ranges"),
} as const satisfies FastifySchema;

const JOIN_USAGE: BodyUsage = { what: 'join', shape: '{"nodeId": N, "address": "HOST:PORT", "httpAddress": "HOST:PORT"}' };

/**
 * A join body's address is HOST:PORT as core's address.ts reads it (an IPv6 host in brackets): its parser
 * decides here, not a schema pattern, so the route accepts exactly what a node records and dials.
 */
function joinAddressChecked(field: 'address' | 'httpAddress', value: string): void {
  const problem = hostPortProblem(value);
  if (problem !== undefined) throw new HttpError('INVALID_ARGUMENT', `body/${field} ${problem}; ${JOIN_USAGE.shape}`);
}

const JOIN_SCHEMA = {
  tags: TAGS,
  summary: 'Records a joining node in the meta range',
  operationId: 'join',
  querystring: NO_QUERY_SCHEMA,
  body: {
    type: 'object',
    required: ['nodeId', 'address'],
    properties: {
      nodeId: NODE_ID_SCHEMA,
      address: { type: 'string', maxLength: HOST_PORT_LENGTH_MAX, description: '"HOST:PORT" of the node\'s transport (an IPv6 host in brackets: "[::1]:7101")' },
      httpAddress: { type: ['string', 'null'], maxLength: HOST_PORT_LENGTH_MAX, description: '"HOST:PORT" of the node\'s HTTP API, or null' },
    },
  },
  response: jsonResponse('The membership the joining node starts with'),
} as const satisfies FastifySchema;

const SPLIT_USAGE: BodyUsage = { what: 'split', shape: '{"key": "<text>"} or {"keyBase64": "<base64>"}' };
const SPLIT_SCHEMA = {
  tags: TAGS,
  summary: "Splits a range at a key, the right half's first key",
  operationId: 'split',
  params: idParamsSchema('range'),
  querystring: NO_QUERY_SCHEMA,
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      key: { type: 'string', description: 'the split key as UTF-8 text' },
      keyBase64: { type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$', description: 'the split key in base64' },
    },
    oneOf: [{ required: ['key'] }, { required: ['keyBase64'] }],
  },
  response: jsonResponse('Both halves'),
} as const satisfies FastifySchema;

const PLACEMENT_SCHEMA = {
  tags: TAGS,
  summary: "The placement driver's view, from wherever it runs",
  operationId: 'placement',
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { ranges: { type: 'string', enum: ['1', 'true', '0', 'false', ''], description: 'a flag: 0 or false leaves out the list of every range (rangeCount stays), for callers polling counts; 1, true or empty (absent) includes it' } },
  },
  response: jsonResponse('Nodes with their state, operators in flight, settings, and every range'),
} as const satisfies FastifySchema;

const SETTINGS_USAGE: BodyUsage = { what: 'settings', shape: `{"paused": true|false, "replicationFactor": 1..${REPLICATION_FACTOR_MAX}} (either or both)` };
const SETTINGS_SCHEMA = {
  tags: TAGS,
  summary: "Changes the placement driver's settings (kept in the meta range)",
  operationId: 'placementSettings',
  querystring: NO_QUERY_SCHEMA,
  body: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: {
      paused: { type: 'boolean', description: 'true or false' },
      replicationFactor: { type: 'integer', minimum: 1, maximum: REPLICATION_FACTOR_MAX, description: `a replication factor: an integer in [1, ${REPLICATION_FACTOR_MAX}]` },
    },
  },
  response: jsonResponse('The settings now'),
} as const satisfies FastifySchema;

function nodeStateSchema(action: 'decommission' | 'recommission'): FastifySchema {
  return {
    tags: TAGS,
    summary: action === 'decommission' ? "Marks a node decommissioning: placement moves its replicas off" : 'Marks a node up again: placement stops moving its replicas off',
    operationId: action,
    params: idParamsSchema('node'),
    querystring: NO_QUERY_SCHEMA,
    response: jsonResponse("The node's administrative state"),
  };
}

const MOVE_USAGE: BodyUsage = { what: 'move', shape: '{"from": N, "to": N}' };
const MOVE_SCHEMA = {
  tags: TAGS,
  summary: 'Asks the placement driver to move a replica',
  operationId: 'moveReplica',
  params: idParamsSchema('range'),
  querystring: NO_QUERY_SCHEMA,
  body: { type: 'object', additionalProperties: false, required: ['from', 'to'], properties: { from: NODE_ID_SCHEMA, to: NODE_ID_SCHEMA } },
  response: jsonResponse('The operator started'),
} as const satisfies FastifySchema;

const TRANSFER_USAGE: BodyUsage = { what: 'transfer', shape: '{"to": N}' };
const TRANSFER_SCHEMA = {
  tags: TAGS,
  summary: "Asks the placement driver to move a range's lead",
  operationId: 'transferLeader',
  params: idParamsSchema('range'),
  querystring: NO_QUERY_SCHEMA,
  body: { type: 'object', additionalProperties: false, required: ['to'], properties: { to: NODE_ID_SCHEMA } },
  response: jsonResponse('The operator started'),
} as const satisfies FastifySchema;

const MERGE_SCHEMA = {
  tags: TAGS,
  summary: 'Asks the placement driver to merge a range into its left neighbour',
  description:
    'Both ranges must have the same voters, all on up nodes, and no learner or membership change under way (412 says which does not hold). The range freezes, then its neighbour takes it in once every replica applied the freeze; a merge that cannot finish is rolled back. The driver also merges small, cold neighbours on its own.',
  operationId: 'mergeRange',
  params: idParamsSchema('range'),
  querystring: NO_QUERY_SCHEMA,
  response: jsonResponse('The operator started'),
} as const satisfies FastifySchema;

const CONSISTENCY_CHECK_SCHEMA = {
  tags: TAGS,
  summary: 'Checks that every replica of the range holds the same data as of one Raft index',
  description: 'Runs on its own budget, not the request deadline: replicas hash a big range over many ticks.',
  operationId: 'consistencyCheck',
  params: idParamsSchema('range'),
  querystring: NO_QUERY_SCHEMA,
  response: jsonResponse('The report, mismatch or not'),
} as const satisfies FastifySchema;

const METRICS_SCHEMA = {
  tags: TAGS,
  summary: "This node's metrics (ARCHITECTURE.md lists them)",
  operationId: 'metrics',
  querystring: NO_QUERY_SCHEMA,
  response: {
    200: { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;
