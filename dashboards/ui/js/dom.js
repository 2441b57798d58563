// A tiny element builder: h('div', {class: 'x', onclick: f}, 'text', child). Text is always set
// as text, never parsed as HTML, so label values and log lines cannot inject markup.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function empty(text) {
  return h('div', { class: 'empty' }, text);
}

export function errorBox(err) {
  return h('div', { class: 'error' }, String(err && err.message ? err.message : err));
}

// A table from column titles and rows of cells (strings, numbers or nodes).
export function table(columns, rows) {
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell) =>
      typeof cell === 'number' ? h('td', { class: 'num' }, String(cell)) : h('td', {}, cell))))));
}

export function select(options, value, onchange) {
  return h('select', { onchange: (e) => onchange(e.target.value) },
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}
