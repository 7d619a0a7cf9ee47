// Owns: the signed-in page: wiring the link (MQTT), the state and the view together: what each
// topic means, sync after every (re)connect, the chat list and open chat, read receipts,
// groups, presence, notifications and keeping the token fresh. Writing is compose.js's.

import { $ } from './dom.js';
import { Link } from './link.js';
import { State, CHAT } from './state.js';
import * as view from './view.js';
import { composer } from './compose.js';
import { Outbox } from './outbox.js';
import * as notify from './notify.js';
import * as session from './session.js';

/** Pages of `sync` read at most per (re)connect (100 messages each); `chats` covers the rest. */
const SYNC_PAGES = 20;
/** How long a typing indicator shows without a new one. */
const TYPING_SHOWN_MS = 6000;

export function start({ s, device, wsUrl, signedOut }) {
  const me = s.user;
  const state = new State(me, device);
  const outbox = new Outbox(me);
  const link = new Link({ url: wsUrl, user: me, device, token: s.token });
  let current = s;
  let open = null; // the open chat's addr
  let synced = false; // the first sync after sign-in is done (no notifications before)
  let drawQueued = false;
  const presenceAsked = new Set();
  const groupAsked = new Set();

  const end = (why) => {
    stopRefresh();
    link.close();
    signedOut(why);
  };
  let stopRefresh = session.keepFresh(s, (next) => {
    current = next;
    link.setToken(next.token, false);
  }, () => end('Your session has expired: sign in again.'));

  link.addEventListener('refused', async () => {
    if (session.refreshable(current)) {
      try {
        current = await session.refresh(current);
        link.setToken(current.token, true);
        return;
      } catch { /* fall through */ }
    }
    end('natter refused the sign-in (expired or revoked): sign in again.');
  });

  const visible = () => document.visibilityState === 'visible';

  function draw() {
    if (drawQueued) return;
    drawQueued = true;
    queueMicrotask(() => {
      drawQueued = false;
      view.renderList(state, open, openChat);
      if (open) {
        const c = state.chat(open);
        view.renderHeader(state, c);
        view.renderMessages(state, c, link, actions);
        const member = c.kind !== 'g' || !c.left;
        $('composer').hidden = !member;
      }
      notify.badge([...state.chats.values()].reduce((n, c) => n + c.unread, 0));
    });
  }

  function showError(id, e) {
    $(id).textContent = e ? (e.message || String(e)) : '';
  }

  // Presence may be watched only once the two share a chat: a refused subscription is asked
  // again with the chat's next message.
  function watchPresence(c) {
    if (c.kind !== 'u' || presenceAsked.has(c.name) || !link.up) return;
    presenceAsked.add(c.name);
    link.subscribe(`p/${c.name}`).then((ok) => {
      if (!ok) presenceAsked.delete(c.name);
    });
  }

  async function groupInfo(c, force = false) {
    if (c.kind !== 'g' || (groupAsked.has(c.addr) && !force)) return;
    groupAsked.add(c.addr);
    try {
      const r = await link.request('group.info', { group: c.name });
      setGroup(r.group);
    } catch (e) {
      if (e.code === 'not_authorized') c.left = true;
      else groupAsked.delete(c.addr);
    }
    draw();
  }

  function setGroup(g) {
    if (!g || typeof g.chat !== 'string') return null;
    const c = state.chat(g.chat);
    c.group = { ...g, members: Array.isArray(g.members) ? g.members : [] };
    c.title = typeof g.name === 'string' ? g.name : c.name;
    c.left = !c.group.members.includes(me);
    return c;
  }

  function markRead(c) {
    if (!c || c.addr !== open || !visible() || !link.up) return;
    if (c.maxSeq > c.readUpto) {
      c.readUpto = c.maxSeq;
      link.publish(`r/${c.addr}`, { upto: c.maxSeq }).catch(() => { c.readUpto = 0; });
    }
    c.unread = 0;
  }

  /** Takes one message; `live` ones from others count as unread and may notify. */
  function ingest(m, live) {
    if (m && m.from === me && typeof m.cid === 'string') outbox.done(m.cid);
    const { chat: c, isNew } = state.add(m);
    if (!c || !isNew) return;
    watchPresence(c);
    if (c.kind === 'g') groupInfo(c, m.type === 'system');
    if (m.from === me) return;
    if (live && m.type !== 'system') {
      if (c.addr === open && visible()) markRead(c);
      else c.unread += 1;
      $('announce').textContent = `${m.from}${c.kind === 'g' ? ' in ' + c.title : ''}: ${view.preview(m)}`;
      if (synced) notify.notify(c.kind === 'g' ? `${m.from} in ${c.title}` : m.from, view.preview(m), c.addr, () => openChat(c.addr));
    } else if (c.addr === open) {
      markRead(c);
    }
  }

  /**
   * Publishes again what an earlier page of this browser sent and natter never confirmed (once,
   * after the first sync, so that what did arrive is known by then; later drops are MQTT.js's
   * to resend).
   */
  function resendRestored() {
    const waiting = outbox.restored;
    outbox.restored = [];
    for (const { addr, cid, fields } of waiting) {
      if (!CHAT.test(addr) || !outbox.has(cid)) continue;
      state.addPending(addr, cid, fields);
      link.publish(`m/${addr}`, { cid, ...fields }).catch(() => {});
    }
  }

  async function syncAll() {
    let after = state.lastSeq;
    for (let page = 0; page < SYNC_PAGES; page++) {
      const r = await link.request('sync', { after, limit: 100 });
      const msgs = Array.isArray(r.messages) ? r.messages : [];
      for (const m of msgs) ingest(m, synced);
      if (msgs.length) after = msgs[msgs.length - 1].seq;
      if (!r.more || !msgs.length) break;
    }
  }

  async function loadChats() {
    const r = await link.request('chats');
    for (const { chat, last, unread, name } of Array.isArray(r.chats) ? r.chats : []) {
      if (!CHAT.test(chat)) continue;
      const c = state.chat(chat);
      if (last) state.add(last);
      c.unread = chat === open && visible() ? 0 : Number(unread) || 0;
      watchPresence(c);
      // A group's name comes with the list; its members are asked for when it is opened.
      if (c.kind === 'g' && typeof name === 'string' && !c.group) c.title = name;
      else groupInfo(c);
    }
  }

  async function loadHistory(c) {
    if (c.history === 'loading' || c.history === 'all') return;
    const before = c.history === 'more' ? c.oldest : undefined;
    c.history = 'loading';
    try {
      const r = await link.request('history', before ? { chat: c.addr, before, limit: 50 } : { chat: c.addr, limit: 50 });
      for (const m of r.messages || []) state.add(m);
      c.history = r.more ? 'more' : 'all';
    } catch (e) {
      c.history = before ? 'more' : 'none';
      if (e.code !== 'offline') showError('chat-error', e);
    }
    draw();
  }

  link.addEventListener('up', async () => {
    $('app').dataset.conn = 'up';
    $('conn').textContent = 'online';
    presenceAsked.clear();
    try {
      await syncAll();
      await loadChats();
      resendRestored();
      synced = true;
      showError('list-error', null);
      if (open) {
        const c = state.chat(open);
        if (c.history === 'none') loadHistory(c);
        markRead(c);
      }
      // Caught up since this connect (tests and people can rely on it).
      if (link.up) $('app').dataset.synced = 'yes';
    } catch (e) {
      if (e.code !== 'offline') showError('list-error', e);
    }
    draw();
  });
  link.addEventListener('down', () => {
    $('app').dataset.conn = 'down';
    $('app').dataset.synced = 'no';
    $('conn').textContent = 'reconnecting…';
  });

  link.addEventListener('message', ({ detail: { topic, data } }) => {
    if (topic === `u/${me}/m`) ingest(data, true);
    else if (topic === `u/${me}/r`) {
      const c = state.receipt(data);
      if (c) watchPresence(c); // the chat exists now, if it did not when it was opened
      if (data && data.status === 'sent' && typeof data.cid === 'string') outbox.done(data.cid);
    }
    else if (topic === `u/${me}/e`) event(data);
    else if (topic.startsWith('p/')) state.presence.set(topic.slice(2), data);
    else if (topic === link.replyTopic && data && data.ok === false && data.cid) {
      outbox.done(data.cid);
      state.fail(data.cid, data.error?.message || 'refused');
    }
    draw();
  });

  function event(e) {
    if (!e || (e.type !== 'group' && !CHAT.test(e.chat))) return;
    if (e.type === 'typing' && e.from !== me) {
      state.chat(e.chat).typing.set(e.from, e.state === 'typing' ? Date.now() + TYPING_SHOWN_MS : 0);
    } else if (e.type === 'read') {
      const c = state.chat(e.chat);
      c.unread = Number(e.unread) || 0;
      if (Number.isInteger(e.upto)) c.readUpto = Math.max(c.readUpto, e.upto);
    } else if (e.type === 'group') {
      const c = setGroup(e.group);
      if (c && e.action === 'left' && Array.isArray(e.members) && e.members.includes(me)) c.left = true;
    }
  }

  function openChat(addr) {
    open = addr;
    const c = state.chat(addr);
    $('chat').hidden = false;
    $('app').classList.add('show-chat');
    showError('chat-error', null);
    $('preview').hidden = true;
    watchPresence(c);
    if (c.kind === 'g') groupInfo(c);
    if (c.history === 'none' && link.up) loadHistory(c);
    markRead(c);
    draw();
    $('text').focus();
  }

  function closeChat() {
    open = null;
    $('chat').hidden = true;
    $('app').classList.remove('show-chat');
    draw();
    $('new-chat-user').focus();
  }

  composer({ link, state, outbox, openAddr: () => open, draw });

  $('back').addEventListener('click', closeChat);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && open && $('preview').hidden) closeChat();
  });
  $('older').addEventListener('click', () => open && loadHistory(state.chat(open)));
  document.addEventListener('visibilitychange', () => {
    if (open) markRead(state.chat(open));
    draw();
  });

  $('new-chat').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('new-chat-user').value.trim().toLowerCase();
    if (!/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(user) || user === me) {
      showError('list-error', new Error('Not a user name (a-z, 0-9, "_", "." and "-").'));
      return;
    }
    showError('list-error', null);
    $('new-chat-user').value = '';
    openChat(`u/${user}`);
  });

  const names = (text) => text.split(',').map((x) => x.trim().toLowerCase()).filter(Boolean);
  const actions = {
    join: async (id) => {
      try {
        const c = setGroup((await link.request('group.join', { group: id })).group);
        if (c) openChat(c.addr);
      } catch (e) { showError('chat-error', e); }
    },
    decline: async (id) => {
      try { await link.request('group.decline', { group: id }); } catch (e) { showError('chat-error', e); }
    },
  };
  $('new-group-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await link.request('group.create', { name: $('group-name').value.trim(), members: names($('group-members').value) });
      const c = setGroup(r.group);
      $('group-name').value = '';
      $('group-members').value = '';
      $('new-group').open = false;
      showError('list-error', null);
      if (c) openChat(c.addr);
    } catch (err) { showError('list-error', err); }
  });
  $('add-member').addEventListener('submit', async (e) => {
    e.preventDefault();
    const c = open && state.chat(open);
    if (!c || c.kind !== 'g') return;
    try {
      setGroup((await link.request('group.add', { group: c.name, members: names($('add-member-user').value) })).group);
      $('add-member-user').value = '';
      showError('chat-error', null);
    } catch (err) { showError('chat-error', err); }
    draw();
  });
  $('leave-group').addEventListener('click', async () => {
    const c = open && state.chat(open);
    if (!c || c.kind !== 'g') return;
    try {
      await link.request('group.leave', { group: c.name });
      c.left = true;
      if (c.group) c.group.members = c.group.members.filter((u) => u !== me);
    } catch (err) { showError('chat-error', err); }
    draw();
  });

  if (notify.askable()) {
    $('notify').hidden = false;
    $('notify').addEventListener('click', async () => {
      await notify.ask();
      $('notify').hidden = !notify.askable();
    });
  }
  $('signout').addEventListener('click', () => {
    session.clear();
    end('Signed out.');
  });
  // Typing indicators fade by themselves when their sender goes quiet.
  setInterval(() => {
    const now = Date.now();
    let changed = false;
    for (const c of state.chats.values()) {
      for (const [user, until] of c.typing) {
        if (until <= now) {
          c.typing.delete(user);
          changed = true;
        }
      }
    }
    if (changed) draw();
  }, 1000);

  $('me').textContent = me;
  draw();
}
