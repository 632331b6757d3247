// What an operator reads: a one-node `flotilla start` (worker cores included) writes JSON lines with no
// key twice, says range and never shard, and at info writes a handful of lines from start to stop, not one
// per range. Also the root logger's own contract: its level and format are checked, pretty is readable,
// and a component's child does not repeat the node its parent names.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { childLogger, type ShellLogger } from '@flotilla/shards';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, describe, expect, it } from 'vitest';
import { LOG_FORMATS, LOG_LEVELS, LogOptionError, createNodeLogger, logFormatOf, parseLogLevel } from '../src/logging.js';
import { readyUrl } from '../src/ready-line.js';
import { until } from './support/until.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');
/** Info lines a one-node start may write from start to stop: node, transport, HTTP, meta duties, shutdown. It wrote 84 (issue 18). */
const START_INFO_LINES_MAX = 15;
/** Ranges the node starts with: more than the bound, so a line per range would show. */
const RANGE_COUNT = 16;

/** The keys of every object in a JSON text, each object's in order: JSON.parse keeps the last of a repeated key silently. */
function objectKeys(text: string): string[][] {
  const objects: string[][] = [];
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`${what} at ${i} in ${text}`);
  };
  const space = () => {
    while (/\s/.test(text[i] ?? '')) i++;
  };
  const string = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') {
      if (i >= text.length) fail('unterminated string');
      i += text[i] === '\\' ? 2 : 1;
    }
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (): void => {
    space();
    const c = text[i];
    if (c === '{') {
      const keys: string[] = [];
      objects.push(keys);
      i++;
      space();
      if (text[i] === '}') return void i++;
      for (;;) {
        space();
        if (text[i] !== '"') fail('expected a key');
        keys.push(string());
        space();
        if (text[i++] !== ':') fail('expected :');
        value();
        space();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail('expected , or }');
      }
    }
    if (c === '[') {
      i++;
      space();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        space();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail('expected , or ]');
      }
    }
    if (c === '"') return void string();
    const literal = /^(-?[0-9.eE+-]+|true|false|null)/.exec(text.slice(i));
    if (literal === null) fail('unexpected value');
    i += literal![0].length;
  };
  value();
  return objects;
}

const repeated = (keys: readonly string[]) => keys.filter((k, n) => keys.indexOf(k) !== n);

describe('objectKeys, the duplicate-key reader the tests below rely on', () => {
  it('sees a key written twice, in nested objects too, and parses what pino writes', () => {
    expect(objectKeys('{"a":1,"b":{"c":[1,{"d":2,"d":3}],"e":"x\\"}"},"a":null}')).toEqual([['a', 'b', 'a'], ['c', 'e'], ['d', 'd']]);
    expect(repeated(['nodeId', 'component', 'nodeId'])).toEqual(['nodeId']);
  });
});

describe('a one-node start, as a process', () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-logs-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it(`writes JSON lines without repeated keys or shardId, and at most ${START_INFO_LINES_MAX} at info`, async () => {
    const [transport, http] = await freePorts(2);
    // stderr is a pipe, not a terminal: JSON whatever the CLI's default for terminals.
    const child = spawn(process.execPath, [CLI, 'start', '--id', '1', '--dir', join(root, 'n1'), '--listen', `127.0.0.1:${transport}`, '--http', `127.0.0.1:${http}`, '--ranges', String(RANGE_COUNT), '--cores', '2'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const url = await readyUrl(child, { name: 'node 1', timeoutMs: 30_000 });
      const put = await fetch(`${url}/kv/greeting`, { method: 'PUT', body: 'hello', signal: AbortSignal.timeout(10_000) });
      expect(put.ok, String(put.status)).toBe(true);
      // Steady state: the meta duties have run (the node leads the meta range, so it starts the driver).
      await until('the placement driver runs', 20_000, () => (stderr.includes('placement driver started') ? true : undefined), () => stderr);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);

    const lines = stderr.split('\n').filter((l) => l.length > 0);
    const records = lines.map((line) => {
      const keys = objectKeys(line);
      expect(repeated(keys[0]!), `repeated keys in ${line}`).toEqual([]);
      for (const k of keys) expect(repeated(k), line).toEqual([]);
      expect(keys.flat(), line).not.toContain('shardId');
      return JSON.parse(line) as { level: number; msg: string; nodeId?: number };
    });
    // Every line names its node, main thread and worker cores alike.
    expect(records.filter((r) => r.nodeId !== 1).map((r) => r.msg)).toEqual([]);
    const info = records.filter((r) => r.level === 30);
    expect(info.length, info.map((r) => r.msg).join('\n')).toBeLessThanOrEqual(START_INFO_LINES_MAX);
    expect(info.map((r) => r.msg)).toContain('node serving');
    expect(records.filter((r) => r.level >= 40).map((r) => r.msg)).toEqual([]);
  }, 90_000);
});

/** A stream that keeps what pino writes, line by line. */
function capture(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter((l) => l.length > 0));
      done();
    },
  });
  return { stream, lines };
}

describe('createNodeLogger', () => {
  it('refuses a level or format it does not know, naming the ones it does', () => {
    expect(() => createNodeLogger({ level: 'loud', format: 'json' })).toThrow(new LogOptionError(`log level "loud" is not one of ${LOG_LEVELS.join(', ')}`));
    expect(() => createNodeLogger({ level: 'info', format: 'xml' })).toThrow(new LogOptionError(`log format "xml" is not one of ${LOG_FORMATS.join(', ')}`));
    expect(() => parseLogLevel('INFO')).toThrow(LogOptionError);
    expect(parseLogLevel('debug')).toBe('debug');
  });

  it('json: one object per line naming the node once, also under a component that names it again', () => {
    const { stream, lines } = capture();
    const root = createNodeLogger({ level: 'info', format: 'json', nodeId: 7, destination: stream });
    const component = childLogger(root as unknown as ShellLogger, { component: 'placement', nodeId: 7 });
    component.info({ rangeId: 3 }, 'operator started');
    component.debug({}, 'below the level');
    expect(lines).toHaveLength(1);
    expect(objectKeys(lines[0]!)[0]).toEqual(['level', 'time', 'pid', 'nodeId', 'component', 'rangeId', 'msg']);
    expect(logFormatOf(root)).toBe('json');
  });

  it('pretty: a line a person reads, with the fields but not as JSON; children keep the format', () => {
    const { stream, lines } = capture();
    const root = createNodeLogger({ level: 'debug', format: 'pretty', nodeId: 2, destination: stream });
    root.child({ component: 'host' }).debug({ peer: 3 }, 'peer up');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/DEBUG.*peer up/);
    expect(lines[0]).toContain('"peer":3');
    expect(() => JSON.parse(lines[0]!)).toThrow();
    expect(logFormatOf(root.child({ component: 'host' }))).toBe('pretty');
  });
});
