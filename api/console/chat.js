// The chat view: my spaces, create / join, and the live message list of the selected space.
//
// Consistency: the space is joined on the stream first, and its history is read only once the
// server answered `joined` (head seq H). Events after H that arrive while the history loads are
// queued and applied after it, in order; every change is idempotent (a message is keyed by its
// id, an appreciation count is the absolute count the event carries), so an event the history
// already reflects changes nothing, and no event after H can be missed. After a reconnect the
// stream resumes with `since_seq` and replays what was missed; the history is not read again.

import { byId, clear, formatTime, h, hueOf, initials, show, showError } from './dom.js';

/** How long another user's typing signal stays on screen. */
const TYPING_SHOWN_MS = 4_000;
/** How long a delete button waits for its confirming second click. */
const CONFIRM_MS = 4_000;
/** Distance from the bottom (px) within which new messages keep the list scrolled down. */
const STICKY_PX = 120;

export class Chat {
  /** `me`: `{id, name}`; `api`: an `Api`; `stream`: a `Stream` (its handlers call `on*` here). */
  constructor({ api, stream, me }) {
    this.api = api;
    this.stream = stream;
    this.me = me;
    this.spaces = [];
    this.current = null;
    /** message id → { msg, el } */
    this.messages = new Map();
    /** Events received while the history loads (an array), else null. */
    this.pending = null;
    this.historyRun = 0;
    /** user id → { name, until } */
    this.typers = new Map();
    this.file = null;
    this.previewUrl = null;
    this.lifetime = new AbortController();
    this.el = Object.fromEntries(
      [
        'space-list', 'no-spaces', 'create-form', 'create-title', 'create-description', 'create-button',
        'join-form', 'join-id', 'join-button', 'spaces-error', 'refresh-spaces', 'room-empty', 'room-body',
        'room-title', 'room-meta', 'room-id', 'copy-id', 'back', 'messages', 'typing', 'composer',
        'message-input', 'send-button', 'file-input', 'attachment', 'attachment-preview',
        'attachment-name', 'attachment-remove', 'composer-error',
      ].map((id) => [id, byId(id)]),
    );
    this.bind();
  }

