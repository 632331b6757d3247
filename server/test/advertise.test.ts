// Advertise addresses: what a node tells others about where it is. A wildcard listen without an advertised
// address (0.0.0.0 or [::]), or an advertised wildcard, port 0 or IPv6 zone, is refused before anything is
// bound or written (a usage error from the CLI, ADVERTISE_INVALID from the API), and so is an IPv6
// address without brackets (ambiguous); a node started with --advertise-http prints that
// URL in its ready line, records it, and every member's /cluster names it. A founder and the node that
// joined it, restarted together, find each other from peers.json. Across hosts: netns-cluster.test.ts.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdvertiseError, advertiseProblem, advertisedAddress, isWildcardHost } from '../src/advertise.js';
import { PEERS_FILE, readKnownPeers } from '../src/membership.js';
import { FlotillaNode } from '../src/node.js';
import { readyLineOf, type ReadyLine } from '../src/ready-line.js';
import { CLI, runCli, STACK_FRAME } from './support/cli-run.js';

describe('advertise addresses: the rules', () => {
  it.each([
    ['0.0.0.0', true],
    ['0', true],
    ['0.0', true],
    ['::', true],
    ['[::]', true],
    ['0:0:0:0:0:0:0:0', true],
    ['[0::0]', true],
    ['::0.0.0.0', true],
    ['*', true],
    ['127.0.0.1', false],
    ['::1', false],
    ['[::1]', false],
    ['fe80::1', false],
    ['10.0.0.1', false],
    ['node-1.example', false],
    ['0.0.0.1', false],
  ])('isWildcardHost(%j) is %s', (host, wildcard) => {
    expect(isWildcardHost(host)).toBe(wildcard);
  });

  it.each([
    ['10.0.0.1:7101', undefined],
    ['db-1.internal:8101', undefined],
    ['[::1]:7101', undefined],
    ['[2001:db8::7]:7101', undefined],
    ['0.0.0.0:7101', /^0\.0\.0\.0 is a wildcard/],
    ['[::]:7101', /^\[::\] is a wildcard \(every interface of this host\); on another host it names that host$/],
    ['[0:0:0:0:0:0:0:0]:7101', /^\[0:0:0:0:0:0:0:0\] is a wildcard/],
    ['[fe80::1%eth0]:7101', /^\[fe80::1%eth0\] carries a zone \(%eth0\), an interface of this host that another host does not share/],
    ['10.0.0.1:0', /^"10\.0\.0\.1:0": port 0 lets a listener pick a port, which others cannot know$/],
    ['10.0.0.1:65536', /^"10\.0\.0\.1:65536": port "65536" is not a decimal integer in \[1, 65535\]/],
    ['::1:7101', /^"::1:7101" is ambiguous: an IPv6 address with a port goes in brackets, e\.g\. \[::1\]:7101$/],
    [':::7101', /is ambiguous/],
  ])('advertiseProblem(%j)', (address, problem) => {
    if (problem === undefined) expect(advertiseProblem(address)).toBeUndefined();
    else expect(advertiseProblem(address)).toMatch(problem);
  });

  const flags = { listen: '--listen', advertise: '--advertise' };
  it('an address is advertised as given, else the listen address; a wildcard or port 0 never', () => {
    expect(advertisedAddress({ listen: '0.0.0.0:7101', advertise: '10.0.0.1:7101', flags })).toBe('10.0.0.1:7101');
    expect(advertisedAddress({ listen: '127.0.0.1:7101', advertise: undefined, flags })).toBe('127.0.0.1:7101');
    // Behind NAT or a proxy the advertised port may differ from the bound one.
    expect(advertisedAddress({ listen: '0.0.0.0:7101', advertise: 'gw.example:17101', flags })).toBe('gw.example:17101');
    expect(() => advertisedAddress({ listen: '0.0.0.0:7101', advertise: undefined, flags })).toThrow(
      new AdvertiseError('--listen 0.0.0.0:7101 cannot be advertised to other nodes and clients: 0.0.0.0 is a wildcard (every interface of this host); on another host it names that host. Add --advertise HOST:PORT with the address they reach this node at, e.g. --advertise 10.0.0.1:7101'),
    );
    expect(() => advertisedAddress({ listen: '0.0.0.0:7101', advertise: '0.0.0.0:7101', flags })).toThrow(/^--advertise 0\.0\.0\.0:7101 cannot be advertised: 0\.0\.0\.0 is a wildcard/);
    expect(() => advertisedAddress({ listen: '10.0.0.1:7101', advertise: '10.0.0.1:0', flags })).toThrow(/^--advertise 10\.0\.0\.1:0 cannot be advertised: "10\.0\.0\.1:0": port 0 .* e\.g\. --advertise 10\.0\.0\.1:7101$/);
    // The IPv6 wildcard as the IPv4 one, with an IPv6 example.
    expect(advertisedAddress({ listen: '[::]:7101', advertise: '[2001:db8::7]:7101', flags })).toBe('[2001:db8::7]:7101');
    expect(() => advertisedAddress({ listen: '[::]:7101', advertise: undefined, flags })).toThrow(
      new AdvertiseError('--listen [::]:7101 cannot be advertised to other nodes and clients: [::] is a wildcard (every interface of this host); on another host it names that host. Add --advertise HOST:PORT with the address they reach this node at, e.g. --advertise [2001:db8::1]:7101'),
    );
    expect(() => advertisedAddress({ listen: '[::1]:7101', advertise: '[::]:7101', flags })).toThrow(/^--advertise \[::\]:7101 cannot be advertised: \[::\] is a wildcard/);
  });
});

