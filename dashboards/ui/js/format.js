// Number, time and series-name formatting shared by the pages and the charts.

const UNITS_SI = ['', 'k', 'M', 'G', 'T', 'P'];
const UNITS_BIN = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatValue(v, unit = 'short') {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  switch (unit) {
    case 'percent': return `${round(v)}%`;
    case 'percentunit': return `${round(v * 100)}%`;
    case 'bytes': return scaled(v, 1024, UNITS_BIN, '');
    case 'bytes/s': return scaled(v, 1024, UNITS_BIN, '') + '/s';
    case 'seconds': return seconds(v);
    case 'ops/s': return scaled(v, 1000, UNITS_SI, ' ') + 'ops/s';
    default: return scaled(v, 1000, UNITS_SI, '');
  }
}

function round(v) {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 0.01) return v.toFixed(2);
  return v.toPrecision(2);
}

function scaled(v, base, units, sep) {
  let i = 0;
  let x = v;
  while (Math.abs(x) >= base && i < units.length - 1) { x /= base; i++; }
  return round(x) + (units[i] ? sep + units[i] : '');
}

function seconds(v) {
  const a = Math.abs(v);
  if (a === 0) return '0s';
  if (a < 1e-3) return round(v * 1e6) + 'µs';
  if (a < 1) return round(v * 1e3) + 'ms';
  if (a < 60) return round(v) + 's';
  if (a < 3600) return round(v / 60) + 'm';
  if (a < 86400) return round(v / 3600) + 'h';
  return round(v / 86400) + 'd';
}

// Seconds in a Prometheus duration ("90s", "1h30m", "7d"); NaN if malformed.
export function parseDuration(s) {
  const m = String(s).trim().match(/^(\d+(?:\.\d+)?(ms|s|m|h|d|w|y))+$/);
  if (!m) return NaN;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  let total = 0;
  for (const part of String(s).trim().matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/g)) total += parseFloat(part[1]) * mult[part[2]];
  return total;
}

export function formatDuration(secs) {
  if (secs % 86400 === 0) return `${secs / 86400}d`;
  if (secs % 3600 === 0) return `${secs / 3600}h`;
  if (secs % 60 === 0) return `${secs / 60}m`;
  return `${Math.max(1, Math.round(secs))}s`;
}

function pad(n, w = 2) { return String(n).padStart(w, '0'); }

// Local time, to the second ("2026-11-23 16:05:09").
export function formatTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// Axis labels: shorter as the range shrinks.
export function formatTick(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs > 3 * 86400e3) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (spanMs > 86400e3) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (spanMs > 600e3) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// `name{a="b", c="d"}` as Prometheus writes a series.
export function seriesName(metric) {
  const name = metric.__name__ || '';
  const labels = Object.entries(metric).filter(([k]) => k !== '__name__')
    .map(([k, v]) => `${k}="${v}"`).join(', ');
  return labels ? `${name}{${labels}}` : (name || '{}');
}

// A legend template: "{{service}} on {{node}}".
export function legendName(template, metric) {
  if (!template) return seriesName(metric);
  return template.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (_, k) => metric[k] ?? '');
}

// Timestamps from the APIs: RFC 3339 strings, seconds, or nanosecond strings (Loki).
export function toMs(t) {
  if (t === null || t === undefined) return NaN;
  if (typeof t === 'number') return t > 1e14 ? t / 1e6 : (t > 1e11 ? t : t * 1000);
  if (/^\d{16,}$/.test(t)) return Number(BigInt(t) / 1000000n);
  if (/^\d+(\.\d+)?$/.test(t)) return toMs(parseFloat(t));
  return Date.parse(t);
}
