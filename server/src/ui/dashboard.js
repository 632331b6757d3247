// The dashboard at /ui: every second it reads /cluster, /placement and
// /metrics of the node that served it (same origin: those routes need no
// CORS), and redraws.
//
// When that node stops answering, the page moves to another node's /ui:
// it asks each other node's /health (a no-cors request: it only learns that
// something answered, which is all it needs, and no route had to open
// itself to other origins), and navigates to the first that answers. The
// charts start over there, which is right: they were the dead node's own
// traffic, and the new node's counters are another series. The addresses
// come from /cluster (each node's recorded HTTP address), so the page knows
// them from its first poll on.
import { gaugeValue, kvTrafficOf, parsePrometheusText, windowStats } from './metrics.js';
import { formatMs, formatRate } from './format.js';
import { nodeRows, rangeRows, switchCandidates } from './model.js';
import { renderBanners, renderChart, renderMoves, renderNodes, renderRanges, setStat } from './render.js';

/** How often the page polls; the placement driver's view changes about once a second (its duty interval). */
const POLL_INTERVAL_MS = 1_000;
/** A request to this node unanswered after this long counts as a failure (its routes answer in milliseconds). */
const FETCH_TIMEOUT_MS = 2_500;
/** Polls in a row this node must miss before the page looks for another: one miss may be a GC pause. */
const FAILURES_BEFORE_SWITCH = 2;
/** How long another node's /health may take to count as answering. */
const PROBE_TIMEOUT_MS = 1_500;
/** Rates and p99 are over the scrapes of the last few seconds: one second of a light load is too few requests for a p99. */
const WINDOW_MS = 5_000;
/** Chart points kept: two minutes at one per poll. */
const HISTORY_POINTS_MAX = 120;

/**
 * @typedef {import('./metrics.js').Scrape} Scrape
 * @typedef {{ writesPerSec: number, readsPerSec: number, serverErrorsPerSec: number, writeP99Ms: number | null, readP99Ms: number | null }} Stats
 */

const state = {
  /** @type {number | null} the node that served this page, from its /cluster */
  selfId: null,
  /** @type {import('./model.js').NodeRow[]} */
  nodes: [],
  /** Polls in a row whose /cluster failed. */
  failures: 0,
  /** @type {number | null} when this node first failed to answer (Date.now()), null while it answers */
  silentSinceMs: null,
  /** @type {Scrape[]} scrapes of the last WINDOW_MS and one before it */
  scrapes: [],
  /** @type {(Stats | null)[]} one per poll, oldest first */
  history: [],
  /** @type {string | null} why the last switch attempt found nowhere to go */
  switchProblem: null,
};

/** The node the previous page came from (?from=N), said in a banner; digits only, else ignored. */
const fromParameter = new URLSearchParams(location.search).get('from') ?? '';
const movedFrom = /^\d{1,10}$/.test(fromParameter) ? fromParameter : null;

/**
 * GET a path of this node: its JSON, or an Error naming what went wrong (the API's own error message when it sent one).
 * @param {string} path
 * @param {'json' | 'text'} as
 * @returns {Promise<any>}
 */
async function get(path, as) {
  const res = await fetch(path, { cache: 'no-store', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (typeof body?.error?.message === 'string') message = `${res.status} ${body.error.code}: ${body.error.message}`;
    } catch {
      // Not the API's JSON error: the status says enough.
    }
    throw new Error(`${path}: ${message}`);
  }
  return as === 'json' ? res.json() : res.text();
}

/** @param {unknown} err */
const reasonOf = (err) => (err instanceof Error ? (err.name === 'TimeoutError' ? `no answer within ${FETCH_TIMEOUT_MS} ms` : err.message) : String(err));

async function poll() {
  const [cluster, placement, metrics] = await Promise.allSettled([get('/cluster', 'json'), get('/placement', 'json'), get('/metrics', 'text')]);
  /** @type {{ level: 'info' | 'warn' | 'bad', text: string }[]} */
  const banners = [];
  if (movedFrom !== null) banners.push({ level: 'info', text: `Moved here from node ${movedFrom}, which stopped answering.` });

  if (cluster.status === 'rejected') {
    state.failures++;
    state.silentSinceMs ??= Date.now();
    const self = state.selfId === null ? 'This node' : `Node ${state.selfId}`;
    banners.push({ level: 'bad', text: `${self} is not answering since ${new Date(state.silentSinceMs).toLocaleTimeString()} (${reasonOf(cluster.reason)}); the tables below are what it said last.` });
    if (state.failures >= FAILURES_BEFORE_SWITCH) {
      await switchNode();
      if (state.switchProblem !== null) banners.push({ level: 'bad', text: state.switchProblem });
    }
    renderBanners(/** @type {HTMLElement} */ (document.getElementById('banners')), banners);
    return;
  }
  state.failures = 0;
  state.silentSinceMs = null;
  state.switchProblem = null;
  const clusterJson = cluster.value;
  const placementJson = placement.status === 'fulfilled' ? placement.value : undefined;
  if (placement.status === 'rejected') {
    banners.push({ level: 'warn', text: `The placement driver is not reachable (${reasonOf(placement.reason)}): node states, disk, load, sizes and moves are missing; membership and leaders are node ${clusterJson.nodeId}'s own view.` });
  }
  if (Number.isSafeInteger(clusterJson.nodeId)) state.selfId = clusterJson.nodeId;
  state.nodes = nodeRows(clusterJson, placementJson);

  const source = /** @type {HTMLElement} */ (document.getElementById('source'));
  source.textContent = `node ${state.selfId} · ${location.host}`;
  source.dataset.nodeId = String(state.selfId);
  renderNodes(/** @type {HTMLElement} */ (document.querySelector('#nodes tbody')), state.nodes, state.selfId);
  renderRanges(/** @type {HTMLElement} */ (document.querySelector('#ranges tbody')), rangeRows(clusterJson, placementJson), {
    count: /** @type {HTMLElement} */ (document.getElementById('ranges-count')),
    more: /** @type {HTMLElement} */ (document.getElementById('ranges-more')),
  });
  renderMoves(/** @type {HTMLElement} */ (document.querySelector('#moves tbody')), Array.isArray(placementJson?.operators) ? placementJson.operators : [], /** @type {HTMLElement} */ (document.getElementById('moves-empty')));

  if (metrics.status === 'fulfilled') onScrape(metrics.value);
  else banners.push({ level: 'warn', text: `No metrics from this node (${reasonOf(metrics.reason)}).` });
  renderBanners(/** @type {HTMLElement} */ (document.getElementById('banners')), banners);
  /** @type {HTMLElement} */ (document.getElementById('updated')).textContent = `updated ${new Date().toLocaleTimeString()}`;
}

