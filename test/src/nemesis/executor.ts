/**
 * Runs a schedule against a live cluster: starts each episode at its time,
 * heals it when it ends, and asks for the admin operations (split, move,
 * leader transfer) on the way. Everything it did and what came of it goes to
 * the event log.
 */
import { SeededRng } from '@flotilla/core';
import type { Cluster } from '../cluster/cluster.js';
import { LINK_OK, type LinkFault } from '../faults/link.js';
import { GATHER_LEADS_BEFORE_MS, describeFault, type AdminAction, type ClockEpisode, type Episode, type Fault, type Link, type Schedule } from './schedule.js';

/** Budget of one admin request (a split waits for its Raft command). */
const ADMIN_REQUEST_TIMEOUT_MS = 10_000;
/** Budget of a status request (/ranges) the nemesis uses to choose a target. */
const STATUS_REQUEST_TIMEOUT_MS = 3_000;
/**
 * A step back leaves the clock node's process at least this far past where
 * its clocks started (FakeClock.processAgeMs): its worker threads start up
 * to a second or two after it, each with its own timer base.
 */
const STEP_BACK_AGE_MARGIN_MS = 5_000;
/** A step back shortened below this is skipped. */
const STEP_BACK_MIN_MS = 500;

export interface NemesisEvent {
  readonly atMs: number;
  readonly what: string;
}

/** What one disk-full episode saw. */
export interface DiskFullReport {
  readonly node: number;
  readonly bytesFilled: number;
  /** When the disk filled and when space returned, on the run's clock. */
  readonly fullAtMs: number;
  readonly freedAtMs: number;
}

/**
 * A stretch of the run's clock in which a node's own deadlines did not run
 * in real time: its timers waited out a clock stepped back, or ran on a slow
 * clock. A request then is not owed an answer within the client's timeout.
 */
export interface ClockExcuse {
  readonly node: number;
  readonly fromMs: number;
  readonly toMs: number;
}

interface RangeInfo {
  rangeId: number;
  start: string | null;
  end: string | null;
  leader: number;
  replicas: number[];
}

const blackhole: LinkFault = { ...LINK_OK, cut: 'blackhole' };

export class Nemesis {
  readonly events: NemesisEvent[] = [];
  readonly diskFull: DiskFullReport[] = [];
  readonly clockExcuses: ClockExcuse[] = [];
  private stopped = false;
  private wakeAll: () => void = () => undefined;
  /** Resolves when stop() begins: sleeping episodes wake to find themselves healed. */
  private readonly stopping = new Promise<void>((resolve) => (this.wakeAll = resolve));
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly running = new Set<Promise<void>>();
  /** Faults applied and not yet healed, with what they are and how to heal each. */
  private readonly open = new Map<Episode | ClockEpisode, { what: string; heal: () => Promise<void> }>();

  constructor(
    private readonly cluster: Cluster,
    private readonly schedule: Schedule,
    private readonly nowMs: () => number,
    /** Keys the workload uses, for split points inside its traffic. */
    private readonly splitKeys: () => Uint8Array[],
  ) {}

  private log(what: string): void {
    this.events.push({ atMs: this.nowMs(), what });
  }

  /** Schedules every episode and admin action at its time on the run's clock. */
  start(): void {
    for (const e of this.schedule.episodes) this.at(e.atMs, () => this.runEpisode(e));
    for (const a of this.schedule.admin) this.at(a.atMs, () => this.runAdmin(a));
    for (const e of this.schedule.clockEpisodes) {
      this.at(e.atMs, () => this.runClockEpisode(e));
      if (e.gatherLeads) this.at(e.atMs - GATHER_LEADS_BEFORE_MS, () => this.gatherLeads());
    }
  }

  /** Makes the clock node leader of every user range it holds a replica of (before a clock change met with a cut). */
  private async gatherLeads(): Promise<void> {
    const node = this.schedule.clockNode!;
    const live = this.cluster.nodeIds.filter((n) => this.cluster.stateOf(n) === 'running');
    const via = live.includes(node) ? node : live[0];
    if (via === undefined) return this.log('gathering leads skipped: no node running');
    const ranges = await this.rangesVia(via);
    if (ranges === undefined) return this.log(`gathering leads skipped: node ${via} did not list its ranges`);
    const moving = ranges.filter((r) => r.rangeId !== 1 && r.leader !== node && r.replicas.includes(node));
    this.log(`gathering on node ${node} the lead of ranges ${moving.map((r) => r.rangeId).join(', ') || '(none: it leads all it holds)'}`);
    await Promise.all(moving.map((r) => this.post(via, `/ranges/${r.rangeId}/transfer-leader`, { to: node })));
  }

