// The scenario-script runner reads and writes core/testdata. It declares the
// few Node APIs it uses here instead of adding @types/node to the core's test
// program, which also typechecks src/: there, any use of Node must stay an error.
declare module 'node:fs' {
  export function readFileSync(path: string, encoding: 'utf8'): string;
  export function writeFileSync(path: string, data: string): void;
  export function readdirSync(path: string): string[];
  export function existsSync(path: string): boolean;
}

declare module 'node:url' {
  export function fileURLToPath(url: string): string;
}

declare const process: { readonly env: Readonly<Record<string, string | undefined>> };

interface ImportMeta {
  readonly url: string;
}
