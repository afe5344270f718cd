// The web console in a real browser: headless Debian Chromium driven by playwright-core, two
// browser contexts as two users of a real spacecast server. Run by api/tests/console.rs, which
// starts the server and passes it in the environment:
//
//   SPACECAST_CONSOLE_URL        the server's base URL (http://127.0.0.1:PORT)
//   SPACECAST_CONSOLE_TOKEN_B    a token for the second user (pasted into the sign-in form)
//   SPACECAST_CONSOLE_NODE_ID    the node id the operator tab must show
//   SPACECAST_CONSOLE_ARTIFACTS  where the screenshots go
//   SPACECAST_TEST_CHROMIUM      the Chromium binary (browser downloads are not reachable)
//
// Prints one JSON line per step ({"step", "ok": true, …}) and a last line {"result": "pass", …};
// on the first failure {"result": "fail", "step", "error"} and exit status 1. Every wait is a
// poll with a deadline (Playwright's waitFor / waitForFunction, or `waitUntil` below); nothing
// sleeps for a fixed time.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const BASE = env('SPACECAST_CONSOLE_URL');
const TOKEN_B = env('SPACECAST_CONSOLE_TOKEN_B');
const NODE_ID = env('SPACECAST_CONSOLE_NODE_ID');
const ARTIFACTS = env('SPACECAST_CONSOLE_ARTIFACTS');
const CHROMIUM = env('SPACECAST_TEST_CHROMIUM');
/** Longest any single wait may take. */
const DEADLINE_MS = 20_000;

const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let step = 'start';
const report = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const ok = (name, extra = {}) => report({ step: name, ok: true, ...extra });

