// Screenshots of the dashboard for the README: puts a bounded write and read load on a running node
// (e.g. one of `flotilla dev`'s), opens its /ui in headless Chromium (Debian's chromium package,
// driven by playwright-core; no browser download), waits for the charts to fill, and saves a PNG.
//
//   node server/scripts/screenshot-ui.mjs --url http://127.0.0.1:8101 --out docs/images/dashboard.png
//
// Options: --load-seconds N (default 20; 0: no load), --width N (default 1280), --chromium PATH
// (default /usr/bin/chromium).
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
  },
});
if (values.url === undefined || values.out === undefined) {
  console.error('usage: screenshot-ui.mjs --url http://HOST:PORT --out FILE.png [--load-seconds N] [--width N] [--chromium PATH]');
  process.exit(2);
}
if (!existsSync(values.chromium)) {
  console.error(`no Chromium at ${values.chromium}: install it with apt-get install chromium (or pass --chromium PATH)`);
  process.exit(2);
}
const base = values.url.replace(/\/+$/, '');
const loadSeconds = Number(values['load-seconds']);
/** Requests in flight at once: a visible load that a 2-CPU machine serves without falling over. */
const CONCURRENCY = 4;

/** Writes and reads of a few hundred keys until the deadline: each worker one request at a time. */
async function load(untilMs) {
  let n = 0;
  const worker = async () => {
    while (Date.now() < untilMs) {
      const i = n++;
      const key = `user/${String((i * 7919) % 400).padStart(4, '0')}`;
      const write = i % 3 === 0;
      try {
        const res = await fetch(`${base}/kv/${key}`, write ? { method: 'PUT', body: `value ${i}`, signal: AbortSignal.timeout(5_000) } : { signal: AbortSignal.timeout(5_000) });
        await res.arrayBuffer();
      } catch {
        // A failed request is part of what the dashboard shows; the load goes on.
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return n;
}

const browser = await chromium.launch({ executablePath: values.chromium });
try {
  const page = await browser.newPage({ viewport: { width: Number(values.width), height: 900 }, deviceScaleFactor: 1 });
  await page.goto(`${base}/ui`);
  const loaded = load(Date.now() + loadSeconds * 1000);
  await page.waitForSelector('#nodes tbody tr', { timeout: 30_000 });
  const requests = await loaded;
  await page.screenshot({ path: values.out, fullPage: true });
  console.log(`${values.out}: ${requests} requests of load; writes/s ${await page.getAttribute('#writes-rate', 'data-value')}`);
} finally {
  await browser.close();
}
