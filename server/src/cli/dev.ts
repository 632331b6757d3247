// `flotilla dev` (what `npm start` runs): a local cluster of `flotilla start` processes on loopback. A node
// that dies is reported with the exact command that restarts it, and the others keep serving — the one
// thing a person trying Flotilla most wants to see. Ctrl-C (SIGINT) or SIGTERM stops every node it started.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LogFormat, LogLevel } from '../logging.js';
import { readyUrl } from '../ready-line.js';
import { CliError, EXIT, UsageError } from './exit-codes.js';
import { shellWord } from './format.js';

/** How long `dev` waits for each node to report ready before giving up. */
const NODE_START_TIMEOUT_MS = 30_000;
/** How long shutdown waits for a node process to exit after SIGTERM before SIGKILL. */
const NODE_STOP_TIMEOUT_MS = 10_000;
/**
 * With --restart, how long after a node's exit it is started again: long enough that the exit is seen in
 * the logs before the restart's lines, and that a node killed twice in a row is not restarted in a loop.
 */
const RESTART_DELAY_MS = 1_000;

export interface DevOptions {
  readonly dir: string;
  readonly nodes: number;
  readonly port: number;
  readonly httpPort: number;
  readonly ranges?: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /** Start a node again (once it was ready) after it exits; off: print the command that does. */
  readonly restart: boolean;
}

/** The command that runs this CLI as the person typed it: `flotilla`, `npx flotilla`, or `node <path of cli.js>`. */
export function selfCommand(cliPath: string, o: { invokedAs: string | undefined; cwd: string }): string[] {
  if (o.invokedAs !== undefined && basename(o.invokedAs) === 'flotilla') {
    // A project's bin (node_modules/.bin) is on PATH only under npm and npx; a global install is on PATH.
    return basename(dirname(o.invokedAs)) === '.bin' && basename(dirname(dirname(o.invokedAs))) === 'node_modules' ? ['npx', 'flotilla'] : ['flotilla'];
  }
  const rel = relative(o.cwd, cliPath);
  return ['node', rel === '' || rel.startsWith('..') || isAbsolute(rel) ? cliPath : rel];
}

/** One node of the dev cluster: the `flotilla start` arguments that (re)start it, and its process while it runs. */
interface DevNode {
  readonly id: number;
  readonly args: readonly string[];
  child: ChildProcess | undefined;
  url: string | undefined;
  restartTimer: NodeJS.Timeout | undefined;
}

