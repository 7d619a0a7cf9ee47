// Owns: building DOM nodes safely. Text always goes in as text (textContent / text nodes),
// never as HTML, so nothing a user sends can become markup.

/**
 * `el('li', {class: 'msg', dataset: {id}}, child, 'text', …)`: an element with attributes
 * (`class`, `dataset`, `on{event}` handlers, anything else via setAttribute) and children
 * (nodes, or strings as text; null and false are skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

/** The element with this id (the page's markup is fixed: missing is a bug). */
export const $ = (id) => document.getElementById(id);

/** `HH:MM` today, else a short date. */
export function when(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

/** Bytes as people read them. */
export function size(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
