// Prescient's dashboard: a small page over the JSON API (/api/v1).
// No framework, no network access beyond this server; charts are inline
// SVG drawn here. Pages are chosen by the URL's hash:
//   #/                          overview
//   #/workload/ID?range=6h      one workload (6h, 1d, 7d)
//   #/audit[?before=ID|after=ID] the audit trail, newest first, paged by id
//   #/operate                   forms: events, intents, requests
// Times are the agent's (a replayed trace runs on trace time): "now" is the
// status's updated_at, never the browser's clock.
'use strict';

const API = '/api/v1';
const TOKEN_KEY = 'prescient.token';
const REFRESH_KEY = 'prescient.refresh';
const REFRESH_MS = 5000;
const RANGES = { '6h': 6 * 3600e3, '1d': 24 * 3600e3, '7d': 7 * 24 * 3600e3 };
const AUDIT_PAGE = 50;
const PALETTE = ['#2f6fdb', '#e07b00', '#2e7d32', '#8e24aa', '#c62828', '#00838f', '#6d4c41',
  '#5c6bc0', '#9e9d24', '#d81b60', '#3949ab', '#00897b'];
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------- helpers

/** An HTML element: h('td', {class: 'num'}, 'text', child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    // Text goes in as text: names from the API are never parsed as HTML.
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** A list from an answer that is a list, or an object holding one. */
function list(x, ...keys) {
  if (Array.isArray(x)) return x;
  if (x && typeof x === 'object') {
    for (const k of keys.concat(['items', 'data'])) if (Array.isArray(x[k])) return x[k];
  }
  return [];
}

function token() { return localStorage.getItem(TOKEN_KEY) || ''; }

/** An error from the API, readable: status, message, detail. */
class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
  toString() {
    let t = `${this.status ? 'HTTP ' + this.status + ': ' : ''}${this.message}`;
    if (this.detail !== undefined && this.detail !== null) {
      t += '\n' + (typeof this.detail === 'string' ? this.detail : JSON.stringify(this.detail, null, 2));
    }
    return t;
  }
}

/** Calls the API; resolves to its JSON (null for 204), rejects with an ApiError. */
async function api(path, options = {}) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  const init = { method: options.method || 'GET', headers };
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  const text = await res.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch (_) { body = text; }
  }
  if (!res.ok) {
    const msg = body && typeof body === 'object' && body.error ? body.error
      : (typeof body === 'string' && body ? body : res.statusText || 'request failed');
    let hint = '';
    if (res.status === 401) hint = ' (set a token above)';
    if (res.status === 403) hint = ' (this token may not do that)';
    throw new ApiError(res.status, msg + hint, body && typeof body === 'object' ? body.detail : undefined);
  }
  return body;
}

const RES_UNITS = { cpu: 'cores', memory: 'bytes' };

/** A value of a resource, in its unit. */
function fmt(resource, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (resource === 'memory' || (RES_UNITS[resource] || '').includes('byte')) return fmtBytes(v);
  if (resource === 'cpu') return `${fmtNum(v)} cores`;
  return fmtNum(v);
}

function fmtNum(v) {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 0.01) return v.toFixed(2);
  return v.toPrecision(2);
}

