// Owns: what the page knows, with no DOM: chats (unread, last message, group info, presence,
// typing), each chat's messages deduplicated by id (and, for this user's own sends, by cid),
// receipts and the tick each own message shows, and the last inbox seq synced (kept in
// localStorage per user and device, so a reconnect or a reload asks only for what is new).

/** A chat address as natter names chats: `u/{user}` or `g/{group id}`. */
export const CHAT = /^[ug]\/[A-Za-z0-9_.-]{1,128}$/;

/** Orders message ids (ULIDs sort as text; strictly increasing within a chat). */
const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export class State {
  constructor(me, device) {
    this.me = me;
    this.seqKey = `natter.seq.${me}.${device}`;
    this.lastSeq = Number(localStorage.getItem(this.seqKey)) || 0;
    this.chats = new Map();
    /** Receipts by message id: {sent, delivered: Set, read: Set}. */
    this.receipts = new Map();
    /** Retained presence by user: {state, last_seen}. */
    this.presence = new Map();
  }

  /** The chat `addr` (`u/{peer}` or `g/{id}`), made if new. */
  chat(addr) {
    let c = this.chats.get(addr);
    if (!c) {
      const [kind, name] = [addr.slice(0, 1), addr.slice(2)];
      c = {
        addr, kind, name,
        title: kind === 'u' ? name : name,
        group: null,
        messages: new Map(), // key (see keyOf) -> message
        last: null,
        unread: 0,
        maxSeq: 0,
        readUpto: 0,
        typing: new Map(), // user -> until (ms)
        history: 'none', // 'none' | 'loading' | 'more' | 'all'
        oldest: null,
      };
      this.chats.set(addr, c);
    }
    return c;
  }

  /** A message's key in its chat: own sends by cid (so the sent copy replaces the pending one). */
  keyOf(m) {
    return m.from === this.me && m.cid ? `c:${m.cid}` : `i:${m.id}`;
  }

  /**
   * Takes a message (live, from `sync`, or from `history`). Returns the chat and whether the
   * message is new here (false for a duplicate: the same id again).
   */
  add(m) {
    if (!m || !CHAT.test(m.chat) || typeof m.id !== 'string') return { chat: null, isNew: false };
    const c = this.chat(m.chat);
    const key = this.keyOf(m);
    const had = c.messages.get(key);
    const isNew = !had || had.pending;
    c.messages.set(key, { ...had, ...m, pending: false });
    if (Number.isInteger(m.seq)) {
      c.maxSeq = Math.max(c.maxSeq, m.seq);
      this.noteSeq(m.seq);
    }
    const last = c.last;
    const newer = !last
      || (last.pending ? last.cid === m.cid || (m.ts || 0) >= (last.ts || 0) : last.id <= m.id);
    if (newer) c.last = c.messages.get(key);
    if (!c.oldest || m.id < c.oldest) c.oldest = m.id;
    if (m.from !== this.me) c.typing.delete(m.from);
    // `history` says how far the peer got with my older messages (one-to-one chats).
    if (m.from === this.me && m.chat.startsWith('u/') && (m.status === 'delivered' || m.status === 'read')) {
      this.receipt({ id: m.id, chat: m.chat, status: m.status, by: m.chat.slice(2) });
    }
    return { chat: c, isNew };
  }

  /** Records the highest inbox seq seen. */
  noteSeq(seq) {
    if (seq > this.lastSeq) {
      this.lastSeq = seq;
      localStorage.setItem(this.seqKey, String(seq));
    }
  }

  /** A message of ours not yet acknowledged. */
  addPending(addr, cid, fields) {
    const c = this.chat(addr);
    const m = { chat: addr, cid, from: this.me, id: `~${Date.now()}-${cid}`, ts: Date.now(), type: 'text', body: '', ...fields, pending: true };
    c.messages.set(`c:${cid}`, m);
    c.last = m;
    return c;
  }

  /** Marks a pending send as refused. */
  fail(cid, message) {
    for (const c of this.chats.values()) {
      const m = c.messages.get(`c:${cid}`);
      if (m) {
        m.failed = message;
        return c;
      }
    }
    return null;
  }

  /** Takes a receipt; the chat it concerns, if known. */
  receipt(r) {
    if (!r || typeof r.id !== 'string') return null;
    const rec = this.receipts.get(r.id) || { sent: false, delivered: new Set(), read: new Set() };
    this.receipts.set(r.id, rec);
    if (r.status === 'sent') rec.sent = true;
    if (r.status === 'delivered' && r.by) rec.delivered.add(r.by);
    if (r.status === 'read' && r.by) {
      rec.read.add(r.by);
      rec.delivered.add(r.by);
    }
    const c = this.chats.get(r.chat);
    if (c && r.cid) {
      const m = c.messages.get(`c:${r.cid}`);
      if (m && m.pending) {
        m.id = r.id;
        m.pending = false;
      }
    }
    return c || null;
  }

  /** The tick of an own message: sending, sent, delivered, read (or failed). */
  status(c, m) {
    if (m.failed) return 'failed';
    if (m.pending) return 'sending';
    const rec = this.receipts.get(m.id);
    if (!rec) return 'sent';
    // In a group: read or delivered once every other member has.
    const others = c.group ? Math.max(1, c.group.members.length - 1) : 1;
    if (rec.read.size >= others) return 'read';
    if (rec.delivered.size >= others) return 'delivered';
    return 'sent';
  }

  /** The chat's messages in order: by id, pending sends last. */
  ordered(c) {
    const all = [...c.messages.values()];
    const done = all.filter((m) => !m.pending && !m.failed).sort(byId);
    const waiting = all.filter((m) => m.pending || m.failed).sort((a, b) => a.ts - b.ts);
    return [...done, ...waiting];
  }

  /** Chats, the latest activity first. */
  list() {
    const at = (c) => (c.last ? c.last.ts || 0 : 0);
    return [...this.chats.values()].sort((a, b) => at(b) - at(a));
  }

  /** Users typing in `c` now. */
  typingIn(c) {
    const now = Date.now();
    return [...c.typing].filter(([, until]) => until > now).map(([u]) => u);
  }
}
