// What every benchmark records and prints the same way: the machine it ran
// on, fixed-width tables, number formats, and the results file.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

/** Present when node runs with --expose-gc; benches collect garbage between tasks with it. */
export const gc = (globalThis as { gc?: () => void }).gc;

export function machineInfo() {
  const cpus = os.cpus();
  let gitCommit = 'unknown';
  let gitDirty: boolean | undefined;
  try {
    gitCommit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    gitDirty = execFileSync('git', ['status', '--porcelain'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
  } catch {
    // Not a git checkout (e.g. a packed tarball): the commit stays unknown.
  }
  return {
    nodeVersion: process.version,
    v8Version: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuCount: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuSpeedMhz: cpus[0]?.speed ?? 0,
    memoryBytesTotal: os.totalmem(),
    gcExposed: gc !== undefined,
    gitCommit,
    gitDirty,
  };
}

export const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
export const hex32 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');
export const ratio = (n: number | undefined): string => (n === undefined ? '' : n >= 0.1 ? n.toFixed(2) : n.toFixed(3));
export const loadAverageText = (l: readonly number[]): string => l.map((x) => x.toFixed(2)).join(' ');

/** One line saying what ran the benchmark: cores and model, Node, the load average before it. */
export const machineHeadline = (loadBefore: readonly number[]): string =>
  `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; load average before ${loadAverageText(loadBefore)}`;

/** What a micro benchmark's run notes before its tasks (see startRun). */
export interface RunStart {
  readonly machine: ReturnType<typeof machineInfo>;
  readonly loadAverageBefore: number[];
  readonly startedAt: Date;
  readonly cpuAtStart: NodeJS.CpuUsage;
}

/** Notes the machine, load, time and CPU before a micro benchmark's tasks, and prints its two headline lines. */
export function startRun(title: string): RunStart {
  const machine = machineInfo();
  const loadAverageBefore = os.loadavg();
  const start = { machine, loadAverageBefore, startedAt: new Date(), cpuAtStart: process.cpuUsage() };
  console.log(`${title}: ${machine.cpuCount} × ${machine.cpuModel}, Node ${machine.nodeVersion}, ${machine.platform}`);
  console.log(`load average before: ${loadAverageText(loadAverageBefore)}; gc between tasks: ${machine.gcExposed ? 'yes' : 'no (run with --expose-gc)'}`);
  return start;
}

/**
 * The end of a run begun with startRun: the report's `machine` (with the load before and after and this
 * process's CPU over wall time — below ~100 % it was descheduled, above it other threads helped) and the
 * line to print.
 */
export function finishRun(s: RunStart) {
  const loadAverageAfter = os.loadavg();
  const finishedAt = new Date();
  const cpu = process.cpuUsage(s.cpuAtStart);
  const wallMs = finishedAt.getTime() - s.startedAt.getTime();
  const cpuPercentOfWall = ((cpu.user + cpu.system) / 1_000 / wallMs) * 100;
  return {
    finishedAt,
    machine: { ...s.machine, loadAverageBefore: s.loadAverageBefore, loadAverageAfter, cpuPercentOfWall },
    text: `load average after: ${loadAverageText(loadAverageAfter)}; took ${(wallMs / 1_000).toFixed(1)} s; process CPU ${cpuPercentOfWall.toFixed(0)} % of wall time`,
  };
}

export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** The same table as printTable, as Markdown (first column left-aligned, the rest right-aligned). */
export function markdownTable(headers: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

/** Writes `report` to bench/results/<benchmark>-<timestamp>.json (git-ignored) and returns the path. */
export function writeResults(benchmark: string, startedAt: Date, report: unknown): string {
  const resultsDir = fileURLToPath(new URL('../results/', import.meta.url));
  mkdirSync(resultsDir, { recursive: true });
  const file = `${resultsDir}${benchmark}-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}

/** The command line as run, for the results file. */
export function commandLine(): string {
  return [process.argv0, ...process.execArgv, ...process.argv.slice(1)].join(' ');
}

/** Machine-wide CPU time (from /proc/stat) and this process's own (all its threads, workers included), sampled together. */
export interface CpuSample {
  readonly atMs: number;
  /** Undefined where /proc/stat is unreadable (not Linux). */
  readonly machine: { readonly busyTicks: number; readonly totalTicks: number } | undefined;
  readonly own: NodeJS.CpuUsage;
}

export function sampleCpu(): CpuSample {
  let machine: CpuSample['machine'];
  try {
    // cpu  user nice system idle iowait irq softirq steal ...  (USER_HZ ticks, all cores)
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
    const busyTicks = user + nice + system + irq + softirq + steal;
    machine = { busyTicks, totalTicks: busyTicks + idle + iowait };
  } catch {
    machine = undefined;
  }
  return { atMs: performance.now(), machine, own: process.cpuUsage() };
}

export interface CpuShare {
  /** This process's CPU time over wall time: 100 is one core busy. */
  readonly ownPercentOfWall: number;
  /** Every core's busy time as a share of all cores' time. */
  readonly machineBusyPercent: number | undefined;
  /** What everyone else used, as a share of all cores: the neighbours a load average cannot tell apart from our own threads waiting on the disk. */
  readonly othersBusyPercent: number | undefined;
}

export function cpuShare(from: CpuSample, to: CpuSample): CpuShare {
  const wallMs = Math.max(1e-3, to.atMs - from.atMs);
  const ownMs = (to.own.user - from.own.user + (to.own.system - from.own.system)) / 1_000;
  const ownPercentOfWall = (ownMs / wallMs) * 100;
  if (from.machine === undefined || to.machine === undefined || to.machine.totalTicks === from.machine.totalTicks) {
    return { ownPercentOfWall, machineBusyPercent: undefined, othersBusyPercent: undefined };
  }
  const machineBusyPercent = ((to.machine.busyTicks - from.machine.busyTicks) / (to.machine.totalTicks - from.machine.totalTicks)) * 100;
  const ownPercentOfMachine = ownPercentOfWall / os.cpus().length;
  return { ownPercentOfWall, machineBusyPercent, othersBusyPercent: Math.max(0, machineBusyPercent - ownPercentOfMachine) };
}

export function cpuShareText(c: CpuShare): string {
  const own = `this process ${c.ownPercentOfWall.toFixed(0)} % of one core`;
  if (c.machineBusyPercent === undefined || c.othersBusyPercent === undefined) return own;
  return `${own}; machine busy ${c.machineBusyPercent.toFixed(0)} % of all cores, others ${c.othersBusyPercent.toFixed(0)} %`;
}

/** One progress line under the current section. */
export function progress(name: string, text: string): void {
  console.log(`  ${name}: ${text}`);
}

/** The file system under the temp dir (fsync cost depends on it); undefined where `df` is missing. */
export function fileSystemOf(path: string): string | undefined {
  try {
    const lines = execFileSync('df', ['-PT', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n');
    const [device, type, , , , , mount] = lines[1]!.split(/\s+/);
    return `${type} on ${device} mounted at ${mount}`;
  } catch {
    return undefined;
  }
}

/**
 * A progress bar on stderr when it is a terminal (redrawn in place, at most every 100 ms); nothing
 * otherwise, so logs and CI output stay plain.
 */
export class ProgressBar {
  private readonly enabled = process.stderr.isTTY === true;
  private lastDrawMs = 0;
  private readonly startedMs = performance.now();

  constructor(private readonly total: number) {}

  /** `done` of `total` steps finished, `fraction` of the current one; `label` says what runs. */
  update(done: number, fraction: number, label: string): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.lastDrawMs < 100) return;
    this.lastDrawMs = now;
    const share = Math.min(1, (done + Math.min(1, Math.max(0, fraction))) / Math.max(1, this.total));
    const width = 30;
    const filled = Math.round(share * width);
    const elapsedS = (now - this.startedMs) / 1000;
    const etaS = share > 0.01 ? (elapsedS / share) * (1 - share) : undefined;
    const columns = process.stderr.columns || 100;
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}% ${done}/${this.total}${etaS === undefined ? '' : ` ~${Math.ceil(etaS)} s left`}  ${label}`;
    process.stderr.write(`\r${line.slice(0, columns - 1).padEnd(columns - 1)}`);
  }

  /** Clears the bar (before printing results). */
  done(): void {
    if (this.enabled) process.stderr.write(`\r${' '.repeat((process.stderr.columns || 100) - 1)}\r`);
  }
}

/** CPU time (user + system, every thread) the processes `pids` used so far, in ms; undefined where /proc is unreadable. */
export function processesCpuMs(pids: readonly number[]): number | undefined {
  let ticks = 0;
  try {
    for (const pid of pids) {
      // Fields after the command's closing paren: state is field 3, utime 14, stime 15 (USER_HZ ticks).
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    }
  } catch {
    return undefined;
  }
  return (ticks * 1000) / USER_HZ;
}

/** Linux's USER_HZ: /proc reports CPU times in these ticks on every architecture Node runs on. */
const USER_HZ = 100;
