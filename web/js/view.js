// Owns: drawing the chat list and the open chat from the State, with no protocol knowledge.
// Messages are keyed nodes (State.keyOf), updated in place, so ticks change without redrawing
// the list and an image is loaded once. Every user-supplied string goes in as text (dom.js).

import { el, $, when, size } from './dom.js';
import * as media from './media.js';

const TICKS = { sending: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };
const TICK_WORDS = { sending: 'sending', sent: 'sent', delivered: 'delivered', read: 'read', failed: 'not sent' };

/** A short text for a message, for the list and notifications. */
export function preview(m) {
  if (!m) return '';
  if (m.type === 'system') return systemText(m);
  if (m.media) return `${m.type === 'image' ? 'Photo' : 'File'}${m.body ? ': ' + m.body : m.media.name ? ': ' + m.media.name : ''}`;
  return String(m.body ?? '');
}

function systemText(m) {
  const e = m.event || {};
  const who = Array.isArray(e.members) ? e.members.join(', ') : '';
  const by = e.by || m.from || '';
  const words = {
    created: `${by} created the group`,
    added: `${by} added ${who}`,
    invited: `${by} invited ${who} to ${e.group?.name || 'a group'}`,
    joined: `${who || by} joined`,
    declined: `${who || by} declined the invitation`,
    removed: `${by} removed ${who}`,
    left: `${who || by} left`,
  };
  return words[e.action] || String(m.body || 'group changed');
}

/** What the chat header says under the title: presence, or a group's members. */
export function subtitle(state, c) {
  if (c.group) return `${c.group.members.length} members: ${c.group.members.join(', ')}`;
  if (c.kind !== 'u') return '';
  const p = state.presence.get(c.name);
  if (!p) return '';
  if (p.state === 'online') return 'online';
  return p.last_seen ? `last seen ${when(p.last_seen)}` : 'offline';
}

export function renderList(state, openAddr, onOpen) {
  const list = $('chat-list');
  const chats = state.list();
  $('no-chats').hidden = chats.length > 0;
  const items = chats.map((c) => {
    const typing = state.typingIn(c);
    const online = c.kind === 'u' && state.presence.get(c.name)?.state === 'online';
    const label = `${c.title}${c.unread ? `, ${c.unread} unread` : ''}`;
    return el('li', { dataset: { chat: c.addr } },
      el('button', {
        type: 'button', class: c.addr === openAddr ? 'item open' : 'item',
        'aria-label': label, 'aria-current': c.addr === openAddr ? 'true' : null,
        onclick: () => onOpen(c.addr),
      },
        el('span', { class: online ? 'dot on' : 'dot', 'aria-hidden': 'true' }),
        el('span', { class: 'name' }, c.title),
        el('time', { class: 'at' }, c.last ? when(c.last.ts) : ''),
        el('span', { class: 'last' }, typing.length ? 'typing…' : preview(c.last)),
        c.unread ? el('span', { class: 'unread', 'aria-hidden': 'true' }, String(c.unread)) : null));
  });
  list.replaceChildren(...items);
}

function mediaNode(link, m) {
  const md = m.media;
  if (!md || typeof md.id !== 'string') return null;
  if (md.expired) return el('p', { class: 'file' }, 'This file has expired.');
  const name = md.name || (m.type === 'image' ? 'image' : 'file');
  const isImage = typeof md.mime === 'string' && md.mime.startsWith('image/') && md.mime !== 'image/svg+xml';
  if (m.local && isImage) return el('img', { class: 'photo', src: m.local, alt: name });
  const node = isImage
    ? el('a', { class: 'photo-link', target: '_blank', rel: 'noopener' }, el('img', { class: 'photo', alt: name }))
    : el('a', { class: 'file', target: '_blank', rel: 'noopener', download: name }, `📄 ${name} (${size(md.size)})`);
  media.url(link, md.id).then((url) => {
    node.href = url;
    if (isImage) node.querySelector('img').src = url;
  }).catch(() => node.replaceWith(el('p', { class: 'file' }, `${name}: not available`)));
  return node;
}

function messageNode(state, c, m, link, actions) {
  const mine = m.from === state.me;
  if (m.type === 'system') {
    const e = m.event || {};
    const invited = e.action === 'invited' && Array.isArray(e.members) && e.members.includes(state.me) && e.group?.id;
    return el('li', { class: 'msg system', dataset: { id: m.id } },
      el('span', { class: 'body' }, systemText(m)),
      invited ? el('button', { type: 'button', onclick: () => actions.join(e.group.id) }, 'Join') : null,
      invited ? el('button', { type: 'button', onclick: () => actions.decline(e.group.id) }, 'Decline') : null);
  }
  return el('li', { class: mine ? 'msg mine' : 'msg theirs', dataset: { id: m.id, cid: m.cid || '' } },
    !mine && c.kind === 'g' ? el('span', { class: 'from' }, m.from) : null,
    mediaNode(link, m),
    m.body ? el('p', { class: 'body' }, String(m.body)) : null,
    el('span', { class: 'meta' },
      el('time', {}, when(m.ts)),
      mine ? el('span', { class: 'tick', role: 'img' }) : null),
    m.failed ? el('span', { class: 'error' }, `Not sent: ${m.failed}`) : null);
}

const nodes = new Map(); // key -> li, for the open chat
let drawn = null;

/** Draws the open chat's messages, keeping nodes already drawn. */
export function renderMessages(state, c, link, actions) {
  const ol = $('messages');
  if (drawn !== c.addr) {
    nodes.clear();
    ol.replaceChildren();
    drawn = c.addr;
  }
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  const want = state.ordered(c);
  const keys = new Set();
  let cursor = ol.firstChild;
  for (const m of want) {
    const key = state.keyOf(m);
    keys.add(key);
    let li = nodes.get(key);
    if (!li || (li.dataset.failed !== undefined) !== !!m.failed) {
      const fresh = messageNode(state, c, m, link, actions);
      if (m.failed) fresh.dataset.failed = '';
      if (li) {
        if (cursor === li) cursor = fresh;
        li.replaceWith(fresh);
      }
      li = fresh;
      nodes.set(key, li);
    }
    li.dataset.id = m.id;
    if (m.from === state.me && m.type !== 'system') {
      const status = state.status(c, m);
      if (li.dataset.status !== status) {
        li.dataset.status = status;
        const tick = li.querySelector('.tick');
        if (tick) {
          tick.textContent = TICKS[status];
          tick.setAttribute('aria-label', TICK_WORDS[status]);
          tick.title = TICK_WORDS[status];
        }
      }
    }
    if (li !== cursor) ol.insertBefore(li, cursor);
    else cursor = cursor.nextSibling;
  }
  for (const [key, li] of nodes) {
    if (!keys.has(key)) {
      li.remove();
      nodes.delete(key);
    }
  }
  if (atBottom) ol.scrollTop = ol.scrollHeight;
  $('older').hidden = c.history !== 'more';
}

/** The chat's header, typing line and group tools. */
export function renderHeader(state, c) {
  $('chat-title').textContent = c.title;
  $('chat-sub').textContent = subtitle(state, c);
  $('group-tools').hidden = c.kind !== 'g' || !c.group || !c.group.members.includes(state.me);
  const typing = state.typingIn(c);
  $('typing').textContent = typing.length ? `${typing.join(', ')} ${typing.length > 1 ? 'are' : 'is'} typing…` : '';
}
