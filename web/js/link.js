// Owns: the MQTT-over-WebSocket connection (MQTT.js, MQTT 5): connecting as `{user}:{device}`
// with the token as password, subscribing to the user's topics on every (re)connect, requests
// (`q/{method}` answered on `d/{user}/{device}`) as promises, publishing, and telling the app
// when the link is up, down, or refused for its credentials.

import mqtt from '../vendor/mqtt/mqtt.esm.js';

/** How long a request may wait for its answer. */
const REQUEST_TIMEOUT_MS = 15_000;
const decoder = new TextDecoder();

/** A refused request: the protocol's error code and message. */
export class RequestError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/**
 * The connection. Events (EventTarget, `detail` carries the data): `up` (connected and
 * subscribed), `down`, `refused` (the server refused the credentials: `detail` is the reason
 * code), `message` (`{topic, data}` for every publish that is not a request's answer).
 */
export class Link extends EventTarget {
  constructor({ url, user, device, token }) {
    super();
    this.user = user;
    this.device = device;
    this.replyTopic = `d/${user}/${device}`;
    this.pending = new Map();
    this.next = 1;
    this.up = false;
    this.client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: `${user}:${device}`,
      username: user,
      password: token,
      clean: true,
      keepalive: 30,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      resubscribe: false,
      queueQoSZero: false, // a typing indicator from before a drop is stale
      properties: { sessionExpiryInterval: 0 },
    });
    this.client.on('connect', () => this.onConnect());
    this.client.on('close', () => this.setUp(false));
    this.client.on('error', (e) => {
      // 0x86 bad user name or password, 0x87 not authorized: MQTT.js stops reconnecting.
      if (e && (e.code === 0x86 || e.code === 0x87 || e.code === 4 || e.code === 5)) {
        this.dispatchEvent(new CustomEvent('refused', { detail: e.code }));
      }
    });
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  async onConnect() {
    const topics = [`u/${this.user}/#`, this.replyTopic];
    try {
      await this.client.subscribeAsync(topics, { qos: 1 });
    } catch {
      return; // the connection went again; the next connect retries
    }
    this.setUp(true);
  }

  setUp(up) {
    if (this.up === up) return;
    this.up = up;
    if (!up) {
      for (const [, p] of this.pending) p.reject(new RequestError('offline', 'the connection dropped'));
      this.pending.clear();
    }
    this.dispatchEvent(new Event(up ? 'up' : 'down'));
  }

  onMessage(topic, payload) {
    let data;
    try {
      data = JSON.parse(decoder.decode(payload));
    } catch {
      return; // not ours to show
    }
    if (topic === this.replyTopic && data && data.id !== undefined && this.pending.has(String(data.id))) {
      const p = this.pending.get(String(data.id));
      this.pending.delete(String(data.id));
      if (data.ok) p.resolve(data);
      else p.reject(new RequestError(data.error?.code || 'error', data.error?.message || 'refused'));
      return;
    }
    this.dispatchEvent(new CustomEvent('message', { detail: { topic, data } }));
  }

  /** Sends `q/{method}`; its answer (`ok: true`), or a RequestError. */
  request(method, params = {}) {
    if (!this.up) return Promise.reject(new RequestError('offline', 'not connected'));
    const id = `${this.next++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError('timeout', `no answer to ${method}`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.client.publish(`q/${method}`, JSON.stringify({ ...params, id }), { qos: 1 });
    });
  }

  /**
   * Publishes JSON. QoS 1 publishes made while the link is down wait in MQTT.js's outgoing
   * store and go when it is up again (a message's `cid` makes a resend harmless).
   */
  publish(topic, data, qos = 1) {
    return this.client.publishAsync(topic, JSON.stringify(data), { qos });
  }

  /** Subscribes to one more topic (presence); whether the server granted it. */
  subscribe(topic) {
    if (!this.up) return Promise.resolve(false);
    return this.client.subscribeAsync(topic, { qos: 0 })
      .then((granted) => granted.length > 0 && granted.every((g) => g.qos < 0x80))
      .catch(() => false);
  }

  /** Uses a new token from the next (re)connect on, and reconnects if the old one was refused. */
  setToken(token, reconnect) {
    this.client.options.password = token;
    if (reconnect) this.client.reconnect();
  }

  /** Closes the connection for good. */
  close() {
    this.client.end(true);
  }
}
