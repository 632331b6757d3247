// The dashboard (fastify plugin), on every node with a cluster view:
//
//   GET /ui          the page (server/src/ui/index.html)
//   GET /ui/:file    its scripts and stylesheet, by name (src/ui/*.js, *.css)
//   GET /ui/         308 to /ui
//
// The files are plain ES modules and CSS, served as written: no build step,
// no bundler, nothing fetched from elsewhere. They are read once when the
// routes are added, from src/ui (the package ships src, so an installed
// package serves them too; dist/http and src/http are both two levels
// under the package root). The page reads /cluster, /placement and
// /metrics of the same node, so no route needs CORS (dashboard.js says how
// it moves to another node when this one stops answering).
import { readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifySchema } from 'fastify';
import { ERROR_RESPONSE, HttpError, truncate } from './errors.js';

const UI_DIR = fileURLToPath(new URL('../../src/ui/', import.meta.url));

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** What a served name looks like: one word, one extension. Keeps metrics.d.ts and anything else in the folder unserved. */
const SERVED_NAME = /^[a-z][a-z0-9-]*\.(?:html|js|css)$/;

/**
 * The page may run only its own scripts and styles, and connect to its own
 * node and (to ask whether they answer before moving there) the other
 * nodes, whose addresses are not known when the page is served.
 */
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface UiFile {
  readonly body: Buffer;
  readonly contentType: string;
}

/** Every servable file in `dir` by name; throws if the page itself is missing (a package built or shipped without it). */
export function readUiFiles(dir: string = UI_DIR): ReadonlyMap<string, UiFile> {
  const files = new Map<string, UiFile>();
  for (const name of readdirSync(dir)) {
    if (!SERVED_NAME.test(name)) continue;
    files.set(name, { body: readFileSync(join(dir, name)), contentType: CONTENT_TYPES[extname(name)]! });
  }
  if (!files.has('index.html')) throw new Error(`the dashboard's page ${join(dir, 'index.html')} is missing`);
  return files;
}

export async function uiRoutes(app: FastifyInstance): Promise<void> {
  const files = readUiFiles();
  const send = (reply: FastifyReply, file: UiFile): FastifyReply =>
    reply
      .type(file.contentType)
      // Revalidated every load: after an upgrade the page and its modules must not mix versions.
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .send(file.body);
  app.get('/ui', { schema: PAGE_SCHEMA }, async (_request, reply) => send(reply, files.get('index.html')!));
  app.get<{ Params: { file: string } }>('/ui/:file', { schema: FILE_SCHEMA }, async (request, reply) => {
    const name = request.params.file;
    if (name === '') return reply.redirect('/ui', 308);
    const file = name === 'index.html' ? undefined : files.get(name);
    if (file === undefined) throw new HttpError('ROUTE_NOT_FOUND', `no file ${truncate(name)} under /ui (the dashboard is at /ui)`);
    return send(reply, file);
  });
}

const NO_QUERY_SCHEMA = { type: 'object', additionalProperties: true, properties: {} } as const;

const PAGE_SCHEMA = {
  tags: ['operations'],
  summary: 'The dashboard: nodes, ranges, moves in flight and this node\'s traffic, live (a static page that polls /cluster, /placement and /metrics)',
  operationId: 'dashboard',
  // The page's own query (?from=N, the node it moved from) is read by its script, not here.
  querystring: NO_QUERY_SCHEMA,
  response: {
    200: { description: 'The page (HTML)', content: { 'text/html': { schema: { type: 'string' } } } },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;

const FILE_SCHEMA = {
  tags: ['operations'],
  summary: "One of the dashboard's scripts or its stylesheet",
  operationId: 'dashboardFile',
  params: { type: 'object', required: ['file'], properties: { file: { type: 'string', description: 'a file name, e.g. dashboard.js' } } },
  querystring: NO_QUERY_SCHEMA,
  response: {
    200: { description: 'The file (JavaScript module or CSS)', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } },
    308: { description: 'GET /ui/ redirects to /ui' },
    default: ERROR_RESPONSE,
  },
} as const satisfies FastifySchema;
