// Clients for the APIs served on the same origin: Prometheus (/api/v1), Loki (/loki/api/v1),
// Alertmanager (/api/v2), and Tidewatch's scheduler and autoscaler.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  get missing() { return this.status === 404 || this.status === 405 || this.status === 501; }
}

// Requests beyond Chromium's six connections per host would wait in its socket pool, where a
// network change (an interface coming or going) aborts them; they wait here instead.
const MAX_IN_FLIGHT = 6;
let inFlight = 0;
const waiting = [];

async function limited(fn) {
  if (inFlight >= MAX_IN_FLIGHT) await new Promise((resolve) => waiting.push(resolve));
  inFlight++;
  try {
    return await fn();
  } finally {
    inFlight--;
    const next = waiting.shift();
    if (next) next();
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function request(method, path, params, body) {
  return limited(() => send(method, path, params, body));
}

async function send(method, path, params, body) {
  const qs = params ? '?' + new URLSearchParams(params).toString() : '';
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  // A GET that fails below HTTP (Chromium aborts requests in flight with ERR_NETWORK_CHANGED
  // when a network interface comes or goes, e.g. a container starting) is tried again.
  for (let attempt = 0; ; attempt++) {
    try {
      res = await fetch(path + qs, init);
      break;
    } catch (e) {
      if (method !== 'GET' || attempt >= 2) throw new ApiError(0, `${path}: ${e.message}`);
      await sleep(100 * (attempt + 1));
    }
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: use the text */ }
  if (!res.ok || (json && json.status === 'error')) {
    const msg = (json && (json.error || json.message)) || text.trim() || res.statusText;
    throw new ApiError(res.status, `${method} ${path}: ${res.status} ${msg}`);
  }
  return json;
}

export const get = (path, params) => request('GET', path, params);
export const post = (path, body) => request('POST', path, undefined, body);
export const del = (path) => request('DELETE', path);

// Prometheus query API.
export const prom = {
  query: (query, time) => get('/api/v1/query', time ? { query, time } : { query }).then((r) => r.data),
  queryRange: (query, start, end, step) =>
    get('/api/v1/query_range', { query, start: start.toFixed(3), end: end.toFixed(3), step: String(step) }).then((r) => r.data),
  labelNames: (match) => get('/api/v1/labels', match ? { 'match[]': match } : undefined).then((r) => r.data || []),
  labelValues: (name, match) =>
    get(`/api/v1/label/${encodeURIComponent(name)}/values`, match ? { 'match[]': match } : undefined).then((r) => r.data || []),
  metadata: () => get('/api/v1/metadata').then((r) => r.data || {}),
};

// Loki query API. Times are nanoseconds since the epoch, as strings.
const ns = (secs) => (BigInt(Math.floor(secs * 1000)) * 1000000n).toString();
export const loki = {
  ns,
  queryRange: (query, start, end, opts = {}) => get('/loki/api/v1/query_range', {
    query, start: typeof start === 'string' ? start : ns(start), end: typeof end === 'string' ? end : ns(end),
    limit: String(opts.limit || 500), direction: opts.direction || 'backward',
    ...(opts.step ? { step: String(opts.step) } : {}),
  }).then((r) => r.data),
  labelNames: () => get('/loki/api/v1/labels').then((r) => r.data || []),
  labelValues: (name) => get(`/loki/api/v1/label/${encodeURIComponent(name)}/values`).then((r) => r.data || []),
};

// Alerts: Prometheus' rule API and Alertmanager's v2 silences.
export const alerting = {
  alerts: () => get('/api/v1/alerts').then((r) => (r.data && r.data.alerts) || []),
  rules: () => get('/api/v1/rules').then((r) => (r.data && r.data.groups) || []),
  silences: () => get('/api/v2/silences').then((r) => (Array.isArray(r) ? r : [])),
  createSilence: (s) => post('/api/v2/silences', s),
  expireSilence: (id) => del(`/api/v2/silence/${encodeURIComponent(id)}`),
};

// The scheduler and the autoscaler. Their answers are read loosely: either a bare array or the
// Prometheus-style envelope {status, data}.
const unwrap = (r) => (r && r.data !== undefined ? r.data : r);
export const services = {
  list: () => get('/api/v1/services').then(unwrap),
  events: (params) => get('/api/v1/events', params).then(unwrap),
  autoscaler: (service) => get(`/api/v1/autoscaler/${encodeURIComponent(service)}`).then(unwrap),
};

export const dashboards = {
  list: () => get('/api/v1/dashboards').then((r) => r),
  get: (name) => get(`/api/v1/dashboards/${encodeURIComponent(name)}`).then((r) => r.data),
};

// Range-query results as chart series: [{name, metric, ts: Float64Array(ms), values: Float64Array}].
export function matrixToSeries(data, nameOf) {
  if (!data || data.resultType !== 'matrix') return [];
  return data.result.map((r) => {
    const n = r.values.length;
    const ts = new Float64Array(n);
    const values = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      ts[i] = r.values[i][0] * 1000;
      values[i] = parseFloat(r.values[i][1]);
    }
    return { name: nameOf(r.metric), metric: r.metric, ts, values };
  });
}
