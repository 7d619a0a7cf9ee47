// Owns: starting the page: reading /v1/client-config (where MQTT over WebSocket is), resuming a
// stored session or showing the sign-in form, and handing over to app.js once signed in.

import { $ } from './dom.js';
import * as session from './session.js';
import { start } from './app.js';

async function clientConfig() {
  const resp = await fetch('/v1/client-config', { credentials: 'same-origin' });
  if (!resp.ok) throw new Error(`natter answered ${resp.status} for its client configuration`);
  return resp.json();
}

function showSignIn(message) {
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('signin-button').disabled = false;
  $('user').focus();
}

async function enter(s, wsUrl) {
  const device = await session.deviceId();
  $('signin').hidden = true;
  $('app').hidden = false;
  start({
    s,
    device,
    wsUrl,
    signedOut: (why) => {
      // A fresh page: nothing of the old session's state stays in memory.
      sessionStorage.setItem('natter.signedout', why || '');
      location.reload();
    },
  });
}

async function boot() {
  let cfg;
  try {
    cfg = await clientConfig();
  } catch (e) {
    showSignIn(`natter cannot be reached: ${e.message}`);
    return;
  }
  if (!cfg.ws_url) {
    showSignIn('This natter has no WebSocket listener (mqtt.ws), so a browser cannot connect.');
    $('signin-button').disabled = true;
    return;
  }
  if (location.protocol === 'https:' && cfg.ws_url.startsWith('ws:')) {
    console.warn('natter: the page is https but the WebSocket URL is ws:, which browsers block; set web.ws_url');
  }

  const why = sessionStorage.getItem('natter.signedout');
  sessionStorage.removeItem('natter.signedout');
  let s = session.load();
  if (s && !session.fresh(s) && session.refreshable(s)) {
    try {
      s = await session.refresh(s);
    } catch {
      s = null;
    }
  }
  if (s && session.fresh(s)) {
    enter(s, cfg.ws_url);
  } else {
    session.clear();
    showSignIn(why);
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('signin-button').disabled = true;
    $('signin-error').textContent = '';
    try {
      const user = $('user').value.trim().toLowerCase();
      const fresh = await session.signIn(user, $('password').value, $('remember').checked);
      $('password').value = '';
      enter(fresh, cfg.ws_url);
    } catch (err) {
      showSignIn(err.code === 'bad_credentials' ? 'Wrong user name or password.' : err.message);
    }
  });
}

boot();
