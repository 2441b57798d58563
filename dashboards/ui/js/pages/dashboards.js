// Dashboards defined in YAML (served by /api/v1/dashboards): variables filled from label
// values, and panels drawn as time series, stats, tables or log lines.
//
// window.__tidewatch.dashboard records when each panel was drawn (performance.now(), i.e.
// milliseconds since the navigation started), for the browser tests and the benchmark.
import { h, clear, empty, errorBox, table, select } from '../dom.js';
import { prom, loki, dashboards as api, matrixToSeries } from '../api.js';
import { TimeChart } from '../chart.js';
import { formatValue, legendName, seriesName, formatTime } from '../format.js';
import { href, navigate, timeWindow, RANGES } from '../state.js';

window.__tidewatch = window.__tidewatch || {};

export async function render(root, view) {
  if (view.sub[0]) return show(root, view.sub[0], view.params);
  root.append(h('h1', {}, 'Dashboards'));
  const res = await api.list();
  const list = res.data || [];
  root.append(list.length
    ? table(['dashboard', 'description', 'panels', 'source'], list.map((d) => [
      h('a', { href: href('dashboards', [d.name]), class: 'dashboard-link' }, d.title), d.description, d.panels, d.source]))
    : empty('No dashboards.'));
  for (const w of res.warnings || []) root.append(h('p', { class: 'error' }, w));
  root.dataset.loaded = '1';
}

const regexEscape = (v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&');

async function show(root, name, params) {
  const timing = { name, panels: 0, drawn: 0, errors: 0, started: performance.now(), defined: null, queried: [], failures: [], done: null };
  window.__tidewatch.dashboard = timing;
  const d = await api.get(name);
  timing.defined = performance.now();
  const w = timeWindow(params, d.range, 1000);
  const rangeSel = select(RANGES.includes(w.rangeText) ? RANGES.map((r) => [r, r]) : [[w.rangeText, w.rangeText], ...RANGES.map((r) => [r, r])],
    w.rangeText, (v) => navigate({ range: v }));
  const varsBox = h('div', { class: 'vars' });
  root.append(
    h('h1', {}, h('a', { href: href('dashboards') }, 'Dashboards'), ' / ', d.title),
    d.description ? h('p', { class: 'muted' }, d.description) : null,
    h('div', { class: 'toolbar' }, varsBox, h('label', {}, 'Range ', rangeSel),
      h('button', { type: 'button', onclick: () => navigate({ _: String(Date.now()) }) }, 'Refresh')));

  // Variables: values from label values, the URL's choice or All or the first value.
  const values = {};
  await Promise.all(d.variables.map(async (v) => {
    let options = [];
    try {
      options = v.source === 'logs' ? await loki.labelValues(v.label) : await prom.labelValues(v.label, v.match);
    } catch (e) {
      console.warn(`variable ${v.name}: ${e.message}`);
    }
    const wanted = params.get('var-' + v.name);
    const choices = [...(v.all ? [['__all', 'All']] : []), ...options.map((o) => [o, o])];
    const chosen = choices.some(([c]) => c === wanted) ? wanted : (choices[0] ? choices[0][0] : '');
    values[v.name] = chosen === '__all' ? '.+' : regexEscape(chosen);
    const sel = select(choices.length ? choices : [['', '(none)']], chosen, (x) => navigate({ ['var-' + v.name]: x }));
    sel.id = 'var-' + v.name;
    varsBox.append(h('label', {}, `$${v.name} `, sel));
  }));
  values.__interval = `${w.step}s`;
  values.__rate_interval = `${Math.max(60, 4 * w.step)}s`;
  values.__range = `${w.range}s`;
  const expand = (q) => q.replace(/\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, n) => (n in values ? values[n] : all));

  const grid = h('div', { class: 'grid', id: 'dashboard-grid' });
  root.append(grid);
  timing.panels = d.panels.length;
  const charts = [];
  const drawn = (box, failed) => {
    if (box.dataset.drawn) return;
    box.dataset.drawn = '1';
    timing.drawn++;
    if (failed) timing.errors++;
    if (timing.drawn === timing.panels) {
      timing.done = performance.now();
      root.dataset.loaded = '1';
    }
  };
  const win = { start: w.start * 1000, end: w.end * 1000, step: w.step * 1000 };
  await Promise.all(d.panels.map(async (p, i) => {
    const box = h('div', { class: 'panel', dataset: { panel: String(i), type: p.type } }, h('h3', {}, p.title));
    box.style.gridColumn = `span ${p.width}`;
    grid.append(box);
    const query = expand(p.query);
    try {
      if (p.type === 'timeseries') {
        const data = await prom.queryRange(query, w.start, w.end, w.step);
        timing.queried[i] = performance.now();
        const series = matrixToSeries(data, (m) => legendName(p.legend, m));
        if (!series.length) { box.append(empty('No data')); drawn(box); return; }
        const chart = new TimeChart(box, { unit: p.unit, height: 200, onDrawn: () => drawn(box) });
        charts.push(chart);
        chart.setData(series, win);
      } else if (p.type === 'stat') {
        const data = await prom.query(query, w.end.toFixed(3));
        const v = data.resultType === 'scalar' ? parseFloat(data.result[1]) : (data.result[0] ? parseFloat(data.result[0].value[1]) : NaN);
        // Counts read better as 3 than as 3.00.
        box.append(h('div', { class: 'stat' }, Number.isInteger(v) && p.unit === 'short' ? String(v) : formatValue(v, p.unit)));
        drawn(box);
      } else if (p.type === 'table') {
        const data = await prom.query(query, w.end.toFixed(3));
        const rows = data.resultType === 'vector' ? data.result : [];
        if (!rows.length) box.append(empty('No data'));
        else {
          const labels = [...new Set(rows.flatMap((r) => Object.keys(r.metric)))].filter((k) => k !== '__name__').sort();
          box.append(h('div', { class: 'table-wrap' }, table(p.legend ? ['series', 'value'] : [...labels, 'value'], rows.slice(0, 500).map((r) =>
            p.legend ? [legendName(p.legend, r.metric), formatValue(parseFloat(r.value[1]), p.unit)]
              : [...labels.map((k) => r.metric[k] || ''), formatValue(parseFloat(r.value[1]), p.unit)]))));
        }
        drawn(box);
      } else if (p.type === 'logs') {
        const data = await loki.queryRange(query, w.start, w.end, { limit: 200, direction: 'backward' });
        const lines = [];
        for (const s of data.result || []) for (const [ts, line] of s.values) lines.push([BigInt(ts), line, s.stream]);
        lines.sort((a, b) => (a[0] < b[0] ? 1 : -1));
        box.append(lines.length ? h('div', { class: 'logs' }, lines.map(([ts, line, stream]) => h('div', { class: 'logline' },
          h('time', {}, formatTime(Number(ts / 1000000n))), h('span', { class: 'labels' }, stream.container || stream.service || seriesName(stream)), h('span', { class: 'text' }, line))))
          : empty('No lines'));
        drawn(box);
      }
    } catch (e) {
      box.append(errorBox(e));
      timing.failures.push(`${p.title}: ${e.message}`);
      drawn(box, true);
    }
  }));
  return { dispose() { for (const c of charts) c.destroy(); } };
}
