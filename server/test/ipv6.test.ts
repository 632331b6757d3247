// IPv6: every address a user gives takes a bracketed IPv6 host ([::1]:7101). The option parsers accept it
// and refuse an unbracketed one as ambiguous; a cluster of `flotilla start` processes on the IPv6 loopback
// bootstraps with --peers, takes a node through --join http://[::1]:PORT, records and shows the IPv6
// addresses, serves a write and a read through every node, and a client command reaches it by --url.
// The refusals of the IPv6 wildcard [::] sit with the IPv4 ones in advertise.test.ts.
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { InvalidArgumentError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { advertiseHostPortText, hostPortOf, hostPortText, nodeUrl, peerList } from '../src/cli/options.js';
import { PEERS_FILE } from '../src/membership.js';
import { runCli } from './support/cli-run.js';
import { killNodeProcess, startNodeProcess, type NodeProcess } from './support/node-process.js';
import { until } from './support/until.js';

describe('option values: IPv6', () => {
  it('HOST:PORT takes an IPv6 host in brackets, its zone too', () => {
    expect(hostPortOf('[::1]:7101')).toEqual({ host: '::1', port: 7101 });
    expect(hostPortOf('[::]:7101')).toEqual({ host: '::', port: 7101 });
    expect(hostPortOf('[fe80::1%eth0]:7101')).toEqual({ host: 'fe80::1%eth0', port: 7101 });
    // Kept as given: what the node records and others dial.
    expect(hostPortText('[2001:db8::7]:7101')).toBe('[2001:db8::7]:7101');
    expect(advertiseHostPortText('[2001:db8::7]:7101')).toBe('[2001:db8::7]:7101');
  });

  it.each([
    ['::1:7101', /^"::1:7101" is ambiguous: an IPv6 address with a port goes in brackets, e\.g\. \[::1\]:7101\.$/],
    ['::1', /^"::1" is an IPv6 address without a port: expected \[IPv6\]:PORT, e\.g\. \[::1\]:7101\.$/],
    ['[::1]', /has no port/],
    ['[::1:7101', /opens a bracket it does not close/],
    ['[10.0.0.1]:7101', /brackets hold an IPv6 address/],
  ])('HOST:PORT %j is a usage error saying how to write it', (text, message) => {
    expect(() => hostPortOf(text)).toThrow(InvalidArgumentError);
    expect(() => hostPortOf(text)).toThrow(message);
  });

  it('--peers takes bracketed IPv6, refuses it unbracketed', () => {
    expect(peerList('2=[::1]:7102,3=[2001:db8::3]:7103')).toEqual({ 2: '[::1]:7102', 3: '[2001:db8::3]:7103' });
    expect(() => peerList('2=::1:7102')).toThrow(/^Node 2 at ::1:7102: "::1:7102" is ambiguous: .* e\.g\. \[::1\]:7102; /);
  });

  it('--url and --join take http://[IPv6]:PORT, or a bare [IPv6]:PORT', () => {
    expect(nodeUrl('http://[::1]:8101')).toBe('http://[::1]:8101');
    expect(nodeUrl('[::1]:8101')).toBe('http://[::1]:8101');
    expect(nodeUrl('http://[2001:DB8::7]:8101/')).toBe('http://[2001:db8::7]:8101');
    expect(() => nodeUrl('::1:8101')).toThrow(/^Expected a node's HTTP address, e\.g\. http:\/\/127\.0\.0\.1:8101 or http:\/\/\[::1\]:8101\. "::1:8101" is ambiguous: .* e\.g\. \[::1\]:8101\.$/);
    expect(() => nodeUrl('http://::1:8101/x')).toThrow(/"::1:8101" is ambiguous/);
    expect(() => nodeUrl('http://[fe80::1%eth0]:8101')).toThrow(/A URL cannot carry an IPv6 zone \(%eth0\)/);
  });
});

/** Whether `port` can be bound on [::1] now; throws, naming what is missing, if the machine has no IPv6 loopback. */
function canBindIpv6Loopback(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE' || err.code === 'EACCES') resolve(false);
      else reject(new Error(`this test needs the IPv6 loopback address ::1 (see \`ip -6 addr show lo\`; a container may have IPv6 turned off): binding [::1]:${port} failed with ${err.code ?? err.message}`));
    });
    server.listen({ host: '::1', port, ipv6Only: true }, () => server.close(() => resolve(true)));
  });
}

