// A cluster across three hosts, as far as one machine can make them: three network namespaces, each with
// its own interface and address (10.231.X.1..3/24) on a bridge that lives in a fourth namespace, plus a
// veth from the root namespace (10.231.X.254) for the test's own requests. Every node listens on 0.0.0.0
// and advertises its namespace's address, so an address that leaked unadvertised (0.0.0.0, 127.0.0.1)
// would name the wrong host: in another namespace nothing listens there. Node 1 bootstraps, nodes 2 and 3
// join through it; writes and reads go through every node; node 1 is killed with SIGKILL (the others keep
// serving) and restarted; everything reads back through every node; then all three are killed and
// restarted together.
//
// Needs root and iproute2 (`ip netns`), as CI has: without them the test fails and says so (it never
// skips). The namespaces, the bridge and the veths carry this process's pid in their names and are
// deleted by name afterwards, also when a test fails.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readyLineOf, type ReadyLine } from '../src/ready-line.js';
import { CLI } from './support/cli-run.js';

const PID = process.pid;
const NODE_IDS = [1, 2, 3] as const;
const TRANSPORT_PORT = 9651;
const HTTP_PORT = 8651;
/** Every `ip` call answers within milliseconds; this only ends a hung one. */
const IP_TIMEOUT_MS = 10_000;
const READY_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 3_000;
/** Replicas moved onto the joiners, a leader elected after the kill, a restarted node caught up: seconds each here (tick 50 ms, duty 200 ms). */
const CONVERGE_TIMEOUT_MS = 60_000;
const POLL_MS = 200;
const KEYS_PER_NODE = 10;
const RANGE_COUNT = 2;
/** Replicas per range once the driver has moved them onto the joiners (the default replication factor). */
const REPLICATION_FACTOR = 3;

const hubNs = `flotilla-${PID}-hub`;
const nodeNs = (id: number) => `flotilla-${PID}-n${id}`;
/** Interface names are at most 15 bytes: "fl" + a pid of up to 7 digits + 3. */
const rootVeth = `fl${PID}r`;
const hubVeth = (id: number) => `fl${PID}h${id}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `ip args`; throws naming the command and its stderr. */
function ip(...args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', timeout: IP_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Cleanup: runs `ip args` and ignores a failure (the thing may not exist); returns the error text, if any. */
function ipQuiet(...args: string[]): string | undefined {
  try {
    ip(...args);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** What this machine must offer, checked first so that a machine without it fails with the reason. */
function checkPrerequisites(): void {
  if (process.platform !== 'linux') throw new Error(`netns-cluster.test.ts needs Linux network namespaces; this is ${process.platform}`);
  if (process.getuid?.() !== 0) throw new Error(`netns-cluster.test.ts needs root to create network namespaces (uid ${process.getuid?.()}); run it as root, as CI does`);
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore', timeout: IP_TIMEOUT_MS });
  } catch {
    throw new Error("netns-cluster.test.ts needs iproute2's `ip` on the PATH (Debian: apt-get install iproute2)");
  }
}

/** A /24 in 10.231.0.0/16 no address or route of the root namespace uses, starting from this pid's. */
function freeSubnet(): string {
  const used = ip('-o', '-4', 'addr', 'show') + ip('-4', 'route', 'show');
  for (let k = 0; k < 250; k++) {
    const net = `10.231.${(PID + k) % 250}`;
    if (!used.includes(`${net}.`)) return net;
  }
  throw new Error('no free /24 in 10.231.0.0/16 for the test network');
}

/** Deletes everything this test creates, by name; returns what could not be deleted (empty: all gone). */
function removeNetwork(): string[] {
  const left: string[] = [];
  for (const ns of [...NODE_IDS.map(nodeNs), hubNs]) {
    if (!ip('netns', 'list').split('\n').some((line) => line.split(' ')[0] === ns)) continue;
    // Deleting a namespace only unlinks its name: a process still inside would keep it alive. The only
    // processes in these namespaces are the nodes this test started (already killed unless a start hung).
    for (const pid of ip('netns', 'pids', ns).split('\n').filter((l) => l.trim() !== '')) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    const failed = ipQuiet('netns', 'del', ns);
    if (failed !== undefined) left.push(failed);
  }
  // Gone with the hub namespace (its peer end lived there), but namespace teardown is asynchronous.
  if (ip('-o', 'link', 'show').includes(`${rootVeth}@`)) ipQuiet('link', 'del', rootVeth);
  return left;
}

/** The bridge namespace, a namespace per node wired to it, and the root namespace's veth onto it. */
function createNetwork(net: string): void {
  ip('netns', 'add', hubNs);
  ip('-n', hubNs, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', hubNs, 'link', 'set', 'br0', 'up');
  for (const id of NODE_IDS) {
    const ns = nodeNs(id);
    ip('netns', 'add', ns);
    ip('link', 'add', hubVeth(id), 'netns', hubNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('-n', hubNs, 'link', 'set', hubVeth(id), 'master', 'br0', 'up');
    ip('-n', ns, 'addr', 'add', `${net}.${id}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  ip('link', 'add', rootVeth, 'type', 'veth', 'peer', 'name', hubVeth(0), 'netns', hubNs);
  ip('-n', hubNs, 'link', 'set', hubVeth(0), 'master', 'br0', 'up');
  ip('addr', 'add', `${net}.254/24`, 'dev', rootVeth);
  ip('link', 'set', rootVeth, 'up');
}

