// Screenshots of the dashboard for the README: opens a running node's /ui (e.g. one of `flotilla
// dev`'s) in headless Chromium (Debian's chromium package, driven by playwright-core; no browser
// download), puts a bounded write and read load on the node the page shows, and saves a PNG.
//
//   node server/scripts/screenshot-ui.mjs --url http://127.0.0.1:8101 --out docs/images/dashboard.png
//
// Options: --load-seconds N (default 20), --width N (default 1280), --chromium PATH (default
// /usr/bin/chromium), --kill PID: SIGKILL that process (the node at --url) halfway through, then wait
// for the page to move to another node and show the killed one down (the driver's down-after,
// 30 s by default) before the screenshot.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    out: { type: 'string' },
    'load-seconds': { type: 'string', default: '20' },
    width: { type: 'string', default: '1280' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    kill: { type: 'string' },
  },
});
if (values.url === undefined || values.out === undefined) {
  console.error('usage: screenshot-ui.mjs --url http://HOST:PORT --out FILE.png [--load-seconds N] [--width N] [--chromium PATH] [--kill PID]');
  process.exit(2);
}
if (!existsSync(values.chromium)) {
  console.error(`no Chromium at ${values.chromium}: install it with apt-get install chromium (or pass --chromium PATH)`);
  process.exit(2);
}
const loadSeconds = Number(values['load-seconds']);
/** Requests in flight at once: a visible load that a 2-CPU machine serves without falling over. */
const CONCURRENCY = 4;
/** After a kill, the page shows the node down within the driver's down-after (30 s unless changed) and a few polls. */
const DOWN_TIMEOUT_MS = 60_000;
/** After the kill is seen, the new node's charts get this long to draw something. */
const SETTLE_MS = 10_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const browser = await chromium.launch({ executablePath: values.chromium });
try {
  const page = await browser.newPage({ viewport: { width: Number(values.width), height: 900 }, deviceScaleFactor: 1 });
  await page.goto(`${values.url.replace(/\/+$/, '')}/ui`);
  await page.waitForSelector('#nodes tbody tr', { timeout: 30_000 });

  // Writes and reads of a few hundred keys, through whichever node the page shows now (it moves after a kill).
  let stopped = false;
  let requests = 0;
  const worker = async () => {
    while (!stopped) {
      const i = requests++;
      // Prefixes that fall in different ranges of `flotilla dev`'s initial split (digits, capitals, lower case).
      const key = `${['user/', 'Order/', '2024/', 'cart/'][i % 4]}${(i * 7919) % 400}`;
      try {
        const base = new URL(page.url()).origin;
        const res = await fetch(`${base}/kv/${key}`, i % 3 === 0 ? { method: 'PUT', body: `value ${i}`, signal: AbortSignal.timeout(5_000) } : { signal: AbortSignal.timeout(5_000) });
        await res.arrayBuffer();
      } catch {
        await sleep(100); // the node is gone, or busy: the load goes on
      }
    }
  };
  const workers = Array.from({ length: CONCURRENCY }, worker);
  try {
    if (values.kill === undefined) {
      await sleep(loadSeconds * 1000);
    } else {
      await sleep((loadSeconds * 1000) / 2);
      const killedId = await page.getAttribute('#source', 'data-node-id');
      process.kill(Number(values.kill), 'SIGKILL');
      await page.waitForFunction(
        (id) => document.getElementById('source')?.dataset.nodeId !== id && document.querySelector(`#nodes tr[data-node-id="${id}"] [data-col=state]`)?.textContent === 'down',
        killedId,
        { timeout: DOWN_TIMEOUT_MS, polling: 500 },
      );
      await sleep(SETTLE_MS);
    }
  } finally {
    stopped = true;
    await Promise.all(workers);
  }
  await page.screenshot({ path: values.out, fullPage: true });
  console.log(`${values.out}: ${requests} requests; page at ${page.url()}; writes/s ${await page.getAttribute('#writes-rate', 'data-value')}`);
} finally {
  await browser.close();
}
