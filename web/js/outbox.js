// Owns: this browser's sends that natter has not confirmed yet, kept in localStorage per user,
// so that a reload or a closed tab does not lose a message written while the link was down.
// They are published again, with the same cid, on the page's first connect: natter keeps one
// message per (sender, cid), so a resend of one that did arrive is answered as a duplicate and
// never shown twice. Pictures and files are kept once their upload is done (their media id);
// an upload cut off by a reload is not.

/** Most sends kept waiting; past it a send still goes, but is not kept across a reload. */
const MAX = 100;

const key = (user) => `natter.outbox.${user}`;

function load(user) {
  try {
    const items = JSON.parse(localStorage.getItem(key(user)) || '[]');
    return Array.isArray(items)
      ? items.filter((i) => i && typeof i.addr === 'string' && typeof i.cid === 'string' && i.fields)
      : [];
  } catch {
    return [];
  }
}

export class Outbox {
  constructor(user) {
    this.user = user;
    /** What was waiting when the page loaded: published again on its first connect. */
    this.restored = load(user);
  }

  save(items) {
    try {
      if (items.length) localStorage.setItem(key(this.user), JSON.stringify(items));
      else localStorage.removeItem(key(this.user));
    } catch {
      // Storage full or refused: the send still goes while the page lives.
    }
  }

  /** Keeps a send of `fields` to `addr` under `cid` until it is confirmed. */
  add(addr, cid, fields) {
    const items = load(this.user);
    if (items.length >= MAX) return;
    items.push({ addr, cid, fields });
    this.save(items);
  }

  /** Forgets `cid`: natter stored it (its `sent` receipt or copy came) or refused it. */
  done(cid) {
    const items = load(this.user);
    const left = items.filter((i) => i.cid !== cid);
    if (left.length !== items.length) this.save(left);
  }

  /** Whether `cid` is still waiting. */
  has(cid) {
    return load(this.user).some((i) => i.cid === cid);
  }
}