interface RunningNode {
  readonly id: number;
  readonly child: ChildProcess;
  readonly ready: Partial<ReadyLine> & { http: string };
  /** The last lines the node wrote on stderr, for failure messages. */
  readonly stderrTail: string[];
}

const STDERR_TAIL_LINES = 20;

interface ClusterAnswer {
  nodes: { nodeId: number; transport: string; http: string | null; state: string }[];
  ranges: { rangeId: number; leader: number; replicas: number[] }[];
}

describe('a cluster across three network namespaces (root, ip netns)', () => {
  let net: string | undefined;
  // Made when the suite runs: a suite left out by -t runs no afterAll to remove it.
  let root = '';
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-netns-'));
  });
  const running = new Map<number, RunningNode>();
  const addressOf = (id: number, port: number) => `${net}.${id}:${port}`;
  const urlOf = (id: number) => `http://${addressOf(id, HTTP_PORT)}`;

  afterAll(async () => {
    for (const node of running.values()) await kill(node);
    const left = net === undefined ? [] : removeNetwork();
    if (root !== '') rmSync(root, { recursive: true, force: true });
    if (left.length > 0) throw new Error(`could not remove the test network: ${left.join('; ')}`);
  }, 60_000);

  /** `flotilla start` inside node `id`'s namespace, on 0.0.0.0 and advertising the namespace's address. */
  async function startNode(id: number): Promise<RunningNode> {
    const args = [
      'netns', 'exec', nodeNs(id), process.execPath, CLI, 'start', '--id', String(id), '--dir', join(root, `n${id}`),
      '--listen', `0.0.0.0:${TRANSPORT_PORT}`, '--advertise', addressOf(id, TRANSPORT_PORT),
      '--http', `0.0.0.0:${HTTP_PORT}`, '--advertise-http', addressOf(id, HTTP_PORT),
      // Node 1 founds the cluster alone; the others join through it (a restart reads cluster.json, so the flag is harmless then).
      ...(id === 1 ? ['--ranges', String(RANGE_COUNT)] : ['--join', urlOf(1)]),
      '--cores', '1', '--tick-ms', '50', '--duty-ms', '200', '--down-after-ms', '5000', '--log-level', 'warn',
    ];
    const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const stderrTail: string[] = [];
    child.stderr!.on('data', (chunk: Buffer) => {
      stderrTail.push(...chunk.toString().split('\n').filter((l) => l !== ''));
      stderrTail.splice(0, Math.max(0, stderrTail.length - STDERR_TAIL_LINES));
    });
    try {
      const ready = await readyLineOf(child, { name: `node ${id} (in ${nodeNs(id)})`, timeoutMs: READY_TIMEOUT_MS });
      const node = { id, child, ready, stderrTail };
      running.set(id, node);
      return node;
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      throw new Error(`${(err as Error).message}; its stderr ended: ${stderrTail.join('\n')}`);
    }
  }

  async function kill(node: RunningNode): Promise<void> {
    running.delete(node.id);
    if (node.child.exitCode !== null || node.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => node.child.once('exit', () => resolve()));
    node.child.kill('SIGKILL');
    await Promise.race([exited, sleep(10_000).then(() => Promise.reject(new Error(`node ${node.id} (pid ${node.child.pid}) did not exit within 10 s of SIGKILL`)))]);
  }

  async function request(url: string, init?: RequestInit): Promise<{ status: number; body: string } | { error: string }> {
    try {
      const res = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      return { error: String((err as Error).cause ?? err) };
    }
  }

  /** Polls `check` until it returns a value; the error names what was last seen. */
  async function until<T>(what: string, check: () => Promise<T | undefined>, lastSeen: () => unknown): Promise<T> {
    const deadline = Date.now() + CONVERGE_TIMEOUT_MS;
    for (;;) {
      const value = await check();
      if (value !== undefined) return value;
      if (Date.now() > deadline) {
        const logs = [...running.values()].map((n) => `node ${n.id} stderr:\n${n.stderrTail.join('\n')}`).join('\n');
        throw new Error(`${what}: not within ${CONVERGE_TIMEOUT_MS} ms; last seen ${JSON.stringify(lastSeen())}\n${logs}`);
      }
      await sleep(POLL_MS);
    }
  }

  /** PUT through node `id`, retried while the cluster elects (503); any other answer fails. */
  async function put(id: number, key: string, value: string): Promise<void> {
    let last: unknown;
    await until(`PUT ${key} through node ${id}`, async () => {
      const res = await request(`${urlOf(id)}/kv/${key}`, { method: 'PUT', body: value });
      last = res;
      if ('status' in res && (res.status === 200 || res.status === 201)) return true;
      if ('status' in res && res.status !== 503) throw new Error(`PUT ${key} through node ${id}: ${res.status} ${res.body}`);
      return undefined;
    }, () => last);
  }

  /** A linearizable GET through node `id`, retried while it cannot serve yet (503, a restarted node catching up). */
  async function get(id: number, key: string): Promise<string> {
    let last: unknown;
    return until(`GET ${key} through node ${id}`, async () => {
      const res = await request(`${urlOf(id)}/kv/${key}`);
      last = res;
      if ('status' in res && res.status === 200) return res.body;
      if ('status' in res && res.status !== 503) throw new Error(`GET ${key} through node ${id}: ${res.status} ${res.body}`);
      return undefined;
    }, () => last);
  }

  const written = new Map<string, string>();
  async function writeThrough(ids: readonly number[], tag: string): Promise<void> {
    for (const id of ids) {
      for (let k = 0; k < KEYS_PER_NODE; k++) {
        // Keys across the whole space (ranges split on the first byte), so every range takes writes.
        const key = `${String.fromCharCode(97 + ((id * KEYS_PER_NODE + k) % 26))}-${tag}-n${id}-${k}`;
        const value = `${tag} via node ${id} #${k}`;
        await put(id, key, value);
        written.set(key, value);
      }
    }
  }
  async function readBackThrough(ids: readonly number[]): Promise<void> {
    for (const id of ids) {
      const seen = new Map<string, string>();
      for (const key of written.keys()) seen.set(key, await get(id, key));
      expect(seen, `read through node ${id}`).toEqual(written);
    }
  }

  it('three namespaces on a bridge, each with its own address; the root namespace reaches them', () => {
    checkPrerequisites();
    net = freeSubnet();
    // A run killed before its cleanup (same pid, reused) would leave these names taken.
    removeNetwork();
    createNetwork(net);
    for (const id of NODE_IDS) expect(ip('-n', nodeNs(id), '-o', '-4', 'addr', 'show', 'dev', 'eth0')).toContain(`inet ${net}.${id}/24`);
  });

  it('node 1 founds the cluster on 0.0.0.0 and advertises its own address; nodes 2 and 3 join through it', async () => {
    if (net === undefined) throw new Error('the network was not created (see the first test)');
    for (const id of NODE_IDS) {
      const node = await startNode(id);
      // `ip netns exec` execs the node in place: the pid spawned is the node's, the one SIGKILL must reach.
      expect(node.ready).toEqual({ ready: true, nodeId: id, pid: node.child.pid, http: urlOf(id), transport: addressOf(id, TRANSPORT_PORT), listen: { http: `0.0.0.0:${HTTP_PORT}`, transport: `0.0.0.0:${TRANSPORT_PORT}` } });
    }
    const expectedNodes = NODE_IDS.map((id) => ({ nodeId: id, transport: addressOf(id, TRANSPORT_PORT), http: addressOf(id, HTTP_PORT) }));
    // Every node names every node by its advertised addresses, sees it up, and every range has its replicas.
    for (const id of NODE_IDS) {
      let last: unknown;
      await until(`node ${id}'s /cluster: all three up at their advertised addresses, ${REPLICATION_FACTOR} replicas of every range`, async () => {
        const res = await request(`${urlOf(id)}/cluster`);
        last = res;
        if (!('status' in res) || res.status !== 200) return undefined;
        const cluster = JSON.parse(res.body) as ClusterAnswer;
        last = cluster;
        const named = cluster.nodes.map(({ nodeId, transport, http }) => ({ nodeId, transport, http }));
        const allUp = cluster.nodes.every((n) => n.state !== 'down');
        const ranges = id === 1 ? cluster.ranges.length === RANGE_COUNT + 1 && cluster.ranges.every((r) => r.replicas.length === REPLICATION_FACTOR && r.leader !== 0) : true;
        return JSON.stringify(named) === JSON.stringify(expectedNodes) && allUp && ranges ? true : undefined;
      }, () => last);
    }
  }, 120_000);

  it('writes through every node read back through every node', async () => {
    if (running.size !== NODE_IDS.length) throw new Error('the cluster did not start (see the tests before)');
    await writeThrough(NODE_IDS, 'before');
    await readBackThrough(NODE_IDS);
  }, 120_000);

  it('after SIGKILL of node 1 the others serve; restarted, it reads everything back and takes writes', async () => {
    const first = running.get(1);
    if (first === undefined || running.size !== NODE_IDS.length) throw new Error('the cluster did not start (see the tests before)');
    await kill(first);
    expect(first.child.signalCode).toBe('SIGKILL');
    await writeThrough([2, 3], 'during');
    await readBackThrough([2, 3]);

    const restarted = await startNode(1);
    expect(restarted.ready.pid).toBe(restarted.child.pid);
    expect(restarted.ready.http).toBe(urlOf(1));
    await writeThrough([1], 'after');
    await readBackThrough(NODE_IDS);
  }, 180_000);

  it('all three killed and restarted together find each other again and read everything back', async () => {
    if (running.size !== NODE_IDS.length) throw new Error('the cluster is not running (see the tests before)');
    // Node 1 founded the cluster alone, node 2 joined when node 1 was its only member: only what they
    // last read from the meta range (peers.json) tells them of the others.
    for (const node of [...running.values()]) await kill(node);
    for (const id of NODE_IDS) await startNode(id);
    await readBackThrough(NODE_IDS);
    await writeThrough(NODE_IDS, 'restarted');
    await readBackThrough(NODE_IDS);
  }, 180_000);
});
