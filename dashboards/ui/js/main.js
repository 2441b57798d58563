// The single page: navigation, theme, and one module per page, chosen by the URL hash.
import { current } from './state.js';
import { clear, errorBox } from './dom.js';
import * as overview from './pages/overview.js';
import * as metrics from './pages/metrics.js';
import * as logs from './pages/logs.js';
import * as alerts from './pages/alerts.js';
import * as services from './pages/services.js';
import * as dashboards from './pages/dashboards.js';

// Errors are kept where tests (and curious users, from the console) can read them.
window.__errors = window.__errors || [];
window.addEventListener('error', (e) => window.__errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', (e) => window.__errors.push('unhandled rejection: ' + String(e.reason && e.reason.message || e.reason)));
const consoleError = console.error.bind(console);
console.error = (...args) => { window.__errors.push(args.map(String).join(' ')); consoleError(...args); };

const PAGES = { overview, metrics, logs, alerts, services, dashboards };
const THEMES = ['auto', 'light', 'dark'];

function applyTheme(theme) {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  document.getElementById('theme').textContent = `Theme: ${theme}`;
  window.dispatchEvent(new Event('themechange'));
}

let cleanup = null;
let shown = null;

async function route() {
  const view = current();
  const page = PAGES[view.page] ? view.page : 'overview';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  const root = document.getElementById('page');
  // A page that only changed its parameters re-renders itself (it listens to 'viewchange').
  const key = page + '/' + view.sub.join('/');
  if (key === shown && cleanup && cleanup.update) { cleanup.update(view); return; }
  if (cleanup) { try { (cleanup.dispose || cleanup)(); } catch (e) { console.error(e); } }
  cleanup = null;
  shown = key;
  clear(root);
  root.dataset.page = page;
  try {
    cleanup = (await PAGES[page].render(root, view)) || null;
  } catch (e) {
    clear(root, errorBox(e));
    console.error(e);
  }
}

function start() {
  let theme = localStorage.getItem('theme');
  if (!THEMES.includes(theme)) theme = 'auto';
  applyTheme(theme);
  document.getElementById('theme').addEventListener('click', () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    localStorage.setItem('theme', theme);
    applyTheme(theme);
  });
  window.addEventListener('hashchange', route);
  route();
}

start();
