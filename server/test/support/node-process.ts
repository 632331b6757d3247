// A `flotilla start` process for tests: spawned with the given flags, resolved once it prints its ready
// line (its HTTP URL), logs on the test's stderr. The caller kills it by its child's pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');

export interface NodeProcess {
  readonly id: number;
  readonly url: string;
  readonly child: ChildProcess;
}

/** Runs `flotilla start --id ID <flags>`; fails if it exits or stays silent for `readyTimeoutMs`. */
export function startNodeProcess(id: number, flags: readonly string[], readyTimeoutMs = 30_000): Promise<NodeProcess> {
  const child = spawn(process.execPath, [CLI, 'start', '--id', String(id), ...flags], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${id} did not start`)), readyTimeoutMs);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /\{"ready":true.*\}/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve({ id, url: (JSON.parse(m[0]) as { http: string }).http, child });
      }
    });
    child.once('exit', (code) => reject(new Error(`node ${id} exited with ${code} before it was ready`)));
  });
}
