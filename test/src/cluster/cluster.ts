/**
 * A cluster of `flotilla start` processes on 127.0.0.1 whose node-to-node
 * traffic goes through the fault proxy: each node listens on its own port,
 * advertises its proxy's, and is given its peers' proxies. The cluster kills,
 * pauses and restarts processes for the nemesis, remembers which exits it
 * caused, and samples every process's resident memory. One node may run
 * under libfaketime (the clock fault), every process it runs as.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readyUrl } from '@flotilla/server';
import { FaultNetwork } from '../faults/proxy.js';
import type { FakeClock } from '../nemesis/clock.js';
import { freePorts } from './ports.js';
import { Tmpfs } from './tmpfs.js';

/** How long a node may take to print its ready line (a restart replays its log first). */
const NODE_READY_TIMEOUT_MS = 60_000;
/** How often resident memory is sampled. */
const RSS_SAMPLE_INTERVAL_MS = 1_000;
/** Log lines of a node shown with an unexpected exit. */
const LOG_TAIL_LINES = 30;

export interface ClusterOptions {
  readonly nodeCount: number;
  /** Run directory: node data (`n<id>/`), node logs (`n<id>.log`). */
  readonly dir: string;
  readonly rangeCount: number;
  readonly tickMs: number;
  readonly dutyMs: number;
  readonly downAfterMs: number;
  readonly logLevel: string;
  /** Uniform in [0, 1), for the proxies' lossy links. */
  readonly random: () => number;
  /** The run's clock, ms: exit times are on it. */
  readonly nowMs: () => number;
  /** This node's data directory goes on a tmpfs of this size (the disk-full fault). */
  readonly smallDisk?: { readonly nodeId: number; readonly sizeBytes: number; readonly name: string };
  /** This node's processes run under libfaketime, reading their time from this clock's file (the clock fault). */
  readonly clock?: FakeClock;
}

export interface ExitRecord {
  readonly nodeId: number;
  readonly pid: number;
  readonly atMs: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The nemesis sent the signal that ended it. */
  readonly expected: boolean;
  readonly logTail: string;
}

export type NodeState = 'running' | 'paused' | 'stopped';

interface NodeSlot {
  readonly id: number;
  readonly dir: string;
  readonly logPath: string;
  readonly httpPort: number;
  readonly listenPort: number;
  child: ChildProcess | undefined;
  state: NodeState;
  /** Set just before the nemesis signals the process, so its exit is not a death. */
  expectingExit: boolean;
  rssBytesMax: number;
  rssSamples: number;
}

