// The test side of the power-failure emulator (README.md next to this file): compile the LD_PRELOAD
// shim (powerfail.c) with the machine's C compiler, give a child process the environment that runs it
// under the shim, and after SIGKILL rebuild the watched directory from the durable image.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `strict`: only what was synced survives. `metadata`: also every directory change, data or not (README.md). */
export type PowerFailMode = 'strict' | 'metadata';

export interface PowerFailTools {
  /** The shim, for LD_PRELOAD. */
  readonly libraryPath: string;
  /** fsops.c: one libc call per argument, for the emulator's own tests. */
  readonly fsopsPath: string;
}

export interface DurabilityEvent {
  /** 1-based, counted over the image: the number POWERFAIL_CRASH_AT takes. */
  readonly index: number;
  readonly kind: string;
  readonly path: string;
}

// From test-support/power-failure/ (vitest, tsx) or dist-support/power-failure/ (built): the C sources stay in test-support.
const SOURCE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test-support', 'power-failure');
/** The compilers tried, in order, after $CC. */
const COMPILERS = ['cc', 'gcc', 'clang'];
/** A bounded wait for a SIGKILLed child to be reaped; seconds mean the machine is stuck, not slow. */
const EXIT_AFTER_KILL_TIMEOUT_MS = 10_000;

/**
 * Compiles the shim and fsops into `outDir`. Returns why not when this machine cannot run the emulator
 * (not Linux, no C compiler): the caller skips with that reason. A compiler that fails throws.
 */
export function buildPowerFailTools(outDir: string): PowerFailTools | { readonly unavailable: string } {
  if (process.platform !== 'linux') return { unavailable: `the emulator is an LD_PRELOAD library for Linux; this is ${process.platform}` };
  const candidates = [process.env.CC, ...COMPILERS].filter((c): c is string => c !== undefined && c !== '');
  const compiler = candidates.find((c) => spawnSync(c, ['--version'], { stdio: 'ignore' }).status === 0);
  if (compiler === undefined) return { unavailable: `no C compiler found (tried ${candidates.join(', ')}); install gcc to run the power-failure tests` };
  mkdirSync(outDir, { recursive: true });
  const libraryPath = join(outDir, 'libpowerfail.so');
  const fsopsPath = join(outDir, 'fsops');
  const warnings = ['-O2', '-Wall', '-Wextra', '-Wno-format-truncation'];
  compile(compiler, [...warnings, '-shared', '-fPIC', '-o', libraryPath, join(SOURCE_DIR, 'powerfail.c'), '-ldl', '-lpthread']);
  compile(compiler, [...warnings, '-o', fsopsPath, join(SOURCE_DIR, 'fsops.c')]);
  return { libraryPath, fsopsPath };
}

function compile(compiler: string, args: string[]): void {
  const result = spawnSync(compiler, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${compiler} ${args.join(' ')} failed (status ${result.status}):\n${result.stderr}`);
}

/**
 * One watched directory and its durable image. Every process given `env()` shares the image; after
 * `powerFail` the directory holds exactly what the image held, and the next process starts a new image
 * from it (and sees a new boot id).
 */
export class PowerFailDisk {
  private bootId = randomUUID();

  constructor(
    private readonly o: {
      readonly tools: PowerFailTools;
      /** Must exist; the processes' files go inside it. */
      readonly dir: string;
      /** Outside `dir`; created by the first process. */
      readonly imageDir: string;
      readonly mode: PowerFailMode;
    },
  ) {
    mkdirSync(o.dir, { recursive: true });
  }

  get dir(): string {
    return this.o.dir;
  }

  /** The environment for a child process under the shim; `crashAtEvent` makes it SIGKILL itself at that event. */
  env(options: { crashAtEvent?: number } = {}): NodeJS.ProcessEnv {
    return {
      ...process.env,
      LD_PRELOAD: this.o.tools.libraryPath,
      POWERFAIL_DIR: this.o.dir,
      POWERFAIL_IMAGE: this.o.imageDir,
      POWERFAIL_MODE: this.o.mode,
      POWERFAIL_BOOT_ID: this.bootId,
      POWERFAIL_CRASH_AT: options.crashAtEvent === undefined ? '' : String(options.crashAtEvent),
      // libuv may hand file operations to io_uring, which no libc call interposes.
      UV_USE_IO_URING: '0',
    };
  }

  /** The durability events of the current image so far (empty before any process ran). */
  events(): DurabilityEvent[] {
    const path = join(this.o.imageDir, 'events');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const [index, kind, ...rest] = line.split(' ');
        return { index: Number(index), kind: kind!, path: rest.join(' ') };
      });
  }

  /** The power failure: SIGKILL of every child (those already dead too), then the directory rebuilt from the image. */
  async powerFail(children: readonly ChildProcess[]): Promise<void> {
    await Promise.all(children.map(killAndReap));
    this.restore();
  }

  /** Rebuilds the directory from the image; call only when no process under the shim is alive. */
  restore(): void {
    if (existsSync(join(this.o.imageDir, 'root'))) restoreImage(this.o.imageDir, this.o.dir);
    rmSync(this.o.imageDir, { recursive: true, force: true });
    this.bootId = randomUUID();
  }
}

async function killAndReap(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolveExit, reject) => {
    const timer = setTimeout(() => reject(new Error(`process ${child.pid} still running ${EXIT_AFTER_KILL_TIMEOUT_MS} ms after SIGKILL`)), EXIT_AFTER_KILL_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolveExit();
    });
  });
  child.kill('SIGKILL');
  await exited;
}

/**
 * Replaces the contents of `target` with the image's durable tree (layout: powerfail.c's header): the
 * watched directory's durable entries, recursively; a file gets its durable bytes (none: empty), and a
 * second name of the same file becomes a hard link.
 */
export function restoreImage(imageDir: string, target: string): void {
  const rootId = readFileSync(join(imageDir, 'root'), 'utf8');
  for (const name of readdirSync(target)) rmSync(join(target, name), { recursive: true, force: true });
  const firstPathOf = new Map<string, string>();
  const building = new Set<string>();
  const build = (dirId: string, path: string): void => {
    // A directory renamed without syncing its old parent is listed twice; each copy is built, never a cycle.
    if (building.has(dirId)) return;
    building.add(dirId);
    const listing = join(imageDir, 'dirs', dirId);
    const fields = existsSync(listing) ? readFileSync(listing, 'utf8').split('\0') : [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const [type, value, name] = [fields[i]![0], fields[i]!.slice(1), fields[i + 1]!];
      const entry = join(path, name);
      if (type === 'd') {
        mkdirSync(entry);
        build(value, entry);
      } else if (type === 'f') {
        const first = firstPathOf.get(value);
        if (first !== undefined) {
          linkSync(first, entry);
        } else {
          const data = join(imageDir, 'data', value);
          writeFileSync(entry, existsSync(data) ? readFileSync(data) : Buffer.alloc(0));
          firstPathOf.set(value, entry);
        }
      } else if (type === 'l') {
        symlinkSync(value, entry);
      } else {
        throw new Error(`image ${imageDir}: directory ${dirId} has an entry of unknown type ${JSON.stringify(type)} (${name})`);
      }
    }
    building.delete(dirId);
  };
  build(rootId, target);
}