describe('flotilla start refuses what it cannot advertise', () => {
  // Made when the suite runs: a suite left out by -t runs no afterAll to remove it.
  let root = '';
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-advertise-usage-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const base = (dir: string) => ['start', '--id', '1', '--dir', join(root, dir)];

  it.each([
    ['a wildcard --listen without --advertise', ['--listen', '0.0.0.0:7101', '--http', '127.0.0.1:8101'], /^flotilla: --listen 0\.0\.0\.0:7101 cannot be advertised to other nodes and clients: 0\.0\.0\.0 is a wildcard .*Add --advertise HOST:PORT .* e\.g\. --advertise 10\.0\.0\.1:7101\n\(flotilla start --help shows its usage\)\n$/],
    ['a wildcard --http without --advertise-http', ['--listen', '127.0.0.1:7101', '--http', '0.0.0.0:8101'], /^flotilla: --http 0\.0\.0\.0:8101 cannot be advertised .*Add --advertise-http HOST:PORT .* e\.g\. --advertise-http 10\.0\.0\.1:8101\n/],
    ['both wildcards, with --advertise only', ['--listen', '0.0.0.0:7101', '--advertise', '10.0.0.1:7101', '--http', '0.0.0.0:8101'], /Add --advertise-http HOST:PORT/],
    ['an advertised wildcard', ['--listen', '0.0.0.0:7101', '--advertise', '0.0.0.0:7101', '--http', '127.0.0.1:8101'], /^flotilla: option '--advertise <host:port>' argument '0\.0\.0\.0:7101' is invalid\. 0\.0\.0\.0 is a wildcard/],
    ['an advertised HTTP wildcard', ['--listen', '127.0.0.1:7101', '--http', '0.0.0.0:8101', '--advertise-http', '0.0.0.0:8101'], /^flotilla: option '--advertise-http <host:port>' argument '0\.0\.0\.0:8101' is invalid\. 0\.0\.0\.0 is a wildcard/],
    ['an advertised port 0', ['--listen', '127.0.0.1:7101', '--http', '127.0.0.1:8101', '--advertise', '10.0.0.1:0'], /^flotilla: option '--advertise <host:port>' argument '10\.0\.0\.1:0' is invalid\. "10\.0\.0\.1:0": port 0 lets a listener pick a port, which others cannot know\. Advertise the address others reach this node at, e\.g\. 10\.0\.0\.1:PORT\.\n/],
    // IPv6: the wildcard [::] is refused as 0.0.0.0 is, with the flag to add; without brackets an address is ambiguous.
    ['an IPv6 wildcard --listen without --advertise', ['--listen', '[::]:7101', '--http', '[::1]:8101'], /^flotilla: --listen \[::\]:7101 cannot be advertised to other nodes and clients: \[::\] is a wildcard .*Add --advertise HOST:PORT .* e\.g\. --advertise \[2001:db8::1\]:7101\n\(flotilla start --help shows its usage\)\n$/],
    ['an IPv6 wildcard --http without --advertise-http', ['--listen', '[::1]:7101', '--http', '[::]:8101'], /^flotilla: --http \[::\]:8101 cannot be advertised .*Add --advertise-http HOST:PORT .* e\.g\. --advertise-http \[2001:db8::1\]:8101\n/],
    ['an advertised IPv6 wildcard', ['--listen', '[::]:7101', '--advertise', '[::]:7101', '--http', '[::1]:8101'], /^flotilla: option '--advertise <host:port>' argument '\[::\]:7101' is invalid\. \[::\] is a wildcard/],
    ['an advertised IPv6 HTTP wildcard', ['--listen', '[::1]:7101', '--http', '[::]:8101', '--advertise-http', '[::]:8101'], /^flotilla: option '--advertise-http <host:port>' argument '\[::\]:8101' is invalid\. \[::\] is a wildcard/],
    ['an IPv6 wildcard in --peers', ['--listen', '[::1]:7101', '--http', '[::1]:8101', '--peers', '2=[::]:7102'], /^flotilla: option '--peers <list>' argument '2=\[::\]:7102' is invalid\. Node 2 at \[::\]:7102: \[::\] is a wildcard/],
    ['an advertised IPv6 zone', ['--listen', '[::1]:7101', '--http', '[::1]:8101', '--advertise', '[fe80::1%eth0]:7101'], /^flotilla: option '--advertise <host:port>' argument '\[fe80::1%eth0\]:7101' is invalid\. \[fe80::1%eth0\] carries a zone/],
    ['an unbracketed IPv6 --listen', ['--listen', '::1:7101', '--http', '[::1]:8101'], /^flotilla: option '--listen <host:port>' argument '::1:7101' is invalid\. "::1:7101" is ambiguous: an IPv6 address with a port goes in brackets, e\.g\. \[::1\]:7101\.\n/],
    ['an unbracketed IPv6 --http', ['--listen', '[::1]:7101', '--http', '::1:8101'], /^flotilla: option '--http <host:port>' argument '::1:8101' is invalid\. "::1:8101" is ambiguous: .* e\.g\. \[::1\]:8101\.\n/],
    ['an unbracketed IPv6 wildcard --advertise', ['--listen', '[::1]:7101', '--http', '[::1]:8101', '--advertise', ':::7101'], /^flotilla: option '--advertise <host:port>' argument ':::7101' is invalid\. ":::7101" is ambiguous: .* e\.g\. \[::\]:7101\. Advertise the address others reach this node at, e\.g\. \[2001:db8::1\]:PORT\.\n/],
    ['an unbracketed IPv6 in --peers', ['--listen', '[::1]:7101', '--http', '[::1]:8101', '--peers', '2=::1:7102'], /^flotilla: option '--peers <list>' argument '2=::1:7102' is invalid\. Node 2 at ::1:7102: "::1:7102" is ambiguous: .* e\.g\. \[::1\]:7102;/],
    ['an unbracketed IPv6 --join', ['--listen', '[::1]:7101', '--http', '[::1]:8101', '--join', 'http://::1:8101'], /^flotilla: option '--join <url>' argument 'http:\/\/::1:8101' is invalid\. Expected a node's HTTP address, e\.g\. http:\/\/127\.0\.0\.1:8101 or http:\/\/\[::1\]:8101\. "::1:8101" is ambiguous: .* e\.g\. \[::1\]:8101\.\n/],
    ['a wildcard in --peers', ['--listen', '127.0.0.1:7101', '--http', '127.0.0.1:8101', '--peers', '2=0.0.0.0:7102'], /^flotilla: option '--peers <list>' argument '2=0\.0\.0\.0:7102' is invalid\. Node 2 at 0\.0\.0\.0:7102: 0\.0\.0\.0 is a wildcard/],
  ])('%s: usage error (exit 2), one message, nothing created', async (name, args, message) => {
    const dir = name.replace(/\W+/g, '-');
    const run = await runCli([...base(dir), ...args]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(run.stdout).toBe('');
    expect(existsSync(join(root, dir))).toBe(false);
  });

  it('start --help names both advertise flags', async () => {
    const help = await runCli(['start', '--help']);
    expect(help.stdout).toContain('--advertise <host:port>');
    expect(help.stdout).toContain('--advertise-http <host:port>');
  });

  it('the API refuses a wildcard listen without advertise, before it creates the data directory', async () => {
    const dir = join(root, 'api');
    const logger = pino({ level: 'silent' });
    await expect(FlotillaNode.start({ nodeId: 1, dir, listen: { host: '0.0.0.0', port: 0 }, peers: {}, logger })).rejects.toMatchObject({ code: 'ADVERTISE_INVALID', message: expect.stringMatching(/^listen 0\.0\.0\.0:0 cannot be advertised/) });
    await expect(FlotillaNode.start({ nodeId: 1, dir, listen: { host: '127.0.0.1', port: 0 }, httpAddress: '0.0.0.0:8101', peers: {}, logger })).rejects.toMatchObject({ code: 'ADVERTISE_INVALID', message: expect.stringMatching(/^HTTP address 0\.0\.0\.0:8101 cannot be advertised/) });
    // The IPv6 wildcard as the IPv4 one.
    await expect(FlotillaNode.start({ nodeId: 1, dir, listen: { host: '::', port: 0 }, peers: {}, logger })).rejects.toMatchObject({ code: 'ADVERTISE_INVALID', message: expect.stringMatching(/^listen \[::\]:0 cannot be advertised/) });
    await expect(FlotillaNode.start({ nodeId: 1, dir, listen: { host: '::1', port: 0 }, advertise: '[::]:7101', peers: {}, logger })).rejects.toMatchObject({ code: 'ADVERTISE_INVALID', message: expect.stringMatching(/^advertise \[::\]:7101 cannot be advertised: \[::\] is a wildcard/) });
    await expect(FlotillaNode.start({ nodeId: 1, dir, listen: { host: '::1', port: 0 }, httpAddress: '[::]:8101', peers: {}, logger })).rejects.toMatchObject({ code: 'ADVERTISE_INVALID', message: expect.stringMatching(/^HTTP address \[::\]:8101 cannot be advertised: \[::\] is a wildcard/) });
    await expect(FlotillaNode.start({ nodeId: 1, dir, listen: { host: '::1', port: 0 }, httpAddress: '::1:8101', peers: {}, logger })).rejects.toMatchObject({ code: 'ADVERTISE_INVALID', message: expect.stringMatching(/^HTTP address ::1:8101 cannot be advertised: "::1:8101" is ambiguous/) });
    expect(existsSync(dir)).toBe(false);
  });
});

interface Started {
  readonly id: number;
  readonly child: ReturnType<typeof spawn>;
  readonly ready: Partial<ReadyLine> & { http: string };
}

/** The last lines each node started here wrote on stderr (its warnings), for failure messages. */
const stderrTails = new Map<string, string[]>();
const STDERR_TAIL_LINES = 30;

/** `flotilla start` with `flags`, resolved with its ready line (killed here if it never prints one). */
async function startNode(id: number, flags: readonly string[]): Promise<Started> {
  const child = spawn(process.execPath, [CLI, 'start', '--id', String(id), ...flags], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  stderrTails.set(`node ${id} (pid ${child.pid})`, tail);
  child.stderr!.on('data', (chunk: Buffer) => {
    tail.push(...chunk.toString().split('\n').filter((l) => l !== ''));
    tail.splice(0, Math.max(0, tail.length - STDERR_TAIL_LINES));
  });
  try {
    return { id, child, ready: await readyLineOf(child, { name: `node ${id}`, timeoutMs: 30_000 }) };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

interface ClusterAnswer {
  nodes: { nodeId: number; transport: string; http: string | null; state: string }[];
  ranges: { rangeId: number; epoch: number; leader: number; replicas: number[] }[];
}

describe('advertised HTTP addresses on loopback: ready line, meta range, /cluster; a restart of both', () => {
  // Made when the suite runs: a suite left out by -t runs no afterAll to remove it.
  let root = '';
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-advertise-'));
  });
  const started: Started[] = [];
  afterAll(async () => {
    for (const s of started) await killed(s);
    rmSync(root, { recursive: true, force: true });
  });

  it('a node prints, records and shows its advertised HTTP address; a joiner learns it; a wildcard join is refused; restarted together they find each other', async () => {
    const [t1, h1, t2, h2] = await freePorts(4);
    // Names that resolve nowhere: what the nodes say can only have come from --advertise-http. The test
    // talks to the bound addresses.
    const advertised = (id: number, port: number) => `node${id}.flotilla.invalid:${port}`;
    const common = ['--cores', '1', '--tick-ms', '50', '--duty-ms', '100', '--log-level', 'warn'];
    const n1 = await startNode(1, ['--dir', join(root, 'n1'), '--listen', `127.0.0.1:${t1}`, '--http', `127.0.0.1:${h1}`, '--advertise-http', advertised(1, h1!), '--ranges', '1', ...common]);
    started.push(n1);
    expect(n1.ready).toEqual({ ready: true, nodeId: 1, pid: n1.child.pid, http: `http://${advertised(1, h1!)}`, transport: `127.0.0.1:${t1}`, listen: { http: `127.0.0.1:${h1}`, transport: `127.0.0.1:${t1}` } });
    const url1 = `http://127.0.0.1:${h1}`;
    const n2 = await startNode(2, ['--dir', join(root, 'n2'), '--listen', `127.0.0.1:${t2}`, '--http', `127.0.0.1:${h2}`, '--advertise-http', advertised(2, h2!), '--join', url1, ...common]);
    started.push(n2);
    expect(n2.ready.http).toBe(`http://${advertised(2, h2!)}`);
    const url2 = `http://127.0.0.1:${h2}`;

    const expected = [
      { nodeId: 1, transport: `127.0.0.1:${t1}`, http: advertised(1, h1!) },
      { nodeId: 2, transport: `127.0.0.1:${t2}`, http: advertised(2, h2!) },
    ];
    // Each learns the other's record from the meta range on a duty tick (100 ms here).
    for (const url of [url1, url2]) {
      const deadline = Date.now() + 20_000;
      let seen: unknown;
      for (;;) {
        const body = (await (await fetch(`${url}/cluster`)).json()) as ClusterAnswer;
        seen = body.nodes.map(({ nodeId, transport, http }) => ({ nodeId, transport, http }));
        if (JSON.stringify(seen) === JSON.stringify(expected)) break;
        if (Date.now() > deadline) throw new Error(`${url}/cluster never named both nodes as advertised; last: ${JSON.stringify(seen)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    // A node of an earlier release could still send a wildcard: the member refuses to record it.
    for (const body of [{ nodeId: 3, address: `0.0.0.0:${t2}` }, { nodeId: 3, address: `127.0.0.1:${t2}`, httpAddress: `0.0.0.0:${h2}` }]) {
      const res = await fetch(`${url1}/cluster/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/cannot be recorded: 0\.0\.0\.0 is a wildcard/) });
    }

    // Restarted together, the founder knows node 2 only from what it last read of the meta range
    // (peers.json): its flags name no peer. Both must hold replicas first, so that neither serves alone —
    // as each sees its own: killed while node 2's new replica still showed epoch 0 (the leader's view
    // already listing it), range 2 came back without a leader for 30 s in 3 of 6 runs (reported, not
    // this test's subject).
    let seenBefore = '';
    await until('every range on both nodes, as each sees its own replicas', async () => {
      const views = await Promise.all([url1, url2].map(async (url) => (await (await fetch(`${url}/cluster`)).json()) as ClusterAnswer));
      seenBefore = JSON.stringify(views.map((v) => v.ranges));
      return views.every((v) => v.ranges.length === 2 && v.ranges.every((r) => r.replicas.length === 2 && r.leader !== 0 && r.epoch > 0));
    }, async () => seenBefore);
    const beforeKill = seenBefore;
    expect(JSON.parse(readFileSync(join(root, 'n1', PEERS_FILE), 'utf8'))).toEqual({ peers: [{ nodeId: 2, address: `127.0.0.1:${t2}` }] });
    for (const s of started.splice(0)) await killed(s);
    started.push(await startNode(1, ['--dir', join(root, 'n1'), '--listen', `127.0.0.1:${t1}`, '--http', `127.0.0.1:${h1}`, '--advertise-http', advertised(1, h1!), ...common]));
    started.push(await startNode(2, ['--dir', join(root, 'n2'), '--listen', `127.0.0.1:${t2}`, '--http', `127.0.0.1:${h2}`, '--advertise-http', advertised(2, h2!), ...common]));
    // 200 or 201: an attempt that timed out here may have written it.
    let last = '';
    await until('a write through node 1 after both restarted', async () => {
      last = 'no answer';
      const res = await fetch(`${url1}/kv/after-restart`, { method: 'PUT', body: 'yes', signal: AbortSignal.timeout(3_000) });
      last = `${res.status} ${await res.text()}`;
      return res.status === 200 || res.status === 201;
    }, async () => `before the kill: ${beforeKill}; last answer: ${last}; node 1's /cluster: ${await (await fetch(`${url1}/cluster`)).text()}; node 2's: ${await (await fetch(`${url2}/cluster`)).text()}`);
    expect(await (await fetch(`${url2}/kv/after-restart`)).text()).toBe('yes');
  });
});

/** Polls `check` every 100 ms until it holds; fails after 30 s (a request that throws counts as not yet), saying what `seen` returns. */
async function until(what: string, check: () => Promise<boolean>, seen: () => Promise<string> = async () => ''): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) {
      const tails = [...stderrTails].map(([name, tail]) => `${name}:\n${tail.join('\n')}`).join('\n');
      throw new Error(`${what}: not within 30 s; ${await seen().catch((err: unknown) => String(err))}\nthe nodes' stderr ended:\n${tails}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function killed(s: Started): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill('SIGKILL');
  await exited;
}

describe('remembered peers (peers.json)', () => {
  // Made when the suite runs: a suite left out by -t runs no afterAll to remove it.
  let root = '';
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-peers-file-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const warnings: string[] = [];
  const log = { warn: (_o: unknown, msg: string) => warnings.push(msg) } as unknown as Parameters<typeof readKnownPeers>[1];

  it('a missing file is no peers; a damaged one is ignored with a warning (the meta range has the members)', () => {
    expect(readKnownPeers(root, log)).toEqual([]);
    for (const text of ['', '{', '{"peers": {}}', '{"peers": [{"nodeId": 0, "address": "a:1"}]}', '{"peers": [{"nodeId": 2, "address": "no port"}]}']) {
      writeFileSync(join(root, PEERS_FILE), text);
      warnings.length = 0;
      expect(readKnownPeers(root, log), text).toEqual([]);
      expect(warnings, text).toEqual(['the remembered peers file is damaged; ignored (the meta range has the members, and the node rewrites it once it reads them)']);
    }
    writeFileSync(join(root, PEERS_FILE), '{"peers": [{"nodeId": 2, "address": "10.0.0.2:7101"}, {"nodeId": 3, "address": "db-3:7101"}]}');
    expect(readKnownPeers(root, log)).toEqual([{ nodeId: 2, address: '10.0.0.2:7101' }, { nodeId: 3, address: 'db-3:7101' }]);
  });
});
