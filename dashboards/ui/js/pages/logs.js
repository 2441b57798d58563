// Log explorer: LogQL, a histogram of matching lines over time, the lines, context around a
// line (its stream's lines before and after), and a live tail that polls for newer lines.
import { h, clear, empty, errorBox, select } from '../dom.js';
import { loki, matrixToSeries } from '../api.js';
import { TimeChart } from '../chart.js';
import { formatTime } from '../format.js';
import { update, timeWindow, RANGES } from '../state.js';

const LIMIT = 500;
const KEEP = 2000;
const CONTEXT = 10;
const TAIL_EVERY_MS = 2000;

function selectorOf(stream) {
  const esc = (v) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return '{' + Object.entries(stream).map(([k, v]) => `${k}="${esc(v)}"`).join(', ') + '}';
}

// Streams as one list of {ns: BigInt, ts, line, stream}, newest first.
function flatten(data) {
  const out = [];
  for (const s of (data && data.result) || []) for (const [ts, line] of s.values) out.push({ ns: BigInt(ts), ts, line, stream: s.stream });
  out.sort((a, b) => (a.ns < b.ns ? 1 : a.ns > b.ns ? -1 : 0));
  return out;
}

export async function render(root, view) {
  let params = view.params;
  const input = h('textarea', { id: 'logql', rows: 2, spellcheck: 'false', placeholder: '{service="web"} |= "error"  (Enter runs)' });
  input.value = params.get('query') || '';
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); run({}); } });
  const rangeSel = select(RANGES.map((r) => [r, r]), params.get('range') || '1h', (v) => run({ range: v }));
  const live = h('input', { type: 'checkbox', id: 'live', checked: params.get('live') === '1', onchange: () => run({ live: live.checked ? '1' : null }) });
  const status = h('span', { class: 'muted', id: 'logs-status' });
  const histogram = h('div', { id: 'logs-histogram' });
  const list = h('div', { class: 'logs', id: 'logs-lines' });
  root.append(
    h('h1', {}, 'Logs'),
    h('div', { class: 'editor' }, input),
    h('div', { class: 'toolbar' },
      h('button', { class: 'primary', type: 'button', id: 'run', onclick: () => run({}) }, 'Run'),
      h('label', {}, 'Range ', rangeSel),
      h('label', {}, live, ' Live tail'),
      status),
    histogram, list);
  let chart = null;
  let lines = [];
  let timer = 0;
  let seq = 0;

  async function run(changes) {
    update({ query: input.value.trim(), ...changes });
    params = new URLSearchParams(location.hash.split('?')[1] || '');
    await show();
  }

  function row(entry, cls) {
    const labels = Object.entries(entry.stream).map(([k, v]) => `${k}=${v}`).join(' ');
    return h('div', { class: 'logline ' + (cls || ''), onclick: cls ? null : (e) => showContext(entry, e.currentTarget) },
      h('time', {}, formatTime(Number(entry.ns / 1000000n))),
      h('span', { class: 'labels', title: labels }, labels),
      h('span', { class: 'text' }, entry.line));
  }

  function renderLines() {
    if (!lines.length) { clear(list, empty('No matching lines in this range.')); return; }
    clear(list, lines.map((l) => row(l)));
  }

  async function showContext(entry, el) {
    for (const old of list.querySelectorAll('.context, .context-title')) old.remove();
    for (const old of list.querySelectorAll('.selected')) old.classList.remove('selected');
    el.classList.add('selected');
    const sel = selectorOf(entry.stream);
    try {
      const [before, after] = await Promise.all([
        loki.queryRange(sel, (entry.ns - 3600n * 1000000000n).toString(), entry.ns.toString(), { limit: CONTEXT, direction: 'backward' }),
        loki.queryRange(sel, (entry.ns + 1n).toString(), (entry.ns + 3600n * 1000000000n).toString(), { limit: CONTEXT, direction: 'forward' }),
      ]);
      // Newest first, like the list: the lines after go above the selected one.
      el.before(...flatten(after).map((l) => row(l, 'context')));
      el.after(...flatten(before).map((l) => row(l, 'context')));
      el.scrollIntoView({ block: 'center' });
    } catch (e) {
      el.after(h('div', { class: 'context error' }, String(e.message)));
    }
  }

  async function show() {
    clearTimeout(timer);
    const query = params.get('query') || '';
    if (chart) { chart.destroy(); chart = null; }
    clear(histogram);
    if (!query) { clear(list, empty('Type a LogQL query, e.g. {service="web"} |= "error", and press Enter.')); root.dataset.loaded = '1'; return; }
    const mine = ++seq;
    const w = timeWindow(params, '1h', 1000);
    const bucket = Math.max(1, Math.ceil(w.range / 120));
    status.textContent = 'Running…';
    const isLogQuery = query.startsWith('{');
    try {
      const [hist, data] = await Promise.all([
        loki.queryRange(isLogQuery ? `sum(count_over_time(${query}[${bucket}s]))` : query, w.start, w.end, { step: bucket, limit: LIMIT }),
        isLogQuery ? loki.queryRange(query, w.start, w.end, { limit: LIMIT, direction: 'backward' }) : null,
      ]);
      if (mine !== seq) return;
      chart = new TimeChart(histogram, { height: 120, bars: isLogQuery });
      chart.setData(matrixToSeries(hist, (m) => (isLogQuery ? 'lines' : JSON.stringify(m))), { start: w.start * 1000, end: w.end * 1000, step: bucket * 1000 });
      lines = isLogQuery ? flatten(data) : [];
      if (isLogQuery) renderLines(); else clear(list);
      status.textContent = isLogQuery ? `${lines.length}${lines.length >= LIMIT ? '+' : ''} lines` : 'metric query';
      if (isLogQuery && params.get('live') === '1') timer = setTimeout(() => tail(mine), TAIL_EVERY_MS);
    } catch (e) {
      if (mine !== seq) return;
      clear(list, errorBox(e));
      status.textContent = '';
    }
    root.dataset.loaded = '1';
  }

  // Live tail by polling: lines newer than the newest shown, oldest first, prepended.
  async function tail(mine) {
    if (mine !== seq) return;
    const query = params.get('query');
    const from = lines.length ? lines[0].ns + 1n : BigInt(Math.floor(Date.now() - 60000)) * 1000000n;
    try {
      const data = await loki.queryRange(query, from.toString(), (BigInt(Date.now() + 1000) * 1000000n).toString(), { limit: LIMIT, direction: 'forward' });
      if (mine !== seq) return;
      const fresh = flatten(data);
      if (fresh.length) {
        if (!lines.length) list.replaceChildren();
        lines = fresh.concat(lines).slice(0, KEEP);
        list.prepend(...fresh.map((l) => row(l)));
        while (list.childElementCount > KEEP) list.lastElementChild.remove();
        status.textContent = `${lines.length} lines, live`;
      }
    } catch (e) {
      status.textContent = `live tail: ${e.message}`;
    }
    timer = setTimeout(() => tail(mine), TAIL_EVERY_MS);
  }

  await show();
  return {
    update(v) {
      params = v.params;
      input.value = params.get('query') || '';
      rangeSel.value = params.get('range') || '1h';
      live.checked = params.get('live') === '1';
      show();
    },
    dispose() { seq++; clearTimeout(timer); if (chart) chart.destroy(); },
  };
}