function fmtBytes(b) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = b;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${fmtNum(v)} ${units[i]}`;
}

function fmtPct(x) {
  return x === null || x === undefined ? '–' : `${(x * 100).toFixed(1)}%`;
}

/** A time (ms since the epoch) in UTC: 2024-03-01 12:05. */
function fmtTime(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return String(ms);
  return d.toISOString().slice(0, 16).replace('T', ' ');
}

/** For an <input type=datetime-local>, in UTC. */
function toLocalInput(ms) {
  return new Date(ms).toISOString().slice(0, 16);
}

function fromLocalInput(v) {
  const t = Date.parse(v + ':00Z');
  return Number.isNaN(t) ? null : t;
}

function color(i) { return PALETTE[i % PALETTE.length]; }

function showError(e) {
  const box = document.getElementById('error');
  if (!e) { box.hidden = true; box.textContent = ''; return; }
  box.textContent = e instanceof ApiError ? e.toString() : String(e && e.message ? e.message : e);
  box.hidden = false;
}

// ------------------------------------------------------------- page state

let ready = false;
let renderSeq = 0;
let refreshTimer = null;
let lastStatus = null;

/** Marks the page ready once, after the first data render (the bench reads it). */
function markReady() {
  if (ready) return;
  ready = true;
  performance.mark('prescient-ready');
  document.documentElement.dataset.ready = 'true';
}

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params };
}

async function render(background = false) {
  const seq = ++renderSeq;
  const { parts, params } = route();
  for (const a of document.querySelectorAll('[data-nav]')) {
    const page = parts[0] || 'overview';
    a.classList.toggle('active', a.dataset.nav === page);
  }
  let page;
  try {
    lastStatus = await api('/status');
    updateClock();
    if (parts[0] === 'workload' && parts[1]) page = await workloadPage(parts[1], params.get('range') || '1d');
    else if (parts[0] === 'audit') page = await auditPage(params.get('before'), params.get('after'));
    else if (parts[0] === 'operate') page = await operatePage();
    else page = await overviewPage();
    if (seq !== renderSeq) return; // a newer render started meanwhile
    if (!background) showError(null);
  } catch (e) {
    if (seq !== renderSeq) return;
    showError(e);
    if (background) return; // keep what is shown
    page = h('p', { class: 'muted' }, 'Nothing to show.');
  }
  const app = document.getElementById('app');
  // Keep an operator's half-filled form: background refreshes leave the
  // operate page alone.
  if (background && parts[0] === 'operate') return;
  app.replaceChildren(page);
  markReady();
}

function updateClock() {
  const c = document.getElementById('clock');
  if (lastStatus) c.textContent = `${lastStatus.host || ''} · ${fmtTime(lastStatus.updated_at)} UTC`;
}

function scheduleRefresh() {
  clearInterval(refreshTimer);
  const box = document.getElementById('auto-refresh');
  if (box.checked) {
    refreshTimer = setInterval(() => {
      if (document.visibilityState === 'visible') render(true);
    }, REFRESH_MS);
  }
}

// --------------------------------------------------------------- overview

async function overviewPage() {
  const [workloads, pools, plans, alerts] = await Promise.all([
    api('/workloads'), api('/pools'), api('/plans'), api('/alerts'),
  ]);
  const st = lastStatus || {};
  const wl = list(workloads, 'workloads');
  const pl = list(pools, 'pools');
  const plansL = list(plans, 'plans');
  const al = list(alerts, 'alerts');
  const firing = al.filter((a) => a.state === 'firing');
  const counters = st.counters || {};
  const mode = st.mode || '–';

  const page = h('div', { id: 'overview' },
    h('h1', {}, 'Overview ', h('span', { class: `badge ${mode}`, id: 'mode' }, mode),
      st.policy ? h('span', { class: 'muted' }, ` · policy ${st.policy}`) : null),
    h('div', { class: 'cards' },
      card('Workloads', wl.length, 'count-workloads'),
      card('Pools', pl.length, 'count-pools'),
      card('Plans made', counters.plans ?? '–', 'count-plans'),
      card('Samples', counters.samples ?? '–', 'count-samples'),
      card('Alerts firing', firing.length, 'count-alerts'),
      card('Updated', fmtTime(st.updated_at), 'updated-at')),
  );

  if (firing.length || al.length) {
    page.append(h('h2', {}, 'Alerts'), alertTable(al));
  }

  // The partition, per pool and resource.
  page.append(h('h2', {}, 'Partition'));
  const latest = new Map(); // "workload/resource" -> planned allocation
  for (const p of plansL) {
    for (const e of p.entries || []) latest.set(`${e.workload}/${e.resource}`, e.allocation);
  }
  const index = new Map(wl.map((w, i) => [w.id, i]));
  if (!pl.length) page.append(h('p', { class: 'muted' }, 'No pools yet.'));
  for (const pool of pl) {
    const members = wl.filter((w) => (w.pool || (pl[0] && pl[0].name)) === pool.name);
    const panel = h('div', { class: 'panel pool', 'data-pool': pool.name },
      h('h3', {}, `Pool ${pool.name}`, pool.parent ? h('span', { class: 'muted' }, ` (in ${pool.parent})`) : null,
        h('span', { class: 'muted' }, ` · ${members.length} workload${members.length === 1 ? '' : 's'}`)));
    const capacity = pool.capacity || {};
    for (const [res, cap] of Object.entries(capacity)) {
      const of = (f) => members.map((w) => ({ id: w.id, i: index.get(w.id), v: f(w, res) }));
      const r = (w) => (w.resources || []).find((x) => x.resource === res) || {};
      panel.append(h('h3', {}, `${res} · capacity ${fmt(res, cap)}`),
        barRow('allocated now', res, cap, of((w) => r(w).allocation), pool.name, 'allocation'),
        barRow('planned', res, cap, of((w) => latest.get(`${w.id}/${res}`)), pool.name, 'planned'),
        barRow('used', res, cap, of((w) => r(w).usage), pool.name, 'usage'));
    }
    if (members.length) {
      panel.append(h('div', { class: 'legend' }, members.slice(0, 24).map((w) =>
        h('span', {}, h('i', { class: 'swatch', 'data-color': color(index.get(w.id)) }), w.id)),
      members.length > 24 ? h('span', {}, `… ${members.length - 24} more`) : null));
    }
    page.append(panel);
  }
  paintSwatches(page);

  // The workloads.
  page.append(h('h2', {}, 'Workloads'));
  if (!wl.length) {
    page.append(h('p', { class: 'muted' }, 'No workloads tracked yet.'));
  } else {
    const rows = wl.map((w) => {
      const by = Object.fromEntries((w.resources || []).map((x) => [x.resource, x]));
      const cell = (res) => {
        const x = by[res];
        if (!x) return [h('td', { class: 'num' }, '–'), h('td', { class: 'num' }, '–')];
        const share = x.allocation > 0 && x.usage !== null && x.usage !== undefined ? x.usage / x.allocation : null;
        return [
          h('td', { class: 'num' }, `${fmt(res, x.usage)} / ${fmt(res, x.allocation)}`, utilBar(share)),
          h('td', { class: 'num' }, fmtPct(x.coverage)),
        ];
      };
      return h('tr', { 'data-workload': w.id },
        h('td', {}, h('a', { href: `#/workload/${encodeURIComponent(w.id)}` }, w.id)),
        h('td', {}, w.pool || '–'),
        cell('cpu'), cell('memory'));
    });
    page.append(h('table', { id: 'workloads' },
      h('thead', {}, h('tr', {}, h('th', {}, 'workload'), h('th', {}, 'pool'),
        h('th', { class: 'num' }, 'cpu used / allocated'), h('th', { class: 'num' }, 'cpu coverage'),
        h('th', { class: 'num' }, 'memory used / allocated'), h('th', { class: 'num' }, 'memory coverage'))),
      h('tbody', {}, rows)));
  }
  return page;
}

