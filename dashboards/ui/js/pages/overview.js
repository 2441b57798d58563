// Overview: nodes, containers, services and firing alerts, each from its own query so one
// missing part (no alert engine, no scheduler) leaves the others intact.
import { h, clear, empty, errorBox, table } from '../dom.js';
import { prom, alerting, services as servicesApi } from '../api.js';
import { formatValue } from '../format.js';
import { href } from '../state.js';

export async function render(root) {
  const cards = {
    nodes: h('div', { class: 'card', id: 'overview-nodes' }, h('h2', {}, 'Nodes'), h('p', { class: 'muted' }, 'Loading…')),
    containers: h('div', { class: 'card', id: 'overview-containers' }, h('h2', {}, 'Containers'), h('p', { class: 'muted' }, 'Loading…')),
    services: h('div', { class: 'card', id: 'overview-services' }, h('h2', {}, 'Services'), h('p', { class: 'muted' }, 'Loading…')),
    alerts: h('div', { class: 'card', id: 'overview-alerts' }, h('h2', {}, 'Firing alerts'), h('p', { class: 'muted' }, 'Loading…')),
  };
  root.append(h('h1', {}, 'Overview'), h('div', { class: 'cards' }, Object.values(cards)));
  const fill = (card, title, ...content) => clear(card, h('h2', {}, title), ...content);
  await Promise.all([
    nodes().then((c) => fill(cards.nodes, 'Nodes', c), (e) => fill(cards.nodes, 'Nodes', errorBox(e))),
    containers().then((c) => fill(cards.containers, 'Containers', c), (e) => fill(cards.containers, 'Containers', errorBox(e))),
    serviceList().then((c) => fill(cards.services, 'Services', c), (e) => fill(cards.services, 'Services', errorBox(e))),
    firing().then((c) => fill(cards.alerts, 'Firing alerts', c), (e) => fill(cards.alerts, 'Firing alerts', errorBox(e))),
  ]);
  root.dataset.loaded = '1';
}

const nodeName = (m) => m.node || m.nodename || m.instance || '?';

async function nodes() {
  const [up, uname] = await Promise.all([
    prom.query('up{job="node"}'),
    prom.query('node_uname_info').catch(() => ({ result: [] })),
  ]);
  const byNode = new Map();
  for (const r of uname.result) byNode.set(nodeName(r.metric), { metric: r.metric, up: null });
  for (const r of up.result) {
    const n = nodeName(r.metric);
    byNode.set(n, { ...(byNode.get(n) || { metric: r.metric }), up: r.value[1] === '1' });
  }
  if (!byNode.size) return empty('No node metrics yet (up{job="node"}, node_uname_info).');
  const link = (n) => h('a', { href: href('dashboards', ['hosts'], { 'var-node': n }) }, n);
  return table(['node', 'state', 'kernel'], [...byNode].sort().map(([n, v]) => [
    link(n),
    v.up === null ? '' : h('span', { class: 'badge ' + (v.up ? 'up' : 'down') }, v.up ? 'up' : 'down'),
    v.metric.release || '',
  ]));
}

async function containers() {
  let data = await prom.query('container_last_seen');
  if (!data.result.length) data = await prom.query('container_memory_working_set_bytes');
  if (!data.result.length) return empty('No container metrics yet (container_last_seen, container_memory_working_set_bytes).');
  const mem = await prom.query('container_memory_working_set_bytes').catch(() => ({ result: [] }));
  const memOf = new Map(mem.result.map((r) => [r.metric.name || r.metric.container, parseFloat(r.value[1])]));
  const rows = data.result
    .map((r) => r.metric)
    .filter((m) => m.name || m.container)
    .sort((a, b) => (a.name || a.container).localeCompare(b.name || b.container));
  return h('div', {},
    h('p', { class: 'muted' }, `${rows.length} running`),
    table(['name', 'image', 'service', 'node', 'memory'], rows.slice(0, 200).map((m) => [
      m.name || m.container, m.image || '', m.service || '', m.node || '',
      formatValue(memOf.get(m.name || m.container), 'bytes'),
    ])));
}

// Services from the scheduler, else the `service` label of container metrics.
async function serviceList() {
  try {
    const list = await servicesApi.list();
    const items = Array.isArray(list) ? list : (list && list.services) || [];
    if (!items.length) return empty('No services defined.');
    return table(['service', 'replicas'], items.map((s) => [
      h('a', { href: href('services', [s.name]) }, s.name),
      `${s.running ?? s.ready ?? s.replicas ?? ''}${s.desired !== undefined ? ' / ' + s.desired : ''}`,
    ]));
  } catch (e) {
    if (!e.missing) throw e;
  }
  const data = await prom.query('count by (service) (container_memory_working_set_bytes{service!=""})');
  if (!data.result.length) return empty('No scheduler configured, and no containers with a service label.');
  return h('div', {},
    table(['service', 'containers'], data.result
      .sort((a, b) => a.metric.service.localeCompare(b.metric.service))
      .map((r) => [h('a', { href: href('services', [r.metric.service]) }, r.metric.service), r.value[1]])),
    h('p', { class: 'muted' }, 'From container metrics (no scheduler API on this server).'));
}

async function firing() {
  let alerts;
  try {
    alerts = (await alerting.alerts()).filter((a) => a.state === 'firing');
  } catch (e) {
    if (!e.missing) throw e;
    const data = await prom.query('ALERTS{alertstate="firing"}');
    if (!data.result.length) return empty('No alerting configured.');
    alerts = data.result.map((r) => ({ labels: r.metric }));
  }
  if (!alerts.length) return empty('Nothing is firing.');
  return table(['alert', 'labels'], alerts.map((a) => [
    h('a', { href: href('alerts') }, a.labels.alertname),
    Object.entries(a.labels).filter(([k]) => !['alertname', '__name__', 'alertstate'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' '),
  ]));
}
