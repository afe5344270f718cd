// The REST calls the console makes, with the signed-in user's bearer token. Every error the
// server sends is JSON `{error, code}`; it becomes an `ApiError` with both.

/** A failed call: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(path, { method = 'GET', token, json, form } = {}) {
  const headers = {};
  let body;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'unreachable', 'The server cannot be reached');
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    // An empty or non-JSON body: the status says enough.
  }
  if (!res.ok) {
    throw new ApiError(res.status, data?.code ?? `http_${res.status}`, data?.error ?? res.statusText);
  }
  return data;
}

/** The media type the server expects for a file (`image`, `video` or `audio`). */
export function mediaTypeOf(file) {
  const top = String(file.type || '').split('/')[0];
  return ['image', 'video', 'audio'].includes(top) ? top : 'image';
}

/** Calls made as one user. `onUnauthorized(err)` runs on any 401 (the token is refused). */
export class Api {
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(path, options = {}) {
    try {
      return await call(path, { ...options, token: this.token });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.onUnauthorized?.(err);
      throw err;
    }
  }

  mySpaces() {
    return this.request('/api/spaces/my');
  }

  createSpace(title, description) {
    return this.request('/api/spaces', { method: 'POST', json: { title, description } });
  }

  /** Joins a space; being a member already is success too. */
  async joinSpace(spaceId) {
    try {
      return await this.request(`/api/spaces/${encodeURIComponent(spaceId)}/join`, { method: 'POST', json: {} });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'already_member') return { space_id: spaceId };
      throw err;
    }
  }

  /** The newest `limit` messages, newest first. */
  history(spaceId, limit = 50) {
    return this.request(`/api/messages/${encodeURIComponent(spaceId)}?sort=recent&page=1&limit=${limit}`);
  }

  /** Sends text, or text and a file (multipart `content`, `media`, `media_type`). */
  send(spaceId, content, file) {
    const path = `/api/messages/${encodeURIComponent(spaceId)}`;
    if (!file) return this.request(path, { method: 'POST', json: { content } });
    const form = new FormData();
    if (content) form.append('content', content);
    form.append('media', file, file.name || 'upload');
    form.append('media_type', mediaTypeOf(file));
    return this.request(path, { method: 'POST', form });
  }

  appreciate(spaceId, messageId) {
    return this.request(`/api/messages/${encodeURIComponent(spaceId)}/${encodeURIComponent(messageId)}/appreciate`, { method: 'POST' });
  }

  remove(spaceId, messageId) {
    return this.request(`/api/messages/${encodeURIComponent(spaceId)}/${encodeURIComponent(messageId)}`, { method: 'DELETE' });
  }

  node() {
    return this.request('/v1/node');
  }
}

/** Whether this server offers development login (`GET /console/dev-login` answers 200). */
export async function devLoginAvailable() {
  try {
    await call('/console/dev-login');
    return true;
  } catch {
    return false;
  }
}

/** Mints a development token: `{token, user_id, username, expires_at}`. */
export function devLogin(username) {
  return call('/console/dev-login', { method: 'POST', json: { username } });
}

/** The claims of a JWT (not verified: the server does that), or `null` if it is not one. */
export function decodeToken(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}
