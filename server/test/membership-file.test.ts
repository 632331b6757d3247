// cluster.json, the membership a joined node recorded: written durably (no
// temp file left, the old file or the new one after any crash), and when it
// is damaged anyway the node refuses to start with DATA_DIR_DAMAGED naming
// the file and what to do, touching nothing. (With --join it joins again into
// the cluster CLUSTER records: cluster-id.test.ts.)
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { afterEach, describe, expect, it } from 'vitest';
import { MEMBERSHIP_FILE, readMembership, writeMembership, type Membership } from '../src/membership.js';
import { FlotillaNode } from '../src/node.js';

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-membership-'));
  dirs.push(d);
  return d;
}

const MEMBERSHIP: Membership = {
  nodes: [
    { nodeId: 1, address: '127.0.0.1:7101' },
    { nodeId: 2, address: '127.0.0.1:7102' },
  ],
  meta: { epoch: 3, replicas: [1, 2] },
};

function readError(dir: string): { code?: string; message: string } {
  try {
    readMembership(dir);
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('readMembership accepted a damaged file');
}

describe('cluster.json', () => {
  it('round-trips through the durable write and leaves no temp file', () => {
    const dir = tempDir();
    expect(readMembership(dir)).toBeUndefined();
    writeMembership(dir, MEMBERSHIP);
    expect(readMembership(dir)).toEqual(MEMBERSHIP);
    expect(readdirSync(dir)).toEqual([MEMBERSHIP_FILE]);
  });

  const damaged: [string, string, RegExp][] = [
    ['empty (what a power failure after a plain write left)', '', /is empty \(0 bytes\)/],
    ['whitespace only', ' \n', /is empty/],
    ['cut short', JSON.stringify(MEMBERSHIP).slice(0, 20), /is not valid JSON/],
    ['not an object', '[1,2]', /not a cluster membership record \(expected a JSON object\)/],
    ['a node without an address', JSON.stringify({ ...MEMBERSHIP, nodes: [{ nodeId: 1 }] }), /not a cluster membership record \(node .* is not/],
    ['no meta replicas', JSON.stringify({ ...MEMBERSHIP, meta: { epoch: 1, replicas: [] } }), /meta.replicas/],
  ];
  for (const [what, text, expected] of damaged) {
    it(`refuses a file that is ${what} with DATA_DIR_DAMAGED naming it and what to do`, () => {
      const dir = tempDir();
      writeFileSync(join(dir, MEMBERSHIP_FILE), text);
      const err = readError(dir);
      expect(err.code).toBe('DATA_DIR_DAMAGED');
      expect(err.message).toContain(join(dir, MEMBERSHIP_FILE));
      expect(err.message).toMatch(expected);
      expect(err.message).toMatch(/records the cluster this node joined.*Restore it/);
    });
  }

  it('a node whose cluster.json is damaged refuses to start, changes nothing, and starts once it is restored', async () => {
    const dir = join(tempDir(), 'n1');
    const start = (join?: string) =>
      FlotillaNode.start({ nodeId: 1, dir, listen: { host: '127.0.0.1', port: 0 }, peers: {}, coreCount: 1, initialRangeCount: 1, logger, ...(join === undefined ? {} : { join }) });
    // A node that joined: cluster.json recorded (by hand here; membership-less restarts of such a node read it).
    await (await start()).close();
    writeFileSync(join(dir, MEMBERSHIP_FILE), '');
    const before = readdirSync(dir).sort();
    await expect(start()).rejects.toMatchObject({ code: 'DATA_DIR_DAMAGED', message: expect.stringContaining(join(dir, MEMBERSHIP_FILE)) });
    // With --join it joins again (CLUSTER is recorded); nothing listens on port 1, so that fails and changes nothing either.
    await expect(start('http://127.0.0.1:1')).rejects.toThrow(/cannot join through http:\/\/127.0.0.1:1/);
    expect(readdirSync(dir).sort()).toEqual(before);
    expect(readFileSync(join(dir, MEMBERSHIP_FILE), 'utf8')).toBe('');
    // The refused starts released the directory's lock and left the rest intact.
    rmSync(join(dir, MEMBERSHIP_FILE));
    await (await start()).close();
  }, 60_000);
});
