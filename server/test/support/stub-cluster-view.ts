// A ClusterView that answers at once and records what it was asked: serves every admin route
// (consistency check included) without a cluster, for tests of the HTTP layer itself.
import type { ClusterView, MetricsExposition, Readiness } from '../../src/http/admin-routes.js';

export class StubClusterView implements ClusterView {
  /** Each call as [method, ...arguments], Deadlines left out. */
  readonly calls: unknown[][] = [];
  readiness: Readiness = { ready: true, reasons: [] };

  async cluster(): Promise<unknown> {
    return this.record('cluster');
  }
  async ranges(): Promise<unknown> {
    return this.record('ranges');
  }
  async metrics(): Promise<MetricsExposition> {
    this.calls.push(['metrics']);
    return { contentType: 'text/plain; version=0.0.4; charset=utf-8', text: 'flotilla_stub 1\n' };
  }
  async ready(): Promise<Readiness> {
    this.calls.push(['ready']);
    return this.readiness;
  }
  async split(rangeId: number, key: Uint8Array): Promise<unknown> {
    return this.record('split', rangeId, Buffer.from(key).toString('hex'));
  }
  async join(node: { nodeId: number; address: string; httpAddress: string | null }): Promise<unknown> {
    return this.record('join', node);
  }
  async placement(options?: { readonly ranges?: boolean }): Promise<unknown> {
    return this.record('placement', options);
  }
  async placementSettings(change: { paused?: boolean; replicationFactor?: number }): Promise<unknown> {
    return this.record('placementSettings', change);
  }
  async nodeState(nodeId: number, state: 'up' | 'decommissioning'): Promise<unknown> {
    return this.record('nodeState', nodeId, state);
  }
  async operator(op: { kind: 'moveReplica'; rangeId: number; from: number; to: number } | { kind: 'transferLeader'; rangeId: number; to: number }): Promise<unknown> {
    return this.record('operator', op);
  }
  async consistencyCheck(rangeId: number): Promise<unknown> {
    return this.record('consistencyCheck', rangeId);
  }

  /** Records the call and answers with it, so a test sees what the handler passed on. */
  private record(method: string, ...args: unknown[]): { call: unknown[] } {
    const call = [method, ...args];
    this.calls.push(call);
    return { call };
  }
}
