// The CLI's pure parts: how it shows sizes and keys, parses option values, names the command that
// restarts a dev node, and classes failures into exit codes.
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { selfCommand } from '../src/cli/dev.js';
import { EXIT, EXIT_BY_ERROR_CODE, exitCodeOfStatus } from '../src/cli/exit-codes.js';
import { bytesJson, bytesText, columns, keyText, printableText, shellWord, table, valueText } from '../src/cli/format.js';
import { answerError, unreachableMessage } from '../src/cli/node-client.js';
import { hostPortOf, nodeUrl, peerList, positiveInt, RANGE_COUNT_MAX_SHOWN } from '../src/cli/options.js';
import { placementLines, replicationFactorEffective, type PlacementJson } from '../src/cli/status.js';
import { RANGE_COUNT_DEFAULT_SHOWN } from '../src/cli/program.js';
import { STATUS_BY_CODE } from '../src/http/errors.js';
import { INITIAL_RANGE_COUNT_DEFAULT, INITIAL_RANGE_COUNT_MAX } from '../src/node.js';

describe('bytesText: binary units, one decimal', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [1024 * 1024 - 1, '1.0 MiB'], // 1023.999 KiB rounds to 1024.0: shown in the next unit
    [81322.6 * 1024 * 1024, '79.4 GiB'], // the free space the issue saw as "81322.6 MiB"
    [5 * 1024 ** 5, '5.0 PiB'],
    [1024 ** 6, '1024.0 PiB'], // past the last unit: stays in it
  ])('%d B → %s', (bytes, text) => expect(bytesText(bytes)).toBe(text));
});

describe('keys and values: text when printable UTF-8, else marked hex', () => {
  const bytes = (...b: number[]) => Uint8Array.from(b);
  it.each([
    ['greeting', Buffer.from('greeting'), 'greeting'],
    ['UTF-8 beyond ASCII', Buffer.from('clé 🚀'), 'clé 🚀'],
    ['a control byte', bytes(0x00, 0x01), '0x0001'],
    ['invalid UTF-8', bytes(0x80), '0x80'],
    ['a lone surrogate encoded', bytes(0xed, 0xa0, 0x80), '0xeda080'],
    ['a newline in a key', Buffer.from('a\nb'), '0x610a62'],
    ['the empty key', bytes(), '""'],
  ])('key: %s', (_name, key, text) => expect(keyText(key)).toBe(text));

  it('a value may hold tabs and line breaks as text, not other control characters', () => {
    expect(valueText(Buffer.from('line 1\n\tline 2\r\n'))).toBe('line 1\n\tline 2\r\n');
    expect(valueText(Buffer.from('bell\u0007'))).toBe('0x62656c6c07');
    expect(printableText(Buffer.from('a\tb'), { multiline: false })).toBeUndefined();
  });

  it('-o json names the encoding in the field: key or keyHex, never a guess', () => {
    expect(bytesJson('key', Buffer.from('k'))).toEqual({ key: 'k' });
    expect(bytesJson('key', bytes(0xff, 0x00))).toEqual({ keyHex: 'ff00' });
    expect(bytesJson('end', null)).toEqual({ end: null });
    expect(bytesJson('value', Buffer.from('a\nb'), { multiline: true })).toEqual({ value: 'a\nb' });
  });
});

describe('tables', () => {
  it('pads every column but the last to its widest cell, two spaces apart', () => {
    expect(table(['node', 'state', 'free'], [['1', 'up', '79.4 GiB'], ['12', 'decommissioning', '1.0 KiB']])).toBe(
      ['node  state            free', '1     up               79.4 GiB', '12    decommissioning  1.0 KiB'].join('\n'),
    );
    expect(columns([['a', ''], ['bb', 'x']])).toBe('a\nbb  x');
  });
});

describe('status', () => {
  const node = (nodeId: number, state: string) => ({ nodeId, state, replicaCount: 1, leaderCount: 1, writesPerSec: 0, readsPerSec: 0, usedBytes: 2048, availableBytes: 81322.6 * 1024 * 1024, silentMs: 500 });
  const view = (nodes: PlacementJson['nodes']): PlacementJson => ({ settings: { paused: false, replicationFactor: 3 }, rangeCount: 9, nodes, operators: [] });

  it('says the replication factor a range gets: the setting, but no more than the nodes that can hold one', () => {
    expect(replicationFactorEffective(view([node(1, 'up')]))).toBe(1);
    expect(replicationFactorEffective(view([node(1, 'up'), node(2, 'down'), node(3, 'up'), node(4, 'up')]))).toBe(3);
    expect(replicationFactorEffective(view([node(1, 'up'), node(2, 'decommissioning'), node(3, 'up')]))).toBe(2);
    expect(placementLines(view([node(1, 'up')]))[0]).toBe('9 ranges, replication factor 1 (set to 3; 1 node can hold replicas), scheduler running');
    expect(placementLines(view([node(1, 'up'), node(2, 'up'), node(3, 'up')]))[0]).toBe('9 ranges, replication factor 3, scheduler running');
  });

  it('shows sizes in human units', () => {
    expect(placementLines(view([node(1, 'up')])).join('\n').split('\n')[2]).toBe('1     up     1         1        0      2.0 KiB  79.4 GiB  500 ms ago');
  });
});

