// The view state lives in the URL hash: #/<page>[/<sub>]?query=...&range=1h&step=15s, so a
// view can be bookmarked and shared. Pages read it with current() and write it with update().
import { parseDuration, formatDuration } from './format.js';

export function current() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, search = ''] = hash.split('?');
  const parts = path.split('/').filter(Boolean);
  return { page: parts[0] || 'overview', sub: parts.slice(1).map(decodeURIComponent), params: new URLSearchParams(search) };
}

export function href(page, sub, params) {
  const path = '#/' + [page, ...(sub || []).map(encodeURIComponent)].join('/');
  const qs = params ? new URLSearchParams(params).toString() : '';
  return path + (qs ? '?' + qs : '');
}


// Replaces parameters of the current view; `replace` keeps the history entry (typing, polling).
export function update(changes, replace = false) {
  const { page, sub, params } = current();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') params.delete(k); else params.set(k, v);
  }
  const url = href(page, sub, params);
  if (url === location.hash) return;
  if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
}

export const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '1d', '2d', '7d'];

// The time window of a view: `range` back from `to` (now unless pinned), and a step that gives
// about `points` points unless the URL names one.
export function timeWindow(params, defaultRange = '1h', points = 1000) {
  let range = parseDuration(params.get('range') || defaultRange);
  if (!(range > 0)) range = 3600;
  const to = params.get('to') ? Number(params.get('to')) : Date.now() / 1000;
  const end = Number.isFinite(to) ? to : Date.now() / 1000;
  const start = end - range;
  let step = parseDuration(params.get('step') || '');
  if (!(step > 0)) step = Math.max(1, Math.ceil(range / points));
  return { start, end, step, range, rangeText: formatDuration(range), stepText: formatDuration(step) };
}

// Like update(), as a navigation: the page is rendered again for the new parameters.
export function navigate(changes) {
  const { page, sub, params } = current();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') params.delete(k); else params.set(k, v);
  }
  location.hash = href(page, sub, params);
}
