// The native realtime stream, `GET /v1/stream` (JSON text frames), for the console.
//
// One WebSocket per signed-in page, carrying every watched space. For each space the stream
// remembers the last `seq` it delivered; after any close but an authentication failure it
// reconnects with exponential backoff and joins again with `since_seq` = that seq, so the server
// replays exactly what was missed, with no gap and no duplicate (a 4008 "slow consumer" close and
// a 1013 "resync" close are resumed the same way). Events at or below the remembered seq are
// dropped, so a replay that overlaps what was seen is harmless.

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;
/** Least time between two `typing` frames for one space (the server relays one a second). */
const TYPING_EVERY_MS = 2_000;

/** Close codes worth naming in the status line. */
const CLOSE_REASONS = {
  1001: 'server going away',
  1006: 'connection lost',
  1013: 'resync',
  4002: 'ping timeout',
  4008: 'slow consumer',
};

export class Stream {
  /**
   * `handlers`: `joined(spaceId, headSeq, resumed)`, `event(frame)`, `typing(frame)`,
   * `error(frame)`, `state(state, detail)` with state `connecting` | `live` | `reconnecting` |
   * `offline`, and `authFailed(reason)` (close 4001: the token is refused or expired).
   */
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    /** space id → { lastSeq: number | null } */
    this.spaces = new Map();
    this.ws = null;
    this.live = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.lastTyping = new Map();
    this.onOnline = () => {
      if (this.retryTimer) this.reconnectNow();
    };
    window.addEventListener('online', this.onOnline);
  }

  start() {
    this.connect();
  }

  /** Stops for good (sign out). */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    window.removeEventListener('online', this.onOnline);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
    this.setState('offline');
  }

  /** Starts receiving a space's events (a fresh join: from its head). */
  watch(spaceId) {
    if (!this.spaces.has(spaceId)) this.spaces.set(spaceId, { lastSeq: null });
    if (this.live) this.sendJoin(spaceId);
  }

  /** Stops receiving a space's events and forgets its position. */
  unwatch(spaceId) {
    if (!this.spaces.delete(spaceId)) return;
    this.lastTyping.delete(spaceId);
    if (this.live) this.send({ type: 'leave', space_id: spaceId });
  }

  /** Tells the others in a space that this user is typing (throttled). */
  typing(spaceId) {
    const now = Date.now();
    if (!this.live || now - (this.lastTyping.get(spaceId) ?? 0) < TYPING_EVERY_MS) return;
    this.lastTyping.set(spaceId, now);
    this.send({ type: 'typing', space_id: spaceId });
  }

  /** Ends a typing burst (a message was sent): the next keystroke signals again at once. */
  typingDone(spaceId) {
    this.lastTyping.delete(spaceId);
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/v1/stream?token=${encodeURIComponent(this.token)}`;
  }

  connect() {
    this.retryTimer = null;
    if (this.stopped) return;
    this.setState('connecting');
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener('message', (e) => {
      if (this.ws === ws) this.onFrame(e.data);
    });
    ws.addEventListener('close', (e) => this.onClose(ws, e));
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.connect();
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  sendJoin(spaceId) {
    const s = this.spaces.get(spaceId);
    const frame = { type: 'join', space_id: spaceId };
    if (s.lastSeq !== null) frame.since_seq = s.lastSeq;
    s.resuming = s.lastSeq !== null;
    this.send(frame);
  }

  onFrame(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    switch (f.type) {
      case 'hello':
        this.attempt = 0;
        this.live = true;
        this.nodeId = f.node_id;
        this.setState('live');
        for (const id of this.spaces.keys()) this.sendJoin(id);
        break;
      case 'joined': {
        const s = this.spaces.get(f.space_id);
        if (!s) return;
        const resumed = Boolean(s.resuming);
        if (s.lastSeq === null) s.lastSeq = f.head_seq;
        this.handlers.joined?.(f.space_id, f.head_seq, resumed);
        break;
      }
      case 'event': {
        const s = this.spaces.get(f.space_id);
        if (!s || (s.lastSeq !== null && f.seq <= s.lastSeq)) return;
        s.lastSeq = f.seq;
        this.handlers.event?.(f);
        break;
      }
      case 'typing':
        if (this.spaces.has(f.space_id)) this.handlers.typing?.(f);
        break;
      case 'error':
        this.handlers.error?.(f);
        break;
      default:
        break;
    }
  }

  onClose(ws, e) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.live = false;
    if (this.stopped) return;
    if (e.code === 4001) {
      this.setState('offline', e.reason || 'authentication failed');
      this.handlers.authFailed?.(e.reason || 'authentication failed');
      return;
    }
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    this.setState('reconnecting', CLOSE_REASONS[e.code] ?? `closed ${e.code}`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  setState(state, detail = '') {
    this.handlers.state?.(state, detail);
  }
}
