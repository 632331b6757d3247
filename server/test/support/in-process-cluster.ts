// Three FlotillaNodes in this process over TCP on 127.0.0.1, each of which a test can stop and start
// again on the same directory and port: the shape the quorum-loss tests need (issue 14).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Host, ShellLogger } from '@flotilla/shards';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { FlotillaNode, type NodeOptions } from '../../src/node.js';
import { untilTrue } from './until.js';

export { untilTrue } from './until.js';

export const testLogger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;

export class InProcessCluster {
  /** Running nodes by id; a stopped node's slot is undefined. */
  readonly nodes = new Map<number, FlotillaNode>();

  private constructor(
    private readonly root: string,
    private readonly ports: readonly number[],
    private readonly options: Partial<NodeOptions>,
  ) {}

  /** Starts nodes 1..count, every range on every node (count ≤ 3), and waits until every replica knows its leader. */
  static async start(o: { count: number; prefix: string; options: Partial<NodeOptions> }): Promise<InProcessCluster> {
    const cluster = new InProcessCluster(mkdtempSync(join(tmpdir(), o.prefix)), await freePorts(o.count), o.options);
    try {
      await Promise.all(cluster.ports.map((_, i) => cluster.startNode(i + 1)));
      await untilTrue('every replica knows its leader', 15_000, async () => (await Promise.all([...cluster.nodes.values()].map((n) => n.host.shards()))).flat().every((s) => s.leader > 0));
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  node(id: number): FlotillaNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`node ${id} is not running`);
    return n;
  }

  /** Starts node `id` on its directory and port (a restart when it ran before). */
  async startNode(id: number): Promise<FlotillaNode> {
    if (this.nodes.has(id)) throw new Error(`node ${id} is already running`);
    const ids = this.ports.map((_, i) => i + 1);
    const node = await FlotillaNode.start({
      nodeId: id,
      dir: join(this.root, `n${id}`),
      listen: { host: '127.0.0.1', port: this.ports[id - 1]! },
      peers: Object.fromEntries(ids.filter((j) => j !== id).map((j) => [j, `127.0.0.1:${this.ports[j - 1]}`])),
      initialRangeCount: 4,
      coreCount: 1,
      logger: testLogger,
      ...this.options,
    });
    this.nodes.set(id, node);
    return node;
  }

  /** Stops node `id` (its Host closes: to the others it is gone, as after kill -9, but its data is durable). */
  async stopNode(id: number): Promise<void> {
    const node = this.node(id);
    this.nodes.delete(id);
    await node.close();
  }

  async close(): Promise<void> {
    for (const id of [...this.nodes.keys()]) await this.stopNode(id).catch(() => undefined);
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** How many requests the Host holds waiting for a core's answer or a peer's (Host.pendingCounts). */
export function hostPendingCounts(host: Host): { pending: number; pendingForwards: number } {
  const { requests, forwards } = host.pendingCounts();
  return { pending: requests, pendingForwards: forwards };
}
