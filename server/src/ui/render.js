// The dashboard's DOM: tables and charts rebuilt from plain values. Text
// goes in with textContent and attributes with setAttribute, never as
// markup: a key, an address or an error message from a node stays text.
import { describeOperator } from './model.js';
import { formatAge, formatBytes, formatRate, keyText } from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Range rows drawn at most: a table of thousands of rows rebuilt every second would stall the page. */
export const RANGE_ROWS_MAX = 500;

/**
 * @param {string} tag
 * @param {string} [text]
 * @param {{ cls?: string, title?: string }} [options]
 * @returns {HTMLElement}
 */
function el(tag, text, options = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (options.cls !== undefined) e.className = options.cls;
  if (options.title !== undefined) e.title = options.title;
  return e;
}

/**
 * A table cell holding a number (right-aligned).
 * @param {string} text
 */
const numCell = (text) => el('td', text, { cls: 'num' });

/**
 * A node's state as a class name: only known words, so a state string never becomes an arbitrary class.
 * @param {string | null} state
 */
function stateClass(state) {
  return ['up', 'self', 'suspect', 'down', 'decommissioning', 'decommissioned'].includes(state ?? '') ? `state-${state}` : '';
}

/**
 * @param {HTMLElement} tbody
 * @param {import('./model.js').NodeRow[]} rows
 * @param {number | null} selfId
 */
export function renderNodes(tbody, rows, selfId) {
  const trs = rows.map((r) => {
    const tr = el('tr');
    tr.dataset.nodeId = String(r.nodeId);
    if (r.nodeId === selfId) tr.className = 'self';
    tr.append(el('td', String(r.nodeId)));
    const http = el('td');
    if (r.http !== null) {
      // nodeBaseUrl made it: http://host:port and nothing else.
      const a = /** @type {HTMLAnchorElement} */ (el('a', r.http.slice('http://'.length), { title: `open this dashboard on node ${r.nodeId}` }));
      a.href = `${r.http}/ui`;
      http.append(a);
    } else {
      http.textContent = '–';
    }
    tr.append(http);
    const state = el('td', r.state ?? '–', { cls: stateClass(r.state) });
    state.dataset.col = 'state';
    tr.append(state);
    const heard = el('td', r.heard ?? '–', { cls: stateClass(r.heard) });
    heard.dataset.col = 'heard';
    tr.append(heard);
    tr.append(
      numCell(r.replicaCount === null ? '–' : String(r.replicaCount)),
      numCell(r.leaderCount === null ? '–' : String(r.leaderCount)),
      numCell(formatBytes(r.usedBytes)),
      numCell(formatBytes(r.availableBytes)),
      numCell(formatRate(r.writesPerSec)),
      numCell(formatRate(r.readsPerSec)),
      numCell(r.silentMs === null ? '–' : `${formatAge(r.silentMs)} ago`),
    );
    return tr;
  });
  tbody.replaceChildren(...trs);
}

/**
 * @param {HTMLElement} tbody
 * @param {import('./model.js').RangeRow[]} rows
 * @param {{ count: HTMLElement, more: HTMLElement }} notes
 */
export function renderRanges(tbody, rows, notes) {
  const shown = rows.slice(0, RANGE_ROWS_MAX);
  const trs = shown.map((r) => {
    const tr = el('tr');
    tr.dataset.rangeId = String(r.rangeId);
    const start = keyText(r.start, 'start');
    const end = keyText(r.end, 'end');
    const learners = r.learners.length === 0 ? '' : ` + learner ${r.learners.join(', ')}`;
    const leader = el('td', r.leader === 0 ? 'none' : String(r.leader), { cls: r.leader === 0 ? 'state-none' : '' });
    leader.dataset.col = 'leader';
    tr.append(
      el('td', String(r.rangeId)),
      el('td', start.text, { title: start.full }),
      el('td', end.text, { title: end.full }),
      el('td', `${r.replicas.join(', ')}${learners}`),
      leader,
      numCell(formatBytes(r.sizeBytes)),
      numCell(r.keyCount === null ? '–' : r.keyCount.toLocaleString('en-US')),
      numCell(formatRate(r.writesPerSec)),
      numCell(formatRate(r.readsPerSec)),
      numCell(r.epoch === null ? '–' : String(r.epoch)),
    );
    return tr;
  });
  tbody.replaceChildren(...trs);
  notes.count.textContent = `(${rows.length})`;
  notes.more.textContent = rows.length > shown.length ? `and ${rows.length - shown.length} more (the first ${RANGE_ROWS_MAX} by range id are shown)` : '';
}