/** @param {string} text one /metrics answer */
function onScrape(text) {
  const samples = parsePrometheusText(text);
  const atMs = performance.now();
  state.scrapes.push({ atMs, traffic: kvTrafficOf(samples) });
  // Keep the newest scrape at least WINDOW_MS old as the window's start.
  while (state.scrapes.length > 2 && /** @type {Scrape} */ (state.scrapes[1]).atMs <= atMs - WINDOW_MS) state.scrapes.shift();
  const first = /** @type {Scrape} */ (state.scrapes[0]);
  const last = /** @type {Scrape} */ (state.scrapes[state.scrapes.length - 1]);
  const stats = state.scrapes.length < 2 ? undefined : windowStats(first, last);
  // A counter that went down (the node restarted): start the window again from this scrape.
  if (state.scrapes.length >= 2 && stats === undefined) state.scrapes = [last];
  state.history.push(stats ?? null);
  if (state.history.length > HISTORY_POINTS_MAX) state.history.shift();

  setStat('writes-rate', stats?.writesPerSec, formatRate(stats?.writesPerSec));
  setStat('reads-rate', stats?.readsPerSec, formatRate(stats?.readsPerSec));
  setStat('write-p99', stats?.writeP99Ms, formatMs(stats?.writeP99Ms));
  setStat('read-p99', stats?.readP99Ms, formatMs(stats?.readP99Ms));
  setStat('errors-rate', stats?.serverErrorsPerSec, formatRate(stats?.serverErrorsPerSec));
  const led = gaugeValue(samples, 'flotilla_ranges_led');
  const unavailable = gaugeValue(samples, 'flotilla_ranges_unavailable');
  setStat('ranges-led', led, led === undefined ? '–' : String(led));
  setStat('ranges-unavailable', unavailable, unavailable === undefined ? '–' : String(unavailable));

  const series = (/** @type {(s: Stats) => number | null} */ pick) => state.history.map((s) => (s === null ? null : pick(s)));
  renderChart(
    /** @type {SVGSVGElement} */ (/** @type {unknown} */ (document.getElementById('rate-chart'))),
    [{ cls: 'write', values: series((s) => s.writesPerSec) }, { cls: 'read', values: series((s) => s.readsPerSec) }],
    HISTORY_POINTS_MAX,
    (v) => (v === 0 ? '0' : formatRate(v)),
  );
  renderChart(
    /** @type {SVGSVGElement} */ (/** @type {unknown} */ (document.getElementById('latency-chart'))),
    [{ cls: 'write', values: series((s) => s.writeP99Ms) }, { cls: 'read', values: series((s) => s.readP99Ms) }],
    HISTORY_POINTS_MAX,
    (v) => (v === 0 ? '0' : v < 10 ? v.toFixed(1) : String(Math.round(v))),
  );
}

/** Navigates to the first other node whose /health answers; if none does, says so and tries again next poll. */
async function switchNode() {
  const candidates = switchCandidates(state.nodes, state.selfId);
  if (candidates.length === 0) {
    state.switchProblem = 'No other node with a known HTTP address to move to.';
    return;
  }
  for (const c of candidates) {
    try {
      // Opaque (no-cors): resolves when the node answered anything at all, rejects when nothing did.
      await fetch(`${c.url}/health`, { mode: 'no-cors', cache: 'no-store', signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    } catch {
      continue;
    }
    const from = state.selfId === null ? '' : `?from=${state.selfId}`;
    location.assign(`${c.url}/ui${from}`);
    return;
  }
  state.switchProblem = `No other node answers either (tried ${candidates.map((c) => `node ${c.nodeId}`).join(', ')}); trying again.`;
}

async function loop() {
  try {
    await poll();
  } catch (err) {
    // A bug in drawing must not stop the polling: say it, and go on.
    renderBanners(/** @type {HTMLElement} */ (document.getElementById('banners')), [{ level: 'bad', text: `The dashboard failed to draw: ${reasonOf(err)}` }]);
  }
  setTimeout(loop, POLL_INTERVAL_MS);
}

void loop();
