// Runs the built `flotilla` (dist/cli.js) as a user would: a child process, its exit code and output.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');

/** A client command answers within its request timeout (15 s); this only ends a hung run. */
const CLI_RUN_TIMEOUT_MS = 30_000;

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `flotilla <args>`; resolves when it exits, whatever the code (killed past CLI_RUN_TIMEOUT_MS). */
export function runCli(args: readonly string[], o: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliRun> {
  // FLOTILLA_URL from the test's own environment would change every client command's default.
  const env = { ...process.env, FLOTILLA_URL: undefined, ...o.env };
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env, ...(o.cwd === undefined ? {} : { cwd: o.cwd }) });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), CLI_RUN_TIMEOUT_MS);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A stack trace's frame line: a user must never see one for a mistake of theirs. */
export const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;
