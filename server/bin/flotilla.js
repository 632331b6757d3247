#!/usr/bin/env node
// The `flotilla` bin. A file of the repository, not of the build: `npm ci` links bins before anything is
// built and skips a bin whose file is missing, so the bin cannot be dist/cli.js itself (the CLI).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error(`flotilla: ${fileURLToPath(cli)} is missing: build first (in the repository: npm run build)`);
  process.exit(1);
}
await import(cli.href);