describe('option values', () => {
  it.each([['1', 1], ['42', 42]])('positiveInt(%s)', (text, n) => expect(positiveInt(text)).toBe(n));
  it.each(['0', '-1', '1.5', '', ' ', 'x', '1e400'])('positiveInt(%j) is a usage error', (text) => expect(() => positiveInt(text)).toThrow(InvalidArgumentError));

  it('HOST:PORT', () => {
    expect(hostPortOf('127.0.0.1:7101')).toEqual({ host: '127.0.0.1', port: 7101 });
    for (const bad of ['7101', 'host:', 'host:0', 'host:65536', 'a b:1', 'http://h:1']) expect(() => hostPortOf(bad), bad).toThrow(InvalidArgumentError);
  });

  it('--peers', () => {
    expect(peerList('2=127.0.0.1:7102,3=127.0.0.1:7103')).toEqual({ 2: '127.0.0.1:7102', 3: '127.0.0.1:7103' });
    expect(peerList('')).toEqual({});
    for (const bad of ['2', '2=', 'x=h:1', '0=h:1', '2=h:1,2=h:2', '2=h']) expect(() => peerList(bad), bad).toThrow(InvalidArgumentError);
  });

  it('--url: http(s) only, a bare HOST:PORT means http, no trailing slash', () => {
    expect(nodeUrl('http://127.0.0.1:8101/')).toBe('http://127.0.0.1:8101');
    expect(nodeUrl('127.0.0.1:8102')).toBe('http://127.0.0.1:8102');
    expect(nodeUrl('https://db.example:443')).toBe('https://db.example');
    for (const bad of ['ftp://h:1', 'http://', 'http://h:1/?x=1']) expect(() => nodeUrl(bad), bad).toThrow(InvalidArgumentError);
  });
});

it("the help text's default range count is the node's", () => {
  expect(RANGE_COUNT_DEFAULT_SHOWN).toBe(INITIAL_RANGE_COUNT_DEFAULT);
  expect(RANGE_COUNT_MAX_SHOWN).toBe(INITIAL_RANGE_COUNT_MAX);
});

describe('the command dev prints to restart a node', () => {
  const cli = '/repo/server/dist/cli.js';
  it.each([
    ['npm start (node server/dist/cli.js dev)', '/repo/server/dist/cli.js', '/repo', ['node', 'server/dist/cli.js']],
    ['node with a path outside the working directory', '/repo/server/dist/cli.js', '/elsewhere', ['node', cli]],
    ['npx flotilla', '/project/node_modules/.bin/flotilla', '/project', ['npx', 'flotilla']],
    ['a global install', '/usr/local/bin/flotilla', '/home/me', ['flotilla']],
  ])('%s', (_name, invokedAs, cwd, command) => expect(selfCommand(cli, { invokedAs, cwd })).toEqual(command));

  it('quotes what a shell would read', () => {
    expect(['start', '--dir', '/tmp/my data', "it's", '1=127.0.0.1:7101,2=127.0.0.1:7102'].map(shellWord).join(' ')).toBe(`start --dir '/tmp/my data' 'it'\\''s' 1=127.0.0.1:7101,2=127.0.0.1:7102`);
  });
});

describe('exit codes', () => {
  it('every error code the API answers with has one, of the class its status says', () => {
    for (const [code, status] of Object.entries(STATUS_BY_CODE)) {
      const exit = EXIT_BY_ERROR_CODE[code as keyof typeof EXIT_BY_ERROR_CODE];
      if (code === 'ROUTE_NOT_FOUND') expect(exit, code).toBe(EXIT.internal); // a 404, but the --url is no (current) Flotilla node
      else expect(exit, `${code} (${status})`).toBe(exitCodeOfStatus(status));
    }
  });

  it('an error answer names the operation, the node, the cause and its code', () => {
    const answer = { status: 404, headers: new Headers(), body: Buffer.from(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'key not found' } })) };
    const err = answerError(answer, 'http://127.0.0.1:8101', 'get "nope"');
    expect(err.exitCode).toBe(EXIT.notFound);
    expect(err.message).toBe('get "nope": key not found (NOT_FOUND from http://127.0.0.1:8101)');
    const unavailable = answerError({ status: 503, headers: new Headers({ 'retry-after': '1' }), body: Buffer.from('<html>busy</html>') }, 'http://h', 'put "k"');
    expect(unavailable.exitCode).toBe(EXIT.unavailable);
    expect(unavailable.message).toBe('put "k": http://h answered 503 <html>busy</html>; retry after 1 s');
  });

  it('no answer at all names the address and why', () => {
    const refused = Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    expect(unreachableMessage('http://127.0.0.1:8101', refused, 1000)).toBe('cannot reach http://127.0.0.1:8101: connection refused (is a node running there? --url chooses the node)');
    const blocked = Object.assign(new TypeError('fetch failed'), { cause: new Error('bad port') });
    expect(unreachableMessage('http://127.0.0.1:6000', blocked, 1000)).toBe('cannot reach http://127.0.0.1:6000: fetch does not connect to that port (one browsers block); run the node on another');
    const timeout = Object.assign(new Error('aborted'), { name: 'TimeoutError' });
    expect(unreachableMessage('http://h:1', timeout, 1000)).toMatch(/^http:\/\/h:1 did not answer within 1000 ms/);
  });
});
