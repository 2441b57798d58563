// Completion for a PromQL textarea: metric names and functions where an identifier is typed,
// label names inside {...} or by (...), label values after label=" . Names come from
// /api/v1/label/__name__/values, /api/v1/labels and /api/v1/label/<name>/values.
import { h } from './dom.js';
import { prom } from './api.js';

const FUNCTIONS = ['abs', 'absent', 'absent_over_time', 'avg', 'avg_over_time', 'bottomk', 'ceil', 'changes', 'clamp',
  'clamp_max', 'clamp_min', 'count', 'count_over_time', 'count_values', 'day_of_month', 'day_of_week', 'delta', 'deriv',
  'exp', 'floor', 'group', 'histogram_quantile', 'holt_winters', 'hour', 'idelta', 'increase', 'irate', 'label_join',
  'label_replace', 'last_over_time', 'ln', 'log2', 'log10', 'max', 'max_over_time', 'min', 'min_over_time', 'minute',
  'month', 'predict_linear', 'present_over_time', 'quantile', 'quantile_over_time', 'rate', 'resets', 'round',
  'scalar', 'sgn', 'sort', 'sort_desc', 'sqrt', 'stddev', 'stddev_over_time', 'stdvar', 'sum', 'sum_over_time',
  'time', 'timestamp', 'topk', 'vector', 'year', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset'];

// What is being typed at `pos`: {kind: 'metric'|'label'|'value', prefix, metric?, label?}.
export function context(text, pos) {
  const before = text.slice(0, pos);
  const value = before.match(/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/);
  const open = before.lastIndexOf('{');
  const inBraces = open > before.lastIndexOf('}');
  if (value && inBraces) {
    const metric = before.slice(0, open).match(/([A-Za-z_:][A-Za-z0-9_:]*)\s*$/);
    return { kind: 'value', label: value[1], prefix: value[3], metric: metric && metric[1] };
  }
  const word = before.match(/([A-Za-z_:][A-Za-z0-9_:]*)$/);
  const prefix = word ? word[1] : '';
  const paren = before.lastIndexOf('(');
  const grouping = /\b(by|without|on|ignoring|group_left|group_right)\s*\(\s*([A-Za-z0-9_,\s]*)$/.test(before) && paren > before.lastIndexOf(')');
  if (inBraces || grouping) {
    const metric = inBraces ? before.slice(0, open).match(/([A-Za-z_:][A-Za-z0-9_:]*)\s*$/) : null;
    return { kind: 'label', prefix, metric: metric && metric[1] };
  }
  return { kind: 'metric', prefix };
}

export function attachCompletion(textarea, onRun) {
  const box = h('div', { class: 'completions', hidden: true });
  textarea.parentElement.append(box);
  let items = [];
  let sel = 0;
  let metricNames = null;
  const cache = new Map();
  let seq = 0;

  async function candidates(ctx) {
    if (ctx.kind === 'metric') {
      if (!metricNames) metricNames = prom.labelValues('__name__').catch(() => []);
      return [...(await metricNames), ...FUNCTIONS];
    }
    const key = `${ctx.kind}|${ctx.label || ''}|${ctx.metric || ''}`;
    if (!cache.has(key)) {
      cache.set(key, (ctx.kind === 'label' ? prom.labelNames(ctx.metric) : prom.labelValues(ctx.label, ctx.metric)).catch(() => []));
    }
    return cache.get(key);
  }

  async function refresh() {
    const ctx = context(textarea.value, textarea.selectionStart);
    const mine = ++seq;
    if (ctx.kind !== 'value' && ctx.prefix.length < 1) { hide(); return; }
    const all = await candidates(ctx);
    if (mine !== seq) return;
    const p = ctx.prefix.toLowerCase();
    items = all.filter((c) => c.toLowerCase().startsWith(p) && c !== ctx.prefix).slice(0, 50);
    if (items.length < 50) items.push(...all.filter((c) => !c.toLowerCase().startsWith(p) && c.toLowerCase().includes(p)).slice(0, 50 - items.length));
    if (!items.length) { hide(); return; }
    sel = 0;
    box.ctx = ctx;
    render();
  }

  function render() {
    box.replaceChildren(...items.map((c, i) => h('div', {
      class: i === sel ? 'sel' : '',
      onmousedown: (e) => { e.preventDefault(); accept(i); },
    }, c)));
    box.hidden = false;
    box.style.left = '0';
    box.style.top = textarea.offsetHeight + 'px';
  }

  function hide() { box.hidden = true; items = []; }

  function accept(i) {
    const ctx = box.ctx;
    const pos = textarea.selectionStart;
    const start = pos - ctx.prefix.length;
    let insert = items[i];
    if (ctx.kind === 'value') insert = insert.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
    textarea.setRangeText(insert, start, pos, 'end');
    hide();
    textarea.dispatchEvent(new Event('input'));
    textarea.focus();
  }

  textarea.addEventListener('input', () => { refresh(); });
  textarea.addEventListener('blur', () => setTimeout(hide, 100));
  textarea.addEventListener('keydown', (e) => {
    if (!box.hidden && items.length) {
      if (e.key === 'ArrowDown') { sel = (sel + 1) % items.length; render(); e.preventDefault(); return; }
      if (e.key === 'ArrowUp') { sel = (sel - 1 + items.length) % items.length; render(); e.preventDefault(); return; }
      if (e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey && !e.ctrlKey)) { accept(sel); e.preventDefault(); return; }
      if (e.key === 'Escape') { hide(); e.preventDefault(); return; }
    }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); onRun(); }
  });
  return { refresh, hide, box };
}
