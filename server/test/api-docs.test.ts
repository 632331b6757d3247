// The embedding API's reference (`npm run docs`: typedoc over src/embed.ts, configured by typedoc.json)
// builds with no warning: every public name has a doc comment of its own, every type the API mentions
// is exported, every {@link} resolves. typedoc.json turns warnings into errors, so `npm run docs` fails
// as well; this test runs that same command, into a directory of its own rather than docs/api, so CI
// catches an export that lost its comment. Like every server test it needs the other packages' builds
// (typedoc reads their .d.ts), which turbo's test task runs first (turbo.json: test dependsOn build).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const SERVER_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
/** typedoc's CLI, as `npm run docs` runs it (its bin is not among the package's exports, so found from package.json). */
const TYPEDOC_PACKAGE_JSON = createRequire(import.meta.url).resolve('typedoc/package.json');
const TYPEDOC_BIN = join(dirname(TYPEDOC_PACKAGE_JSON), 'bin', 'typedoc');
/** A run takes about 10 s on an idle 2-CPU machine (it type-checks src/embed.ts and what it imports); the rest is room for a busy CI. */
const TYPEDOC_TIMEOUT_MS = 90_000;
const TEST_TIMEOUT_MS = TYPEDOC_TIMEOUT_MS + 10_000;

/** typedoc's exit code and output; a run it did not finish (killed at the timeout, or never started) throws instead. */
async function typedoc(args: readonly string[]): Promise<{ exitCode: number; output: string }> {
  // NO_COLOR: plain "[warning] ..." lines, nothing to strip.
  const options = { cwd: SERVER_DIR, timeout: TYPEDOC_TIMEOUT_MS, env: { ...process.env, NO_COLOR: '1' } };
  try {
    const { stdout, stderr } = await run(process.execPath, [TYPEDOC_BIN, ...args], options);
    return { exitCode: 0, output: stdout + stderr };
  } catch (err) {
    const failed = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw err;
    return { exitCode: failed.code, output: (failed.stdout ?? '') + (failed.stderr ?? '') };
  }
}

describe('the embedding API reference', () => {
  const out = mkdtempSync(join(tmpdir(), 'flotilla-api-docs-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it(
    'builds with no warnings or errors: every public name is documented and exported',
    async () => {
      const { exitCode, output } = await typedoc(['--options', 'typedoc.json', '--out', out]);
      const problems = output.split('\n').filter((line) => /\[(warning|error)\]/.test(line));
      expect({ exitCode, problems }, output).toEqual({ exitCode: 0, problems: [] });
      expect(existsSync(join(out, 'functions', 'open.html')), `typedoc wrote no page for open() into ${out}`).toBe(true);
    },
    TEST_TIMEOUT_MS,
  );
});