function card(k, v, id) {
  return h('div', { class: 'card', id }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, String(v)));
}

/** A stacked bar: each workload's share of a capacity. */
function barRow(what, res, cap, parts, pool, kind) {
  const W = 1000;
  const svg = s('svg', { class: 'bar', viewBox: `0 0 ${W} 18`, preserveAspectRatio: 'none',
    'data-pool': pool, 'data-resource': res, 'data-kind': kind });
  let x = 0;
  let total = 0;
  for (const p of parts) {
    if (!(p.v > 0)) continue;
    total += p.v;
    const w = cap > 0 ? (p.v / cap) * W : 0;
    svg.append(s('rect', { x: x.toFixed(2), y: 0, width: Math.max(0, w).toFixed(2), height: 18,
      fill: color(p.i), 'data-workload': p.id },
    s('title', {}, `${p.id}: ${fmt(res, p.v)}`)));
    x += w;
  }
  if (x > W) {
    svg.append(s('line', { x1: W - 1, x2: W - 1, y1: 0, y2: 18, stroke: '#c62828', 'stroke-width': 3 },
      s('title', {}, 'over capacity')));
  }
  return h('div', { class: 'bar-row' },
    h('span', { class: 'what' }, what), svg,
    h('span', { class: 'total' }, `${fmt(res, total)} (${cap > 0 ? fmtPct(total / cap) : '–'})`));
}

function utilBar(share) {
  if (share === null || !Number.isFinite(share)) return null;
  const w = Math.min(1, share) * 100;
  const fill = share > 1 ? '#c62828' : share > 0.9 ? '#b26a00' : '#2e7d32';
  return h('span', { class: 'util', title: fmtPct(share) + ' of allocation' },
    s('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none' },
      s('rect', { x: 0, y: 0, width: w.toFixed(1), height: 10, fill })));
}

/** Legend swatches take their colour from an attribute (no inline styles: CSP). */
function paintSwatches(root) {
  for (const i of root.querySelectorAll('i.swatch')) {
    const c = i.dataset.color;
    i.replaceWith(s('svg', { width: 11, height: 11, class: 'swatch' }, s('rect', { width: 11, height: 11, rx: 2, fill: c })));
  }
}

function alertTable(al) {
  return h('table', { id: 'alerts' },
    h('thead', {}, h('tr', {}, ['state', 'severity', 'rule', 'subject', 'message', 'since'].map((t) => h('th', {}, t)))),
    h('tbody', {}, al.map((a) => h('tr', { 'data-alert': a.id },
      h('td', {}, h('span', { class: `badge ${a.state}` }, a.state)),
      h('td', {}, h('span', { class: `badge ${a.severity}` }, a.severity)),
      h('td', {}, a.rule), h('td', {}, a.subject), h('td', {}, a.message), h('td', {}, fmtTime(a.since))))));
}

// --------------------------------------------------------------- workload

