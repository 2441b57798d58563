// Metrics explorer: a PromQL editor with completion, a range and step, and the answer as a
// chart (range query) or a table (instant query). Query, range, step and tab live in the URL.
import { h, clear, empty, errorBox, table, select } from '../dom.js';
import { prom, matrixToSeries } from '../api.js';
import { TimeChart } from '../chart.js';
import { seriesName, formatValue, formatTime } from '../format.js';
import { update, timeWindow, RANGES } from '../state.js';
import { attachCompletion } from '../complete.js';

export async function render(root, view) {
  let params = view.params;
  const input = h('textarea', { id: 'promql', rows: 3, spellcheck: 'false', placeholder: 'PromQL, e.g. rate(node_cpu_seconds_total[5m])  (Enter runs, Shift+Enter for a new line)' });
  input.value = params.get('query') || '';
  const editor = h('div', { class: 'editor' }, input);
  const stepInput = h('input', { id: 'step', size: 6, placeholder: 'auto', value: params.get('step') || '' });
  const rangeSel = select(RANGES.map((r) => [r, r]), params.get('range') || '1h', (v) => run({ range: v }));
  const status = h('span', { class: 'muted', id: 'metrics-status' });
  const tabs = { graph: h('button', { type: 'button', onclick: () => run({ tab: 'graph' }) }, 'Chart'), table: h('button', { type: 'button', onclick: () => run({ tab: 'table' }) }, 'Table') };
  const result = h('div', { id: 'metrics-result' });
  root.append(
    h('h1', {}, 'Metrics'),
    editor,
    h('div', { class: 'toolbar' },
      h('button', { class: 'primary', type: 'button', id: 'run', onclick: () => run({}) }, 'Run'),
      h('label', {}, 'Range ', rangeSel),
      h('label', {}, 'Step ', stepInput),
      status),
    h('div', { class: 'tabs' }, tabs.graph, tabs.table),
    result);
  attachCompletion(input, () => run({}));
  let chart = null;
  let seq = 0;

  async function run(changes) {
    update({ query: input.value.trim(), step: stepInput.value.trim(), ...changes });
    params = new URLSearchParams(location.hash.split('?')[1] || '');
    await show();
  }

  async function show() {
    const query = params.get('query') || '';
    const tab = params.get('tab') === 'table' ? 'table' : 'graph';
    for (const [k, b] of Object.entries(tabs)) b.classList.toggle('active', k === tab);
    if (chart) { chart.destroy(); chart = null; }
    if (!query) { clear(result, empty('Type a PromQL expression and press Enter.')); root.dataset.loaded = '1'; return; }
    const mine = ++seq;
    const w = timeWindow(params, '1h', 1000);
    status.textContent = 'Running…';
    const t0 = performance.now();
    try {
      if (tab === 'graph') {
        const data = await prom.queryRange(query, w.start, w.end, w.step);
        if (mine !== seq) return;
        const series = data.resultType === 'matrix' ? matrixToSeries(data, seriesName) : [];
        clear(result);
        if (!series.length) result.append(empty(data.resultType === 'matrix' ? 'No data in this range.' : `The answer is a ${data.resultType}: see the table.`));
        else {
          chart = new TimeChart(result, { height: 360 });
          chart.setData(series, { start: w.start * 1000, end: w.end * 1000, step: w.step * 1000 });
        }
        status.textContent = `${series.length} series, step ${w.stepText}, ${Math.round(performance.now() - t0)} ms`;
      } else {
        const data = await prom.query(query, w.end.toFixed(3));
        if (mine !== seq) return;
        clear(result, resultTable(data));
        status.textContent = `${Array.isArray(data.result) ? data.result.length : 1} result(s), ${Math.round(performance.now() - t0)} ms`;
      }
    } catch (e) {
      if (mine !== seq) return;
      clear(result, errorBox(e));
      status.textContent = '';
    }
    root.dataset.loaded = '1';
  }

  await show();
  return {
    update(v) {
      params = v.params;
      input.value = params.get('query') || '';
      stepInput.value = params.get('step') || '';
      rangeSel.value = params.get('range') || '1h';
      show();
    },
    dispose() { if (chart) chart.destroy(); },
  };
}

function resultTable(data) {
  switch (data.resultType) {
    case 'scalar':
    case 'string':
      return table(['value', 'time'], [[String(data.result[1]), formatTime(data.result[0] * 1000)]]);
    case 'vector':
      if (!data.result.length) return empty('Empty answer.');
      return table(['series', 'value'], data.result.map((r) => [seriesName(r.metric), formatValue(parseFloat(r.value[1]))]));
    case 'matrix':
      return table(['series', 'samples', 'last'], data.result.map((r) => [seriesName(r.metric), r.values.length, r.values.length ? r.values[r.values.length - 1][1] : '']));
    default:
      return empty('Unknown answer type.');
  }
}
