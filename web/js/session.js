// Owns: signing in (POST /v1/token), keeping the token (and the refresh token, when the server
// gives one) in Web Storage, refreshing it before it expires, and this browser's device id.
// Never stores the password. "Keep me signed in" puts the session in localStorage; otherwise it
// lives in sessionStorage and ends with the tab.

const KEY = 'natter.session';
const DEVICE_KEY = 'natter.device';
/** Refresh this many seconds before the token expires. */
const EARLY = 60;

/** The stored session, or null. */
export function load() {
  for (const store of [sessionStorage, localStorage]) {
    try {
      const s = JSON.parse(store.getItem(KEY) || 'null');
      if (s && typeof s.user === 'string' && typeof s.token === 'string') return s;
    } catch {
      store.removeItem(KEY);
    }
  }
  return null;
}

function save(s) {
  const [keep, drop] = s.remember ? [localStorage, sessionStorage] : [sessionStorage, localStorage];
  keep.setItem(KEY, JSON.stringify(s));
  drop.removeItem(KEY);
}

/** Forgets the session (both storages). */
export function clear() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** An error with the API's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function post(path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(0, 'network', 'natter cannot be reached');
  }
  const json = await resp.json().catch(() => null);
  if (!resp.ok) {
    const e = json && json.error ? json.error : {};
    throw new ApiError(resp.status, e.code || 'http', e.message || `HTTP ${resp.status}`);
  }
  if (!json || typeof json.token !== 'string') throw new ApiError(resp.status, 'bad_answer', 'no token in the answer');
  return json;
}

function fromAnswer(user, remember, a) {
  return {
    user,
    remember,
    token: a.token,
    expires: Number(a.expires) || 0,
    // Absent on servers without refresh tokens: then the password is asked again at expiry.
    refresh_token: typeof a.refresh_token === 'string' ? a.refresh_token : null,
    refresh_expires: Number(a.refresh_expires) || 0,
  };
}

/** Signs in with a password; the session, stored. */
export async function signIn(user, password, remember) {
  const s = fromAnswer(user, remember, await post('/v1/token', { user, password }));
  save(s);
  return s;
}

/** Whether the session's access token is still good for a while. */
export function fresh(s) {
  return s.expires - EARLY > Date.now() / 1000;
}

/** Whether the session can get a new access token without the password. */
export function refreshable(s) {
  return !!s.refresh_token && (!s.refresh_expires || s.refresh_expires > Date.now() / 1000);
}

/**
 * A new access token (and rotated refresh token) for `s`; the new session, stored. Refresh
 * tokens are used once: refreshes are serialized (a Web Lock, across this browser's tabs), and
 * a session another tab already refreshed is taken as it is instead of spending the old token.
 */
export async function refresh(s) {
  const run = async () => {
    const stored = load();
    const same = stored && stored.user === s.user;
    if (same && stored.token !== s.token && fresh(stored)) return stored;
    const base = same && stored.refresh_token ? stored : s;
    const a = await post('/v1/token/refresh', { refresh_token: base.refresh_token });
    const next = fromAnswer(s.user, s.remember, a);
    save(next);
    return next;
  };
  return navigator.locks ? navigator.locks.request('natter-refresh', run) : run();
}

/**
 * Calls `onToken(session)` with a refreshed session shortly before each expiry, or
 * `onExpired()` when there is no refresh token or the refresh is refused. Returns a cancel
 * function.
 */
export function keepFresh(s, onToken, onExpired) {
  let timer = null;
  let current = s;
  const arm = () => {
    const wait = Math.max(5, current.expires - EARLY - Date.now() / 1000);
    // setTimeout's limit is about 24.8 days; re-arm from there if needed.
    timer = setTimeout(tick, Math.min(wait * 1000, 2 ** 31 - 1));
  };
  const tick = async () => {
    if (fresh(current)) return arm();
    if (!refreshable(current)) return onExpired();
    try {
      current = await refresh(current);
      onToken(current);
      arm();
    } catch (e) {
      if (e.status === 0) {
        timer = setTimeout(tick, 10_000); // offline: try again soon
      } else {
        onExpired();
      }
    }
  };
  arm();
  return () => clearTimeout(timer);
}

const DEVICE = /^[A-Za-z0-9_-]{1,64}$/;

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * This tab's device id (`[A-Za-z0-9_-]`, part of the MQTT client id `{user}:{device}`): the
 * browser's own, kept in localStorage, unless another tab of this browser holds it (a Web
 * Lock), in which case the tab takes one of its own for as long as it lives, so the two tabs do
 * not take each other's connection over.
 */
export async function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id || !DEVICE.test(id)) {
    id = randomId();
    localStorage.setItem(DEVICE_KEY, id);
  }
  const mine = sessionStorage.getItem(DEVICE_KEY);
  if (!navigator.locks) {
    // No Web Locks outside a secure context (plain http on a non-loopback host): each tab keeps
    // an id of its own rather than risk two tabs taking each other's connection over.
    if (mine && DEVICE.test(mine)) return mine;
    const own = randomId();
    sessionStorage.setItem(DEVICE_KEY, own);
    return own;
  }
  for (const candidate of [mine, id]) {
    if (!candidate || !DEVICE.test(candidate)) continue;
    const got = await new Promise((resolve) => {
      navigator.locks.request('natter-device-' + candidate, { ifAvailable: true }, (lock) => {
        resolve(!!lock);
        // Held until the tab goes.
        return lock ? new Promise(() => {}) : undefined;
      });
    });
    if (got) {
      sessionStorage.setItem(DEVICE_KEY, candidate);
      return candidate;
    }
  }
  const own = randomId();
  sessionStorage.setItem(DEVICE_KEY, own);
  navigator.locks.request('natter-device-' + own, () => new Promise(() => {}));
  return own;
}