async function workloadPage(id, range) {
  if (!RANGES[range]) range = '1d';
  const enc = encodeURIComponent(id);
  const [w, models] = await Promise.all([api(`/workloads/${enc}`), api('/models').catch(() => [])]);
  const to = lastStatus?.updated_at ?? Date.now();
  const from = to - RANGES[range];
  const resources = (w.resources || []).map((x) => x.resource).filter((r) => r === 'cpu' || r === 'memory');
  const series = await Promise.all(resources.map((r) =>
    api(`/workloads/${enc}/series?resource=${r}&from=${from}&to=${to}&resolution=auto`)));

  const page = h('div', { id: 'workload', 'data-workload': id },
    h('h1', {}, h('a', { href: '#/' }, 'Overview'), ' / ', id,
      h('span', { class: 'ranges' }, Object.keys(RANGES).map((r) =>
        h('a', { href: `#/workload/${enc}?range=${r}`, class: r === range ? 'active' : null, 'data-range': r }, r)))),
    h('p', { class: 'muted' },
      `pool ${w.pool || '–'} · selector ${w.selector || '–'} · cgroup ${w.cgroup || '–'}`,
      Object.keys(w.labels || {}).length ? ` · ${Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(', ')}` : ''),
    h('div', { class: 'chart-legend' },
      h('span', {}, h('span', { class: 'sw actual' }), 'actual'),
      h('span', {}, h('span', { class: 'sw band' }), 'forecast: median to SLO quantile'),
      h('span', {}, h('span', { class: 'sw median' }), 'forecast median'),
      h('span', {}, h('span', { class: 'sw alloc' }), 'allocation'),
      h('span', {}, h('span', { class: 'sw anom' }), 'anomaly'),
      h('span', {}, h('span', { class: 'sw ev' }), 'event')));

  resources.forEach((res, i) => {
    const x = (w.resources || []).find((r) => r.resource === res) || {};
    const m = list(models, 'models').find((y) => y.workload === id && y.resource === res) || {};
    const data = series[i];
    page.append(h('h2', {}, `${res} `, h('span', { class: 'muted' },
      `(${data.unit || RES_UNITS[res] || ''}, ${data.resolution || ''} steps)`)));
    page.append(chart(data, from, to));
    page.append(resourceFacts(res, x, m));
  });
  if (!resources.length) page.append(h('p', { class: 'muted' }, 'No CPU or memory series for this workload yet.'));
  return page;
}

function resourceFacts(res, x, m) {
  const forecast = (x.forecast || []).map((q) => Array.isArray(q) ? q : [q.level, q.value]);
  const weights = m.weights || x.weights || [];
  return h('div', { class: 'grid2' },
    h('table', { class: 'facts', 'data-resource': res }, h('tbody', {},
      h('tr', {}, h('th', {}, 'usage'), h('td', { class: 'num' }, fmt(res, x.usage))),
      h('tr', {}, h('th', {}, 'allocation'), h('td', { class: 'num' }, fmt(res, x.allocation))),
      h('tr', {}, h('th', {}, 'SLO quantile'), h('td', { class: 'num' }, x.slo_quantile ?? '–')),
      h('tr', {}, h('th', {}, 'coverage (realised)'), h('td', { class: 'num' }, fmtPct(x.coverage))),
      h('tr', {}, h('th', {}, 'next step forecast'), h('td', { class: 'num' },
        forecast.length ? forecast.map(([l, v]) => `q${l}: ${fmt(res, v)}`).join(' · ') : '–')),
      h('tr', {}, h('th', {}, 'steps learnt'), h('td', { class: 'num' }, x.observations ?? '–')))),
    h('table', { class: 'weights' },
      h('thead', {}, h('tr', {}, h('th', {}, 'model'), h('th', { class: 'num' }, 'weight'))),
      h('tbody', {}, weights.length ? weights.map((m) => h('tr', {}, h('td', {}, m.model), h('td', { class: 'num' }, fmtPct(m.weight))))
        : h('tr', {}, h('td', { class: 'muted' }, 'no weights yet'), h('td', {})))));
}

/** The nearest level's index in `levels`. */
function levelIndex(levels, want) {
  let best = -1;
  let d = Infinity;
  levels.forEach((l, i) => { if (Math.abs(l - want) < d) { d = Math.abs(l - want); best = i; } });
  return best;
}

/**
 * One resource's chart: actual usage, the forecast band (median to the SLO
 * quantile) and its median, the allocation as a step line, anomalies and
 * events on the time axis. Each series' path carries data-series and
 * data-points.
 */
