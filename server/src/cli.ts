#!/usr/bin/env node
// The `flotilla` command: run a node (`start`), a local cluster (`dev`, what `npm start` runs), talk to a
// running node over HTTP (`put`, `get`, `del`, `scan`, `status`, ...), or run the benchmarks (`bench`).
// `flotilla --help` lists the commands and the exit codes; the commands live in ./cli/.
import { run } from './cli/program.js';

process.exit(await run(process.argv.slice(2)));
