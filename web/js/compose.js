// Owns: writing in the open chat: sending text (Enter sends, Shift+Enter is a new line),
// typing indicators ("typing" at most every few seconds while keys come, "paused" when they
// stop), and files: choose, preview, upload (media.js), then send. Each send is shown at once
// as pending under a fresh cid, which natter's answer and the sent copy replace, and kept in the
// outbox (outbox.js) until then.

import { $ } from './dom.js';
import * as media from './media.js';

/** A typing indicator is sent at most this often while keys come. */
const TYPING_EVERY_MS = 3000;

function newCid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Wires the composer; `openAddr()` is the open chat's address (or null). */
export function composer({ link, state, outbox, openAddr, draw }) {
  function send(fields) {
    const addr = openAddr();
    const cid = newCid();
    state.addPending(addr, cid, fields);
    outbox.add(addr, cid, fields);
    draw();
    link.publish(`m/${addr}`, { cid, ...fields }).catch((e) => {
      outbox.done(cid);
      state.fail(cid, e.message || 'refused');
      draw();
    });
    return cid;
  }

  // Typing: "typing" at most every few seconds while keys come, "paused" when they stop.
  let lastTyping = 0;
  let pauseTimer = null;
  function typing(what) {
    const open = openAddr();
    if (!open || !link.up) return;
    link.publish(`t/${open}`, { state: what }, 0).catch(() => {});
  }
  $('text').addEventListener('input', () => {
    const now = Date.now();
    if (now - lastTyping > TYPING_EVERY_MS) {
      lastTyping = now;
      typing('typing');
    }
    clearTimeout(pauseTimer);
    pauseTimer = setTimeout(() => { lastTyping = 0; typing('paused'); }, TYPING_EVERY_MS + 1000);
  });
  $('text').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const body = $('text').value.trim();
    if (!body || !openAddr()) return;
    $('text').value = '';
    clearTimeout(pauseTimer);
    lastTyping = 0;
    send({ body });
  });

  // Files: choose, preview, then upload and send.
  let chosen = null;
  $('attach').addEventListener('change', () => {
    const file = $('attach').files[0];
    if (!file) return;
    chosen = { file, local: URL.createObjectURL(file) };
    const isImage = file.type.startsWith('image/');
    $('preview-img').hidden = !isImage;
    if (isImage) $('preview-img').src = chosen.local;
    else $('preview-img').removeAttribute('src');
    $('preview-name').textContent = `${file.name} (${file.type || 'unknown type'})`;
    $('preview').hidden = false;
    $('preview-send').focus();
  });
  $('preview-cancel').addEventListener('click', () => {
    chosen = null;
    $('preview').hidden = true;
    $('attach').value = '';
    $('text').focus();
  });
  $('preview-send').addEventListener('click', async () => {
    if (!chosen || !openAddr()) return;
    const { file, local } = chosen;
    chosen = null;
    $('preview').hidden = true;
    $('attach').value = '';
    const caption = $('text').value.trim();
    $('text').value = '';
    const mime = file.type || 'application/octet-stream';
    const addr = openAddr();
    const cid = newCid();
    const fields = { type: media.typeOf(mime), body: caption };
    state.addPending(addr, cid, { ...fields, media: { id: '', name: file.name, mime, size: file.size }, local });
    draw();
    try {
      const up = await media.upload(link, file);
      const sent = { ...fields, media: { id: up.id, name: file.name } };
      outbox.add(addr, cid, sent);
      await link.publish(`m/${addr}`, { cid, ...sent });
    } catch (e) {
      outbox.done(cid);
      state.fail(cid, e.message || 'upload failed');
      draw();
    }
  });
}
