// Small DOM helpers. Every piece of data reaches the page as text (textContent, text nodes,
// attributes): nothing here, or anywhere in the console, parses a string as HTML.

/** `document.getElementById`, failing loudly when the page and the code disagree. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`console: no element #${id}`);
  return el;
}

/**
 * Creates an element. `attrs`: `class`, `dataset` (an object), `on<event>` (listeners), other
 * keys become attributes (`true` → present, `null`/`false` → absent). Children are nodes or
 * values shown as text.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** An SVG element (same rules as `h`). */
export function svg(tag, attrs = {}) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Shows or hides an element. */
export function show(el, visible) {
  el.hidden = !visible;
}

/** Shows `message` in an error element, or hides it for an empty message. */
export function showError(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

/** Removes every child of `el`. */
export function clear(el) {
  el.replaceChildren();
}

/** `HH:MM` today, else a short date and time, in the viewer's locale. */
export function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** `3 d 4 h`, `2 h 05 min`, `4 min 09 s`, `12 s`. */
export function formatDuration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const min = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  if (d > 0) return `${d} d ${hr} h`;
  if (hr > 0) return `${hr} h ${two(min)} min`;
  if (min > 0) return `${min} min ${two(sec)} s`;
  return `${sec} s`;
}

/** A stable hue (0–359) for a string, e.g. to colour a user's avatar. */
export function hueOf(text) {
  let hash = 0;
  for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

/** One or two capital letters standing for a name. */
export function initials(name) {
  const parts = String(name).trim().split(/[\s._-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : (parts[0] ?? '?')[0];
  return letters.toUpperCase();
}
