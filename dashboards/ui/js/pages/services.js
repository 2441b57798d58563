// Services: the list, and for one service its replicas over time with the autoscaler's
// decisions and the scheduler's events marked on the same time axis, the autoscaler's metric
// against its target, and the events as a table.
import { h, clear, empty, errorBox, table, select } from '../dom.js';
import { prom, services as api, matrixToSeries } from '../api.js';
import { TimeChart } from '../chart.js';
import { formatTime, toMs } from '../format.js';
import { href, navigate, timeWindow, RANGES } from '../state.js';

const esc = (v) => String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"');

export async function render(root, view) {
  if (view.sub[0]) return detail(root, view.sub[0], view.params);
  root.append(h('h1', {}, 'Services'));
  const box = h('div', { id: 'services-list' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(box);
  try {
    let rows;
    let note = null;
    try {
      const list = await api.list();
      const items = Array.isArray(list) ? list : (list && list.services) || [];
      rows = items.map((s) => [s.name, `${s.running ?? s.ready ?? s.replicas ?? ''}${s.desired !== undefined ? ' / ' + s.desired : ''}`, s.image || (s.spec && s.spec.image) || '']);
    } catch (e) {
      if (!e.missing) throw e;
      const data = await prom.query('count by (service) (container_memory_working_set_bytes{service!=""})');
      rows = data.result.map((r) => [r.metric.service, r.value[1], '']);
      note = h('p', { class: 'muted' }, 'No scheduler API on this server: services are read from the service label of container metrics.');
    }
    rows.sort((a, b) => a[0].localeCompare(b[0]));
    clear(box, rows.length
      ? table(['service', 'replicas', 'image'], rows.map(([n, r, i]) => [h('a', { href: href('services', [n]) }, n), r, i]))
      : empty('No services.'), note);
  } catch (e) {
    clear(box, errorBox(e));
  }
  root.dataset.loaded = '1';
}

// Reads decisions loosely: the autoscaler's answer is either a list or an object holding one.
function decisionsOf(answer) {
  const list = Array.isArray(answer) ? answer : (answer && (answer.decisions || answer.history)) || [];
  return list.map((d) => ({
    t: toMs(d.time_ms ?? d.time ?? d.timestamp ?? d.at),
    metrics: d.metrics || [],
    from: d.from ?? d.current ?? d.current_replicas,
    to: d.to ?? d.desired ?? d.desired_replicas ?? d.replicas,
    reason: d.reason || d.message || '',
  })).filter((d) => Number.isFinite(d.t));
}

function eventsOf(answer) {
  const list = Array.isArray(answer) ? answer : (answer && answer.events) || [];
  return list.map((e) => ({
    t: toMs(e.time_ms ?? e.time ?? e.timestamp ?? e.at),
    kind: e.kind || e.type || e.reason || e.action || '',
    message: e.message || e.line || e.text || '',
    service: e.service,
  })).filter((e) => Number.isFinite(e.t));
}

async function detail(root, name, params) {
  const w = timeWindow(params, '1h', 1000);
  const rangeSel = select(RANGES.map((r) => [r, r]), w.rangeText, (v) => navigate({ range: v }));
  root.append(
    h('h1', {}, h('a', { href: href('services') }, 'Services'), ' / ', name),
    h('div', { class: 'toolbar' }, h('label', {}, 'Range ', rangeSel)));
  const replicasBox = h('div', { class: 'panel', id: 'service-replicas' }, h('h3', {}, 'Replicas, autoscaler decisions (dashed) and events'));
  const metricBox = h('div', { class: 'panel', id: 'service-metric' }, h('h3', {}, 'Autoscaler metric and target'));
  const eventsBox = h('div', { class: 'panel', id: 'service-events' }, h('h3', {}, 'Events'));
  root.append(h('div', { class: 'grid' }, replicasBox, metricBox, eventsBox));
  for (const b of [replicasBox, metricBox, eventsBox]) b.style.gridColumn = 'span 12';
  const startMs = w.start * 1000;
  const endMs = w.end * 1000;
  const win = { start: startMs, end: endMs, step: w.step * 1000 };

  const sel = `{service="${esc(name)}"}`;
  const none = () => ({ resultType: 'matrix', result: [] });
  // The autoscaler's own gauges, when the server keeps its self-metrics.
  const [running, scaler, events, desiredSeries, valueSeries, targetSeries] = await Promise.all([
    prom.queryRange(`count(container_memory_working_set_bytes${sel})`, w.start, w.end, w.step).catch((e) => e),
    api.autoscaler(name).catch((e) => e),
    api.events({ service: name, limit: '1000' }).catch((e) => e),
    prom.queryRange(`max(tidewatch_autoscaler_desired_replicas${sel})`, w.start, w.end, w.step).catch(none),
    prom.queryRange(`tidewatch_autoscaler_metric_value${sel}`, w.start, w.end, w.step).catch(none),
    prom.queryRange(`tidewatch_autoscaler_metric_target${sel}`, w.start, w.end, w.step).catch(none),
  ]);
  const inWindow = (x) => x.t >= startMs && x.t <= endMs;
  const decisions = scaler instanceof Error ? [] : decisionsOf(scaler).filter(inWindow);
  const evs = events instanceof Error ? [] : eventsOf(events).filter((e) => (!e.service || e.service === name) && inWindow(e));
  const markers = [
    ...decisions.map((d) => ({ t: d.t, label: `scale ${d.from ?? '?'} → ${d.to ?? '?'} ${d.reason}` })),
    ...evs.map((e) => ({ t: e.t, label: `${e.kind} ${e.message}`, color: getComputedStyle(document.documentElement).getPropertyValue('--accent').trim() })),
  ];

  if (running instanceof Error) replicasBox.append(errorBox(running));
  else {
    const series = matrixToSeries(running, () => 'running containers');
    // The desired count as the autoscaler set it: a step line through its decisions.
    const steps = decisions.filter((d) => d.to !== undefined).sort((a, b) => a.t - b.t);
    const desired = matrixToSeries(desiredSeries, () => 'desired (autoscaler)');
    if (desired.length) series.push(...desired);
    else if (steps.length) {
      const ts = [];
      const vs = [];
      steps.forEach((d, i) => { ts.push(d.t); vs.push(Number(d.to)); ts.push(i + 1 < steps.length ? steps[i + 1].t - 1 : endMs); vs.push(Number(d.to)); });
      series.push({ name: 'desired (autoscaler)', ts: Float64Array.from(ts), values: Float64Array.from(vs) });
    }
    if (!series.length) replicasBox.append(empty('No containers of this service in this range.'));
    else {
      const chart = new TimeChart(replicasBox, { height: 220, zero: true });
      chart.setData(series, win);
      chart.setMarkers(markers);
    }
  }

  // The autoscaler's metrics as it read them at each decision (and at its last evaluation),
  // against their targets, in the autoscaler's own unit (percent for utilisation).
  if (scaler instanceof Error) metricBox.append(scaler.missing ? empty('No autoscaler policy for this service.') : errorBox(scaler));
  else {
    const points = new Map();
    const add = (t, m) => {
      if (!Number.isFinite(t) || !m || !m.name) return;
      if (!points.has(m.name)) points.set(m.name, { current: [], target: [] });
      const p = points.get(m.name);
      if (Number.isFinite(m.current)) p.current.push([t, m.current]);
      if (Number.isFinite(m.target)) p.target.push([t, m.target]);
    };
    for (const d of decisions) for (const m of d.metrics) add(d.t, m);
    const status = scaler.status || {};
    if (Number.isFinite(status.last_evaluation_ms)) for (const m of status.metrics || []) add(status.last_evaluation_ms, m);
    const series = [
      ...matrixToSeries(valueSeries, (m) => `${m.metric || 'metric'} (current)`),
      ...matrixToSeries(targetSeries, (m) => `${m.metric || 'metric'} (target)`),
    ];
    if (series.length) points.clear();
    const toSeries = (label, pts) => {
      pts.sort((a, b) => a[0] - b[0]);
      series.push({ name: label, ts: Float64Array.from(pts.map((p) => p[0])), values: Float64Array.from(pts.map((p) => p[1])) });
    };
    for (const [metric, p] of points) {
      if (p.current.length) toSeries(`${metric} (current)`, p.current);
      if (p.target.length) toSeries(`${metric} (target)`, [[startMs, p.target[0][1]], ...p.target, [endMs, p.target[p.target.length - 1][1]]]);
    }
    if (!series.length) metricBox.append(empty('The autoscaler has not read its metrics in this range.'));
    else {
      const chart = new TimeChart(metricBox, { height: 220 });
      chart.setData(series, { start: startMs, end: endMs });
      chart.setMarkers(markers);
    }
  }

  if (events instanceof Error) eventsBox.append(events.missing ? empty('No scheduler events API on this server.') : errorBox(events));
  else if (!evs.length && !decisions.length) eventsBox.append(empty('No events in this range.'));
  else {
    const rows = [
      ...evs.map((e) => [e.t, e.kind, e.message]),
      ...decisions.map((d) => [d.t, 'autoscaler', `scale ${d.from ?? '?'} → ${d.to ?? '?'} ${d.reason}`]),
    ].sort((a, b) => b[0] - a[0]);
    eventsBox.append(table(['time', 'kind', 'message'], rows.map(([t, k, m]) => [formatTime(t), k, m])));
  }
  root.dataset.loaded = '1';
}
