// The dashboard in a real headless Chromium (Debian's chromium package, driven by playwright-core,
// which downloads no browser) against three `flotilla start` processes: the page served by node 1
// shows the three nodes up and every range with a leader, its writes/s rises under writes through
// node 1; then node 1 is killed with SIGKILL and the page moves to another node's /ui and shows
// node 1 down there.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { killNodeProcess, startNodeProcess, type NodeProcess } from './support/node-process.js';
import { until } from './support/until.js';

/** Debian's package puts it here; CI installs it (.ci/run). */
const CHROMIUM = '/usr/bin/chromium';
const RANGE_COUNT = 8;
/** The driver calls a silent node down after this (suspect at a sixth): short, so the test sees it soon. */
const DOWN_AFTER_MS = 3_000;
/** Each phase's bound: nodes start and elect in a few seconds, the driver calls a node down in DOWN_AFTER_MS. */
const PHASE_TIMEOUT_MS = 30_000;
/** Writes through node 1 until the page shows them, at most this many. */
const WRITES_MAX = 2_000;

interface PageView {
  readonly url: string;
  readonly source: string | undefined;
  readonly banners: string[];
  readonly nodes: { id: number; state: string; heard: string }[];
  readonly ranges: { id: number; leader: string }[];
  readonly writesPerSec: string | undefined;
  readonly readsPerSec: string | undefined;
  readonly writeP99Ms: string | undefined;
}

/**
 * Reads the page's DOM, in the page: JavaScript source rather than a function, since this file is
 * compiled for Node, without the DOM's types.
 */
const READ_PAGE = `(() => {
  const text = (e) => (e === null ? '' : e.textContent);
  const value = (id) => document.getElementById(id)?.dataset.value;
  return {
    source: document.getElementById('source')?.dataset.nodeId,
    banners: [...document.querySelectorAll('#banners .banner')].map((b) => text(b)),
    nodes: [...document.querySelectorAll('#nodes tbody tr')].map((tr) => ({
      id: Number(tr.dataset.nodeId),
      state: text(tr.querySelector('[data-col=state]')),
      heard: text(tr.querySelector('[data-col=heard]')),
    })),
    ranges: [...document.querySelectorAll('#ranges tbody tr')].map((tr) => ({ id: Number(tr.dataset.rangeId), leader: text(tr.querySelector('[data-col=leader]')) })),
    writesPerSec: value('writes-rate'),
    readsPerSec: value('reads-rate'),
    writeP99Ms: value('write-p99'),
  };
})()`;

/** What the page shows now (throws while it navigates; the waits retry). */
async function viewOf(page: Page): Promise<PageView> {
  const dom = (await page.evaluate(READ_PAGE)) as Omit<PageView, 'url'>;
  return { url: page.url(), ...dom };
}

describe('the dashboard in headless Chromium', () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-ui-'));
  const nodes: NodeProcess[] = [];
  let browser: Browser | undefined;
  afterAll(async () => {
    await browser?.close();
    for (const n of nodes) await killNodeProcess(n);
    rmSync(root, { recursive: true, force: true });
  });

  it('shows 3 nodes up, every range led, writes/s under load; after kill -9 of its node, moves to another and shows that node down', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: this test drives Debian's chromium package; install it with apt-get install chromium`);
    const transport = await freePorts(3);
    const http = await freePorts(3);
    const peersOf = (id: number) => [1, 2, 3].filter((j) => j !== id).map((j) => `${j}=127.0.0.1:${transport[j - 1]}`).join(',');
    const started = await Promise.allSettled(
      [1, 2, 3].map((id) =>
        startNodeProcess(id, [
          '--dir', join(root, `n${id}`), '--listen', `127.0.0.1:${transport[id - 1]}`, '--http', `127.0.0.1:${http[id - 1]}`, '--peers', peersOf(id),
          '--ranges', String(RANGE_COUNT), '--tick-ms', '20', '--cores', '1', '--duty-ms', '200', '--down-after-ms', String(DOWN_AFTER_MS), '--log-level', 'error',
        ]),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    const [node1] = nodes as [NodeProcess, NodeProcess, NodeProcess];

    browser = await chromium.launch({ executablePath: CHROMIUM });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${node1.url}/ui`);
    let last: PageView | undefined;
    const look = async () => (last = await viewOf(page));

    // The three nodes up, as the placement driver and node 1 see them; every range (the meta range too) with a leader.
    await until('the page shows 3 nodes up and every range led', PHASE_TIMEOUT_MS, async () => {
      const v = await look();
      const nodesUp = v.nodes.length === 3 && v.nodes.every((n) => n.state === 'up' && (n.heard === 'up' || n.heard === 'self'));
      const rangesLed = v.ranges.length === RANGE_COUNT + 1 && v.ranges.every((r) => /^[123]$/.test(r.leader));
      return v.source === '1' && nodesUp && rangesLed ? v : undefined;
    }, () => last);

    // Writes and reads through node 1, ten of each per look, until its metrics as the page computes them show them.
    const sent = { writes: 0, writesOk: 0, readsOk: 0 };
    await until('the page shows writes/s and reads/s > 0 and a write p99', PHASE_TIMEOUT_MS, async () => {
      for (let i = 0; i < 10 && sent.writes < WRITES_MAX; i++, sent.writes++) {
        const url = `${node1.url}/kv/ui-test%2F${sent.writes % 100}`;
        if ((await fetch(url, { method: 'PUT', body: `v${sent.writes}`, signal: AbortSignal.timeout(5_000) })).ok) sent.writesOk++;
        if ((await fetch(url, { signal: AbortSignal.timeout(5_000) })).ok) sent.readsOk++;
      }
      const v = await look();
      return Number(v.writesPerSec) > 0 && Number(v.readsPerSec) > 0 && Number(v.writeP99Ms) > 0 ? v : undefined;
    }, () => ({ sent, last }));

    await killNodeProcess(node1);
    const moved = await until('the page moves to node 2 or 3 and shows node 1 down', PHASE_TIMEOUT_MS, async () => {
      const v = await look();
      const n1 = v.nodes.find((n) => n.id === 1);
      const elsewhere = (v.source === '2' || v.source === '3') && (v.url.startsWith(`${nodes[1]!.url}/ui`) || v.url.startsWith(`${nodes[2]!.url}/ui`));
      return elsewhere && n1?.state === 'down' && n1.heard === 'down' ? v : undefined;
    }, () => last);
    expect(moved.url).toMatch(/\/ui\?from=1$/);
    expect(moved.banners).toContain('Moved here from node 1, which stopped answering.');
    expect(moved.nodes.filter((n) => n.id !== 1).every((n) => n.heard === 'up' || n.heard === 'self')).toBe(true);
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
