// The packages as a user outside this repository gets them: `npm pack` each publishable package, install
// the tarballs into a fresh project, and run the README's embedding example and the `flotilla` bin there.
// The @flotilla/* dependencies resolve from the tarballs; the rest from the npm cache `npm ci` filled.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The packages a user installs, in dependency order. */
const PACKAGES = ['core', 'transport', 'placement', 'shards', 'server'] as const;
/** Packing is local; installing may fetch what the cache lacks. Both bounded, so a hung npm fails the test. */
const PACK_TIMEOUT_MS = 60_000;
const INSTALL_TIMEOUT_MS = 180_000;
const EXAMPLE_TIMEOUT_MS = 60_000;

/** The README's embedded example: the ts block that imports @flotilla/server. */
function readmeEmbeddingExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!).find((code) => code.includes("from '@flotilla/server'"));
  if (block === undefined) throw new Error('README.md has no ts block importing @flotilla/server');
  return block;
}

/** npm's own settings from the environment of an `npm test` run (workspace, prefix, ...) must not reach the fresh project. */
function npmEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')));
}

describe('the published packages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-pack-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('pack with their builds and not their tests, install into a fresh project, and run the README example and the bin there', async () => {
    const env = npmEnvironment();
    const tarballs: Record<string, string> = {};
    for (const name of PACKAGES) {
      const { stdout } = await run('npm', ['pack', '--pack-destination', dir, '--json'], { cwd: join(ROOT, name), env, timeout: PACK_TIMEOUT_MS });
      const [packed] = JSON.parse(stdout) as { name: string; filename: string; files: { path: string }[] }[];
      const paths = packed!.files.map((f) => f.path);
      expect(paths, name).toContain('dist/index.js');
      expect(paths, name).toContain('package.json');
      expect(paths.filter((p) => p.startsWith('test/') || p.endsWith('.test.ts') || p.endsWith('.tsbuildinfo')), name).toEqual([]);
      // The dashboard is served from src/ui as written (server/src/http/ui-routes.ts).
      if (name === 'server') expect(paths, name).toEqual(expect.arrayContaining(['src/ui/index.html', 'src/ui/dashboard.js', 'src/ui/dashboard.css']));
      tarballs[packed!.name] = packed!.filename;
    }
    expect(Object.keys(tarballs).sort()).toEqual(PACKAGES.map((p) => `@flotilla/${p}`).sort());

    const app = join(dir, 'app');
    mkdirSync(app);
    const dependencies = Object.fromEntries(Object.entries(tarballs).map(([name, file]) => [name, `file:../${file}`]));
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'flotilla-pack-check', private: true, type: 'module', dependencies }, null, 2));
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel', 'error'], { cwd: app, env, timeout: INSTALL_TIMEOUT_MS });

    // The README's code as written; its data directory (./my-data) lands in the project.
    writeFileSync(join(app, 'example.js'), readmeEmbeddingExample());
    const example = await run(process.execPath, ['example.js'], { cwd: app, timeout: EXAMPLE_TIMEOUT_MS });
    expect(example.stdout).toMatch(/version/);

    const version = (JSON.parse(readFileSync(join(ROOT, 'server', 'package.json'), 'utf8')) as { version: string }).version;
    const bin = join(app, 'node_modules', '.bin', 'flotilla');
    expect((await run(bin, ['--version'], { cwd: app, timeout: EXAMPLE_TIMEOUT_MS })).stdout).toBe(`${version}\n`);
    expect((await run(bin, ['--help'], { cwd: app, timeout: EXAMPLE_TIMEOUT_MS })).stdout).toContain('Exit codes:');
  }, PACK_TIMEOUT_MS * PACKAGES.length + INSTALL_TIMEOUT_MS + 3 * EXAMPLE_TIMEOUT_MS);
});