/** The path of `flotilla`'s entry point in the built server package. */
export function flotillaCliPath(): string {
  const serverMain = fileURLToPath(import.meta.resolve('@flotilla/server'));
  const cli = join(dirname(serverMain), 'cli.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npx turbo run build)`);
  return cli;
}

/** A node's process changed state (run clock). */
export interface StateChange {
  readonly nodeId: number;
  readonly atMs: number;
  readonly state: NodeState;
}

export class Cluster {
  readonly exits: ExitRecord[] = [];
  /** The faked clock of one node, if the run has clock faults. */
  readonly clock: FakeClock | undefined;
  readonly stateChanges: StateChange[] = [];
  private readonly slots = new Map<number, NodeSlot>();
  private readonly rssTimer: NodeJS.Timeout;
  private readonly cli = flotillaCliPath();
  private stopped = false;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly o: ClusterOptions,
    readonly network: FaultNetwork,
    readonly disk: Tmpfs | undefined,
    slots: readonly NodeSlot[],
  ) {
    this.clock = o.clock;
    for (const s of slots) this.slots.set(s.id, s);
    this.rssTimer = setInterval(() => this.sampleRss(), RSS_SAMPLE_INTERVAL_MS);
    this.rssTimer.unref();
  }

  static async start(o: ClusterOptions): Promise<Cluster> {
    const ids = Array.from({ length: o.nodeCount }, (_, i) => i + 1);
    const ports = await freePorts(2 * o.nodeCount);
    let disk: Tmpfs | undefined;
    if (o.smallDisk !== undefined) disk = Tmpfs.mount({ name: o.smallDisk.name, mountPoint: join(o.dir, `n${o.smallDisk.nodeId}-disk`), sizeBytes: o.smallDisk.sizeBytes });
    const slots: NodeSlot[] = ids.map((id) => ({
      id,
      dir: disk !== undefined && o.smallDisk?.nodeId === id ? join(disk.mountPoint, 'data') : join(o.dir, `n${id}`),
      logPath: join(o.dir, `n${id}.log`),
      listenPort: ports[2 * (id - 1)]!,
      httpPort: ports[2 * (id - 1) + 1]!,
      child: undefined,
      state: 'stopped',
      expectingExit: false,
      rssBytesMax: 0,
      rssSamples: 0,
    }));
    let network: FaultNetwork;
    try {
      network = await FaultNetwork.start({ targets: new Map(slots.map((s) => [s.id, { host: '127.0.0.1', port: s.listenPort }])), random: o.random });
    } catch (err) {
      disk?.unmount();
      throw err;
    }
    const cluster = new Cluster(o, network, disk, slots);
    try {
      await Promise.all(ids.map((id) => cluster.spawn(id)));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get nodeIds(): number[] {
    return [...this.slots.keys()];
  }

  urlOf(id: number): string {
    return `http://127.0.0.1:${this.slot(id).httpPort}`;
  }

  stateOf(id: number): NodeState {
    return this.slot(id).state;
  }

  pidOf(id: number): number | undefined {
    return this.slot(id).child?.pid;
  }

  /** Highest resident set size seen per node, bytes. */
  rssMax(): Map<number, number> {
    return new Map([...this.slots.values()].map((s) => [s.id, s.rssBytesMax]));
  }

  private slot(id: number): NodeSlot {
    const s = this.slots.get(id);
    if (s === undefined) throw new RangeError(`no node ${id} in this cluster`);
    return s;
  }

  private nowMs(): number {
    return this.o.nowMs();
  }

  private setState(s: NodeSlot, state: NodeState): void {
    s.state = state;
    this.stateChanges.push({ nodeId: s.id, atMs: this.nowMs(), state });
  }

  /** Whether the node's process ran unpaused for the whole of [fromMs, toMs] (run clock). */
  runningThroughout(id: number, fromMs: number, toMs: number): boolean {
    let state: NodeState = 'stopped';
    for (const c of this.stateChanges) {
      if (c.nodeId !== id) continue;
      if (c.atMs <= fromMs) state = c.state;
      else if (c.atMs <= toMs && c.state !== 'running') return false;
    }
    return state === 'running';
  }

  private async spawn(id: number): Promise<void> {
    if (this.stopped) throw new Error(`node ${id} not started: the cluster is stopping`);
    const s = this.slot(id);
    mkdirSync(s.dir, { recursive: true });
    const peers = this.nodeIds.filter((p) => p !== id).map((p) => `${p}=${this.network.addressOf(p)}`).join(',');
    const args = [
      this.cli, 'start', '--id', String(id), '--dir', s.dir,
      '--listen', `127.0.0.1:${s.listenPort}`, '--advertise', this.network.addressOf(id), '--http', `127.0.0.1:${s.httpPort}`,
      '--peers', peers, '--ranges', String(this.o.rangeCount), '--cores', '1',
      '--tick-ms', String(this.o.tickMs), '--duty-ms', String(this.o.dutyMs), '--down-after-ms', String(this.o.downAfterMs),
      '--log-level', this.o.logLevel,
    ];
    const logFd = openSync(s.logPath, 'a');
    const clock = this.clock?.node === id ? this.clock : undefined;
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', logFd], ...(clock === undefined ? {} : { env: { ...process.env, ...clock.env() } }) });
    } finally {
      closeSync(logFd);
    }
    clock?.processStarted();
    s.child = child;
    this.setState(s, 'running');
    s.expectingExit = false;
    const pid = child.pid ?? -1;
    child.once('exit', (code, signal) => {
      this.exits.push({ nodeId: id, pid, atMs: this.nowMs(), code, signal, expected: s.expectingExit, logTail: this.logTail(id) });
      if (s.child === child) {
        s.child = undefined;
        clock?.processStopped();
        this.setState(s, 'stopped');
      }
    });
    await readyUrl(child, { name: `node ${id}`, timeoutMs: NODE_READY_TIMEOUT_MS });
  }

  /** The last lines of a node's log (stderr of every process it ran as). */
  logTail(id: number, lines = LOG_TAIL_LINES): string {
    try {
      return readFileSync(this.slot(id).logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** kill -9. Resolves once the process is gone. */
  async kill(id: number): Promise<void> {
    const s = this.slot(id);
    const child = s.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    s.expectingExit = true;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await gone;
  }

  /** Starts a stopped node again (same directory, same ports). */
  async restart(id: number): Promise<void> {
    if (this.slot(id).state !== 'stopped') return;
    await this.spawn(id);
  }

  pause(id: number): void {
    const s = this.slot(id);
    if (s.state !== 'running' || s.child === undefined) return;
    s.child.kill('SIGSTOP');
    this.setState(s, 'paused');
  }

  resume(id: number): void {
    const s = this.slot(id);
    if (s.state !== 'paused' || s.child === undefined) return;
    s.child.kill('SIGCONT');
    this.setState(s, 'running');
  }

  private sampleRss(): void {
    for (const s of this.slots.values()) {
      const pid = s.child?.pid;
      if (pid === undefined || s.state === 'stopped') continue;
      try {
        const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (m === null) continue;
        s.rssBytesMax = Math.max(s.rssBytesMax, Number(m[1]) * 1024);
        s.rssSamples++;
      } catch {
        // exited between the check and the read
      }
    }
  }

  /** Kills every process (SIGKILL ends paused ones too), closes the proxies, unmounts the small disk. Every call answers the same promise. */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.stopped = true;
    clearInterval(this.rssTimer);
    await Promise.all(this.nodeIds.map((id) => this.kill(id)));
    await this.network.close();
    if (this.disk !== undefined) {
      try {
        this.disk.unmount();
      } catch {
        // already gone; nothing else to do at teardown
      }
    }
  }
}
