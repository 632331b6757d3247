// The demo a person trying Flotilla most wants to see, run as they would: `flotilla dev`, kill one node,
// the cluster keeps serving, restart the node with the command dev printed; Ctrl-C stops the rest. Also
// the admin commands the issue found accepting nonsense: a move onto a node that already holds the range
// (exit 4, the epoch unchanged) and a replication factor past the limit (exit 2, saying why).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePortRun } from '@flotilla/shards/test-support/node-cluster';
import { afterEach, describe, expect, it } from 'vitest';
import { readyUrl } from '../src/ready-line.js';
import { CLI, runCli } from './support/cli-run.js';
import { until } from './support/until.js';

/** Three nodes start and elect leaders in a few seconds; this covers a loaded CI machine. */
const DEV_READY_TIMEOUT_MS = 60_000;
/** After SIGINT the nodes stop within a second or two; dev gives each 10 s before SIGKILL. */
const DEV_STOP_TIMEOUT_MS = 30_000;

interface Dev {
  readonly child: ChildProcess;
  readonly out: () => string;
  readonly err: () => string;
  /** node id → HTTP URL and pid, from the lines dev prints once every node is ready. */
  readonly nodes: Map<number, { url: string; pid: number }>;
}

const started: ChildProcess[] = [];
const nodePids: number[] = [];
const dirs: string[] = [];

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