/** Polls `cond` (sync or async) every 25 ms until it is truthy; throws after the deadline. */
async function waitUntil(what, cond, deadline = DEADLINE_MS) {
  const until = Date.now() + deadline;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A promise and the function that resolves it. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Waits until `fn(arg)` is truthy in the page. */
function inPage(page, what, fn, arg) {
  return page
    .waitForFunction(fn, arg, { timeout: DEADLINE_MS, polling: 50 })
    .catch((e) => {
      throw new Error(`timed out waiting for ${what}: ${e.message.split('\n')[0]}`);
    });
}

/** The message ids a page shows, in order. */
function shownIds(page) {
  return page.$$eval('#messages li.msg', (lis) => lis.map((li) => li.dataset.messageId));
}

/** How many messages of a page show exactly `text`. */
function countText(page, text) {
  return page.$$eval('#messages li.msg .text', (ps, t) => ps.filter((p) => p.textContent === t).length, text);
}

/** The id of the message of a page that shows exactly `text`. */
async function idOf(page, text) {
  await inPage(
    page,
    `a message "${text}"`,
    (t) => [...document.querySelectorAll('#messages li.msg .text')].some((p) => p.textContent === t),
    text,
  );
  return page.$$eval(
    '#messages li.msg',
    (lis, t) => lis.find((li) => li.querySelector('.text')?.textContent === t)?.dataset.messageId,
    text,
  );
}

// ---- a PNG made here (a 64×64 gradient), to upload ----

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

function gradientPng(size = 64) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 3);
    for (let x = 0; x < size; x++) {
      row[1 + x * 3] = 79 + Math.round((x / size) * 120);
      row[2 + x * 3] = 70 + Math.round((y / size) * 110);
      row[3 + x * 3] = 229;
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---- the run ----

const problems = [];

/** Records what a page reports: uncaught errors and CSP violations fail the run. */
function watch(page, who) {
  page.on('pageerror', (e) => problems.push(`${who}: uncaught ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(text)) {
      problems.push(`${who}: ${text}`);
    } else if (m.type() === 'error') {
      report({ note: `${who} console error`, text });
    }
  });
}

async function signedIn(page, name) {
  await page.locator('body[data-view="chat"]').waitFor({ timeout: DEADLINE_MS });
  await inPage(page, `signed in as ${name}`, (n) => document.getElementById('me-name').textContent === n, name);
  await page.locator('#conn-status[data-state="live"]').waitFor({ timeout: DEADLINE_MS });
}

async function roomLoaded(page, title) {
  await inPage(page, `room "${title}"`, (t) => document.getElementById('room-title').textContent === t, title);
  await page.locator('#messages[data-loaded="true"]').waitFor({ state: 'attached', timeout: DEADLINE_MS });
}

async function send(page, text) {
  await page.fill('#message-input', text);
  await page.click('#send-button');
  await idOf(page, text);
}

async function run() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
  });
  try {
    const ctxA = await browser.newContext({ viewport: LAPTOP });
    const ctxB = await browser.newContext({ viewport: LAPTOP });
    const a = await ctxA.newPage();
    const b = await ctxB.newPage();
    watch(a, 'A');
    watch(b, 'B');

    // B's stream goes through a route the test controls: it records the frames each way and can
    // close the page's side with any code, or hold a reconnection until released.
    const bConns = [];
    let gate = null;
    await b.routeWebSocket(/\/v1\/stream/, async (ws) => {
      const conn = { ws, sent: [], received: [] };
      bConns.push(conn);
      ws.onMessage((m) => {
        conn.sent.push(JSON.parse(String(m)));
        conn.server?.send(m);
      });
      if (gate) await gate.promise;
      conn.server = ws.connectToServer();
      conn.server.onMessage((m) => {
        conn.received.push(JSON.parse(String(m)));
        ws.send(m);
      });
    });

    step = 'A signs in with the dev-login button';
    await a.goto(`${BASE}/console`);
    await a.locator('#dev-login').waitFor({ state: 'visible', timeout: DEADLINE_MS });
    await a.fill('#dev-username', 'ada');
    await a.click('#dev-login-button');
    await signedIn(a, 'ada');
    ok(step);

    step = 'B signs in with a pasted token';
    await b.goto(`${BASE}/console/`);
    await b.locator('body[data-view="signin"]').waitFor({ timeout: DEADLINE_MS });
    await b.fill('#token-input', TOKEN_B);
    await b.click('#token-submit');
    await signedIn(b, 'Bob');
    ok(step);

    step = 'A creates a space';
    const title = 'Console test space';
    await a.fill('#create-title', title);
    await a.fill('#create-description', 'made by the browser test');
    await a.click('#create-button');
    await roomLoaded(a, title);
    const spaceId = (await a.textContent('#room-id')).trim();
    if (!/^[0-9a-f-]{36}$/.test(spaceId)) throw new Error(`space id shown: ${spaceId}`);
    ok(step, { space_id: spaceId });

    step = 'B joins it by id; a message sent while B reads the history is kept, once';
    // B's history read is answered by the server at once but handed to the page only after a
    // message sent meanwhile has reached B's stream: the page must queue that event and apply
    // it after the (older) history, not lose it under the history nor show it twice.
    const isHistory = (url) => url.pathname === `/api/messages/${spaceId}` && url.searchParams.get('sort') === 'recent';
    const held = deferred();
    const handed = deferred();
    let historyRead = false;
    await b.route(isHistory, async (route) => {
      try {
        const response = await route.fetch();
        historyRead = true;
        await held.promise;
        await route.fulfill({ response });
        handed.resolve(null);
      } catch (e) {
        handed.resolve(e);
      }
    });
    await b.fill('#join-id', spaceId);
    await b.click('#join-button');
    await waitUntil("B's history read", () => historyRead);
    const during = 'sent while B loads';
    await send(a, during);
    await waitUntil('the event on B\'s stream', () => bConns.at(-1).received.some(
      (f) => f.type === 'event' && f.event === 'message_created' && f.data.content === during,
    ));
    held.resolve();
    const handError = await handed.promise;
    if (handError) throw handError;
    await b.unroute(isHistory);
    await roomLoaded(b, title);
    await b.locator(`.space-item[data-space-id="${spaceId}"]`).waitFor({ timeout: DEADLINE_MS });
    await idOf(b, during);
    if ((await countText(b, during)) !== 1) throw new Error('the message sent during the history read is shown twice');
    ok(step);

    step = "A types and B sees A's typing indicator";
    // A keeps typing until B shows it (typing signals are throttled: one per 2 s by the page,
    // one per second by the server).
    await waitUntil("A's typing shown to B", async () => {
      await a.locator('#message-input').press('x');
      return b.evaluate(() => document.getElementById('typing').textContent === 'ada is typing…');
    });
    ok(step);

    step = 'A sends text, B sees it live, as text';
    const hello = 'hello from ada <b>not bold</b> & <img src=x>';
    await send(a, hello);
    const helloId = await idOf(b, hello);
    if ((await b.$$(`li.msg[data-message-id="${helloId}"] .text *`)).length !== 0) {
      throw new Error('message text was parsed as HTML');
    }
    // The message from the typist ends their typing indicator.
    await inPage(b, 'typing indicator cleared', () => document.getElementById('typing').textContent === '');
    ok(step, { message_id: helloId });

    step = 'A sends an image, B sees it';
    const png = gradientPng();
    await a.setInputFiles('#file-input', { name: 'gradient.png', mimeType: 'image/png', buffer: png });
    await a.locator('#attachment').waitFor({ state: 'visible', timeout: DEADLINE_MS });
    await send(a, 'a picture');
    const pictureId = await idOf(b, 'a picture');
    const img = `li.msg[data-message-id="${pictureId}"] img.media`;
    await inPage(b, 'the image loaded', (sel) => {
      const el = document.querySelector(sel);
      return el && el.complete && el.naturalWidth === 64 && el.naturalHeight === 64;
    }, img);
    await inPage(a, 'the image loaded for A too', (sel) => document.querySelector(sel)?.naturalWidth === 64, img);
    ok(step, { message_id: pictureId });

    step = 'B appreciates, the count updates in both';
    const helloLi = `li.msg[data-message-id="${helloId}"]`;
    await b.click(`${helloLi} .appreciate`);
    const counted = (page, n, pressed) => inPage(
      page,
      `appreciation count ${n}`,
      ([sel, want, p]) => {
        const button = document.querySelector(`${sel} .appreciate`);
        return button && button.querySelector('.count').textContent === want && button.getAttribute('aria-pressed') === p;
      },
      [helloLi, String(n), pressed],
    );
    await counted(b, 1, 'true');
    await counted(a, 1, 'false');
    ok(step);

    step = 'A deletes its message, it disappears in B';
    await a.click(`${helloLi} .delete`);
    await a.click(`${helloLi} .delete.confirm`);
    await b.locator(helloLi).waitFor({ state: 'detached', timeout: DEADLINE_MS });
    await a.locator(helloLi).waitFor({ state: 'detached', timeout: DEADLINE_MS });
    ok(step);

    step = 'B replies and appreciates the picture, A sees both';
    await send(b, 'Nice picture, Ada!');
    await idOf(a, 'Nice picture, Ada!');
    const pictureLi = `li.msg[data-message-id="${pictureId}"]`;
    await b.click(`${pictureLi} .appreciate`);
    await inPage(a, 'the picture appreciated', (sel) => document.querySelector(`${sel} .count`)?.textContent === '1', pictureLi);
    ok(step);

    step = "B's stream is closed with 4008 and resumes with since_seq";
    const before = bConns.at(-1);
    const seen = before.received.filter((f) => f.type === 'event' && f.space_id === spaceId);
    const lastSeq = Math.max(...seen.map((f) => f.seq));
    gate = deferred();
    await before.ws.close({ code: 4008, reason: 'slow consumer' });
    await b.locator('#conn-status[data-state="reconnecting"], #conn-status[data-state="connecting"]').waitFor({ timeout: DEADLINE_MS });
    // While B is away (its reconnection is held at the gate), A sends.
    await send(a, 'while bob was away');
    await waitUntil("B's reconnection", () => bConns.length > bConns.indexOf(before) + 1);
    gate.resolve();
    gate = null;
    const after = bConns.at(-1);
    await idOf(b, 'while bob was away');
    const rejoin = after.sent.find((f) => f.type === 'join' && f.space_id === spaceId);
    if (!rejoin || rejoin.since_seq !== lastSeq) {
      throw new Error(`reconnect join ${JSON.stringify(rejoin)}, expected since_seq ${lastSeq}`);
    }
    const replayed = after.received.filter((f) => f.type === 'event' && f.space_id === spaceId);
    if (replayed.length === 0 || replayed[0].seq !== lastSeq + 1) {
      throw new Error(`replay after since_seq ${lastSeq} starts at ${replayed[0]?.seq}`);
    }
    if ((await countText(b, 'while bob was away')) !== 1) throw new Error('the missed message is shown twice');
    await b.locator('#conn-status[data-state="live"]').waitFor({ timeout: DEADLINE_MS });
    ok(step, { since_seq: lastSeq });

    step = 'B reloads and the list resumes, with no duplicates';
    const idsBefore = await shownIds(b);
    await b.reload();
    await signedIn(b, 'Bob');
    await roomLoaded(b, title);
    const idsReloaded = await shownIds(b);
    if (JSON.stringify(idsReloaded) !== JSON.stringify(idsBefore)) {
      throw new Error(`after reload ${JSON.stringify(idsReloaded)}, before ${JSON.stringify(idsBefore)}`);
    }
    if (idsReloaded.includes(helloId)) throw new Error('the deleted message is back');
    await send(a, 'after the reload');
    await idOf(b, 'after the reload');
    await send(a, 'sentinel');
    await idOf(b, 'sentinel');
    if ((await countText(b, 'after the reload')) !== 1) throw new Error('a message arrived twice after the reload');
    const idsA = await shownIds(a);
    const idsB = await shownIds(b);
    if (JSON.stringify(idsA) !== JSON.stringify(idsB)) {
      throw new Error(`A shows ${JSON.stringify(idsA)}, B shows ${JSON.stringify(idsB)}`);
    }
    ok(step, { messages: idsB.length });

    step = 'the operator tab shows the node and its connections';
    await a.click('#tab-operator');
    await inPage(a, 'node id', (id) => document.querySelector('[data-field="node_id"]').textContent === id, NODE_ID);
    await inPage(a, 'native connections', () => Number(document.querySelector('[data-field="connections.native"]').textContent) >= 2);
    await inPage(a, 'the rates', () => ['sends_per_second', 'deliveries_per_second'].every((f) => /^[0-9.]+$/.test(document.querySelector(`[data-field="${f}"]`).textContent)));
    ok(step);

    step = 'screenshots';
    const shots = [];
    for (const [label, size] of [['1280x800', LAPTOP], ['390x844', PHONE]]) {
      await a.setViewportSize(size);
      await a.click('#tab-chat');
      await a.locator('#room-body').waitFor({ state: 'visible', timeout: DEADLINE_MS });
      await inPage(a, 'images loaded', () => [...document.querySelectorAll('img.media')].every((i) => i.complete && i.naturalWidth > 0));
      await a.evaluate(() => {
        const list = document.getElementById('messages');
        list.scrollTop = list.scrollHeight;
      });
      const chat = join(ARTIFACTS, `chat-${label}.png`);
      await a.screenshot({ path: chat });
      await a.click('#tab-operator');
      await inPage(a, 'operator filled', (id) => document.querySelector('[data-field="node_id"]').textContent === id, NODE_ID);
      const operator = join(ARTIFACTS, `operator-${label}.png`);
      await a.screenshot({ path: operator });
      shots.push(chat, operator);
    }
    ok(step, { screenshots: shots });

    step = 'sign out forgets the token';
    await b.click('#sign-out');
    await b.locator('body[data-view="signin"]').waitFor({ timeout: DEADLINE_MS });
    if ((await b.evaluate(() => localStorage.getItem('spacecast.console.token'))) !== null) {
      throw new Error('the token is still stored after sign out');
    }
    await b.reload();
    await b.locator('body[data-ready="true"][data-view="signin"]').waitFor({ timeout: DEADLINE_MS });
    ok(step);

    if (problems.length) {
      step = 'page errors';
      throw new Error(problems.join('; '));
    }
    writeFileSync(join(ARTIFACTS, 'result.json'), JSON.stringify({ space_id: spaceId, messages: idsA }, null, 2));
    report({ result: 'pass', space_id: spaceId, messages: idsA, screenshots: shots });
  } finally {
    await browser.close();
  }
}

run().then(
  () => process.exit(0),
  (e) => {
    report({ result: 'fail', step, error: String(e?.stack ?? e), problems });
    process.exit(1);
  },
);