  private at(atMs: number, task: () => Promise<void>): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.stopped) return;
      const p = task().catch((err: unknown) => this.log(`nemesis error: ${(err as Error).stack ?? String(err)}`));
      this.running.add(p);
      void p.finally(() => this.running.delete(p));
    }, Math.max(0, atMs - this.nowMs()));
    this.timers.add(timer);
  }

  private async runEpisode(e: Episode): Promise<void> {
    const what = describeFault(e.fault);
    this.log(`start: ${what}`);
    this.open.set(e, { what, heal: await this.apply(e.fault) });
    await this.holdOpen(e);
  }

  /** Waits for the episode's end and heals it, unless stop() healed it first. */
  private async holdOpen(e: Episode | ClockEpisode): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, Math.max(0, e.atMs + e.durationMs - this.nowMs())))), this.stopping]);
    clearTimeout(timer);
    const open = this.open.get(e);
    if (open === undefined) return; // healed by stop()
    this.open.delete(e);
    this.log(`heal: ${open.what}`);
    await open.heal();
  }

  /** A change of the clock node's clock (clock.ts); a rate is set back to the true one at the end, a step stays. */
  private async runClockEpisode(e: ClockEpisode): Promise<void> {
    const clock = this.cluster.clock;
    if (clock === undefined) return this.log('clock fault skipped: no node runs under libfaketime');
    const node = clock.node;
    const change = e.change;
    switch (change.kind) {
      case 'step': {
        if (change.deltaMs >= 0) {
          clock.step(change.deltaMs);
          return this.log(`clock: node ${node}'s clock steps forward ${change.deltaMs} ms (file "${clock.text}")`);
        }
        // A real monotonic clock never goes back at all; one going back past where the process started kills Node itself.
        const ageMs = clock.processAgeMs();
        const backMs = Math.min(-change.deltaMs, ageMs === undefined ? Infinity : Math.floor(ageMs - STEP_BACK_AGE_MARGIN_MS));
        const shortened = backMs < -change.deltaMs ? ` (not ${-change.deltaMs} ms: its process is only ${Math.round(ageMs!)} ms old)` : '';
        if (backMs < STEP_BACK_MIN_MS) return this.log(`clock: step back of node ${node}'s clock skipped: its process is only ${Math.round(ageMs!)} ms old`);
        clock.step(-backMs);
        const startMs = this.nowMs();
        this.clockExcuses.push({ node, fromMs: startMs, toMs: startMs + backMs });
        return this.log(`clock: node ${node}'s clock steps back ${backMs} ms${shortened} (file "${clock.text}")`);
      }
      case 'rate': {
        clock.setRate(change.rate);
        const startMs = this.nowMs();
        this.log(`clock: node ${node}'s clock runs x${change.rate} (file "${clock.text}")`);
        this.open.set(e, {
          what: `node ${node}'s clock at x${change.rate}`,
          heal: async () => {
            clock.setRate(1);
            if (change.rate < 1) this.clockExcuses.push({ node, fromMs: startMs, toMs: this.nowMs() });
            this.log(`clock: node ${node}'s clock runs at the true rate again (file "${clock.text}")`);
          },
        });
        return this.holdOpen(e);
      }
    }
  }

  /** Applies a fault; answers how to heal it. */
  private async apply(f: Fault): Promise<() => Promise<void>> {
    const c = this.cluster;
    const net = c.network;
    const setLinks = (links: readonly Link[], fault: LinkFault) => {
      for (const [a, b] of links) net.setLink(a, b, fault);
      return async () => {
        for (const [a, b] of links) net.setLink(a, b, LINK_OK);
      };
    };
    const others = (node: number) => c.nodeIds.filter((n) => n !== node);
    switch (f.kind) {
      case 'kill':
        await c.kill(f.node);
        return () => this.restart(f.node);
      case 'pause':
        c.pause(f.node);
        return async () => c.resume(f.node);
      case 'isolate':
        return setLinks(others(f.node).flatMap((o): Link[] => [[f.node, o], [o, f.node]]), blackhole);
      case 'partition': {
        const rest = c.nodeIds.filter((n) => !f.minority.includes(n));
        return setLinks(f.minority.flatMap((m) => rest.flatMap((r): Link[] => [[m, r], [r, m]])), blackhole);
      }
      case 'one-way':
        return setLinks(f.to.map((t): Link => [f.from, t]), { ...LINK_OK, cut: f.cut });
      case 'slow':
        return setLinks(f.links, { ...LINK_OK, delayMs: f.delayMs, bytesPerSecMax: f.bytesPerSecMax });
      case 'lossy':
        return setLinks(f.links, { ...LINK_OK, resetChancePerSec: f.resetChancePerSec });
      case 'corrupt':
        return setLinks(f.links, { ...LINK_OK, cut: 'corrupt' });
      case 'alone': {
        const victims = others(f.node);
        await Promise.all(victims.map((v) => c.kill(v)));
        return async () => {
          await Promise.all(victims.map((v) => this.restart(v)));
        };
      }
      case 'disk-full': {
        const disk = c.disk;
        if (disk === undefined) {
          this.log('disk-full skipped: no small disk mounted');
          return async () => undefined;
        }
        const bytesFilled = disk.fill();
        const fullAtMs = this.nowMs();
        this.log(`node ${f.node}'s disk filled (${(bytesFilled / 1024 / 1024).toFixed(1)} MiB written until ENOSPC)`);
        return async () => {
          disk.free();
          this.diskFull.push({ node: f.node, bytesFilled, fullAtMs, freedAtMs: this.nowMs() });
        };
      }
    }
  }

  private async restart(node: number): Promise<void> {
    try {
      await this.cluster.restart(node);
      this.log(`node ${node} restarted`);
    } catch (err) {
      // The cluster recorded the exit; the checks report it.
      this.log(`node ${node} did not restart: ${(err as Error).message}`);
    }
  }

  private async runAdmin(a: AdminAction): Promise<void> {
    const rng = new SeededRng(a.pick);
    const live = this.cluster.nodeIds.filter((n) => this.cluster.stateOf(n) === 'running');
    if (live.length === 0) return this.log(`${a.kind} skipped: no node running`);
    const via = live[rng.intBelow(live.length)]!;
    const ranges = await this.rangesVia(via);
    if (ranges === undefined) return this.log(`${a.kind} skipped: node ${via} did not list its ranges`);
    const user = ranges.filter((r) => r.rangeId !== 1);
    const post = (path: string, body: unknown) => this.post(via, path, body);
    switch (a.kind) {
      case 'split': {
        // A key the workload uses, strictly inside a range: the split lands in the middle of live traffic.
        const candidates = this.splitKeys().flatMap((k) => {
          const hex = Buffer.from(k).toString('hex');
          const r = user.find((x) => x.start !== null && x.start < hex && (x.end === null || hex < x.end));
          return r === undefined ? [] : [{ key: k, range: r }];
        });
        if (candidates.length === 0) return this.log('split skipped: no workload key inside a range this node holds');
        const { key, range } = candidates[rng.intBelow(candidates.length)]!;
        return post(`/ranges/${range.rangeId}/split`, { keyBase64: Buffer.from(key).toString('base64') });
      }
      case 'transfer-leader': {
        const withPeers = user.filter((r) => r.leader !== 0 && r.replicas.length > 1);
        if (withPeers.length === 0) return this.log('transfer-leader skipped: no led range with several replicas');
        const range = withPeers[rng.intBelow(withPeers.length)]!;
        const targets = range.replicas.filter((n) => n !== range.leader);
        return post(`/ranges/${range.rangeId}/transfer-leader`, { to: targets[rng.intBelow(targets.length)]! });
      }
      case 'move': {
        const movable = user.filter((r) => r.replicas.length < this.cluster.nodeIds.length);
        if (movable.length === 0) return this.log('move skipped: every node holds a replica of every range');
        const range = movable[rng.intBelow(movable.length)]!;
        const from = range.replicas[rng.intBelow(range.replicas.length)]!;
        const targets = this.cluster.nodeIds.filter((n) => !range.replicas.includes(n));
        return post(`/ranges/${range.rangeId}/move`, { from, to: targets[rng.intBelow(targets.length)]! });
      }
    }
  }

  private async rangesVia(node: number): Promise<RangeInfo[] | undefined> {
    try {
      const res = await fetch(`${this.cluster.urlOf(node)}/cluster`, { signal: AbortSignal.timeout(STATUS_REQUEST_TIMEOUT_MS) });
      if (!res.ok) return undefined;
      return ((await res.json()) as { ranges: RangeInfo[] }).ranges;
    } catch {
      return undefined;
    }
  }

  private async post(node: number, path: string, body: unknown): Promise<void> {
    const what = `POST ${path} ${JSON.stringify(body)} via node ${node}`;
    try {
      const res = await fetch(`${this.cluster.urlOf(node)}${path}`, {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { 'content-type': 'application/json' },
        signal: AbortSignal.timeout(ADMIN_REQUEST_TIMEOUT_MS),
      });
      this.log(`${what}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    } catch (err) {
      this.log(`${what}: no answer (${(err as Error).name})`);
    }
  }

  /** Cancels what has not started and heals every open fault. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const heals = [...this.open.values()];
    this.open.clear();
    for (const { what, heal } of heals) {
      this.log(`heal at the end: ${what}`);
      await heal();
    }
    this.wakeAll();
    await Promise.all([...this.running]);
  }
}