function chart(data, from, to) {
  const W = 900;
  const H = 240;
  const L = 70;
  const R = 12;
  const T = 10;
  const B = 26;
  const res = data.resource;
  const actual = (data.actual || []).filter((p) => Number.isFinite(p[1]));
  const fc = data.forecast || {};
  const levels = fc.levels || [];
  const mi = levelIndex(levels, 0.5);
  const si = levelIndex(levels, data.slo_quantile ?? 0.95);
  const fpts = (fc.points || []).filter((p) => Array.isArray(p[1]) && mi >= 0 && si >= 0
    && Number.isFinite(p[1][mi]) && Number.isFinite(p[1][si]));
  const alloc = (data.allocation || []).filter((p) => Number.isFinite(p[1]));
  const lo = Number.isFinite(data.from) ? data.from : from;
  const hi = Number.isFinite(data.to) && data.to > lo ? data.to : to;

  let ymax = 0;
  for (const p of actual) ymax = Math.max(ymax, p[1]);
  for (const p of fpts) ymax = Math.max(ymax, p[1][mi], p[1][si]);
  for (const p of alloc) ymax = Math.max(ymax, p[1]);
  ymax = ymax > 0 ? ymax * 1.08 : 1;

  const x = (t) => L + ((t - lo) / (hi - lo)) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const cx = (t) => Math.min(W - R, Math.max(L, x(t)));
  const n = (v) => v.toFixed(1);

  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, 'data-resource': res, role: 'img',
    'aria-label': `${res} of ${data.workload}` });
  // Grid and axes.
  const axis = s('g', { class: 'axis' });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax / 4) * i;
    svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: n(y(v)), y2: n(y(v)) }));
    axis.append(s('text', { x: L - 6, y: n(y(v) + 4), 'text-anchor': 'end' }, fmt(res, v)));
  }
  for (const t of timeTicks(lo, hi, 6)) {
    svg.append(s('line', { class: 'grid', x1: n(x(t)), x2: n(x(t)), y1: T, y2: H - B }));
    axis.append(s('text', { x: n(x(t)), y: H - 8, 'text-anchor': 'middle' }, tickLabel(t, hi - lo)));
  }
  svg.append(axis);

  // Events: shaded spans.
  for (const e of data.events || []) {
    const a = cx(e.start);
    const b = cx(e.end ?? hi);
    if (b <= a) continue;
    svg.append(s('rect', { class: 'event', x: n(a), y: T, width: n(b - a), height: H - T - B, 'data-event': e.id },
      s('title', {}, `event ${e.id}: ${e.kind} ${fmtTime(e.start)} – ${fmtTime(e.end)}`)));
  }

  // Forecast band: up along the SLO quantile, back along the median.
  let band = '';
  if (fpts.length) {
    band = fpts.map((p, i) => `${i ? 'L' : 'M'}${n(x(p[0]))},${n(y(p[1][si]))}`).join('')
      + fpts.slice().reverse().map((p) => `L${n(x(p[0]))},${n(y(p[1][mi]))}`).join('') + 'Z';
  }
  svg.append(s('path', { 'data-series': 'forecast', 'data-points': fpts.length, d: band },
    s('title', {}, `forecast q${levels[mi]} to q${levels[si]}`)));
  svg.append(s('path', { 'data-series': 'forecast-median', 'data-points': fpts.length,
    d: line(fpts.map((p) => [x(p[0]), y(p[1][mi])])) }));
  svg.append(s('path', { 'data-series': 'actual', 'data-points': actual.length,
    d: line(actual.map((p) => [x(p[0]), y(p[1])])) }));
  // Allocation: a step line, each value held until the next (the last to
  // the end of the window).
  let step = '';
  alloc.forEach((p, i) => {
    const x0 = cx(p[0]);
    const x1 = cx(i + 1 < alloc.length ? alloc[i + 1][0] : hi);
    step += `${i ? 'L' : 'M'}${n(x0)},${n(y(p[1]))}H${n(x1)}`;
  });
  svg.append(s('path', { 'data-series': 'allocation', 'data-points': alloc.length, d: step }));

  // Anomalies: marks on the time axis.
  for (const a of data.anomalies || []) {
    if (a.at < lo || a.at > hi) continue;
    const ax = n(x(a.at));
    const g = s('g', { class: 'anomaly-mark', 'data-kind': a.kind },
      s('line', { class: 'anomaly', x1: ax, x2: ax, y1: T, y2: H - B }),
      s('circle', { class: 'anomaly-dot', cx: ax, cy: H - B, r: 4 }),
      s('title', {}, `${fmtTime(a.at)} ${a.kind}: ${a.reason}`));
    svg.append(g);
  }
  if (!actual.length && !fpts.length && !alloc.length) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'muted', fill: '#687086' },
      'no data in this range'));
  }
  return svg;
}

function line(pts) {
  return pts.map((p, i) => `${i ? 'L' : 'M'}${p[0].toFixed(1)},${p[1].toFixed(1)}`).join('');
}

/** Round times for about `k` ticks over [lo, hi]. */
function timeTicks(lo, hi, k) {
  const steps = [60e3, 300e3, 900e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3, 7 * 86400e3];
  const span = hi - lo;
  const step = steps.find((st) => span / st <= k) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(t);
  return out;
}

function tickLabel(t, span) {
  const iso = new Date(t).toISOString();
  if (span > 2 * 86400e3) return iso.slice(5, 10) + ' ' + iso.slice(11, 16);
  return iso.slice(11, 16);
}

// ------------------------------------------------------------------ audit

