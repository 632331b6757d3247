// The admin routes' JSON schemas, checked by fastify (ajv): what passes reaches the cluster view as
// numbers and bytes, what fails is 400 INVALID_ARGUMENT in our error shape, through the one table.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { createHttpServer, type HttpServer } from '../src/http/app.js';
import { MemoryKvStore } from '../src/testing/memory-store.js';
import { StubClusterView } from './support/stub-cluster-view.js';

const silent = pino({ level: 'silent' });

describe('admin routes check requests against their schemas', () => {
  let server: HttpServer;
  let view: StubClusterView;
  const inject = (options: InjectOptions): Promise<LightMyRequestResponse> => server.app.inject(options);
  const post = (url: string, body?: unknown): Promise<LightMyRequestResponse> =>
    inject({ method: 'POST', url, ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }) });

  beforeAll(async () => {
    view = new StubClusterView();
    server = await createHttpServer({ store: new MemoryKvStore(), logger: silent, cluster: view, keyBytesMax: 8 });
  });
  afterAll(async () => {
    await server.close();
  });

  it('passes valid requests on with ids as numbers, whatever the Content-Type', async () => {
    const moved = await inject({ method: 'POST', url: '/ranges/4294967295/move', payload: JSON.stringify({ from: 1, to: 2 }), headers: { 'content-type': 'text/plain' } });
    expect(moved.statusCode, moved.body).toBe(200);
    expect(moved.json()).toEqual({ call: ['operator', { kind: 'moveReplica', rangeId: 4294967295, from: 1, to: 2 }] });
    expect((await post('/ranges/7/transfer-leader', { to: 3 })).json()).toEqual({ call: ['operator', { kind: 'transferLeader', rangeId: 7, to: 3 }] });
    expect((await post('/ranges/7/split', { keyBase64: 'AP8=' })).json()).toEqual({ call: ['split', 7, '00ff'] });
    expect((await post('/ranges/7/split', { key: 'é' })).json()).toEqual({ call: ['split', 7, 'c3a9'] });
    expect((await post('/cluster/join', { nodeId: 9, address: 'n9:65535' })).json()).toEqual({ call: ['join', { nodeId: 9, address: 'n9:65535', httpAddress: null }] });
    expect((await post('/cluster/join', { nodeId: 9, address: 'n9:1', httpAddress: 'n9:80', extra: 'ignored' })).json()).toEqual({
      call: ['join', { nodeId: 9, address: 'n9:1', httpAddress: 'n9:80' }],
    });
    expect((await inject({ method: 'PUT', url: '/placement/settings', payload: '{"replicationFactor": 5}' })).json()).toEqual({ call: ['placementSettings', { replicationFactor: 5 }] });
    expect((await post('/nodes/12/decommission')).json()).toEqual({ call: ['nodeState', 12, 'decommissioning'] });
    // A body on a route that takes none is not read.
    expect((await post('/nodes/12/recommission', '{not json')).json()).toEqual({ call: ['nodeState', 12, 'up'] });
    expect((await post('/ranges/3/consistency-check')).json()).toEqual({ call: ['consistencyCheck', 3] });
    const metrics = await inject({ method: 'GET', url: '/metrics' });
    expect(metrics.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(metrics.body).toBe('flotilla_stub 1\n');
    expect((await inject({ method: 'GET', url: '/health?ready=1' })).json()).toEqual({ ready: true, reasons: [] });
    expect((await inject({ method: 'GET', url: '/health?ready=' })).json()).toEqual({ status: 'ok' });
    for (const [query, ranges] of [['', true], ['?ranges=1', true], ['?ranges=true', true], ['?ranges=', true], ['?ranges=0', false], ['?ranges=false', false]] as const) {
      expect((await inject({ method: 'GET', url: `/placement${query}` })).json(), query).toEqual({ call: ['placement', { ranges }] });
    }
    expect((await inject({ method: 'GET', url: '/placement?ranges=no' })).statusCode).toBe(400);
  });

  // Ids are decimal in [1, 2^32): the boundaries of each alternative of the schema's pattern.
  // Path segments are percent-decoded before the check, so %31%30 is 10.
  const ids = ['1', '9', '10', '%31%30', '999999999', '1000000000', '3999999999', '4000000000', '4199999999', '4200000000', '4289999999', '4290000000', '4293999999', '4294000000'];
  const nearMax = ['4294899999', '4294900000', '4294959999', '4294960000', '4294966999', '4294967000', '4294967199', '4294967200', '4294967289', '4294967290', '4294967295'];
  const overMax = ['4294967296', '4294967299', '4294967300', '4294968000', '4295000000', '4300000000', '5000000000', '9999999999', '10000000000'];
  const malformed = ['0', '00', '01', '-1', '+1', '1e3', '1.0', 'abc', '%30%31', '0x10'];
  it.each([...ids, ...nearMax].map((id) => ({ id, status: 200 })).concat([...overMax, ...malformed].map((id) => ({ id, status: 400 }))))('range id $id → $status', async ({ id, status }) => {
    const response = await post(`/ranges/${id}/transfer-leader`, { to: 1 });
    expect(response.statusCode, response.body).toBe(status);
    if (status === 200) expect(response.json()).toEqual({ call: ['operator', { kind: 'transferLeader', rangeId: Number(decodeURIComponent(id)), to: 1 }] });
    else expect(response.json()).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
  });

  const rows: readonly { readonly name: string; readonly request: InjectOptions; readonly status: number; readonly code: string; readonly message?: RegExp }[] = [
    { name: 'move body not JSON', request: { method: 'POST', url: '/ranges/1/move', payload: '{' }, status: 400, code: 'INVALID_ARGUMENT', message: /^move body must be JSON/ },
    { name: 'move without a body', request: { method: 'POST', url: '/ranges/1/move' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'move body an array', request: { method: 'POST', url: '/ranges/1/move', payload: '[1, 2]' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'move without to', request: { method: 'POST', url: '/ranges/1/move', payload: '{"from": 1}' }, status: 400, code: 'INVALID_ARGUMENT', message: /to/ },
    { name: 'move to a string', request: { method: 'POST', url: '/ranges/1/move', payload: '{"from": 1, "to": "2"}' }, status: 400, code: 'INVALID_ARGUMENT', message: /^body\/to "2" is not a node id/ },
    { name: 'move to 2^32', request: { method: 'POST', url: '/ranges/1/move', payload: '{"from": 1, "to": 4294967296}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'move to 1.5', request: { method: 'POST', url: '/ranges/1/move', payload: '{"from": 1, "to": 1.5}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'move with an extra field', request: { method: 'POST', url: '/ranges/1/move', payload: '{"from": 1, "to": 2, "force": true}' }, status: 400, code: 'INVALID_ARGUMENT', message: /unknown field "force"/ },
    { name: 'move with a query parameter', request: { method: 'POST', url: '/ranges/1/move?dry=1', payload: '{"from": 1, "to": 2}' }, status: 400, code: 'INVALID_ARGUMENT', message: /unknown parameter "dry"/ },
    { name: 'split with both keys', request: { method: 'POST', url: '/ranges/1/split', payload: '{"key": "a", "keyBase64": "YQ=="}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'split with neither key', request: { method: 'POST', url: '/ranges/1/split', payload: '{}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'split with bad base64', request: { method: 'POST', url: '/ranges/1/split', payload: '{"keyBase64": "a*b"}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'split at the empty key', request: { method: 'POST', url: '/ranges/1/split', payload: '{"keyBase64": "=="}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'split key over keyBytesMax', request: { method: 'POST', url: '/ranges/1/split', payload: '{"key": "123456789"}' }, status: 413, code: 'KEY_TOO_LARGE' },
    { name: 'join with port 0', request: { method: 'POST', url: '/cluster/join', payload: '{"nodeId": 2, "address": "n:0"}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'join with port 65536', request: { method: 'POST', url: '/cluster/join', payload: '{"nodeId": 2, "address": "n:65536"}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'join with a nodeId string', request: { method: 'POST', url: '/cluster/join', payload: '{"nodeId": "2", "address": "n:1"}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'join with a bad httpAddress', request: { method: 'POST', url: '/cluster/join', payload: '{"nodeId": 2, "address": "n:1", "httpAddress": "n"}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'settings empty', request: { method: 'PUT', url: '/placement/settings', payload: '{}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'settings replicationFactor 8', request: { method: 'PUT', url: '/placement/settings', payload: '{"replicationFactor": 8}' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'health ready=yes', request: { method: 'GET', url: '/health?ready=yes' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'health ready twice', request: { method: 'GET', url: '/health?ready=1&ready=1' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'cluster with a query parameter', request: { method: 'GET', url: '/cluster?verbose' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'openapi.json with a query parameter', request: { method: 'GET', url: '/openapi.json?format=yaml' }, status: 400, code: 'INVALID_ARGUMENT' },
    { name: 'an unknown node action', request: { method: 'POST', url: '/nodes/1/explode' }, status: 404, code: 'ROUTE_NOT_FOUND' },
    { name: 'GET on a POST route', request: { method: 'GET', url: '/nodes/1/decommission' }, status: 405, code: 'METHOD_NOT_ALLOWED' },
    { name: 'POST on a PUT route', request: { method: 'POST', url: '/placement/settings', payload: '{"paused": true}' }, status: 405, code: 'METHOD_NOT_ALLOWED' },
  ];

  it.each(rows)('$name → $status $code', async ({ request, status, code, message }) => {
    const calls = view.calls.length;
    const response = await inject(request);
    expect(response.statusCode, response.body).toBe(status);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    const { error } = response.json<{ error: { code: string; message: string } }>();
    expect(error.code).toBe(code);
    if (message !== undefined) expect(error.message).toMatch(message);
    expect(view.calls.length, 'the view was not asked').toBe(calls);
  });

  it('answers 405 with Allow on admin paths', async () => {
    expect((await inject({ method: 'GET', url: '/ranges/1/split' })).headers.allow).toBe('POST');
    expect((await inject({ method: 'DELETE', url: '/cluster' })).headers.allow).toBe('GET, HEAD');
  });
});
