// GET /openapi.json: generated from the route schemas, it describes exactly the routes the server
// serves (read from fastify's own route tree, not from a list kept here), in OpenAPI 3 shape.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import { createHttpServer, type HttpServer } from '../src/http/app.js';
import { MemoryKvStore } from '../src/testing/memory-store.js';
import { StubClusterView } from './support/stub-cluster-view.js';

const silent = pino({ level: 'silent' });
const OPERATION_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'] as const;

interface Operation {
  readonly operationId?: string;
  readonly parameters?: readonly { readonly in: string; readonly name: string; readonly required?: boolean }[];
  readonly responses?: Record<string, { readonly description?: unknown }>;
}
interface OpenApiDocument {
  readonly openapi?: unknown;
  readonly info?: { readonly title?: unknown; readonly version?: unknown };
  readonly paths?: Record<string, Partial<Record<(typeof OPERATION_METHODS)[number], Operation>>>;
  readonly components?: { readonly schemas?: Record<string, unknown> };
}

/**
 * Every method and URL pattern the app routes, from fastify's printRoutes() tree: each line is
 * one node whose text continues its parent's path ("└── /", "├── kv (GET, HEAD)", "└── *"), with
 * the methods routed at that node in parentheses.
 */
function servedRoutes(app: FastifyInstance): { method: string; url: string }[] {
  const routes: { method: string; url: string }[] = [];
  const pathAtDepth: string[] = [];
  for (const line of app.printRoutes().split('\n')) {
    if (line.trim() === '') continue;
    const node = /^((?:│ {3}| {4})*)[├└]── (.+?)(?: \(([A-Z]+(?:, [A-Z]+)*)\))?$/.exec(line);
    expect(node, `printRoutes line ${JSON.stringify(line)}`).not.toBeNull();
    const depth = node![1]!.length / 4;
    const url = (depth === 0 ? '' : pathAtDepth[depth - 1]!) + node![2]!;
    pathAtDepth[depth] = url;
    for (const method of node![3]?.split(', ') ?? []) routes.push({ method, url });
  }
  return routes;
}

/** The document's name for a fastify URL pattern: `:id` is `{id}`, and the trailing wildcard is one named parameter. */
function documentPathPattern(url: string): RegExp {
  const source = url
    .split('/')
    .map((segment) => (segment === '*' ? '\\{[A-Za-z_]+\\}' : segment.startsWith(':') ? `\\{${segment.slice(1)}\\}` : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}$`);
}

describe('GET /openapi.json', () => {
  let server: HttpServer;
  let document: OpenApiDocument;

  beforeAll(async () => {
    server = await createHttpServer({ store: new MemoryKvStore(), logger: silent, cluster: new StubClusterView() });
    const url = await server.listen({ host: '127.0.0.1', port: 0 });
    const response = await fetch(`${url}/openapi.json`, { signal: AbortSignal.timeout(10_000) });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    document = (await response.json()) as OpenApiDocument;
  });
  afterAll(async () => {
    await server.close();
  });

  it('has the OpenAPI 3 shape: version, info, paths, and responses with descriptions on every operation', () => {
    expect(document.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(typeof document.info?.title).toBe('string');
    expect(typeof document.info?.version).toBe('string');
    const paths = Object.entries(document.paths ?? {});
    expect(paths.length).toBeGreaterThan(0);
    const operationIds: string[] = [];
    for (const [path, item] of paths) {
      expect(path).toMatch(/^\//);
      const operations = OPERATION_METHODS.flatMap((method) => (item[method] === undefined ? [] : [[method, item[method]] as const]));
      expect(operations.length, path).toBeGreaterThan(0);
      for (const [method, operation] of operations) {
        const where = `${method.toUpperCase()} ${path}`;
        const responses = Object.entries(operation.responses ?? {});
        expect(responses.length, where).toBeGreaterThan(0);
        for (const [status, response] of responses) {
          expect(status, where).toMatch(/^(default|[1-5](\d\d|XX))$/);
          expect(typeof response.description, `${where} ${status}`).toBe('string');
        }
        // Each {name} in the path is a required path parameter of the operation.
        for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) {
          expect(operation.parameters?.find((p) => p.in === 'path' && p.name === name), `${where} parameter ${name}`).toMatchObject({ required: true });
        }
        if (operation.operationId !== undefined) operationIds.push(operation.operationId);
      }
    }
    expect(new Set(operationIds).size, 'operationIds are unique').toBe(operationIds.length);
    // Every reference resolves within the document.
    for (const [, name] of JSON.stringify(document).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) {
      expect(document.components?.schemas?.[name!], name).toBeDefined();
    }
  });

  it('documents the range delete, the 201 of a create, reverse scans and versions as Raft log indexes', () => {
    const kv = document.paths?.['/kv'];
    expect(kv?.delete?.operationId).toBe('deleteRange');
    expect(kv?.delete?.parameters?.filter((p) => p.in === 'query').map((p) => p.name).sort()).toEqual(['end', 'start']);
    expect(Object.keys(kv?.delete?.responses ?? {})).toEqual(expect.arrayContaining(['200', 'default']));
    expect(kv?.get?.parameters?.map((p) => p.name)).toContain('reverse');
    const key = document.paths?.['/kv/{key}'];
    expect(Object.keys(key?.put?.responses ?? {})).toEqual(expect.arrayContaining(['200', '201', 'default']));
    expect(JSON.stringify(key?.get?.responses?.['200'])).toContain('Content-Type');
    expect(JSON.stringify(key?.put?.responses?.['201'])).toContain('Raft log index');
  });

  it('lists every route the server serves, and nothing else', () => {
    const served = servedRoutes(server.app);
    // The admin routes are there (the stub view has every optional one), not just /kv and /health.
    expect(served.length).toBeGreaterThan(20);
    const documented = Object.entries(document.paths ?? {}).flatMap(([path, item]) => OPERATION_METHODS.filter((m) => item[m] !== undefined).map((m) => `${m.toUpperCase()} ${path}`));
    const expected = served.map(({ method, url }) => {
      const pattern = documentPathPattern(url);
      const paths = Object.keys(document.paths ?? {}).filter((path) => pattern.test(path));
      expect(paths, `${method} ${url}: one path in the document`).toHaveLength(1);
      return `${method} ${paths[0]!}`;
    });
    expect([...documented].sort()).toEqual([...expected].sort());
  });
});
