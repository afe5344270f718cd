// The Spacecast web console: sign-in, then the chat and operator tabs. Plain ES modules served
// by the spacecast binary itself (no build step, nothing from another origin).
//
// The token lives in localStorage (key `spacecast.console.token`) until "Sign out", or until the
// server refuses it (any 401, or a 4001 close of the stream).

import { Api, decodeToken, devLogin, devLoginAvailable } from './api.js';
import { Chat } from './chat.js';
import { byId, show, showError } from './dom.js';
import { Operator } from './operator.js';
import { Stream } from './stream.js';

const TOKEN_KEY = 'spacecast.console.token';

/** The signed-in session: `{ me, api, stream, chat, operator }`, or null. */
let session = null;

const el = Object.fromEntries(
  [
    'signin', 'chat', 'operator', 'tabs', 'who', 'me-name', 'conn-status', 'sign-out', 'token-form',
    'token-input', 'token-submit', 'dev-login', 'dev-form', 'dev-username', 'dev-login-button',
    'signin-error',
  ].map((id) => [id, byId(id)]),
);

function setView(view) {
  document.body.dataset.view = view;
  show(el.signin, view === 'signin');
  show(el.tabs, view !== 'signin');
  show(el.who, view !== 'signin');
  show(el.chat, view === 'chat');
  show(el.operator, view === 'operator');
  for (const tab of el.tabs.querySelectorAll('[data-tab]')) {
    tab.setAttribute('aria-selected', tab.dataset.tab === view ? 'true' : 'false');
  }
  if (session) {
    if (view === 'operator') session.operator.start();
    else session.operator.stop();
    // Back on the chat: member counts may have changed meanwhile.
    if (view === 'chat') session.chat.reloadSpaces(session.chat.current?.space_id);
  }
}

function showSignIn(message) {
  setView('signin');
  showError(el['signin-error'], message || '');
}

/** The user a token names (for display; the server verifies the token). */
function userOf(token) {
  const claims = decodeToken(token);
  const id = claims?.sub ?? claims?.user_id;
  if (id === undefined || id === null) return null;
  return { id: String(id), name: claims.username ? String(claims.username) : String(id) };
}

function setConnection(state, detail) {
  const status = el['conn-status'];
  status.dataset.state = state;
  const text = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', offline: 'offline' }[state] ?? state;
  status.textContent = text;
  status.title = detail ? `Realtime stream: ${text} (${detail})` : `Realtime stream: ${text}`;
}

/** Checks `token` against the server, then opens the chat. */
async function signIn(token, { remembered = false } = {}) {
  token = token.trim();
  const me = userOf(token);
  if (!me) {
    showSignIn('That is not a token: a JWT has three dot-separated parts.');
    return;
  }
  const api = new Api(token, (err) => signOut(`The server refused the token (${err.code}): ${err.message}`));
  let spaces;
  try {
    spaces = await api.mySpaces();
  } catch (err) {
    if (err.status === 401) return; // signOut has shown why
    showSignIn(remembered ? `Cannot reach the server: ${err.message}` : err.message);
    return;
  }
  localStorage.setItem(TOKEN_KEY, token);
  el['token-input'].value = '';
  let chat = null;
  const stream = new Stream(token, {
    joined: (id, head, resumed) => chat?.onJoined(id, head, resumed),
    event: (frame) => chat?.onEvent(frame),
    typing: (frame) => chat?.onTyping(frame),
    state: setConnection,
    authFailed: (reason) => signOut(`The stream refused the token: ${reason}`),
  });
  chat = new Chat({ api, stream, me });
  const operator = new Operator(api, el.operator);
  session = { me, api, stream, chat, operator };
  el['me-name'].textContent = me.name;
  el['me-name'].title = `user id ${me.id}`;
  setView('chat');
  chat.setSpaces(spaces);
  stream.start();
}

function signOut(message) {
  if (session) {
    session.operator.stop();
    session.stream.close();
    session.chat.destroy();
    session = null;
  }
  localStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

function bind() {
  el['token-form'].addEventListener('submit', async (ev) => {
    ev.preventDefault();
    el['token-submit'].disabled = true;
    try {
      await signIn(el['token-input'].value);
    } finally {
      el['token-submit'].disabled = false;
    }
  });
  el['dev-form'].addEventListener('submit', async (ev) => {
    ev.preventDefault();
    el['dev-login-button'].disabled = true;
    try {
      const minted = await devLogin(el['dev-username'].value.trim());
      el['dev-username'].value = '';
      await signIn(minted.token);
    } catch (err) {
      showError(el['signin-error'], err.message);
    } finally {
      el['dev-login-button'].disabled = false;
    }
  });
  el['sign-out'].addEventListener('click', () => signOut());
  for (const tab of el.tabs.querySelectorAll('[data-tab]')) {
    tab.addEventListener('click', () => setView(tab.dataset.tab));
  }
}

async function main() {
  bind();
  const available = devLoginAvailable().then((on) => show(el['dev-login'], on));
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) await signIn(token, { remembered: true });
  else showSignIn();
  await available;
  document.body.dataset.ready = 'true';
}

main();
