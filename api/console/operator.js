// The operator tab: this node's status from `GET /v1/node`, polled every few seconds while the
// tab is open and the page visible, with a short history of the rates drawn as sparklines.

import { formatDuration, showError, svg } from './dom.js';

const POLL_MS = 2_000;
/** Polls kept for the sparklines (two minutes). */
const HISTORY = 60;

/** `a.b` of `obj`. */
function field(obj, path) {
  return path.split('.').reduce((v, k) => (v == null ? v : v[k]), obj);
}

function rate(x) {
  if (typeof x !== 'number') return '–';
  return x >= 100 ? x.toFixed(0) : x.toFixed(x >= 10 ? 1 : 2);
}

export class Operator {
  constructor(api, root) {
    this.api = api;
    this.root = root;
    this.timer = null;
    this.history = { sends_per_second: [], deliveries_per_second: [] };
    this.error = root.querySelector('#op-error');
    this.updated = root.querySelector('#op-updated');
    this.onVisibility = () => {
      if (this.running) this.schedule();
    };
  }

  /** Starts polling (the tab was opened). */
  start() {
    if (this.running) return;
    this.running = true;
    document.addEventListener('visibilitychange', this.onVisibility);
    this.poll();
  }

  /** Stops polling (the tab was left, or the user signed out). */
  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener('visibilitychange', this.onVisibility);
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.running) return;
    if (document.visibilityState === 'hidden') return;
    this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    try {
      const node = await this.api.node();
      if (!this.running) return;
      this.render(node);
      showError(this.error, '');
    } catch (err) {
      if (this.running) showError(this.error, `Could not read /v1/node: ${err.message}`);
    }
    this.schedule();
  }

  render(node) {
    const shown = {
      ...node,
      uptime: formatDuration(node.uptime_seconds),
      started_at: new Date(node.started_at).toLocaleString(),
      mode: node.clustered ? `cluster · bus ${node.bus_connected ? 'connected' : 'DISCONNECTED'}` : 'single node',
      sends_per_second: rate(node.sends_per_second),
      deliveries_per_second: rate(node.deliveries_per_second),
    };
    for (const el of this.root.querySelectorAll('[data-field]')) {
      const v = field(shown, el.dataset.field);
      el.textContent = v === undefined || v === null ? '–' : String(v);
    }
    for (const key of Object.keys(this.history)) {
      const series = this.history[key];
      series.push(Number(node[key]) || 0);
      if (series.length > HISTORY) series.shift();
      this.spark(this.root.querySelector(`[data-spark="${key}"]`), series);
    }
    this.root.dataset.nodeId = node.node_id;
    this.updated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  }

  /** Draws `series` as a line in a 120×32 box (scaled to its own maximum). */
  spark(box, series) {
    if (!box || series.length < 2) return;
    const max = Math.max(1, ...series);
    const step = 120 / Math.max(1, HISTORY - 1);
    const start = 120 - step * (series.length - 1);
    const points = series.map((v, i) => `${(start + i * step).toFixed(1)},${(30 - (v / max) * 28).toFixed(1)}`).join(' ');
    box.replaceChildren(svg('polyline', { points, fill: 'none', 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
  }
}