async function auditPage(before, after) {
  const { rows, newer, older } = await auditRows(before, after);
  const pager = () => h('div', { class: 'pager' },
    h('a', { href: newer !== null ? `#/audit?after=${newer}` : null, class: newer !== null ? null : 'muted', 'data-page': 'newer' }, '← newer'),
    h('span', { class: 'muted' }, rows.length ? `entries ${rows[rows.length - 1].id}–${rows[0].id}` : ''),
    h('a', { href: older !== null ? `#/audit?before=${older}` : null, class: older !== null ? null : 'muted', 'data-page': 'older' }, 'older →'));
  return h('div', { id: 'audit' },
    h('h1', {}, 'Audit trail'),
    h('p', { class: 'muted' }, 'Every change the agent and its operators made, newest first.'),
    pager(),
    rows.length ? h('table', { id: 'audit-table' },
      h('thead', {}, h('tr', {}, ['time', 'actor', 'action', 'target', 'before', 'after', 'reason'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((e) => h('tr', { 'data-audit': e.id ?? '' },
        h('td', { class: 'mono' }, fmtTime(e.ts)), h('td', {}, e.actor), h('td', {}, e.action),
        h('td', { class: 'mono' }, e.target), h('td', { class: 'mono' }, e.before ?? ''),
        h('td', { class: 'mono' }, e.after ?? ''), h('td', {}, e.reason)))))
      : h('p', { class: 'muted' }, 'No entries.'),
    pager());
}

/** An audit id from the URL, or null. */
function auditId(text) {
  return text !== null && /^\d+$/.test(text) ? text : null;
}

/**
 * One page of the audit trail, newest first, paged exactly by entry id:
 * the newest AUDIT_PAGE entries; those just older than entry `before`
 * (`order=desc&before=`); or those just newer than entry `after`
 * (`after=`, oldest first, shown reversed). One more than a page is asked
 * for, to know whether there is a page beyond. Returns the rows and the
 * cursors of the pages either side (null when there is none).
 */
async function auditRows(before, after) {
  before = auditId(before);
  after = auditId(after);
  const more = AUDIT_PAGE + 1;
  if (after !== null && before === null) {
    const got = list(await api(`/audit?after=${after}&limit=${more}`), 'entries', 'audit');
    // Fewer than a page newer: that is the newest page, shown whole.
    if (got.length > AUDIT_PAGE) {
      const rows = got.slice(0, AUDIT_PAGE).reverse();
      return { rows, newer: rows[0].id, older: rows[rows.length - 1].id };
    }
  }
  const q = before !== null ? `&before=${before}` : '';
  const got = list(await api(`/audit?order=desc&limit=${more}${q}`), 'entries', 'audit');
  const rows = got.slice(0, AUDIT_PAGE);
  return {
    rows,
    newer: before !== null && rows.length ? rows[0].id : null,
    older: got.length > AUDIT_PAGE ? rows[rows.length - 1].id : null,
  };
}

// ---------------------------------------------------------------- operate

async function operatePage() {
  const [events, intents, requests, workloads] = await Promise.all([
    api('/events'), api('/intents').catch(() => []), api('/requests'), api('/workloads'),
  ]);
  const now = lastStatus?.updated_at ?? Date.now();
  const wl = list(workloads, 'workloads');
  const page = h('div', { id: 'operate' },
    h('h1', {}, 'Operate'),
    h('p', { class: 'muted' }, 'Times are UTC on the agent\'s clock. Changes need an operator token.'),
    h('div', { id: 'op-result' }));

  page.append(h('h2', {}, 'Events'), eventsTable(list(events, 'events')), eventForm(now));
  page.append(h('h2', {}, 'Intents'), intentsTable(list(intents, 'intents')), intentForm(now));
  page.append(h('h2', {}, 'Resource requests'), requestsTable(list(requests, 'requests')), requestForm(wl));
  return page;
}

function effectText(e) {
  if (!e || typeof e !== 'object') return e === undefined ? '' : String(e);
  if ('multiply' in e) return `×${e.multiply}`;
  if ('add' in e) return `+${e.add}`;
  return JSON.stringify(e);
}

function scheduleText(ev) {
  const sch = ev.schedule;
  if (sch && sch.cron) return `cron ${sch.cron.spec || sch.cron} for ${Math.round((sch.cron.duration_ms ?? (sch.cron.duration_s ?? 0) * 1000) / 60000)} min`;
  if (sch && sch.once) return `${fmtTime(sch.once.start)} – ${fmtTime(sch.once.end)}`;
  return `${fmtTime(ev.start)} – ${fmtTime(ev.end)}`;
}

function eventsTable(events) {
  if (!events.length) return h('p', { class: 'muted', id: 'events-empty' }, 'No events.');
  return h('table', { id: 'events' },
    h('thead', {}, h('tr', {}, ['id', 'name', 'kind', 'selector', 'resource', 'when', 'effect', 'state', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, events.map((ev) => h('tr', { 'data-event': ev.id },
      h('td', {}, ev.id), h('td', {}, ev.name ?? ''), h('td', {}, ev.kind), h('td', { class: 'mono' }, ev.selector),
      h('td', {}, ev.resource ?? 'all'), h('td', {}, scheduleText(ev)), h('td', {}, effectText(ev.effect)),
      h('td', {}, ev.cancelled_at ? `cancelled ${fmtTime(ev.cancelled_at)}` : 'active'),
      h('td', {}, ev.cancelled_at ? '' : h('button', { class: 'danger', type: 'button', 'data-cancel-event': ev.id,
        onclick: () => act(`DELETE /events/${ev.id}`, () => api(`/events/${encodeURIComponent(ev.id)}`, { method: 'DELETE' })) }, 'Cancel'))))));
}

function intentsTable(intents) {
  if (!intents.length) return h('p', { class: 'muted' }, 'No intents.');
  return h('table', { id: 'intents' },
    h('thead', {}, h('tr', {}, ['id', 'name', 'selector', 'when', 'effect'].map((t) => h('th', {}, t)))),
    h('tbody', {}, intents.map((ev) => h('tr', { 'data-event': ev.id },
      h('td', {}, ev.id), h('td', {}, ev.name ?? ''), h('td', { class: 'mono' }, ev.selector),
      h('td', {}, scheduleText(ev)), h('td', {}, effectText(ev.effect))))));
}

function requestsTable(reqs) {
  if (!reqs.length) return h('p', { class: 'muted' }, 'No requests.');
  return h('table', { id: 'requests' },
    h('thead', {}, h('tr', {}, ['id', 'workload', 'resource', 'amount', 'state', 'granted', 'until', 'reason', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, reqs.map((r) => {
      const q = r.request || r;
      const open = ['waiting', 'granted', 'partial', 'queued'].includes(r.state);
      return h('tr', { 'data-request': r.id },
        h('td', {}, r.id), h('td', {}, q.workload), h('td', {}, q.resource), h('td', { class: 'num' }, fmt(q.resource, q.amount)),
        h('td', {}, h('span', { class: 'badge' }, r.state)), h('td', { class: 'num' }, fmt(q.resource, r.granted)),
        h('td', {}, fmtTime(r.until)), h('td', {}, r.reason || ''),
        h('td', {}, open ? h('button', { class: 'danger', type: 'button', 'data-cancel-request': r.id,
          onclick: () => act(`DELETE /requests/${r.id}`, () => api(`/requests/${encodeURIComponent(r.id)}`, { method: 'DELETE' })) }, 'Cancel') : ''));
    })));
}

function field(label, input) {
  return [h('label', { for: input.id }, label), input];
}

function effectInputs(prefix) {
  return [
    ...field('effect', h('select', { id: `${prefix}-effect`, name: 'effect' },
      h('option', { value: 'multiply' }, 'multiply demand by'), h('option', { value: 'add' }, 'add to demand'))),
    ...field('amount', h('input', { id: `${prefix}-amount`, name: 'amount', type: 'number', step: 'any', value: '2', required: true })),
    ...field('resource', h('select', { id: `${prefix}-resource`, name: 'resource' },
      h('option', { value: '' }, 'all (multiply only)'), h('option', { value: 'cpu' }, 'cpu (cores)'),
      h('option', { value: 'memory' }, 'memory (bytes)'))),
  ];
}

/** The value of form `f`'s control named `name`. */
function fv(f, name) {
  const el = f.elements.namedItem(name);
  return el ? el.value : '';
}

function effectOf(f) {
  const v = Number(fv(f, 'amount'));
  return fv(f, 'effect') === 'add' ? { add: v } : { multiply: v };
}

function eventForm(now) {
  const f = h('form', { class: 'op panel', id: 'event-form' },
    ...field('name', h('input', { id: 'ev-name', name: 'name', required: true, placeholder: 'nightly import' })),
    ...field('kind', h('input', { id: 'ev-kind', name: 'kind', required: true, value: 'release', list: 'ev-kinds' })),
    h('datalist', { id: 'ev-kinds' }, ['release', 'sale', 'maintenance', 'batch'].map((k) => h('option', { value: k }))),
    ...field('selector', h('input', { id: 'ev-selector', name: 'selector', required: true, value: '*', placeholder: 'host=web-*,env=prod' })),
    ...field('schedule', h('select', { id: 'ev-schedule', name: 'schedule' },
      h('option', { value: 'once' }, 'a window'), h('option', { value: 'cron' }, 'recurring (cron)'))),
    ...field('start (UTC)', h('input', { id: 'ev-start', name: 'start', type: 'datetime-local', value: toLocalInput(now) })),
    ...field('end (UTC)', h('input', { id: 'ev-end', name: 'end', type: 'datetime-local', value: toLocalInput(now + 3600e3) })),
    ...field('cron (UTC)', h('input', { id: 'ev-cron', name: 'cron', placeholder: '0 2 * * *' })),
    ...field('duration (min)', h('input', { id: 'ev-duration', name: 'duration', type: 'number', min: '1', value: '60' })),
    ...effectInputs('ev'),
    h('div', { class: 'full' }, h('button', { type: 'submit' }, 'Create event')));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = {
      name: fv(f, 'name').trim(),
      kind: fv(f, 'kind').trim(),
      selector: fv(f, 'selector').trim(),
      effect: effectOf(f),
    };
    if (fv(f, 'resource')) body.resource = fv(f, 'resource');
    if (fv(f, 'schedule') === 'cron') {
      body.schedule = { cron: { spec: fv(f, 'cron').trim(), duration_ms: Number(fv(f, 'duration')) * 60e3 } };
    } else {
      body.schedule = { once: { start: fromLocalInput(fv(f, 'start')), end: fromLocalInput(fv(f, 'end')) } };
    }
    act('POST /events', () => api('/events', { method: 'POST', body }));
  });
  return f;
}

function intentForm(now) {
  const f = h('form', { class: 'op panel', id: 'intent-form' },
    ...field('name', h('input', { id: 'in-name', name: 'name', required: true, placeholder: 'video edit' })),
    ...field('selector', h('input', { id: 'in-selector', name: 'selector', required: true, value: '*' })),
    ...field('starts', h('select', { id: 'in-when', name: 'when' },
      h('option', { value: 'now' }, 'now'), h('option', { value: 'at' }, 'at (UTC)'))),
    ...field('at (UTC)', h('input', { id: 'in-at', name: 'at', type: 'datetime-local', value: toLocalInput(now) })),
    ...field('duration (min)', h('input', { id: 'in-duration', name: 'duration', type: 'number', min: '1', value: '60' })),
    ...effectInputs('in'),
    h('div', { class: 'full' }, h('button', { type: 'submit' }, 'Announce intent')));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = {
      name: fv(f, 'name').trim(),
      selector: fv(f, 'selector').trim(),
      start: fv(f, 'when') === 'now' ? 'now' : { at: fromLocalInput(fv(f, 'at')) },
      duration_ms: Number(fv(f, 'duration')) * 60e3,
      effect: effectOf(f),
    };
    if (fv(f, 'resource')) body.resource = fv(f, 'resource');
    act('POST /intents', () => api('/intents', { method: 'POST', body }));
  });
  return f;
}

function requestForm(wl) {
  const f = h('form', { class: 'op panel', id: 'request-form' },
    ...field('workload', h('select', { id: 'rq-workload', name: 'workload' }, wl.map((w) => h('option', { value: w.id }, w.id)))),
    ...field('resource', h('select', { id: 'rq-resource', name: 'resource' },
      h('option', { value: 'cpu' }, 'cpu (cores)'), h('option', { value: 'memory' }, 'memory (bytes)'))),
    ...field('amount (total)', h('input', { id: 'rq-amount', name: 'amount', type: 'number', step: 'any', min: '0', required: true })),
    ...field('priority', h('input', { id: 'rq-priority', name: 'priority', type: 'number', min: '0', value: '0' })),
    ...field('duration (s)', h('input', { id: 'rq-duration', name: 'duration', type: 'number', min: '1', value: '3600' })),
    ...field('justification', h('input', { id: 'rq-why', name: 'why', required: true, placeholder: 'load test' })),
    h('div', { class: 'full' }, h('button', { type: 'submit' }, 'Request')));
  f.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = {
      workload: fv(f, 'workload'),
      resource: fv(f, 'resource'),
      amount: Number(fv(f, 'amount')),
      priority: Number(fv(f, 'priority') || 0),
      justification: fv(f, 'why').trim(),
      duration_s: Number(fv(f, 'duration')),
    };
    act('POST /requests', () => api('/requests', { method: 'POST', body }));
  });
  return f;
}