afterEach(async () => {
  // Whatever a failed test left: dev first (it stops its nodes), then anything still alive, by pid.
  for (const child of started.splice(0).reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), DEV_STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
  for (const pid of nodePids.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function startDev(args: readonly string[], cwd: string): Promise<Dev> {
  const transport = (await freePortRun(3)).base;
  let http = (await freePortRun(3)).base;
  while (Math.abs(http - transport) <= 3) http = (await freePortRun(3)).base;
  const child = spawn(process.execPath, [CLI, 'dev', '--port', String(transport), '--http-port', String(http), '--log-level', 'error', '--log-format', 'json', ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd });
  started.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const readyOrExited = await until('dev reports every node ready', DEV_READY_TIMEOUT_MS, () => (out.includes('Ctrl-C stops the cluster') ? 'ready' : child.exitCode !== null ? 'exited' : undefined), () => ({ out, err }));
  if (readyOrExited === 'exited') throw new Error(`dev exited ${child.exitCode} before it was ready:\n${out}\n${err}`);
  const nodes = new Map<number, { url: string; pid: number }>();
  for (const m of out.matchAll(/^ {2}node (\d+) {2}(http:\/\/\S+) +\(pid (\d+)\)$/gm)) {
    nodes.set(Number(m[1]), { url: m[2]!, pid: Number(m[3]) });
    nodePids.push(Number(m[3]));
  }
  return { child, out: () => out, err: () => err, nodes };
}

/** Sends SIGINT (what Ctrl-C sends) and resolves with dev's exit code. */
async function interrupt(dev: Dev): Promise<number | null> {
  const exited = new Promise<number | null>((r) => dev.child.once('exit', (code) => r(code)));
  dev.child.kill('SIGINT');
  return exited;
}

describe('flotilla dev', () => {
  it('keeps serving when a node is killed, prints the command that restarts it, and Ctrl-C stops every node it started', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-dev-'));
    dirs.push(dir);
    const dev = await startDev(['--dir', join(dir, 'data'), '--ranges', '2'], dir);
    expect([...dev.nodes.keys()]).toEqual([1, 2, 3]);
    const url = (id: number) => dev.nodes.get(id)!.url;

    expect((await runCli(['put', 'greeting', 'hello', '--url', url(1)])).code).toBe(0);

    // Every range is on all three nodes: a move onto node 3 is refused before it starts, and changes nothing.
    const epochOf2 = async () => (JSON.parse((await runCli(['ranges', '-o', 'json', '--url', url(1)])).stdout) as { ranges: { rangeId: number; epoch: number }[] }).ranges.find((r) => r.rangeId === 2)!.epoch;
    const epochBefore = await epochOf2();
    // Right after the start the placement driver may not have heard from every node yet: unavailable (5), as
    // a script would see it, and retried.
    let move = await runCli(['move', '2', '1', '3', '--url', url(1)]);
    for (let attempt = 0; move.code === 5 && attempt < 50; attempt++) {
      await new Promise((r) => setTimeout(r, 200));
      move = await runCli(['move', '2', '1', '3', '--url', url(1)]);
    }
    expect(move.code, move.stderr).toBe(4);
    expect(move.stderr).toContain('node 3 already holds a replica of range 2 (its replicas are on nodes 1, 2, 3)');
    const moveOffNonHolder = await runCli(['move', '2', '4', '1', '--url', url(1)]);
    expect(moveOffNonHolder.code, moveOffNonHolder.stderr).toBe(4);
    expect(moveOffNonHolder.stderr).toContain('node 4 holds no replica of range 2');
    expect(await epochOf2()).toBe(epochBefore);

    const factor = await runCli(['replication-factor', '9', '--url', url(1)]);
    expect(factor.code).toBe(2);
    expect(factor.stderr).toContain('9 is not a replication factor: an integer in [1, 7]');
    expect(factor.stderr).not.toContain('must be JSON');

    // Kill node 2 as a person would (kill -9 <pid>): dev says so, names the restart, and keeps running.
    const killed = dev.nodes.get(2)!;
    process.kill(killed.pid, 'SIGKILL');
    const exitLine = `node 2 (pid ${killed.pid}) exited (SIGKILL); the cluster keeps serving with the others (2 of 3 running); restart it with:\n  `;
    await until('dev reports the exit', 10_000, () => (dev.err().includes(exitLine) ? true : undefined), () => dev.err());
    const restart = dev.err().slice(dev.err().indexOf(exitLine) + exitLine.length).split('\n')[0]!;
    expect(restart).toMatch(/ start --id 2 --dir \S+node-2 --listen 127\.0\.0\.1:\d+ --http 127\.0\.0\.1:\d+ /);
    expect(dev.child.exitCode).toBeNull();

    // The other two still serve reads and writes (a range led by node 2 elects another leader first).
    // As a user would: a put sent to the dead leader before its followers noticed may time out with its
    // outcome unknown (exit 5); it is tried again, at most five times.
    let put = await runCli(['put', 'after', 'kill', '--url', url(1)]);
    for (let i = 0; i < 5 && put.code === 5; i++) put = await runCli(['put', 'after', 'kill', '--url', url(1)]);
    expect(put.code, put.stderr).toBe(0);
    expect(await runCli(['get', 'after', '--url', url(3)])).toMatchObject({ code: 0, stdout: 'kill\n' });
    expect(await runCli(['get', 'greeting', '--url', url(3)])).toMatchObject({ code: 0, stdout: 'hello\n' });

    // The printed command, run as printed from the same directory, brings node 2 back with its data.
    const node2 = spawn('sh', ['-c', `exec ${restart}`], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
    started.push(node2);
    expect(await readyUrl(node2, { name: 'node 2 (restarted)', timeoutMs: DEV_READY_TIMEOUT_MS })).toBe(url(2));
    // Back in the cluster, it serves once it has heard from the others (until then: unavailable, exit 5).
    const afterRestart = await until('node 2 serves a read', 30_000, async () => {
      const get = await runCli(['get', 'after', '--url', url(2)]);
      if (get.code !== 0 && get.code !== 5) throw new Error(`get through node 2: exit ${get.code}: ${get.stderr}`);
      return get.code === 0 ? get : undefined;
    });
    expect(afterRestart.stdout).toBe('kill\n');

    // Ctrl-C stops the nodes dev started (1 and 3); the one restarted by hand is the shell's to stop.
    expect(await interrupt(dev)).toBe(0);
    for (const id of [1, 3]) await until(`node ${id} stopped`, 10_000, () => (alive(dev.nodes.get(id)!.pid) ? undefined : true));
    expect(node2.exitCode).toBeNull();
  }, 180_000);

  it('--restart starts a node that exits again by itself', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-dev-'));
    dirs.push(dir);
    const dev = await startDev(['--dir', join(dir, 'data'), '--nodes', '1', '--ranges', '1', '--restart'], dir);
    const node = dev.nodes.get(1)!;
    expect((await runCli(['put', 'k', 'v', '--url', node.url])).code).toBe(0);
    process.kill(node.pid, 'SIGKILL');
    const back = await until('node 1 is back', DEV_READY_TIMEOUT_MS, () => /^node 1 is back: (\S+) \(pid (\d+)\)$/m.exec(dev.err()) ?? undefined, () => dev.err());
    nodePids.push(Number(back[2]));
    expect(back[1]).toBe(node.url);
    expect(await runCli(['get', 'k', '--url', node.url])).toMatchObject({ code: 0, stdout: 'v\n' });
    expect(await interrupt(dev)).toBe(0);
    await until('the restarted node stopped', 10_000, () => (alive(Number(back[2])) ? undefined : true));
  }, 120_000);
});
