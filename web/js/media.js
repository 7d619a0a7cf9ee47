// Owns: the media flow of protocol.md: `media.upload` (announce MIME type, size, SHA-256),
// PUT the bytes to the signed URL it answers, and `media.url` for a signed download URL
// (cached until shortly before it expires).

const urls = new Map(); // media id -> {url, until}

async function sha256(file) {
  // crypto.subtle exists only in secure contexts (https, localhost): the hash is optional.
  if (!crypto.subtle) return undefined;
  const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * natter's own media URLs (local backend: `/v1/media/{id}?exp&sig`) are fetched from the origin
 * this page came from: they name `media.public_url`, or `http.listen` by default, which may be
 * another name of the same server (127.0.0.1 against localhost) and so another origin.
 */
function sameOrigin(u) {
  try {
    const p = new URL(u, location.href);
    return p.pathname.startsWith('/v1/media/') ? location.origin + p.pathname + p.search : u;
  } catch {
    return u;
  }
}

/** The message `type` for a MIME type. */
export function typeOf(mime) {
  for (const t of ['image', 'video', 'audio']) if (mime.startsWith(`${t}/`)) return t;
  return 'file';
}

/** Uploads `file`; its media id and MIME type. Throws an Error with a message for people. */
export async function upload(link, file) {
  const mime = file.type || 'application/octet-stream';
  const params = { mime, size: file.size };
  const hash = await sha256(file);
  if (hash) params.sha256 = hash;
  const slot = await link.request('media.upload', params);
  let resp;
  try {
    resp = await fetch(sameOrigin(slot.url), { method: slot.method || 'PUT', headers: slot.headers || { 'content-type': mime }, body: file });
  } catch {
    throw new Error('the upload could not reach the server');
  }
  if (!resp.ok) {
    const body = await resp.json().catch(() => null);
    throw new Error(body?.error?.message || `the upload was refused (HTTP ${resp.status})`);
  }
  return { id: slot.media, mime };
}

/** A download URL for media `id`. */
export async function url(link, id) {
  const hit = urls.get(id);
  if (hit && hit.until > Date.now()) return hit.url;
  const a = await link.request('media.url', { media: id });
  const u = sameOrigin(a.url);
  urls.set(id, { url: u, until: (a.expires || 0) - 30_000 });
  return u;
}