/** Runs a change, says how it went, and shows the page again. */
async function act(what, call) {
  try {
    const out = await call();
    showError(null);
    await render();
    const box = document.getElementById('op-result');
    if (box) {
      const id = out && typeof out === 'object' && 'id' in out ? ` (id ${out.id})` : '';
      box.replaceChildren(h('div', { class: 'notice', role: 'status' }, `${what}: done${id}`));
    }
  } catch (e) {
    showError(new ApiError(e.status, `${what}: ${e.message}`, e.detail));
  }
}

// ------------------------------------------------------------------- boot

function boot() {
  const input = document.getElementById('token');
  const state = document.getElementById('token-state');
  const say = () => { state.textContent = token() ? 'token set' : 'no token (read-only)'; };
  input.value = token();
  say();
  document.getElementById('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (input.value) localStorage.setItem(TOKEN_KEY, input.value);
    else localStorage.removeItem(TOKEN_KEY);
    say();
    render();
  });
  const box = document.getElementById('auto-refresh');
  box.checked = localStorage.getItem(REFRESH_KEY) !== 'off';
  box.addEventListener('change', () => {
    localStorage.setItem(REFRESH_KEY, box.checked ? 'on' : 'off');
    scheduleRefresh();
  });
  window.addEventListener('hashchange', () => render());
  scheduleRefresh();
  render();
}

boot();