export async function dev(o: DevOptions): Promise<number> {
  if (o.port + o.nodes > 65_535) throw new UsageError(`--port ${o.port} leaves no room for ${o.nodes} nodes (ports ${o.port + 1}..${o.port + o.nodes})`, 'dev');
  if (o.httpPort + o.nodes > 65_535) throw new UsageError(`--http-port ${o.httpPort} leaves no room for ${o.nodes} nodes`, 'dev');
  if (Math.abs(o.port - o.httpPort) < o.nodes) throw new UsageError(`--port ${o.port} and --http-port ${o.httpPort} overlap for ${o.nodes} nodes (node N uses port+N and http-port+N)`, 'dev');
  const root = resolve(o.dir);
  mkdirSync(root, { recursive: true });
  const cliPath = fileURLToPath(new URL('../cli.js', import.meta.url));
  const self = selfCommand(cliPath, { invokedAs: process.argv[1], cwd: process.cwd() });
  const ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
  const transport = (id: number) => `127.0.0.1:${o.port + id}`;
  const nodes = new Map<number, DevNode>(
    ids.map((id) => {
      const peers = ids.filter((p) => p !== id).map((p) => `${p}=${transport(p)}`).join(',');
      const args = [
        'start', '--id', String(id), '--dir', join(root, `node-${id}`), '--listen', transport(id), '--http', `127.0.0.1:${o.httpPort + id}`,
        '--log-level', o.logLevel, '--log-format', o.logFormat,
        ...(peers.length > 0 ? ['--peers', peers] : []),
        ...(o.ranges === undefined ? [] : ['--ranges', String(o.ranges)]),
      ];
      return [id, { id, args, child: undefined, url: undefined, restartTimer: undefined }];
    }),
  );
  const restartCommand = (node: DevNode) => [...self, ...node.args].map(shellWord).join(' ');
  let stopping = false;
  // Signals are taken from the start: a Ctrl-C while the nodes start still stops all of them.
  const stopRequested = new Promise<void>((resolveStop) => {
    process.once('SIGINT', () => resolveStop());
    process.once('SIGTERM', () => resolveStop());
  });

  const running = () => [...nodes.values()].filter((n) => n.child !== undefined).length;

  /** Spawns the node; resolves with its URL once ready, rejects if it exits first. After that, its exit is onExit's. */
  const launch = (node: DevNode): Promise<string> => {
    const child = spawn(process.execPath, [cliPath, ...node.args], { stdio: ['ignore', 'pipe', 'inherit'] });
    node.child = child;
    let ready = false;
    child.once('exit', (code, signal) => {
      if (node.child === child) node.child = undefined;
      if (ready && !stopping) onExit(node, child.pid, signal ?? `code ${code}`);
    });
    return readyUrl(child, { name: `node ${node.id}`, timeoutMs: NODE_START_TIMEOUT_MS, onOtherLine: (line) => process.stdout.write(`[node ${node.id}] ${line}\n`) }).then((url) => {
      ready = true;
      node.url = url;
      return url;
    });
  };

  const onExit = (node: DevNode, pid: number | undefined, how: string) => {
    const others = running();
    const keeps = others === 0 ? 'no node of this cluster is running now' : `the cluster keeps serving with the others (${others} of ${o.nodes} running)`;
    console.error(`node ${node.id} (pid ${pid}) exited (${how}); ${keeps}; restart it with:\n  ${restartCommand(node)}`);
    if (!o.restart) return;
    console.error(`restarting node ${node.id} in ${RESTART_DELAY_MS} ms (--restart)`);
    node.restartTimer = setTimeout(() => {
      node.restartTimer = undefined;
      if (stopping) return;
      launch(node).then(
        (url) => console.error(`node ${node.id} is back: ${url} (pid ${node.child?.pid})`),
        (err: unknown) => {
          // Once only: a node that cannot start again is for a person to look at (its log is above).
          if (!stopping) console.error(`node ${node.id} did not come back (${(err as Error).message}); restart it by hand with:\n  ${restartCommand(node)}`);
        },
      );
    }, RESTART_DELAY_MS);
  };

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const node of nodes.values()) clearTimeout(node.restartTimer);
    await Promise.all(
      [...nodes.values()].map(({ child }) => {
        if (child === undefined || child.exitCode !== null || child.signalCode !== null) return undefined;
        return new Promise<void>((done) => {
          const timer = setTimeout(() => child.kill('SIGKILL'), NODE_STOP_TIMEOUT_MS);
          child.once('exit', () => {
            clearTimeout(timer);
            done();
          });
          child.kill('SIGTERM');
        });
      }),
    );
  };

  const started = Promise.all([...nodes.values()].map(launch));
  started.catch(() => undefined); // a failure is handled below, after the race
  const first = await Promise.race([started.then(() => 'started' as const, (err: unknown) => err as Error), stopRequested.then(() => 'stopped' as const)]);
  if (first !== 'started') {
    await stopAll();
    if (first === 'stopped') return EXIT.ok;
    throw new CliError(EXIT.internal, `the dev cluster did not start: ${first.message} (its log is above); every node it started is stopped`);
  }
  const urls = ids.map((id) => nodes.get(id)!.url!);
  const firstUrl = urls[0]!;
  const lastUrl = urls[urls.length - 1]!;
  const cli = self.map(shellWord).join(' ');
  console.log(`Flotilla dev cluster: ${o.nodes} node${o.nodes === 1 ? '' : 's'} on loopback, data under ${root}`);
  for (const id of ids) console.log(`  node ${id}  ${nodes.get(id)!.url}   (pid ${nodes.get(id)!.child?.pid})`);
  console.log(`
Try it:
  curl -X PUT --data-binary 'hello' ${firstUrl}/kv/greeting
  curl ${lastUrl}/kv/greeting
  ${cli} get greeting --url ${lastUrl}
  ${cli} status --url ${firstUrl}
Kill a node (kill <pid>): the others keep serving, and this prints the command that restarts it${o.restart ? ' (--restart: it is restarted after a second)' : ''}.
Ctrl-C stops the cluster (data stays in ${root}).`);
  await stopRequested;
  console.log('stopping the cluster…');
  await stopAll();
  return EXIT.ok;
}
