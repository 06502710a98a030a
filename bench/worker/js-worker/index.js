// A plain JavaScript Worker with the same logic as the Rust Worker (cf-worker/), written only for
// the benchmark: collect endpoint and proxy mode, identifier normalization and SHA-256 hashing
// with Web Crypto, deterministic event_id, a User-Agent parse, click ids (URL, first-party
// cookies) and the client IP (CF-Connecting-IP), KV dedup, inline first attempt in waitUntil,
// retries through the Queue, the same structured logs. Not for production.

const enc = new TextEncoder();
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
const sha256 = async (s) => hex(await crypto.subtle.digest('SHA-256', enc.encode(s)));

let loaded;
function load(env) {
  if (loaded) return loaded;
  const config = JSON.parse(env.CAPI_CONFIG);
  const secret = (name) => (name ? env[name] : undefined);
  loaded = {
    config,
    token: config.auth?.bearer_token ?? secret(config.auth?.bearer_token_env),
    collectPath: env.CAPI_COLLECT_PATH || '/collect',
    origin: env.CAPI_ORIGIN,
    allowed: (env.CAPI_ALLOWED_ORIGINS || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean),
    guidCookie: env.CAPI_GUID_COOKIE || 'capi_guid',
    maxBody: config.limits?.max_body_bytes ?? 262144,
    dedupMs: config.limits?.dedup_window_ms ?? 600000,
    retry: { max_attempts: 6, max_age_ms: 3600000, base_backoff_ms: 500, max_backoff_ms: 60000, ...config.retry },
    seen: new Map(),
  };
  return loaded;
}

const log = (o) => console.log(JSON.stringify({ component: 'capi-worker', ...o }));

// ---------------------------------------------------------------------------------------------
// Normalization (the core's rules, in brief)