  /** Listeners on the page, removed by `destroy`. */
  bind() {
    const on = (el, type, fn) => el.addEventListener(type, fn, { signal: this.lifetime.signal });
    const e = this.el;
    on(e['create-form'], 'submit', (ev) => {
      ev.preventDefault();
      this.create();
    });
    on(e['join-form'], 'submit', (ev) => {
      ev.preventDefault();
      this.join();
    });
    on(e['refresh-spaces'], 'click', () => this.reloadSpaces(this.current?.space_id));
    on(e.back, 'click', () => this.select(null));
    on(e['copy-id'], 'click', () => this.copyId());
    on(e.composer, 'submit', (ev) => {
      ev.preventDefault();
      this.send();
    });
    on(e['message-input'], 'keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.send();
      }
    });
    on(e['message-input'], 'input', () => {
      this.fitComposer();
      if (this.current && e['message-input'].value.trim()) this.stream.typing(this.current.space_id);
    });
    on(e['file-input'], 'change', () => this.attach(e['file-input'].files?.[0] ?? null));
    on(e['attachment-remove'], 'click', () => this.attach(null));
  }

  /** Leaves the page as it was before sign-in. */
  destroy() {
    this.lifetime.abort();
    this.attach(null);
    this.current = null;
    this.messages.clear();
    clear(this.el['space-list']);
    clear(this.el.messages);
    this.el.typing.textContent = '';
    show(this.el['room-body'], false);
    show(this.el['room-empty'], true);
    document.body.classList.remove('room-open');
  }

  storageKey() {
    return `spacecast.console.space.${this.me.id}`;
  }

  // ---- spaces ----

  /** Shows `spaces` and selects `selectId`, else the space selected before a reload. */
  setSpaces(spaces, selectId) {
    this.spaces = Array.isArray(spaces) ? spaces : [];
    if (this.current) {
      // Fresher counts for the open space (it stays open even if it left the list).
      this.current = this.spaces.find((s) => s.space_id === this.current.space_id) ?? this.current;
    }
    this.renderSpaces();
    const wanted = selectId ?? localStorage.getItem(this.storageKey());
    const found = this.spaces.find((s) => s.space_id === wanted);
    if (found && this.current?.space_id !== found.space_id) this.select(found.space_id);
    else if (this.current) this.renderRoomHead();
  }

  async reloadSpaces(selectId) {
    try {
      this.setSpaces(await this.api.mySpaces(), selectId);
      showError(this.el['spaces-error'], '');
    } catch (err) {
      showError(this.el['spaces-error'], `Could not load your spaces: ${err.message}`);
    }
  }

  renderSpaces() {
    const list = this.el['space-list'];
    clear(list);
    for (const s of this.spaces) {
      const selected = this.current?.space_id === s.space_id;
      const members = s.participant_count === 1 ? '1 member' : `${s.participant_count} members`;
      list.append(
        h('li', {},
          h('button', {
            type: 'button',
            class: 'space-item',
            dataset: { spaceId: s.space_id },
            'aria-current': selected ? 'true' : null,
            onclick: () => this.select(s.space_id),
          },
          h('span', { class: 'avatar small', 'data-hue': hueOf(s.space_id) % 12 }, initials(s.title)),
          h('span', { class: 'space-text' },
            h('span', { class: 'space-title' }, s.title),
            h('span', { class: 'space-meta' }, `${members} · ${s.role ?? 'member'}`)))),
      );
    }
    show(this.el['no-spaces'], this.spaces.length === 0);
  }

  async create() {
    const title = this.el['create-title'].value.trim();
    const description = this.el['create-description'].value.trim();
    this.el['create-button'].disabled = true;
    try {
      const space = await this.api.createSpace(title, description);
      this.el['create-title'].value = '';
      this.el['create-description'].value = '';
      showError(this.el['spaces-error'], '');
      await this.reloadSpaces(space.space_id);
    } catch (err) {
      showError(this.el['spaces-error'], err.message);
    } finally {
      this.el['create-button'].disabled = false;
    }
  }

  async join() {
    const id = this.el['join-id'].value.trim();
    this.el['join-button'].disabled = true;
    try {
      await this.api.joinSpace(id);
      this.el['join-id'].value = '';
      showError(this.el['spaces-error'], '');
      await this.reloadSpaces(id);
    } catch (err) {
      showError(this.el['spaces-error'], err.code === 'not_found' ? 'No such space (or it is private).' : err.message);
    } finally {
      this.el['join-button'].disabled = false;
    }
  }

  /** Opens a space (`null`: back to the list, on a phone). */
  select(spaceId) {
    if (this.current?.space_id === spaceId) return;
    if (this.current) this.stream.unwatch(this.current.space_id);
    this.current = spaceId ? this.spaces.find((s) => s.space_id === spaceId) ?? null : null;
    this.messages.clear();
    clear(this.el.messages);
    this.typers.clear();
    this.renderTyping();
    this.pending = null;
    this.historyRun += 1;
    showError(this.el['composer-error'], '');
    document.body.classList.toggle('room-open', Boolean(this.current));
    this.renderSpaces();
    show(this.el['room-body'], Boolean(this.current));
    show(this.el['room-empty'], !this.current);
    if (!this.current) {
      localStorage.removeItem(this.storageKey());
      return;
    }
    localStorage.setItem(this.storageKey(), this.current.space_id);
    this.renderRoomHead();
    this.el.messages.append(h('li', { class: 'placeholder muted' }, 'Connecting…'));
    this.pending = [];
    this.stream.watch(this.current.space_id);
  }

  renderRoomHead() {
    const s = this.current;
    this.el['room-title'].textContent = s.title;
    const members = s.participant_count === 1 ? '1 member' : `${s.participant_count} members`;
    this.el['room-meta'].textContent = s.description ? `${s.description} · ${members} ·` : `${members} ·`;
    this.el['room-id'].textContent = s.space_id;
  }

  async copyId() {
    const button = this.el['copy-id'];
    try {
      await navigator.clipboard.writeText(this.current.space_id);
      button.textContent = 'Copied';
    } catch {
      getSelection()?.selectAllChildren(this.el['room-id']);
      button.textContent = 'Selected';
    }
    setTimeout(() => {
      button.textContent = 'Copy id';
    }, 1500);
  }

  // ---- stream handlers ----

  /** `joined`: a fresh join reads the history; a resumed one gets the missed events replayed. */
  onJoined(spaceId, _headSeq, resumed) {
    if (this.current?.space_id !== spaceId || resumed) return;
    this.loadHistory(spaceId);
  }

  async loadHistory(spaceId) {
    const run = ++this.historyRun;
    this.pending = this.pending ?? [];
    let page = null;
    try {
      page = await this.api.history(spaceId);
    } catch (err) {
      showError(this.el['composer-error'], `Could not load the history: ${err.message}`);
    }
    if (run !== this.historyRun || this.current?.space_id !== spaceId) return;
    this.messages.clear();
    clear(this.el.messages);
    for (const msg of [...(page?.messages ?? [])].reverse()) this.upsert(msg, false);
    const queued = this.pending ?? [];
    this.pending = null;
    for (const frame of queued) this.apply(frame);
    if (this.messages.size === 0) this.el.messages.append(h('li', { class: 'placeholder muted' }, 'No messages yet. Say hello!'));
    this.el.messages.dataset.loaded = 'true';
    this.scrollToBottom();
  }

  onEvent(frame) {
    if (this.current?.space_id !== frame.space_id) return;
    if (this.pending) this.pending.push(frame);
    else this.apply(frame);
  }

  apply(frame) {
    const d = frame.data ?? {};
    switch (frame.event) {
      case 'message_created':
        this.upsert(d, true);
        if (this.typers.delete(d.sender_id)) this.renderTyping();
        break;
      case 'message_deleted':
        this.removeMessage(d.message_id);
        break;
      case 'reaction_changed':
        if (d.key === 'appreciate') {
          this.setAppreciation(d.message_id, d.appreciation_count, d.user_id === this.me.id ? d.added : undefined);
        }
        break;
      default:
        break;
    }
  }

  onTyping(frame) {
    if (this.current?.space_id !== frame.space_id || frame.user_id === this.me.id) return;
    this.typers.set(frame.user_id, { name: frame.username || frame.user_id, until: Date.now() + TYPING_SHOWN_MS });
    this.renderTyping();
    setTimeout(() => this.renderTyping(), TYPING_SHOWN_MS + 50);
  }

  renderTyping() {
    const now = Date.now();
    for (const [id, t] of this.typers) if (t.until <= now) this.typers.delete(id);
    const names = [...this.typers.values()].map((t) => t.name);
    const el = this.el.typing;
    if (names.length === 0) el.textContent = '';
    else if (names.length === 1) el.textContent = `${names[0]} is typing…`;
    else if (names.length === 2) el.textContent = `${names[0]} and ${names[1]} are typing…`;
    else el.textContent = 'Several people are typing…';
  }

  // ---- messages ----

  nearBottom() {
    const list = this.el.messages;
    return list.scrollHeight - list.scrollTop - list.clientHeight < STICKY_PX;
  }

  scrollToBottom() {
    const list = this.el.messages;
    list.scrollTop = list.scrollHeight;
  }

  /** Adds a message in `seq` order, unless it is shown already. */
  upsert(msg, live) {
    if (!msg?.message_id || this.messages.has(msg.message_id)) return;
    const stick = !live || this.nearBottom() || msg.sender_id === this.me.id;
    const el = this.renderMessage(msg);
    const mine = Array.isArray(msg.likes) && msg.likes.some((l) => l.user_id === this.me.id);
    this.messages.set(msg.message_id, { msg, el, mine });
    for (const p of this.el.messages.querySelectorAll('.placeholder')) p.remove();
    const after = [...this.el.messages.children].find((li) => Number(li.dataset.seq) > msg.seq);
    this.el.messages.insertBefore(el, after ?? null);
    if (live && stick) this.scrollToBottom();
  }

  removeMessage(messageId) {
    const entry = this.messages.get(messageId);
    if (!entry) return;
    this.messages.delete(messageId);
    entry.el.remove();
  }

  setAppreciation(messageId, count, mine) {
    const entry = this.messages.get(messageId);
    if (!entry) return;
    entry.msg.appreciation_count = count;
    if (mine !== undefined) entry.mine = mine;
    const button = entry.el.querySelector('.appreciate');
    button.querySelector('.count').textContent = String(count);
    button.setAttribute('aria-pressed', entry.mine ? 'true' : 'false');
  }

  renderMessage(msg) {
    const sender = msg.sender ?? { user_id: msg.sender_id, username: msg.sender_id };
    const name = sender.username || sender.user_id;
    const mine = msg.sender_id === this.me.id;
    const liked = Array.isArray(msg.likes) && msg.likes.some((l) => l.user_id === this.me.id);
    const appreciate = h('button', {
      type: 'button',
      class: 'appreciate',
      'aria-pressed': liked ? 'true' : 'false',
      title: 'Appreciate',
      onclick: () => this.toggleAppreciation(msg.message_id),
    }, h('span', { class: 'heart', 'aria-hidden': 'true' }, '♥'), h('span', { class: 'count' }, String(msg.appreciation_count ?? 0)));
    const actions = h('div', { class: 'actions' }, appreciate);
    if (mine) {
      const del = h('button', { type: 'button', class: 'delete ghost small', onclick: () => this.confirmDelete(msg.message_id, del) }, 'Delete');
      actions.append(del);
    }
    let media = null;
    if (msg.media_url) {
      const alt = `${msg.media_type ?? 'media'} from ${name}`;
      if (msg.media_type === 'video') media = h('video', { class: 'media', src: msg.media_url, controls: true, preload: 'metadata' });
      else if (msg.media_type === 'audio') media = h('audio', { class: 'media', src: msg.media_url, controls: true, preload: 'none' });
      else {
        media = h('img', { class: 'media', src: msg.media_url, alt, loading: 'lazy' });
        media.addEventListener('load', () => {
          if (this.nearBottom()) this.scrollToBottom();
        }, { once: true });
      }
    }
    const el = h('li', {
      class: mine ? 'msg mine' : 'msg',
      dataset: { messageId: msg.message_id, seq: String(msg.seq), sender: msg.sender_id },
    },
    h('span', { class: 'avatar', 'data-hue': hueOf(msg.sender_id) % 12, 'aria-hidden': 'true' }, initials(name)),
    h('div', { class: 'bubble' },
      h('div', { class: 'meta' }, h('span', { class: 'author' }, name), h('time', { datetime: msg.created_at }, formatTime(msg.created_at))),
      msg.content ? h('p', { class: 'text' }, msg.content) : null,
      media,
      actions));
    return el;
  }

  async toggleAppreciation(messageId) {
    try {
      const r = await this.api.appreciate(this.current.space_id, messageId);
      this.setAppreciation(messageId, r.appreciation_count, r.appreciated);
    } catch (err) {
      showError(this.el['composer-error'], `Could not appreciate: ${err.message}`);
    }
  }

  confirmDelete(messageId, button) {
    if (!button.classList.contains('confirm')) {
      button.classList.add('confirm');
      button.textContent = 'Delete?';
      setTimeout(() => {
        button.classList.remove('confirm');
        button.textContent = 'Delete';
      }, CONFIRM_MS);
      return;
    }
    button.disabled = true;
    this.api.remove(this.current.space_id, messageId).then(
      () => this.removeMessage(messageId),
      (err) => {
        button.disabled = false;
        showError(this.el['composer-error'], `Could not delete: ${err.message}`);
      },
    );
  }

  // ---- composer ----

  fitComposer() {
    const input = this.el['message-input'];
    input.rows = Math.min(6, Math.max(1, input.value.split('\n').length));
  }

  attach(file) {
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
    this.file = file;
    if (!file) this.el['file-input'].value = '';
    show(this.el.attachment, Boolean(file));
    if (file) {
      this.previewUrl = URL.createObjectURL(file);
      this.el['attachment-preview'].src = this.previewUrl;
      this.el['attachment-name'].textContent = file.name;
    } else {
      this.el['attachment-preview'].removeAttribute('src');
      this.el['attachment-name'].textContent = '';
    }
  }

  async send() {
    if (!this.current) return;
    const input = this.el['message-input'];
    const content = input.value.trim();
    if (!content && !this.file) return;
    const spaceId = this.current.space_id;
    const button = this.el['send-button'];
    button.disabled = true;
    try {
      const msg = await this.api.send(spaceId, content, this.file);
      this.stream.typingDone(spaceId);
      input.value = '';
      this.fitComposer();
      this.attach(null);
      showError(this.el['composer-error'], '');
      if (this.current?.space_id === spaceId && !this.pending) this.upsert(msg, true);
    } catch (err) {
      const hint = err.code === 'not_a_member' ? 'Join this space to post in it.' : err.message;
      showError(this.el['composer-error'], hint);
    } finally {
      button.disabled = false;
      input.focus();
    }
  }
}
