// Scenario scripts (data-driven, as etcd-raft's testdata): core/testdata/<name>.txt is run by
// ScriptRunner and its output compared with core/testdata/<name>.out.
// Regenerate the expected outputs with UPDATE_TESTDATA=1 and read the diff.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ScriptRunner } from './script-runner.js';

const here = fileURLToPath(import.meta.url);
const testdata = `${here.slice(0, Math.max(here.lastIndexOf('/'), here.lastIndexOf('\\')) + 1)}../../testdata/`;
const update = process.env['UPDATE_TESTDATA'] === '1';
const scripts = readdirSync(testdata)
  .filter((f) => f.endsWith('.txt'))
  .sort();

describe('scenario scripts (core/testdata)', () => {
  it('there are scripts to run', () => {
    expect(scripts.length).toBeGreaterThan(0);
  });

  it.each(scripts)('%s', (script) => {
    const output = new ScriptRunner().run(readFileSync(`${testdata}${script}`, 'utf8'));
    const expectedPath = `${testdata}${script.replace(/\.txt$/, '.out')}`;
    if (update) {
      writeFileSync(expectedPath, output);
      return;
    }
    if (!existsSync(expectedPath)) throw new Error(`${expectedPath} is missing; run with UPDATE_TESTDATA=1 to create it, then review it`);
    expect(output).toBe(readFileSync(expectedPath, 'utf8'));
  });
});
