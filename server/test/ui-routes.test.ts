// GET /ui and its files over HTTP (fastify inject, a stub cluster view): what is served, with which
// headers, and what is not (other files in src/ui, paths that climb out of it, the page without a cluster).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpServer, type HttpServer } from '../src/http/app.js';
import { MemoryKvStore } from '../src/testing/memory-store.js';
import { StubClusterView } from './support/stub-cluster-view.js';

const UI_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'ui');
const silent = pino({ level: 'silent' });

describe('GET /ui', () => {
  let server: HttpServer;
  beforeAll(async () => {
    server = await createHttpServer({ store: new MemoryKvStore(), logger: silent, cluster: new StubClusterView() });
  });
  afterAll(async () => {
    await server.close();
  });
  const get = (url: string) => server.app.inject({ method: 'GET', url });

  it('serves the page, which loads only its own module and stylesheet', async () => {
    const res = await get('/ui');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.body).toBe(readFileSync(join(UI_DIR, 'index.html'), 'utf8'));
    const referenced = [...res.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(referenced.sort()).toEqual(['/ui/dashboard.css', '/ui/dashboard.js']);
    // The page's own query (?from=N after a move) is the script's business.
    expect((await get('/ui?from=1')).statusCode).toBe(200);
  });

  it('answers the scripts as JavaScript, the stylesheet as CSS, each with the headers that keep it to itself', async () => {
    for (const [file, type] of [['dashboard.js', 'text/javascript'], ['metrics.js', 'text/javascript'], ['format.js', 'text/javascript'], ['model.js', 'text/javascript'], ['render.js', 'text/javascript'], ['dashboard.css', 'text/css']] as const) {
      const res = await get(`/ui/${file}`);
      expect([file, res.statusCode, res.headers['content-type']]).toEqual([file, 200, `${type}; charset=utf-8`]);
      expect(res.body).toBe(readFileSync(join(UI_DIR, file), 'utf8'));
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['cache-control']).toBe('no-cache');
      expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    }
  });

  it('every module a script imports is served', async () => {
    const pending = ['dashboard.js'];
    const seen = new Set<string>();
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const res = await get(`/ui/${file}`);
      expect([file, res.statusCode]).toEqual([file, 200]);
      for (const m of res.body.matchAll(/^import [^;]+ from '\.\/([a-z-]+\.js)';$/gm)) pending.push(m[1]!);
    }
    expect([...seen].sort()).toEqual(['dashboard.js', 'format.js', 'metrics.js', 'model.js', 'render.js']);
  });

  it('serves nothing else: not the type files, not the tsconfig, not a path out of the folder', async () => {
    for (const url of ['/ui/tsconfig.json', '/ui/index.html', '/ui/nope.js', '/ui/..%2fhttp%2fapp.ts', '/ui/..%2f..%2fpackage.json', '/ui/%2e%2e', '/ui/a/b.js']) {
      const res = await get(url);
      expect([url, res.statusCode]).toEqual([url, 404]);
      expect((res.json() as { error: { code: string } }).error.code).toBe('ROUTE_NOT_FOUND');
    }
    const post = await server.app.inject({ method: 'POST', url: '/ui' });
    expect([post.statusCode, post.headers.allow]).toEqual([405, 'GET, HEAD']);
  });

  it('sends /ui/ to /ui', async () => {
    const res = await get('/ui/');
    expect([res.statusCode, res.headers.location]).toEqual([308, '/ui']);
  });
});

describe('GET /ui without a cluster (embedded)', () => {
  it('is not there: the page reads /cluster, /placement and /metrics, which only a cluster node has', async () => {
    const server = await createHttpServer({ store: new MemoryKvStore(), logger: silent });
    try {
      expect((await server.app.inject({ method: 'GET', url: '/ui' })).statusCode).toBe(404);
    } finally {
      await server.close();
    }
  });
});
