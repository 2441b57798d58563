// Time-series charts on a canvas. Each series is decimated to at most four points per pixel
// column (first, min, max, last of the samples falling in it), so a chart draws in time
// proportional to its width whatever the number of samples, and spikes are never lost.
import { h } from './dom.js';
import { formatValue, formatTick, formatTime } from './format.js';

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800]
  .map((s) => s * 1000);

function theme() {
  const css = getComputedStyle(document.documentElement);
  const v = (n) => css.getPropertyValue(n).trim();
  return { fg: v('--fg'), muted: v('--muted'), grid: v('--grid'), accent: v('--accent'), warn: v('--warn'), series: v('--series').split(',').map((s) => s.trim()) };
}

export function seriesColor(i) {
  const s = theme().series;
  return s[i % s.length];
}

function niceTicks(min, max, count) {
  const span = max - min;
  if (!(span > 0)) return [min];
  const raw = span / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

// Byte axes step in KiB, MiB, ... so ticks read 512MiB, 1GiB rather than 954MiB.
function axisTicks(lo, hi, count, unit) {
  if (unit === 'bytes' || unit === 'bytes/s') {
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    let k = 1;
    while (m / k >= 1024 && k < 1024 ** 5) k *= 1024;
    return niceTicks(lo / k, hi / k, count).map((v) => v * k);
  }
  return niceTicks(lo, hi, count);
}

// Per pixel column: first, min, max, last value, and whether a gap precedes the column.
export function decimate(s, start, end, width, gapMs) {
  const first = new Float64Array(width).fill(NaN);
  const last = new Float64Array(width).fill(NaN);
  const min = new Float64Array(width).fill(Infinity);
  const max = new Float64Array(width).fill(-Infinity);
  const gap = new Uint8Array(width);
  const scale = width / (end - start);
  let prevT = -Infinity;
  for (let i = 0; i < s.ts.length; i++) {
    const t = s.ts[i];
    const v = s.values[i];
    if (t < start || t > end || !Number.isFinite(v)) { if (!Number.isFinite(v)) prevT = -Infinity; continue; }
    let c = Math.floor((t - start) * scale);
    if (c >= width) c = width - 1;
    if (Number.isNaN(first[c])) {
      first[c] = v;
      if (t - prevT > gapMs) gap[c] = 1;
    }
    last[c] = v;
    if (v < min[c]) min[c] = v;
    if (v > max[c]) max[c] = v;
    prevT = t;
  }
  return { first, last, min, max, gap };
}

export class TimeChart {
  constructor(container, opts = {}) {
    this.opts = { unit: 'short', height: 240, bars: false, ...opts };
    this.series = [];
    this.markers = [];
    this.hidden = new Set();
    this.canvas = h('canvas');
    this.overlay = h('canvas');
    this.overlay.style.position = 'absolute';
    this.overlay.style.left = '0';
    this.overlay.style.top = '0';
    this.tooltip = h('div', { class: 'tooltip', hidden: true });
    this.legend = h('div', { class: 'legend' });
    this.root = h('div', { class: 'chart' }, this.canvas, this.overlay, this.tooltip);
    container.append(this.root, this.legend);
    this.overlay.addEventListener('mousemove', (e) => this.hover(e));
    this.overlay.addEventListener('mouseleave', () => this.unhover());
    this.resizer = new ResizeObserver(() => this.schedule());
    this.resizer.observe(this.root);
    this.onTheme = () => this.schedule();
    window.addEventListener('themechange', this.onTheme);
  }

  // series: [{name, ts: Float64Array ms, values: Float64Array}]; window in ms; step in ms.
  setData(series, { start, end, step }) {
    this.series = series;
    this.start = start;
    this.end = end;
    this.gapMs = step ? step * 2.5 : Infinity;
    this.step = step;
    this.cache = null;
    this.renderLegend();
    this.schedule();
  }

  setMarkers(markers) {
    this.markers = markers;
    this.schedule();
  }

  destroy() {
    this.resizer.disconnect();
    window.removeEventListener('themechange', this.onTheme);
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.draw();
    });
  }

  renderLegend() {
    this.legend.replaceChildren(...this.series.slice(0, 200).map((s, i) => {
      const el = h('span', { class: this.hidden.has(s.name) ? 'off' : '', title: s.name },
        h('i', {}), s.name);
      el.firstChild.style.background = seriesColor(i);
      el.addEventListener('click', () => {
        if (this.hidden.has(s.name)) this.hidden.delete(s.name); else this.hidden.add(s.name);
        el.classList.toggle('off');
        this.cache = null;
        this.schedule();
      });
      return el;
    }));
    if (this.series.length > 200) this.legend.append(h('span', { class: 'muted' }, `… ${this.series.length - 200} more`));
  }

  layout() {
    const width = Math.max(100, this.root.clientWidth);
    const height = this.opts.height;
    return { width, height, left: 64, right: 8, top: 8, bottom: 22 };
  }

  draw() {
    const L = this.layout();
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.canvas, this.overlay]) {
      if (c.width !== L.width * dpr || c.height !== L.height * dpr) {
        c.width = L.width * dpr;
        c.height = L.height * dpr;
        c.style.height = L.height + 'px';
        c.style.width = L.width + 'px';
      }
    }
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, L.width, L.height);
    const th = theme();
    const plotW = Math.max(1, Math.floor(L.width - L.left - L.right));
    const plotH = L.height - L.top - L.bottom;
    this.plot = { ...L, plotW, plotH };
    ctx.font = '11px system-ui, sans-serif';
    if (this.start === undefined) return;

    if (!this.cache || this.cache.width !== plotW) {
      const cols = this.series.map((s) => (this.hidden.has(s.name) ? null : decimate(s, this.start, this.end, plotW, this.gapMs)));
      let lo = Infinity;
      let hi = -Infinity;
      for (const c of cols) {
        if (!c) continue;
        for (let x = 0; x < plotW; x++) {
          if (c.min[x] < lo) lo = c.min[x];
          if (c.max[x] > hi) hi = c.max[x];
        }
      }
      if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
      if (this.opts.bars || this.opts.zero || (lo > 0 && lo < hi * 0.5)) lo = Math.min(lo, 0);
      if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
      const pad = (hi - lo) * 0.05;
      if (lo !== 0) lo -= pad;
      hi += pad;
      this.cache = { width: plotW, cols, lo, hi };
    }
    const { cols, lo, hi } = this.cache;
    const y = (v) => L.top + plotH - ((v - lo) / (hi - lo)) * plotH;
    this.y = y;

    // Grid and axes.
    ctx.strokeStyle = th.grid;
    ctx.fillStyle = th.muted;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of axisTicks(lo, hi, Math.max(2, Math.floor(plotH / 40)), this.opts.unit)) {
      const py = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(L.left, py); ctx.lineTo(L.left + plotW, py); ctx.stroke();
      ctx.fillText(formatValue(v, this.opts.unit), L.left - 6, py);
    }
    const span = this.end - this.start;
    const stepMs = TIME_STEPS.find((s) => (s / span) * plotW >= 90) || TIME_STEPS[TIME_STEPS.length - 1];
    const tz = new Date().getTimezoneOffset() * 60000;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let t = Math.ceil((this.start - tz) / stepMs) * stepMs + tz; t <= this.end; t += stepMs) {
      const px = Math.round(L.left + ((t - this.start) / span) * plotW) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, L.top); ctx.lineTo(px, L.top + plotH); ctx.stroke();
      ctx.fillText(formatTick(t, span), px, L.top + plotH + 4);
    }

    // Series.
    ctx.save();
    ctx.beginPath();
    ctx.rect(L.left, L.top, plotW, plotH);
    ctx.clip();
    ctx.lineWidth = 1.25;
    ctx.lineJoin = 'round';
    cols.forEach((c, i) => {
      if (!c) return;
      ctx.strokeStyle = ctx.fillStyle = seriesColor(i);
      if (this.opts.bars) {
        const bw = Math.max(1, this.step ? (this.step / span) * plotW - 1 : 2);
        for (let x = 0; x < plotW; x++) {
          if (!(c.max[x] > -Infinity)) continue;
          const top = y(c.max[x]);
          ctx.fillRect(L.left + x - bw / 2, top, bw, y(Math.max(lo, 0)) - top);
        }
        return;
      }
      ctx.beginPath();
      let open = false;
      for (let x = 0; x < plotW; x++) {
        if (Number.isNaN(c.first[x])) continue;
        const px = L.left + x + 0.5;
        if (!open || c.gap[x]) ctx.moveTo(px, y(c.first[x])); else ctx.lineTo(px, y(c.first[x]));
        if (c.min[x] !== c.max[x]) { ctx.lineTo(px, y(c.min[x])); ctx.lineTo(px, y(c.max[x])); }
        ctx.lineTo(px, y(c.last[x]));
        open = true;
      }
      ctx.stroke();
    });
    // Markers (events, decisions) on the same time axis.
    ctx.setLineDash([4, 3]);
    for (const m of this.markers) {
      if (m.t < this.start || m.t > this.end) continue;
      const px = Math.round(L.left + ((m.t - this.start) / span) * plotW) + 0.5;
      ctx.strokeStyle = m.color || th.warn;
      ctx.beginPath(); ctx.moveTo(px, L.top); ctx.lineTo(px, L.top + plotH); ctx.stroke();
    }
    ctx.restore();
    this.root.dataset.drawn = String((Number(this.root.dataset.drawn) || 0) + 1);
    if (this.opts.onDrawn) this.opts.onDrawn();
  }

  hover(e) {
    if (!this.plot || !this.cache) return;
    const P = this.plot;
    const rect = this.overlay.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const ctx = this.overlay.getContext('2d');
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, P.width, P.height);
    if (x < P.left || x > P.left + P.plotW) { this.unhover(); return; }
    const t = this.start + ((x - P.left) / P.plotW) * (this.end - this.start);
    ctx.strokeStyle = theme().muted;
    ctx.beginPath(); ctx.moveTo(Math.round(x) + 0.5, P.top); ctx.lineTo(Math.round(x) + 0.5, P.top + P.plotH); ctx.stroke();
    const rows = [];
    this.series.forEach((s, i) => {
      if (this.hidden.has(s.name) || !s.ts.length) return;
      const j = nearest(s.ts, t);
      if (Math.abs(s.ts[j] - t) > Math.max(this.gapMs, ((this.end - this.start) / P.plotW) * 4)) return;
      rows.push({ i, name: s.name, v: s.values[j], t: s.ts[j] });
      ctx.fillStyle = seriesColor(i);
      ctx.beginPath(); ctx.arc(Math.round(x), this.y(s.values[j]), 3, 0, 7); ctx.fill();
    });
    rows.sort((a, b) => b.v - a.v);
    const pxPerMs = P.plotW / (this.end - this.start);
    const marks = this.markers.filter((m) => Math.abs(m.t - t) * pxPerMs < 5);
    this.tooltip.replaceChildren(...[
      h('div', { class: 'muted' }, formatTime(rows.length ? rows[0].t : t)),
      ...marks.map((m) => h('div', {}, '▍ ' + m.label)),
      ...rows.slice(0, 12).map((r) => {
        const sw = h('i', {});
        sw.style.cssText = `display:inline-block;width:8px;height:8px;margin-right:4px;background:${seriesColor(r.i)}`;
        return h('div', {}, sw, `${formatValue(r.v, this.opts.unit)}  ${r.name}`);
      }),
      rows.length > 12 ? h('div', { class: 'muted' }, `… ${rows.length - 12} more`) : null,
    ].filter(Boolean));
    this.tooltip.hidden = false;
    const tw = this.tooltip.offsetWidth;
    this.tooltip.style.left = (x + 12 + tw > P.width ? Math.max(0, x - tw - 12) : x + 12) + 'px';
    this.tooltip.style.top = (e.clientY - rect.top + 12) + 'px';
  }

  unhover() {
    this.tooltip.hidden = true;
    if (this.plot) {
      const ctx = this.overlay.getContext('2d');
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    }
  }
}

function nearest(ts, t) {
  let lo = 0;
  let hi = ts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ts[mid] < t) lo = mid + 1; else hi = mid;
  }
  return lo > 0 && Math.abs(ts[lo - 1] - t) < Math.abs(ts[lo] - t) ? lo - 1 : lo;
}
