// childLogger binds a key once however many components name it, and the Raft logger neither repeats the
// node nor writes per-range state changes at info, and binds its range only when it writes.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { childLogger, raftLogger, type ShellLogger } from '../src/shell-logger.js';

function capture(level: string, base: Record<string, unknown>): { log: ShellLogger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter((l) => l.length > 0));
      done();
    },
  });
  return { log: pino({ level, base, timestamp: false }, stream) as unknown as ShellLogger, lines };
}

/** The top-level keys of a JSON line in order (JSON.parse would hide a repeated one). */
const keysOf = (line: string) => [...line.matchAll(/[{,]"([^"]+)":/g)].map((m) => m[1]);

describe('childLogger', () => {
  it('does not bind again what the parent binds, and binds what it lacks', () => {
    const { log, lines } = capture('info', { nodeId: 1 });
    childLogger(childLogger(log, { component: 'core', nodeId: 1, core: 0 }), { nodeId: 1, core: 0, rangeId: 5 }).info({}, 'x');
    expect(keysOf(lines[0]!)).toEqual(['level', 'nodeId', 'component', 'core', 'rangeId', 'msg']);
  });

  it('binds everything on a logger that cannot tell its bindings', () => {
    const calls: Record<string, unknown>[] = [];
    const plain: ShellLogger = { debug() {}, info() {}, warn() {}, error() {}, child: (b) => (calls.push(b), plain) };
    childLogger(plain, { nodeId: 2, component: 'host' });
    expect(calls).toEqual([{ nodeId: 2, component: 'host' }]);
  });
});

describe('raftLogger', () => {
  it("writes Raft's info lines at debug, without its nodeId field, and warnings as warnings", () => {
    const { log, lines } = capture('debug', { nodeId: 1 });
    const raft = raftLogger(log.child({ component: 'raft', rangeId: 3 }));
    raft.info({ nodeId: 1, term: 4 }, 'became leader');
    raft.warn({ nodeId: 1, term: 4 }, 'stepped down: quorum not active (check-quorum)');
    expect(lines.map((l) => [JSON.parse(l).level, keysOf(l)])).toEqual([
      [20, ['level', 'nodeId', 'component', 'rangeId', 'term', 'msg']],
      [40, ['level', 'nodeId', 'component', 'rangeId', 'term', 'msg']],
    ]);
  });

  it('binds the range with a child made at its first written line, once', () => {
    const { log, lines } = capture('info', { nodeId: 1 });
    const children: Record<string, unknown>[] = [];
    const counting: ShellLogger = Object.assign(Object.create(log) as ShellLogger, {
      child: (bindings: Record<string, unknown>) => (children.push(bindings), log.child(bindings)),
    });
    const raft = raftLogger(counting, { rangeId: 7 });
    raft.info({ nodeId: 1, term: 2 }, 'became follower');
    raft.debug({ term: 2 }, 'sent vote request');
    expect(children).toEqual([]);
    raft.warn({ nodeId: 1, term: 2 }, 'stepped down: quorum not active (check-quorum)');
    raft.warn({ term: 3 }, 'stepped down: quorum not active (check-quorum)');
    expect(children).toEqual([{ rangeId: 7 }]);
    expect(lines.map((l) => keysOf(l))).toEqual([
      ['level', 'nodeId', 'rangeId', 'term', 'msg'],
      ['level', 'nodeId', 'rangeId', 'term', 'msg'],
    ]);
  });

  it('writes nothing of its info and debug lines at info', () => {
    const { log, lines } = capture('info', {});
    const raft = raftLogger(log);
    raft.info({ term: 1 }, 'became candidate');
    raft.debug({ term: 1 }, 'sent vote request');
    expect(lines).toEqual([]);
  });
});