/**
 * @param {HTMLElement} tbody
 * @param {any[]} operators /placement's operators in flight
 * @param {HTMLElement} empty shown when there are none
 */
export function renderMoves(tbody, operators, empty) {
  const trs = operators.map((op) => {
    const tr = el('tr');
    tr.dataset.rangeId = String(op.rangeId);
    tr.append(
      el('td', Number.isSafeInteger(op.rangeId) ? String(op.rangeId) : '?'),
      el('td', describeOperator(op)),
      el('td', typeof op.reason === 'string' ? op.reason : ''),
      el('td', typeof op.lastStep === 'string' ? op.lastStep : 'not started'),
      numCell(formatAge(op.ageMs)),
    );
    return tr;
  });
  tbody.replaceChildren(...trs);
  empty.textContent = operators.length === 0 ? 'none' : '';
}

/**
 * A number at or above `v` that reads well as an axis maximum: 1, 2, 2.5 or 5 times a power of ten.
 * @param {number} v
 */
export function niceCeil(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= v) return m * power;
  return 10 * power;
}

/**
 * Lines over the last `pointsMax` points, newest at the right edge; a null
 * value breaks its line (no requests of that kind in that window).
 * @param {SVGSVGElement} svg
 * @param {{ cls: string, values: (number | null)[] }[]} series
 * @param {number} pointsMax
 * @param {(v: number) => string} label the axis labels
 */
export function renderChart(svg, series, pointsMax, label) {
  const width = 600;
  const height = 160;
  const left = 48;
  const top = 8;
  const bottom = 8;
  const plotWidth = width - left - 8;
  const plotHeight = height - top - bottom;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  const yMax = niceCeil(max);
  const children = [];
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotHeight * (1 - fraction);
    const line = document.createElementNS(SVG_NS, 'line');
    line.setAttribute('class', 'grid');
    line.setAttribute('x1', String(left));
    line.setAttribute('x2', String(width - 8));
    line.setAttribute('y1', String(y));
    line.setAttribute('y2', String(y));
    const text = document.createElementNS(SVG_NS, 'text');
    text.setAttribute('class', 'axis');
    text.setAttribute('x', String(left - 6));
    text.setAttribute('y', String(y + 4));
    text.setAttribute('text-anchor', 'end');
    text.textContent = label(yMax * fraction);
    children.push(line, text);
  }
  const step = plotWidth / Math.max(1, pointsMax - 1);
  for (const s of series) {
    const offset = pointsMax - s.values.length;
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      const x = left + (offset + i) * step;
      const y = top + plotHeight * (1 - v / yMax);
      d += `${pen ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)} `;
      pen = true;
    });
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('class', `series ${s.cls}`);
    path.setAttribute('d', d.trim() === '' ? 'M0 0' : d.trim());
    if (d.trim() === '') path.setAttribute('visibility', 'hidden');
    children.push(path);
  }
  svg.replaceChildren(...children);
}

/**
 * One of the headline numbers: its text, and the raw value in data-value (tests and scripts read it).
 * @param {string} id
 * @param {number | null | undefined} value
 * @param {string} text
 */
export function setStat(id, value, text) {
  const e = document.getElementById(id);
  if (e === null) return;
  e.textContent = text;
  e.dataset.value = value === null || value === undefined ? '' : String(value);
}

/**
 * The banners under the header, replaced as a whole each poll.
 * @param {HTMLElement} container
 * @param {{ level: 'info' | 'warn' | 'bad', text: string }[]} banners
 */
export function renderBanners(container, banners) {
  container.replaceChildren(...banners.map((b) => el('p', b.text, { cls: `banner ${b.level}` })));
}