/** Tries at choosing ports free on 127.0.0.1 (freePorts) that are free on ::1 too. */
const IPV6_PORT_ATTEMPTS_MAX = 20;

async function freeIpv6Ports(count: number): Promise<number[]> {
  for (let attempt = 0; attempt < IPV6_PORT_ATTEMPTS_MAX; attempt++) {
    const ports = await freePorts(count);
    if ((await Promise.all(ports.map(canBindIpv6Loopback))).every(Boolean)) return ports;
  }
  throw new Error(`no ${count} ports free on both 127.0.0.1 and ::1 after ${IPV6_PORT_ATTEMPTS_MAX} tries`);
}

interface ClusterAnswer {
  nodes: { nodeId: number; transport: string; http: string | null; state: string }[];
}

/** How long the cluster gets for each step (start, learning the members, serving a key): generous on a shared 2-CPU machine. */
const STEP_TIMEOUT_MS = 30_000;

describe('a cluster on the IPv6 loopback', () => {
  // Made when the suite runs: a suite left out by -t runs no afterAll to remove it.
  let root = '';
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-ipv6-'));
  });
  const started: NodeProcess[] = [];
  afterAll(async () => {
    for (const node of started) await killNodeProcess(node);
    if (root !== '') rmSync(root, { recursive: true, force: true });
  });

  it('bootstraps on [::1] with --peers, joins a node through http://[::1]:PORT, and serves a write and a read through every node', async () => {
    const [t1, t2, t3, h1, h2, h3] = await freeIpv6Ports(6);
    const transport = (port: number | undefined) => `[::1]:${port}`;
    const http = (port: number | undefined) => `[::1]:${port}`;
    const common = ['--ranges', '2', '--cores', '1', '--tick-ms', '50', '--duty-ms', '100', '--log-level', 'warn'];
    const node = (id: number, t: number | undefined, h: number | undefined) => ['--dir', join(root, `n${id}`), '--listen', transport(t), '--http', http(h), ...common];
    started.push(await startNodeProcess(1, [...node(1, t1, h1), '--peers', `2=${transport(t2)}`]));
    started.push(await startNodeProcess(2, [...node(2, t2, h2), '--peers', `1=${transport(t1)}`]));
    // The ready line's URL is a URL: the IPv6 host in brackets.
    expect(started.map((n) => n.url)).toEqual([`http://[::1]:${h1}`, `http://[::1]:${h2}`]);
    expect(new URL(started[0]!.url).hostname).toBe('[::1]');
    // A join is recorded in the meta range: wait until it has a leader that both static members recorded themselves with.
    let seenStatic = '';
    await until('node 1 names both static members from the meta range', STEP_TIMEOUT_MS, async () => {
      const body = (await (await fetch(`${started[0]!.url}/cluster`)).json()) as ClusterAnswer;
      seenStatic = JSON.stringify(body.nodes);
      return body.nodes.length === 2 && body.nodes.every((n) => n.http !== null) ? true : undefined;
    }, () => seenStatic);
    started.push(await startNodeProcess(3, [...node(3, t3, h3), '--join', `http://[::1]:${h1}`]));
    expect(started[2]!.url).toBe(`http://[::1]:${h3}`);

    // Every member names every other by its IPv6 addresses, as the meta range records them.
    const expected = [
      { nodeId: 1, transport: transport(t1), http: http(h1) },
      { nodeId: 2, transport: transport(t2), http: http(h2) },
      { nodeId: 3, transport: transport(t3), http: http(h3) },
    ];
    for (const { url } of started) {
      let seen = '';
      await until(`${url}/cluster names all three nodes by their IPv6 addresses`, STEP_TIMEOUT_MS, async () => {
        const body = (await (await fetch(`${url}/cluster`)).json()) as ClusterAnswer;
        seen = JSON.stringify(body.nodes.map(({ nodeId, transport: t, http: h }) => ({ nodeId, transport: t, http: h })));
        return seen === JSON.stringify(expected) ? true : undefined;
      }, () => seen);
    }

    // A write through each node, then every key read (linearizable) through each node.
    for (const { id, url } of started) {
      await until(`a write through node ${id}`, STEP_TIMEOUT_MS, async () => {
        const res = await fetch(`${url}/kv/ipv6-${id}`, { method: 'PUT', body: `from node ${id}`, signal: AbortSignal.timeout(3_000) });
        // 200 or 201: an attempt that timed out here may have written it.
        return res.status === 200 || res.status === 201 ? true : undefined;
      });
    }
    for (const { id, url } of started) {
      for (const written of [1, 2, 3]) {
        const value = await until(`node ${id} reads ipv6-${written}`, STEP_TIMEOUT_MS, async () => {
          const res = await fetch(`${url}/kv/ipv6-${written}`, { signal: AbortSignal.timeout(3_000) });
          return res.status === 200 ? await res.text() : undefined;
        });
        expect(value, `node ${id} reads ipv6-${written}`).toBe(`from node ${written}`);
      }
    }

    // A client command reaches a node by --url http://[::1]:PORT, and by a bare [::1]:PORT.
    const get = await runCli(['get', 'ipv6-1', '--url', `http://[::1]:${h2}`]);
    expect(get, get.stderr).toMatchObject({ code: 0, stdout: 'from node 1\n' });
    const bare = await runCli(['get', 'ipv6-3', '--url', `[::1]:${h3}`]);
    expect(bare, bare.stderr).toMatchObject({ code: 0, stdout: 'from node 3\n' });

    // peers.json keeps the other members' IPv6 addresses for a restart.
    await until('node 1 remembers nodes 2 and 3 in peers.json', STEP_TIMEOUT_MS, () => {
      const text = readFileSync(join(root, 'n1', PEERS_FILE), 'utf8');
      return text.includes(`"nodeId": 3`) ? (JSON.parse(text) as unknown) : undefined;
    });
    expect(JSON.parse(readFileSync(join(root, 'n1', PEERS_FILE), 'utf8'))).toEqual({ peers: [{ nodeId: 2, address: transport(t2) }, { nodeId: 3, address: transport(t3) }] });

    // /cluster/join refuses the IPv6 wildcard as it does 0.0.0.0, and an unbracketed IPv6 address.
    const postJoin = (body: unknown) => fetch(`${started[0]!.url}/cluster/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    for (const [body, message] of [
      [{ nodeId: 9, address: '[::]:7109' }, /node 9's address \[::\]:7109 cannot be recorded: \[::\] is a wildcard/],
      [{ nodeId: 9, address: '[::1]:7109', httpAddress: '[::]:8109' }, /node 9's httpAddress \[::\]:8109 cannot be recorded: \[::\] is a wildcard/],
      [{ nodeId: 9, address: '::1:7109' }, /^body\/address "::1:7109" is ambiguous: an IPv6 address with a port goes in brackets, e\.g\. \[::1\]:7109; /],
      [{ nodeId: 9, address: '[::1]:7109', httpAddress: '[::1]' }, /^body\/httpAddress "\[::1\]" has no port/],
    ] as const) {
      const res = await postJoin(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
    }
  });

  it('a node listening on the IPv6 wildcard [::] advertises the address it is given, in its ready line', async () => {
    const [t, h] = await freeIpv6Ports(2);
    const child = await startNodeProcess(4, ['--dir', join(root, 'n4'), '--listen', `[::]:${t}`, '--advertise', `[::1]:${t}`, '--http', `[::]:${h}`, '--advertise-http', `[::1]:${h}`, '--ranges', '1', '--cores', '1', '--log-level', 'warn']);
    started.push(child);
    expect(child.url).toBe(`http://[::1]:${h}`);
    expect((await fetch(`${child.url}/health`)).status).toBe(200);
  });
});