function normEmail(raw) {
  const e = String(raw).trim().toLowerCase();
  if (/^[0-9a-f]{64}$/.test(e)) return { hashed: e };
  const at = e.indexOf('@');
  if (at < 1 || e.indexOf('@', at + 1) >= 0 || e.length > 254) return null;
  const domain = e.slice(at + 1);
  if (!domain.includes('.') || domain.startsWith('.') || domain.endsWith('.') || domain.includes('..') || /[\s<>,;"()[\]\\]/.test(e)) return null;
  return { plain: e };
}

function normPhone(raw, cc) {
  const t = String(raw).trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return { hashed: t.toLowerCase() };
  const intl = t.startsWith('+');
  const body = intl ? t.slice(1) : t;
  if (/[^0-9 \-.()/\u00a0]/.test(body)) return null;
  let d = body.replace(/[^0-9]/g, '');
  if (!intl) {
    if (d.startsWith('00')) d = d.slice(2);
    else if (!(d.startsWith(cc) && d.length >= cc.length + 10)) d = cc + d.replace(/^0/, '');
  }
  return d.length >= 8 && d.length <= 15 && d[0] !== '0' ? { plain: d } : null;
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function parseUA(raw) {
  const ua = raw.slice(0, 1024);
  const bot = /(bot|crawler|spider|slurp)/i.exec(ua);
  let os = 'Unknown';
  let osv = '';
  let device = 'desktop';
  let m;
  if ((m = /(?:iPhone|CPU) OS (\d+[_\d]*)/.exec(ua))) [os, osv, device] = ['iOS', m[1].replace(/_/g, '.'), /iPad/.test(ua) ? 'tablet' : 'mobile'];
  else if ((m = /Android (\d+[.\d]*)/.exec(ua))) [os, osv, device] = ['Android', m[1], /Mobile/.test(ua) ? 'mobile' : 'tablet'];
  else if ((m = /Windows NT (\d+[.\d]*)/.exec(ua))) [os, osv] = ['Windows', m[1]];
  else if ((m = /Mac OS X (\d+[_\d]*)/.exec(ua))) [os, osv] = ['macOS', m[1].replace(/_/g, '.')];
  else if (/CrOS/.test(ua)) os = 'Chrome OS';
  else if (/Linux/.test(ua)) os = 'Linux';
  else device = 'unknown';
  let name = 'Unknown';
  let version = '';
  for (const [n, re] of [['Edge', /Edg(?:e|A|iOS)?\/([\d.]+)/], ['Opera', /OPR\/([\d.]+)/], ['Samsung Internet', /SamsungBrowser\/([\d.]+)/], ['Firefox', /(?:Firefox|FxiOS)\/([\d.]+)/], ['Chrome', /(?:Chrome|CriOS)\/([\d.]+)/], ['Safari', /Version\/([\d.]+).*Safari/]]) {
    if ((m = re.exec(ua))) {
      [name, version] = [n, m[1]];
      break;
    }
  }
  if (bot) [name, device] = [bot[1], 'bot'];
  return { browser_name: name, browser_version: version, os_name: os, os_version: osv, device_type: device, is_bot: !!bot, raw: ua };
}

const CURRENCIES = new Set(['USD', 'EUR', 'GBP', 'JPY', 'CAD', 'AUD', 'CHF', 'SEK', 'NOK', 'DKK', 'PLN', 'BRL', 'MXN', 'INR', 'CNY', 'KRW']);

const iso = (ms) => new Date(ms).toISOString();

// Click ids: the request URL's, else the first-party cookies the Worker set on a landing.
const CLICK_IDS = [['fbclid', 'capi_fbclid'], ['gclid', 'capi_gclid'], ['ttclid', 'capi_ttclid'], ['ScCid', 'capi_sccid'], ['epik', 'capi_epik'], ['rdt_cid', 'capi_rdt_cid']];
const CLICK_ID = /^[A-Za-z0-9\-_.~!*():/+=]{1,512}$/;
const CLICK_ID_MAX_AGE_S = 90 * 86400;

function clickIdsInQuery(url) {
  const out = [];
  if (!url.search) return out;
  for (const [name] of CLICK_IDS) {
    const v = url.searchParams.get(name);
    if (v && CLICK_ID.test(v)) out.push({ id: v, name });
  }
  return out;
}

function clickIds(fresh, cookieHeader) {
  const out = [];
  for (const [name, cookieName] of CLICK_IDS) {
    const f = fresh.find((c) => c.name === name);
    const v = f ? f.id : cookie(cookieHeader, cookieName);
    if (v && CLICK_ID.test(v)) out.push({ id: v, name });
  }
  return out;
}

/** Canonical IPv4 or IPv6 text, or null. */
function normalizeIp(raw) {
  const s = String(raw).split(',')[0].trim();
  if (!s || s.length > 64) return null;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) return s.split('.').every((o) => Number(o) <= 255 && (o === '0' || o[0] !== '0')) ? s : null;
  if (!s.includes(':')) return null;
  try {
    return new URL(`http://[${s.replace(/^\[|\]$/g, '')}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
}

class FieldError extends Error {
  constructor(field, message) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** Builds the event from field values (already read from a payload or an exchange). */
async function buildEvent(L, type, f, now) {
  const cfg = L.config;
  let currency = 'USD';
  if (f.currency != null && String(f.currency).trim()) {
    currency = String(f.currency).trim().toUpperCase();
    if (!CURRENCIES.has(currency)) throw new FieldError('currency', 'not an ISO 4217 currency code');
  }
  let value;
  if (f.value != null) {
    const v = typeof f.value === 'number' ? f.value : /^[0-9]*\.?[0-9]+$/.test(String(f.value).trim()) ? Number(f.value) : NaN;
    if (!Number.isFinite(v) || v < 0) throw new FieldError('value', 'expected a number or a numeric string such as "12.50"');
    value = v;
  }
  const order = f.order_id != null ? String(f.order_id).trim() : undefined;
  if (order && order.length > 256) throw new FieldError('order_id', 'longer than 256 bytes');
  let timestamp = now;
  if (f.timestamp != null) {
    timestamp = Date.parse(f.timestamp);
    if (Number.isNaN(timestamp)) throw new FieldError('timestamp', 'is not ISO 8601');
  }
  const ids = [];
  if (f.email != null) {
    const e = normEmail(f.email);
    if (e) ids.push({ id: e.hashed ?? (await sha256(e.plain)), name: 'HashedEmail' });
  }
  if (f.phone != null) {
    const p = normPhone(f.phone, cfg.identifiers?.default_calling_code ?? '1');
    const hashed = (cfg.identifiers?.phone_as ?? 'HashedPhone') === 'HashedPhone';
    if (p) ids.push(p.hashed ? { id: p.hashed, name: 'HashedPhone' } : hashed ? { id: await sha256(p.plain), name: 'HashedPhone' } : { id: p.plain, name: 'Phone' });
  }
  if (f.guid != null && UUID.test(String(f.guid).trim())) ids.push({ id: String(f.guid).trim().toLowerCase(), name: 'Guid' });
  if (f.first_party_id != null && String(f.first_party_id).trim()) ids.push({ id: String(f.first_party_id).trim().slice(0, 128), name: 'FirstPartyId' });
  if (!ids.length) throw new FieldError('ids', 'no usable user identifier');
  const adv = cfg.destination.advertiser_id;
  const eventId = order ? await sha256(`${adv}|${type}|${order}`) : await sha256(`${ids[0].id}|${iso(timestamp)}`);
  const ev = { advertiser_id: adv, data_source_key: cfg.destination.data_source_key, conversion_type: type, event_id: eventId, ids };
  if (f.user_agent) ev.user_agent = parseUA(String(f.user_agent));
  ev.timestamp = iso(timestamp);
  if (value !== undefined) ev.value = value;
  ev.currency = currency;
  if (order) ev.order_id = order;
  if (f.click_ids?.length) ev.click_ids = f.click_ids;
  if (f.client_ip != null) {
    const ip = normalizeIp(f.client_ip);
    if (ip) ev.client_ip_address = ip;
  }
  return ev;
}

// ---------------------------------------------------------------------------------------------
// Delivery

function plan(L, status, retryAfter, attempts, firstAt, now) {
  if (status >= 200 && status < 300) return { kind: 'delivered' };
  if (status === 400) return { kind: 'drop', reason: 'rejected' };
  if (status === 401 || status === 403) return { kind: 'drop', reason: 'auth_failed' };
  if (status && !(status === 408 || status === 425 || status === 429 || status >= 500)) return { kind: 'drop', reason: 'client_error' };
  const r = L.retry;
  if (attempts >= r.max_attempts) return { kind: 'drop', reason: 'attempts_exhausted' };
  const cap = Math.min(r.max_backoff_ms, r.base_backoff_ms * 2 ** Math.min(attempts - 1, 40));
  const at = retryAfter && /^\d+$/.test(retryAfter) ? now + Number(retryAfter) * 1000 : now + Math.floor(Math.random() * (cap + 1));
  if (at - firstAt > r.max_age_ms) return { kind: 'drop', reason: 'max_age' };
  return { kind: 'retry', at };
}

async function attempt(L, events) {
  const d = L.config.destination;
  const started = Date.now();
  const headers = { 'content-type': 'application/json' };
  if (L.token) headers.authorization = `Bearer ${L.token}`;
  try {
    const resp = await fetch(d.url, { method: 'POST', headers, body: JSON.stringify(events.length === 1 ? events[0] : events), signal: AbortSignal.timeout(d.timeout_ms ?? 5000) });
    await resp.arrayBuffer();
    return { status: resp.status, retryAfter: resp.headers.get('retry-after'), ms: Date.now() - started };
  } catch (e) {
    return { status: 0, timeout: e?.name === 'TimeoutError', ms: Date.now() - started };
  }
}

async function settle(L, env, msg, out) {
  const now = Date.now();
  msg.attempts += 1;
  msg.last_error = out.status ? `status ${out.status}` : out.timeout ? 'timeout' : 'connect failed';
  const p = plan(L, out.status, out.retryAfter, msg.attempts, msg.first_attempt_at, now);
  const id = msg.event.event_id;
  if (p.kind === 'delivered') {
    log({ level: 'info', msg: 'delivered', event_id: id, source: msg.source, status: out.status, attempts: msg.attempts, ms: out.ms });
    if (env.CAPI_DEDUP && L.dedupMs > 0) await env.CAPI_DEDUP.put(`ev:${id}`, 'delivered', { expirationTtl: Math.max(60, Math.ceil(L.dedupMs / 1000)) });
    return null;
  }
  if (p.kind === 'retry') return { msg, delay: Math.min(43200, Math.max(0, Math.ceil((p.at - now) / 1000))) };
  log({ level: 'warn', msg: 'dropped', event_id: id, source: msg.source, reason: p.reason, attempts: msg.attempts });
  if ((p.reason === 'attempts_exhausted' || p.reason === 'max_age') && env.CAPI_DLQ) await env.CAPI_DLQ.send(JSON.stringify(msg));
  if (env.CAPI_DEDUP) await env.CAPI_DEDUP.delete(`ev:${id}`);
  return null;
}

async function enqueue(env, msg, delay) {
  await env.CAPI_RETRY_QUEUE.send(JSON.stringify(msg), { delaySeconds: delay });
  log({ level: 'info', msg: 'retry_queued', event_id: msg.event.event_id, source: msg.source, attempts: msg.attempts, delay_s: delay, last_error: msg.last_error });
}

async function deliverNew(L, env, event, source) {
  const now = Date.now();
  const id = event.event_id;
  const seenAt = L.seen.get(id);
  if (seenAt !== undefined && now - seenAt < L.dedupMs) {
    log({ level: 'info', msg: 'dropped', event_id: id, source, reason: 'duplicate', attempts: 0 });
    return;
  }
  L.seen.set(id, now);
  if (L.seen.size > (L.config.limits?.dedup_capacity ?? 10000)) L.seen.delete(L.seen.keys().next().value);
  if (env.CAPI_DEDUP && L.dedupMs > 0) {
    if ((await env.CAPI_DEDUP.get(`ev:${id}`)) !== null) {
      log({ level: 'info', msg: 'dropped', event_id: id, source, reason: 'duplicate', attempts: 0 });
      return;
    }
    await env.CAPI_DEDUP.put(`ev:${id}`, 'pending', { expirationTtl: Math.max(60, Math.ceil(L.dedupMs / 1000)) });
  }
  const msg = { v: 1, attempts: 0, first_attempt_at: now, source, last_error: '', event };
  const r = await settle(L, env, msg, await attempt(L, [event]));
  if (r) await enqueue(env, r.msg, r.delay);
}

// ---------------------------------------------------------------------------------------------
// Collect and proxy

const COLLECT_FIELDS = new Set(['conversion_type', 'order_id', 'value', 'value_minor', 'currency', 'email', 'phone', 'guid', 'first_party_id', 'timestamp', 'user_agent', 'client_ip']);

const json = (status, obj, headers = {}) => new Response(JSON.stringify(obj), { status, headers: { 'content-type': 'application/json', ...headers } });

function reject(status, field, error, headers) {
  log({ level: 'info', msg: 'collect_refused', status, field, error });
  return json(status, { error, field }, headers);
}

function cookie(header, name) {
  for (const part of (header || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

async function collect(req, env, ctx, L) {
  const origin = req.headers.get('origin');
  const browser = origin && L.allowed.includes(origin.toLowerCase());
  const cors = browser ? { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', vary: 'Origin' } : {};
  if (req.method === 'OPTIONS') {
    if (!browser) return reject(403, 'origin', 'origin not allowed');
    return new Response(null, { status: 204, headers: { ...cors, 'access-control-allow-methods': 'POST, OPTIONS', 'access-control-allow-headers': 'content-type', 'access-control-max-age': '86400' } });
  }
  if (origin && !browser) return reject(403, 'origin', 'origin not allowed');
  if (req.method !== 'POST') return reject(405, 'method', `method ${req.method} not allowed: POST a JSON conversion`, { ...cors, allow: 'POST, OPTIONS' });
  const ct = (req.headers.get('content-type') || '').split(';')[0].trim().toLowerCase();
  if (!(ct === 'application/json' || (browser && ct === 'text/plain'))) return reject(415, 'content-type', 'expected application/json', cors);
  const body = await req.arrayBuffer();
  if (body.byteLength > L.maxBody) return reject(413, 'body', `body is over the limit of ${L.maxBody} bytes`, cors);
  if (L.config.consent?.honor_gpc !== false && req.headers.get('sec-gpc') === '1') {
    log({ level: 'info', msg: 'consent_skipped', source: 'collect', reason: 'gpc' });
    return json(202, { status: 'skipped', reason: 'gpc' }, cors);
  }
  let p;
  try {
    p = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return reject(400, 'body', 'body: not valid JSON', cors);
  }
  if (!p || typeof p !== 'object' || Array.isArray(p)) return reject(400, 'body', 'body: expected a JSON object', cors);
  for (const k of Object.keys(p)) if (!COLLECT_FIELDS.has(k)) return reject(400, 'body', `body: unknown field ${k.slice(0, 40)}`, cors);
  if (typeof p.conversion_type !== 'string' || !p.conversion_type.trim()) return reject(400, 'conversion_type', 'conversion_type: missing', cors);
  const cookies = req.headers.get('cookie');
  const guid = p.guid ?? cookie(cookies, L.guidCookie);
  if (p.client_ip != null && !normalizeIp(p.client_ip)) return reject(400, 'client_ip', 'client_ip: expected an IPv4 or IPv6 address', cors);
  // The caller's address is the visitor's only for a browser beacon (it carries an Origin).
  const clientIp = p.client_ip ?? (origin ? req.headers.get('cf-connecting-ip') : null);
  try {
    const ev = await buildEvent(L, p.conversion_type, { ...p, guid, user_agent: p.user_agent ?? req.headers.get('user-agent'), click_ids: clickIds([], cookies), client_ip: clientIp }, Date.now());
    log({ level: 'info', msg: 'collected', event_id: ev.event_id, type: ev.conversion_type, ids_skipped: [] });
    ctx.waitUntil(deliverNew(L, env, ev, 'collect'));
    return json(202, { status: 'accepted', event_id: ev.event_id }, cors);
  } catch (e) {
    if (e instanceof FieldError) return reject(400, e.field, e.message, cors);
    throw e;
  }
}

function glob(pattern, path) {
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(path);
}

function matchRequest(L, method, path) {
  return L.config.rules.find((r) => {
    const m = r.match || {};
    if (m.method && m.method.toUpperCase() !== method) return false;
    if (m.path) return m.path.includes('*') ? glob(m.path, path) : m.path === path;
    if (m.path_prefix) return path.startsWith(m.path_prefix);
    return true;
  });
}

function matchResponse(rule, status, ct) {
  const m = rule.match || {};
  const okStatus = m.status?.length ? m.status.includes(status) : status >= 200 && status < 300;
  const okCt = !m.content_type || (ct || '').split(';')[0].trim().toLowerCase() === m.content_type;
  return okStatus && okCt;
}

const pointer = (obj, ptr) => ptr.split('/').slice(1).reduce((o, k) => (o == null ? undefined : o[k.replace(/~1/g, '/').replace(/~0/g, '~')]), obj);

function readSource(src, ex) {
  const i = src.indexOf(':');
  const [kind, key] = [src.slice(0, i), src.slice(i + 1)];
  switch (kind) {
    case 'response': return ex.respJson === undefined ? undefined : pointer(ex.respJson, key);
    case 'request': return ex.reqJson === undefined ? undefined : pointer(ex.reqJson, key);
    case 'form': return ex.form?.get(key) ?? undefined;
    case 'header': return ex.headers.get(key) ?? undefined;
    case 'cookie': return cookie(ex.headers.get('cookie'), key) ?? ex.cookieGuid;
    case 'query': return new URL(ex.url).searchParams.get(key) ?? undefined;
    case 'const': return key;
    default: return undefined;
  }
}

async function observe(L, env, rule, ex, reqCopy, respCopy) {
  try {
    if (respCopy) ex.respJson = JSON.parse(await respCopy.text());
    if (reqCopy) {
      const text = await reqCopy.text();
      if ((reqCopy.headers.get('content-type') || '').includes('form')) ex.form = new URLSearchParams(text);
      else ex.reqJson = JSON.parse(text);
    }
    const f = {};
    for (const [k, src] of Object.entries(rule.extract)) if (k !== 'value_unit') f[k] = readSource(src, ex);
    f.user_agent = f.user_agent ?? ex.headers.get('user-agent');
    f.click_ids = clickIds(ex.clicks, ex.headers.get('cookie'));
    f.client_ip = ex.headers.get('cf-connecting-ip');
    const ev = await buildEvent(L, rule.conversion_type, f, Date.now());
    log({ level: 'info', msg: 'matched', event_id: ev.event_id, rule: rule.name, ids_skipped: [] });
    await deliverNew(L, env, ev, rule.name);
  } catch (e) {
    log({ level: 'warn', msg: 'extract_failed', rule: rule.name, field: e.field ?? 'body', error: e.field ? e.message : 'body is missing or not JSON' });
  }
}

async function proxy(req, env, ctx, L) {
  const url = new URL(req.url);
  const path = url.pathname;
  const gpc = L.config.consent?.honor_gpc !== false && req.headers.get('sec-gpc') === '1';
  const rule = gpc ? undefined : matchRequest(L, req.method, path);
  const cookies = [];
  let cookieGuid;
  const clicks = gpc ? [] : clickIdsInQuery(url);
  if (!gpc && !UUID.test(cookie(req.headers.get('cookie'), L.guidCookie) || '') && (rule || clicks.length || (req.headers.get('accept') || '').includes('text/html'))) {
    cookieGuid = crypto.randomUUID();
    cookies.push(`${L.guidCookie}=${cookieGuid}; Max-Age=31536000; Path=/; HttpOnly; Secure; SameSite=Lax`);
  }
  for (const c of clicks) cookies.push(`${CLICK_IDS.find(([n]) => n === c.name)[1]}=${c.id}; Max-Age=${CLICK_ID_MAX_AGE_S}; Path=/; HttpOnly; Secure; SameSite=Lax`);
  const readsReq = rule && Object.values(rule.extract).some((s) => s.startsWith('request:') || s.startsWith('form:'));
  const reqCopy = readsReq && req.body ? req.clone() : undefined;
  const upstream = L.origin ? new Request(L.origin + path + url.search, req) : req;
  const resp = await fetch(upstream);
  if (rule && matchResponse(rule, resp.status, resp.headers.get('content-type'))) {
    const readsResp = Object.values(rule.extract).some((s) => s.startsWith('response:'));
    const respCopy = readsResp ? resp.clone() : undefined;
    const ex = { url: req.url, headers: req.headers, cookieGuid, clicks };
    ctx.waitUntil(observe(L, env, rule, ex, reqCopy, respCopy));
  }
  if (!cookies.length) return resp;
  const h = new Headers(resp.headers);
  for (const c of cookies) h.append('set-cookie', c);
  return new Response(resp.body, { status: resp.status, statusText: resp.statusText, headers: h });
}

export default {
  async fetch(req, env, ctx) {
    const L = load(env);
    const path = new URL(req.url).pathname;
    if (path === L.collectPath) return collect(req, env, ctx, L);
    return proxy(req, env, ctx, L);
  },

  async queue(batch, env) {
    const L = load(env);
    for (const m of batch.messages) {
      const msg = typeof m.body === 'string' ? JSON.parse(m.body) : m.body;
      if (batch.queue === (env.CAPI_DLQ_NAME || 'capi-dlq')) {
        log({ level: 'error', msg: 'dead_letter_received', event_id: msg.event.event_id, source: msg.source, attempts: msg.attempts });
        m.ack();
        continue;
      }
      if (env.CAPI_DEDUP && (await env.CAPI_DEDUP.get(`ev:${msg.event.event_id}`)) === 'delivered') {
        m.ack();
        continue;
      }
      const r = await settle(L, env, msg, await attempt(L, [msg.event]));
      if (r) await enqueue(env, r.msg, r.delay);
      m.ack();
    }
  },
};
