// Alerts: firing and pending alerts (the rule engine's /api/v1/alerts, else the ALERTS series a
// Prometheus-style engine writes), and Alertmanager silences: listed, created and expired.
import { h, clear, empty, errorBox, table } from '../dom.js';
import { prom, alerting } from '../api.js';
import { formatTime, parseDuration, toMs } from '../format.js';

const HIDDEN = ['__name__', 'alertstate'];

// `a="b", c=~"d.*"` as Alertmanager matchers.
export function parseMatchers(text) {
  const out = [];
  const re = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)/y;
  let m;
  let pos = 0;
  const src = text.trim().replace(/^\{|\}$/g, '');
  while (pos < src.length && (m = re.exec(src))) {
    out.push({ name: m[1], value: m[3].replace(/\\(.)/g, '$1'), isRegex: m[2].includes('~'), isEqual: !m[2].startsWith('!') });
    pos = re.lastIndex;
  }
  if (pos < src.length || !out.length) throw new Error(`matchers: cannot read ${JSON.stringify(src.slice(pos))}; write name="value", name=~"regex"`);
  return out;
}

const matcherText = (m) => `${m.name}${m.isEqual === false ? '!' : '='}${m.isRegex ? '~' : ''}"${m.value}"`;

export async function render(root) {
  const alertsBox = h('div', { id: 'alerts-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const silencesBox = h('div', { id: 'silences-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const matchers = h('input', { id: 'silence-matchers', placeholder: 'alertname="HighLoad", node=~"web-.*"' });
  const duration = h('input', { id: 'silence-duration', value: '2h', size: 6 });
  const author = h('input', { id: 'silence-author', value: localStorage.getItem('silence-author') || '' });
  const comment = h('input', { id: 'silence-comment' });
  const formStatus = h('div', { class: 'muted', id: 'silence-status' });
  const form = h('form', { class: 'silence', id: 'silence-form', onsubmit: (e) => { e.preventDefault(); create(); } },
    h('label', {}, 'Matchers'), matchers,
    h('label', {}, 'Duration'), duration,
    h('label', {}, 'Created by'), author,
    h('label', {}, 'Comment'), comment,
    h('span', {}), h('div', {}, h('button', { class: 'primary', type: 'submit', id: 'silence-create' }, 'Create silence'), ' ', formStatus));
  const formTitle = h('h2', {}, 'New silence');
  const rulesTitle = h('h2', {}, 'Alert rules');
  const rulesBox = h('div', { id: 'rules-list' });
  root.append(h('h1', {}, 'Alerts'), alertsBox, h('h2', {}, 'Silences'), silencesBox, formTitle, form, rulesTitle, rulesBox);

  async function loadRules() {
    try {
      const groups = await alerting.rules();
      const rows = [];
      for (const g of groups) for (const r of g.rules || []) if (r.type !== 'recording') rows.push([g.name, r.name, h('span', { class: 'badge ' + (r.state || '') }, r.state || ''), r.health || '', h('code', {}, r.query || '')]);
      clear(rulesBox, rows.length ? table(['group', 'alert', 'state', 'health', 'expression'], rows) : empty('No alert rules loaded.'));
    } catch (e) {
      if (e.missing) { rulesTitle.hidden = rulesBox.hidden = true; return; }
      clear(rulesBox, errorBox(e));
    }
  }

  function silenceFor(labels) {
    matchers.value = Object.entries(labels).filter(([k]) => !HIDDEN.includes(k)).map(([k, v]) => `${k}="${v}"`).join(', ');
    matchers.focus();
  }

  async function loadAlerts() {
    let alerts;
    let note = null;
    try {
      alerts = await alerting.alerts();
    } catch (e) {
      if (!e.missing) { clear(alertsBox, errorBox(e)); return; }
      const data = await prom.query('ALERTS').catch(() => ({ result: [] }));
      if (!data.result.length) { clear(alertsBox, empty('No alerting configured.')); return; }
      alerts = data.result.map((r) => ({ labels: r.metric, state: r.metric.alertstate, annotations: {} }));
      note = h('p', { class: 'muted' }, 'From the ALERTS series (no alert rule API on this server).');
    }
    const order = { firing: 0, pending: 1 };
    alerts = alerts.filter((a) => a.state === 'firing' || a.state === 'pending')
      .sort((a, b) => (order[a.state] - order[b.state]) || String(a.labels.alertname).localeCompare(b.labels.alertname));
    if (!alerts.length) { clear(alertsBox, empty('Nothing is firing or pending.'), note); return; }
    clear(alertsBox, table(['state', 'alert', 'labels', 'since', 'summary', ''], alerts.map((a) => [
      h('span', { class: 'badge ' + a.state }, a.state),
      h('strong', { class: 'alertname' }, a.labels.alertname),
      Object.entries(a.labels).filter(([k]) => !HIDDEN.includes(k) && k !== 'alertname').map(([k, v]) => `${k}=${v}`).join(' '),
      a.activeAt ? formatTime(toMs(a.activeAt)) : '',
      (a.annotations && (a.annotations.summary || a.annotations.description)) || '',
      h('button', { type: 'button', onclick: () => silenceFor(a.labels) }, 'Silence'),
    ])), note);
  }

  async function loadSilences() {
    let silences;
    try {
      silences = await alerting.silences();
    } catch (e) {
      clear(silencesBox, e.missing ? empty('No alerting configured: this server has no silences API.') : errorBox(e));
      form.hidden = formTitle.hidden = e.missing;
      return;
    }
    const live = silences.filter((s) => s.status && s.status.state !== 'expired');
    if (!live.length) { clear(silencesBox, empty('No active silences.')); return; }
    clear(silencesBox, table(['state', 'matchers', 'until', 'created by', 'comment', ''], live.map((s) => [
      h('span', { class: 'badge ' + s.status.state }, s.status.state),
      h('code', { class: 'matchers' }, s.matchers.map(matcherText).join(', ')),
      formatTime(toMs(s.endsAt)),
      s.createdBy || '',
      s.comment || '',
      h('button', { class: 'danger', type: 'button', dataset: { silence: s.id }, onclick: () => expire(s.id) }, 'Expire'),
    ])));
  }

  async function create() {
    try {
      const secs = parseDuration(duration.value);
      if (!(secs > 0)) throw new Error(`duration: ${JSON.stringify(duration.value)} is not a duration like 2h`);
      const body = {
        matchers: parseMatchers(matchers.value),
        startsAt: new Date().toISOString(),
        endsAt: new Date(Date.now() + secs * 1000).toISOString(),
        createdBy: author.value.trim() || 'tidewatch-ui',
        comment: comment.value.trim() || 'silenced from the Tidewatch UI',
      };
      localStorage.setItem('silence-author', author.value.trim());
      const res = await alerting.createSilence(body);
      formStatus.textContent = `created ${res && res.silenceID ? res.silenceID : ''}`;
      formStatus.className = 'muted';
      await loadSilences();
    } catch (e) {
      formStatus.textContent = e.message;
      formStatus.className = 'error';
    }
  }

  async function expire(id) {
    try {
      await alerting.expireSilence(id);
      formStatus.textContent = `expired ${id}`;
      formStatus.className = 'muted';
    } catch (e) {
      formStatus.textContent = e.message;
      formStatus.className = 'error';
    }
    await loadSilences();
  }

  await Promise.all([loadAlerts(), loadSilences(), loadRules()]);
  root.dataset.loaded = '1';
}
