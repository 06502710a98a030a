#!/usr/bin/env node
// End-to-end tests of the Cloudflare Worker in real workerd (`wrangler dev`, Miniflare's local
// KV and Queues), against `capi sink` and a test origin, loopback only. Expects the Worker
// already built (tests/worker/run.sh builds it). Prints `N passed, M failed` last; exits 1 on
// any failure. Every process it starts is stopped at the end, whatever happens.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BINARY, QUIET_WRANGLER_ENV, freePort, request, root, sha256hex, sinkClient, sleep, startOrigin, startSink, startWrangler, stopAll, waitFor, workerLogs, writeWranglerConfig,
} from './lib.mjs';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'capi-worker-test-'));
const keepLogs = path.join(root, 'target/worker-test');
fs.mkdirSync(keepLogs, { recursive: true });
const wranglerLog = path.join(keepLogs, 'wrangler.log');
const sinkLog = path.join(keepLogs, 'sink.log');
for (const f of [wranglerLog, sinkLog]) fs.writeFileSync(f, '');

const SECRETS = {
  CAPI_TOKEN: `tok-${crypto.randomBytes(12).toString('hex')}`,
  CAPI_HMAC_SECRET: `hmac-${crypto.randomBytes(12).toString('hex')}`,
  CAPI_COLLECT_SECRET: `collect-${crypto.randomBytes(12).toString('hex')}`,
  CAPI_ADMIN_TOKEN: `admin-${crypto.randomBytes(12).toString('hex')}`,
};
const ALLOWED = 'https://shop.example';
const MAX_BODY = 4096;
const EMAIL = 'Jane.Doe@Example.com';
const EMAIL_HASH = '86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d';
const PHONE = '+1 (415) 555-2671';
const PHONE_HASH = '758fbf68945f21c416814c539ab578876c8d98fb69e6da692def92cd52417fe0';
// Raw personal data the tests send: none may appear in any log.
const RAW_PII = [EMAIL, EMAIL.toLowerCase(), '4155552671', 'lead.person@example.org', 'form.person@example.net', 'gpc.person@example.com', 'Browser.Person@Example.com'];

let worker; // base URL
let sink; // sink client
let origin; // test origin

const uid = () => crypto.randomBytes(6).toString('hex');

function sign(body, ts = Math.floor(Date.now() / 1000), secret = SECRETS.CAPI_COLLECT_SECRET) {
  const sig = crypto.createHmac('sha256', secret).update(`${ts}.`).update(body).digest('hex');
  return { 'x-capi-timestamp': String(ts), 'x-capi-signature': sig };
}

async function collect(payload, { headers = {}, signed = true } = {}) {
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const h = { 'content-type': 'application/json', 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36', ...(signed ? sign(body) : {}), ...headers };
  return request('POST', `${worker}/collect`, { headers: h, body });
}

async function eventsFor(eventId) {
  return (await sink.events()).filter((e) => e.event_id === eventId);
}

/** Waits for the event at the sink, then makes sure no second copy follows. */
async function arrivesOnce(eventId, { timeoutMs = 20000, settleMs = 2500 } = {}) {
  const [ev] = await waitFor(`event ${eventId.slice(0, 12)} at the sink`, async () => {
    const got = await eventsFor(eventId);
    return got.length ? got : null;
  }, { timeoutMs });
  await sleep(settleMs);
  const got = await eventsFor(eventId);
  if (got.length !== 1) throw new Error(`event ${eventId} arrived ${got.length} times`);
  return ev;
}

function logsFor(eventId) {
  return workerLogs(wranglerLog).filter((l) => l.event_id === eventId);
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function eq(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: expected ${JSON.stringify(b)}, got ${JSON.stringify(a)}`);
}

function ids(ev) {
  return Object.fromEntries(ev.ids.map((i) => [i.name, i.id]));
}

function expectError(r, status, field, text) {
  eq(r.status, status, `status (${r.text()})`);
  const j = r.json();
  eq(j.field, field, 'error field');
  assert(typeof j.error === 'string' && j.error.length > 0, 'an error message');
  if (text) assert(j.error.includes(text), `error message ${JSON.stringify(j.error)} should mention ${JSON.stringify(text)}`);
}

function cookieAttrs(setCookie) {
  const [pair, ...attrs] = setCookie.split(';').map((s) => s.trim());
  const [name, value] = [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)];
  const a = {};
  for (const x of attrs) {
    const [k, v] = x.split('=');
    a[k.toLowerCase()] = v ?? true;
  }
  return { name, value, attrs: a };
}

function checkCookie(c, name, maxAge) {
  eq(c.name, name, 'cookie name');
  eq(c.attrs['max-age'], String(maxAge), `${name} Max-Age`);
  for (const flag of ['httponly', 'secure']) assert(c.attrs[flag] === true, `${name} must be ${flag}`);
  eq(c.attrs.samesite, 'Lax', `${name} SameSite`);
  eq(c.attrs.path, '/', `${name} Path`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// ------------------------------------------------------------------------------------------

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('collect: signed purchase arrives with hashed identifiers, bearer token and HMAC', async () => {
  const order = `C-${uid()}`;
  const r = await collect({ conversion_type: 'Purchase', order_id: order, value: '59.90', currency: 'eur', email: EMAIL, phone: PHONE, first_party_id: 'cust_42' });
  eq(r.status, 202, `status (${r.text()})`);
  const { event_id: eventId, status } = r.json();
  eq(status, 'accepted', 'status field');
  assert(/^[0-9a-f]{64}$/.test(eventId), 'event_id is SHA-256 hex');
  eq(eventId, sha256hex(`777|Purchase|${order}`), 'event_id derivation');
  const ev = await arrivesOnce(eventId);
  eq([ev.advertiser_id, ev.data_source_key, ev.conversion_type, ev.order_id, ev.value, ev.currency], [777, 'worker-test', 'Purchase', order, 59.9, 'EUR'], 'payload fields');
  eq(ids(ev), { HashedEmail: EMAIL_HASH, HashedPhone: PHONE_HASH, FirstPartyId: 'cust_42' }, 'ids');
  eq([ev.user_agent?.browser_name, ev.user_agent?.os_name], ['Chrome', 'Linux'], 'user_agent parsed from the header');
  // The sink checks the bearer token and the HMAC signature: an accepted event proves both.
  const stats = await sink.stats();
  assert(!stats.by_status['401'], 'no request was refused for auth');
});

test('collect: bad inputs get their status and a message naming the problem', async () => {
  const good = JSON.stringify({ conversion_type: 'Lead', email: EMAIL });
  expectError(await request('GET', `${worker}/collect`), 405, 'method', 'GET');
  const r405 = await request('PUT', `${worker}/collect`, { body: good, headers: { 'content-type': 'application/json' } });
  expectError(r405, 405, 'method');
  assert((r405.header('allow') || '').includes('POST'), '405 carries Allow: POST');
  expectError(await collect(good, { headers: { 'content-type': 'text/html' } }), 415, 'content-type', 'text/html');
  expectError(await collect(good, { headers: { 'content-type': '' } }), 415, 'content-type', 'missing');
  const big = JSON.stringify({ conversion_type: 'Lead', email: EMAIL, order_id: 'x'.repeat(MAX_BODY) });
  expectError(await collect(big), 413, 'body', String(MAX_BODY));
  const bigChunked = await request('POST', `${worker}/collect`, { body: big, chunked: true, headers: { 'content-type': 'application/json', ...sign(big) } });
  expectError(bigChunked, 413, 'body', 'limit');
  // One byte over the limit, of unknown length (see the next test for the limit itself).
  const over = paddedTo(MAX_BODY + 1, 'over');
  expectError(await request('POST', `${worker}/collect`, { body: over, chunked: true, headers: { 'content-type': 'application/json', ...sign(over) } }), 413, 'body', 'limit');
  expectError(await collect('{"conversion_type": "Lead",'), 400, 'body', 'JSON');
  expectError(await collect('[1,2]'), 400, 'body', 'object');
  expectError(await collect({ email: EMAIL }), 400, 'conversion_type', 'missing');
  expectError(await collect({ conversion_type: 'Lead' }), 400, 'ids', 'identifier');
  expectError(await collect({ conversion_type: 'Lead', email: 'not-an-email' }), 400, 'ids', 'email');
  expectError(await collect({ conversion_type: 'Purchase', value: '12.50', currency: 'EURO', email: EMAIL }), 400, 'currency', 'ISO 4217');
  expectError(await collect({ conversion_type: 'Purchase', value: 'lots', email: EMAIL }), 400, 'value');
  expectError(await collect({ conversion_type: 'Lead', email: EMAIL, favourite_colour: 'blue' }), 400, 'body', 'favourite_colour');
  expectError(await collect({ conversion_type: 'Lead', email: EMAIL, timestamp: 'yesterday' }), 400, 'timestamp', 'ISO 8601');
  // Signatures (CAPI_COLLECT_SECRET is set).
  expectError(await collect(good, { signed: false }), 401, 'x-capi-timestamp', 'missing');
  expectError(await collect(good, { signed: false, headers: { 'x-capi-timestamp': String(Math.floor(Date.now() / 1000)) } }), 401, 'x-capi-signature', 'missing');
  expectError(await collect(good, { signed: false, headers: sign(good, Math.floor(Date.now() / 1000) - 3600) }), 401, 'x-capi-timestamp', 'stale');
  expectError(await collect(good, { signed: false, headers: sign(good, undefined, 'wrong-secret') }), 401, 'x-capi-signature', 'does not match');
  expectError(await collect(good, { signed: false, headers: { ...sign('{}') } }), 401, 'x-capi-signature');
  // Origins.
  expectError(await collect(good, { headers: { origin: 'https://evil.example' } }), 403, 'origin', 'not allowed');
  await sleep(500);
  eq((await sink.events()).length, 0, 'no event from a refused request');
});

/** A collect payload padded with trailing whitespace to exactly `size` bytes. */
function paddedTo(size, tag) {
  const b = JSON.stringify({ conversion_type: 'Lead', email: EMAIL, order_id: `chunked-${tag}-${Date.now()}` });
  return b + ' '.repeat(size - b.length);
}

test('collect: a body of unknown length exactly at max_body_bytes is read whole and delivered', async () => {
  // cf-worker/src/js.rs read_capped: a first read that fills its buffer, then a read with one
  // byte more of room that finds the end.
  const exact = paddedTo(MAX_BODY, 'exact');
  const r = await request('POST', `${worker}/collect`, { body: exact, chunked: true, headers: { 'content-type': 'application/json', ...sign(exact) } });
  eq(r.status, 202, `status (${r.text()})`);
  const ev = await arrivesOnce(r.json().event_id);
  eq(ev.order_id, JSON.parse(exact).order_id, 'order_id');
});

test('collect: CORS preflight and unsigned browser beacons from an allowed origin', async () => {
  const pre = await request('OPTIONS', `${worker}/collect`, { headers: { origin: ALLOWED, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
  eq(pre.status, 204, 'preflight status');
  eq(pre.header('access-control-allow-origin'), ALLOWED, 'ACAO');
  assert((pre.header('access-control-allow-methods') || '').includes('POST'), 'allow methods has POST');
  assert((pre.header('access-control-allow-headers') || '').includes('content-type'), 'allow headers has content-type');
  assert(pre.header('access-control-max-age'), 'max-age');
  const bad = await request('OPTIONS', `${worker}/collect`, { headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
  eq(bad.status, 403, 'preflight from another origin');
  assert(!bad.header('access-control-allow-origin'), 'no CORS grant for another origin');
  const guid = crypto.randomUUID();
  const payload = JSON.stringify({ conversion_type: 'Signup', email: 'Browser.Person@Example.com' });
  const r = await request('POST', `${worker}/collect`, { body: payload, headers: { origin: ALLOWED, 'content-type': 'text/plain;charset=UTF-8', cookie: `capi_guid=${guid}` } });
  eq(r.status, 202, `beacon status (${r.text()})`);
  eq(r.header('access-control-allow-origin'), ALLOWED, 'ACAO on the POST answer');
  const ev = await arrivesOnce(r.json().event_id);
  eq(ids(ev).Guid, guid, 'the guid cookie stands in for a missing guid');
  eq(ids(ev).HashedEmail, sha256hex('browser.person@example.com'), 'hashed email');
});

test('collect: the same event twice is delivered once (dedup on event_id)', async () => {
  const payload = { conversion_type: 'Purchase', order_id: `D-${uid()}`, value: 10, currency: 'USD', email: EMAIL };
  const a = await collect(payload);
  const b = await collect(payload);
  eq([a.status, b.status], [202, 202], 'both accepted');
  eq(a.json().event_id, b.json().event_id, 'same event_id');
  await arrivesOnce(a.json().event_id, { settleMs: 3000 });
  await waitFor('a duplicate log line', async () => logsFor(a.json().event_id).some((l) => l.msg === 'dropped' && l.reason === 'duplicate'), { timeoutMs: 5000 });
});

test('proxy: checkout passes through unchanged, conversion built from the response', async () => {
  const order = `P-${uid()}`;
  const reqBody = JSON.stringify({ order_id: order, total: 120.5, currency: 'usd', email: 'Lead.Person@Example.org' });
  const before = origin.seen.length;
  const r = await request('POST', `${worker}/api/checkout`, { body: reqBody, headers: { 'content-type': 'application/json', 'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1', 'cf-connecting-ip': '203.0.113.9' } });
  eq([r.status, r.statusText], [201, 'Created Here'], 'status and status text');
  eq(r.header('x-origin-test'), 'kept', 'origin header');
  eq(r.header('cache-control'), 'private, max-age=7', 'cache-control');
  eq(r.header('content-type'), 'application/json; charset=utf-8', 'content-type');
  eq(r.header('x-request-body-bytes'), String(Buffer.byteLength(reqBody)), 'the origin got the whole request body');
  const cookies = r.all('set-cookie');
  assert(cookies.includes('session=abc123; Path=/; HttpOnly') && cookies.includes('theme=dark; Path=/'), `origin cookies kept: ${cookies}`);
  const ours = cookies.map(cookieAttrs).filter((c) => c.name === 'capi_guid');
  eq(ours.length, 1, 'one guid cookie set');
  checkCookie(ours[0], 'capi_guid', 31536000);
  assert(UUID.test(ours[0].value), `guid is a UUID v4: ${ours[0].value}`);
  const expected = JSON.parse(r.text());
  eq(expected.order.id, order, 'body from the origin');
  eq(origin.seen.length, before + 1, 'one request at the origin');
  const eventId = sha256hex(`777|Purchase|${order}`);
  const ev = await arrivesOnce(eventId);
  eq([ev.conversion_type, ev.order_id, ev.value, ev.currency], ['Purchase', order, 120.5, 'USD'], 'fields from the response');
  eq(ids(ev), { HashedEmail: sha256hex('lead.person@example.org'), HashedPhone: PHONE_HASH, Guid: ours[0].value, FirstPartyId: 'cust_42' }, 'ids (the new guid included)');
  eq([ev.user_agent.os_name, ev.user_agent.device_type], ['iOS', 'mobile'], 'user agent');
  eq(ev.client_ip_address, '203.0.113.9', 'client IP from CF-Connecting-IP');
  eq(ev.click_ids, undefined, 'no click ids without a landing');
});

test('proxy: bodies, redirects and non-matching paths are untouched; no event', async () => {
  const bin = await request('GET', `${worker}/binary`, { headers: { accept: '*/*' } });
  eq(bin.status, 200, 'binary status');
  assert(Buffer.compare(bin.body, BINARY) === 0, `binary body identical (${bin.body.length} bytes)`);
  assert(!bin.all('set-cookie').length, 'no cookie on a non-navigation asset');
  const redir = await request('GET', `${worker}/redirect`);
  eq([redir.status, redir.header('location')], [302, '/landing?from=redirect'], 'redirect passed through, not followed');
  const tea = await request('GET', `${worker}/teapot`);
  eq([tea.status, tea.statusText, tea.text()], [418, 'I Am A Teapot', 'short and stout'], 'odd status kept');
  const count = (await sink.events()).length;
  await sleep(1000);
  eq((await sink.events()).length, count, 'no event for non-matching exchanges');
});

test('proxy: form lead reads the request body from a tee; origin sees it intact', async () => {
  const guid = crypto.randomUUID();
  const form = `name=Form+Person&email=form.person%40example.net&phone=${encodeURIComponent(PHONE)}&note=${'x'.repeat(500)}`;
  const r = await request('POST', `${worker}/forms/contact/submit`, { body: form, headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `capi_guid=${guid}; other=1` } });
  eq(r.status, 200, 'status');
  eq(r.header('x-request-body-sha256'), sha256hex(form), 'origin received the exact form body');
  eq(r.all('set-cookie').length, 0, 'a visitor with a guid gets no new cookie');
  const ev = await waitFor('the lead event', async () => (await sink.events()).find((e) => e.conversion_type === 'Lead' && ids(e).Guid === guid));
  eq(ids(ev), { HashedEmail: sha256hex('form.person@example.net'), HashedPhone: PHONE_HASH, Guid: guid }, 'ids from the form and cookie');
  await arrivesOnce(ev.event_id, { settleMs: 1000 });
});

test('proxy: a sink that takes 2 s does not slow the client (timed-out attempt retried, arrives once)', async () => {
  await sink.fault('delay=2000,first=1');
  const order = `S-${uid()}`;
  const r = await request('POST', `${worker}/api/checkout`, { body: JSON.stringify({ order_id: order }), headers: { 'content-type': 'application/json' } });
  eq(r.status, 201, 'status');
  assert(r.ms < 600, `client answered in ${r.ms.toFixed(0)} ms despite the slow sink`);
  const eventId = sha256hex(`777|Purchase|${order}`);
  await arrivesOnce(eventId, { timeoutMs: 25000, settleMs: 3000 });
  const l = logsFor(eventId);
  assert(l.some((x) => x.msg === 'retry_queued' && x.last_error === 'timeout'), 'the first attempt timed out and was queued');
  assert(l.some((x) => x.msg === 'delivered' && x.attempts === 2), 'delivered on the second attempt');
});

for (const [spec, label, retried] of [
  ['status=503,first=2', '503 twice', 2],
  ['status=500,first=1', '500', 1],
  ['status=429,retry_after=1,first=1', '429 with Retry-After', 1],
  ['drop,first=1', 'a dropped connection', 1],
]) {
  test(`delivery: ${label} is retried through the Queue and arrives exactly once`, async () => {
    await sink.fault(spec);
    const started = Date.now();
    const r = await collect({ conversion_type: 'Purchase', order_id: `R-${uid()}`, value: 5, email: EMAIL });
    eq(r.status, 202, 'accepted');
    const eventId = r.json().event_id;
    await arrivesOnce(eventId, { timeoutMs: 30000, settleMs: 2500 });
    const l = logsFor(eventId);
    eq(l.filter((x) => x.msg === 'retry_queued').length, retried, 'retries queued');
    const d = l.find((x) => x.msg === 'delivered');
    assert(d && d.attempts === retried + 1, `delivered on attempt ${retried + 1}`);
    if (spec.includes('retry_after=1')) assert(Date.now() - started >= 1000, 'Retry-After was honoured');
  });
}

for (const [code, reason] of [[400, 'rejected'], [401, 'auth_failed']]) {
  test(`delivery: ${code} is not retried`, async () => {
    await sink.fault(`status=${code},first=1`);
    const r = await collect({ conversion_type: 'Lead', order_id: `N-${uid()}`, email: EMAIL });
    eq(r.status, 202, 'accepted by the Worker');
    const eventId = r.json().event_id;
    await waitFor(`a dropped(${reason}) log line`, async () => logsFor(eventId).some((x) => x.msg === 'dropped' && x.reason === reason), { timeoutMs: 10000 });
    await sleep(3000);
    eq((await eventsFor(eventId)).length, 0, 'never delivered');
    eq(logsFor(eventId).filter((x) => x.msg === 'retry_queued').length, 0, 'never queued for retry');
    eq((await sink.stats()).by_status[String(code)], 1, `exactly one ${code} at the sink`);
  });
}

test('delivery: retries exhausted land in the dead-letter queue', async () => {
  await sink.fault('status=503');
  const r = await collect({ conversion_type: 'Lead', order_id: `X-${uid()}`, email: EMAIL });
  const eventId = r.json().event_id;
  await waitFor('the dead-letter queue to receive the event', async () => logsFor(eventId).some((x) => x.msg === 'dead_letter_received'), { timeoutMs: 40000 });
  const l = logsFor(eventId);
  assert(l.some((x) => x.msg === 'dropped' && x.reason === 'attempts_exhausted' && x.attempts === 3), 'dropped after max_attempts (3)');
  assert(l.some((x) => x.msg === 'dead_lettered'), 'sent to the DLQ');
  eq((await sink.stats()).by_status['503'], 3, 'three attempts at the sink');
  eq((await eventsFor(eventId)).length, 0, 'never delivered');
});

test('consent: Sec-GPC and the consent cookie emit nothing and set no cookie', async () => {
  const c = await collect({ conversion_type: 'Lead', email: 'gpc.person@example.com' }, { headers: { 'sec-gpc': '1' } });
  eq([c.status, c.json().status, c.json().reason], [202, 'skipped', 'gpc'], 'collect skipped');
  const order = `G-${uid()}`;
  const p = await request('POST', `${worker}/api/checkout`, { body: JSON.stringify({ order_id: order, email: 'gpc.person@example.com' }), headers: { 'content-type': 'application/json', 'sec-gpc': '1', accept: 'text/html' } });
  eq(p.status, 201, 'origin answer still returned');
  assert(!p.all('set-cookie').some((x) => x.startsWith('capi_')), 'no capi cookie under GPC');
  const land = await request('GET', `${worker}/landing?gclid=abc`, { headers: { 'sec-gpc': '1', accept: 'text/html' } });
  assert(!land.all('set-cookie').length, 'no click-id cookie under GPC');
  const order2 = `G2-${uid()}`;
  await request('POST', `${worker}/api/checkout`, { body: JSON.stringify({ order_id: order2 }), headers: { 'content-type': 'application/json', cookie: 'capi_consent=denied' } });
  await sleep(2500);
  for (const o of [order, order2]) eq((await eventsFor(sha256hex(`777|Purchase|${o}`))).length, 0, `no event for ${o}`);
  assert(!(await sink.events()).some((e) => ids(e).HashedEmail === sha256hex('gpc.person@example.com')), 'no GPC event at all');
});

test('identifiers: landing click ids are kept in first-party cookies with the right attributes', async () => {
  const r = await request('GET', `${worker}/landing?utm_source=x&gclid=Cj0KCQ-test_1&fbclid=IwAR.fb-2&ttclid=tt3&ScCid=sc4&epik=ep5&rdt_cid=rd6`, { headers: { accept: 'text/html', 'sec-fetch-dest': 'document' } });
  eq(r.status, 200, 'status');
  const cookies = Object.fromEntries(r.all('set-cookie').map(cookieAttrs).map((c) => [c.name, c]));
  checkCookie(cookies.capi_guid, 'capi_guid', 31536000);
  const want = { capi_gclid: 'Cj0KCQ-test_1', capi_fbclid: 'IwAR.fb-2', capi_ttclid: 'tt3', capi_sccid: 'sc4', capi_epik: 'ep5', capi_rdt_cid: 'rd6' };
  for (const [name, value] of Object.entries(want)) {
    assert(cookies[name], `cookie ${name} set`);
    checkCookie(cookies[name], name, 90 * 86400);
    eq(cookies[name].value, value, `${name} value`);
  }
  const again = await request('GET', `${worker}/landing`, { headers: { accept: 'text/html', cookie: `capi_guid=${cookies.capi_guid.value}` } });
  eq(again.all('set-cookie').length, 0, 'a returning visitor gets no new cookie');

  // The visitor converts later: the kept click ids travel with the conversion, in a fixed order.
  const order = `C-${uid()}`;
  const jar = Object.values(cookies).map((c) => `${c.name}=${c.value}`).join('; ');
  const buy = await request('POST', `${worker}/api/checkout`, { body: JSON.stringify({ order_id: order, total: 5, currency: 'usd', email: 'clicker@example.com' }), headers: { 'content-type': 'application/json', cookie: jar, 'cf-connecting-ip': '2001:DB8::42' } });
  eq(buy.status, 201, 'checkout status');
  const ev = await arrivesOnce(sha256hex(`777|Purchase|${order}`));
  eq(ev.click_ids, [
    { id: 'IwAR.fb-2', name: 'fbclid' }, { id: 'Cj0KCQ-test_1', name: 'gclid' }, { id: 'tt3', name: 'ttclid' },
    { id: 'sc4', name: 'ScCid' }, { id: 'ep5', name: 'epik' }, { id: 'rd6', name: 'rdt_cid' },
  ], 'click ids from the first-party cookies');
  eq(ev.client_ip_address, '2001:db8::42', 'IPv6 client address, canonical');
  eq(ids(ev).Guid, cookies.capi_guid.value, 'guid from the landing');

  // A browser beacon in collect mode: the caller is the visitor (Origin), so its address counts.
  const beacon = await request('POST', `${worker}/collect`, { body: JSON.stringify({ conversion_type: 'Lead', email: 'beacon@example.com', order_id: `B-${uid()}` }), headers: { origin: ALLOWED, 'content-type': 'text/plain;charset=UTF-8', cookie: jar, 'cf-connecting-ip': '198.51.100.7' } });
  eq(beacon.status, 202, 'beacon accepted');
  const bev = await arrivesOnce(beacon.json().event_id);
  eq([bev.client_ip_address, bev.click_ids.length], ['198.51.100.7', 6], 'beacon: peer address and click ids');
  // A signed backend call: its own address is not the visitor's; the payload may name it.
  const backend = await collect({ conversion_type: 'Lead', email: 'backend@example.com', order_id: `S-${uid()}` }, { headers: { 'cf-connecting-ip': '192.0.2.50' } });
  eq(backend.status, 202, 'backend call accepted');
  eq((await arrivesOnce(backend.json().event_id)).client_ip_address, undefined, 'no backend address');
  const named = await collect({ conversion_type: 'Lead', email: 'backend@example.com', order_id: `S-${uid()}`, client_ip: '192.0.2.99' }, { headers: { 'cf-connecting-ip': '192.0.2.50' } });
  eq((await arrivesOnce(named.json().event_id)).client_ip_address, '192.0.2.99', 'address from the payload');
  const bad = await collect({ conversion_type: 'Lead', email: 'backend@example.com', client_ip: 'nobody@example.com' });
  expectError(bad, 400, 'client_ip', 'IPv4 or IPv6');
  assert(!bad.text().includes('nobody'), 'the bad value is not echoed');
});

test('deploy: wrangler deploy --dry-run bundles offline; bundle size reported', async () => {
  const out = path.join(work, 'dist');
  const dotWrangler = path.join(root, '.wrangler');
  const hadDotWrangler = fs.existsSync(dotWrangler);
  const r = spawnSync(path.join(root, 'node_modules/.bin/wrangler'), ['deploy', '--dry-run', '--outdir', out], { cwd: root, env: { ...process.env, ...QUIET_WRANGLER_ENV }, encoding: 'utf8', timeout: 240000 });
  fs.appendFileSync(path.join(keepLogs, 'deploy-dry-run.log'), `${r.stdout}\n${r.stderr}`);
  // wrangler leaves its scratch directory at the root: remove it unless it was there before.
  if (!hadDotWrangler) fs.rmSync(dotWrangler, { recursive: true, force: true });
  eq(r.status, 0, `wrangler deploy --dry-run exit code (see target/worker-test/deploy-dry-run.log)`);
  const files = fs.readdirSync(out).filter((f) => !f.endsWith('.map') && f !== 'README.md');
  let raw = 0;
  let gz = 0;
  for (const f of files) {
    const b = fs.readFileSync(path.join(out, f));
    raw += b.length;
    gz += zlib.gzipSync(b, { level: 9 }).length;
  }
  assert(files.some((f) => f.endsWith('.wasm')), `a .wasm in the bundle: ${files}`);
  // The entry is cf-worker/entry.js (a plain { fetch, queue } object), not worker-build's shim
  // (a Proxy around a WorkerEntrypoint class): cf-worker/esbuild.sh must still be in the build.
  const js = files.filter((f) => f.endsWith('.js')).map((f) => fs.readFileSync(path.join(out, f), 'utf8')).join('\n');
  assert(js.includes('wasm_reinitialized') && !js.includes('WorkerEntrypoint'), 'the bundle is built from cf-worker/entry.js, not worker-build\'s shim');
  const line = `bundle: ${files.join(', ')}: ${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzip`;
  console.log(`     ${line}`);
  fs.writeFileSync(path.join(keepLogs, 'bundle-size.txt'), line + '\n');
  assert(gz <= 300 * 1024, `bundle ${(gz / 1024).toFixed(1)} KiB gzip is over 300 KiB`);
});

test('stats: counters behind the admin token', async () => {
  // New connections: the deploy test blocks this process for half a minute (spawnSync), long
  // enough for wrangler to close the pooled keep-alive sockets without the client noticing.
  const no = await request('GET', `${worker}/_capi/stats`, { fresh: true });
  eq(no.status, 401, 'no token');
  const r = await request('GET', `${worker}/_capi/stats`, { fresh: true, headers: { authorization: `Bearer ${SECRETS.CAPI_ADMIN_TOKEN}` } });
  eq(r.status, 200, 'with token');
  const c = r.json().counters;
  for (const k of ['matched', 'collected', 'sent', 'delivered', 'retried', 'dropped', 'refused', 'consent_skipped']) assert(k in c, `counter ${k}`);
  assert(c.delivered > 0 && c.retried > 0 && c.collected > 0 && c.matched > 0 && c.refused > 0, `counters moved: ${JSON.stringify(c)}`);
  // The Worker's executor (cf-worker/src/exec.rs): every task it ran has finished and every
  // promise it awaited has been taken, once the traffic of the tests above has settled.
  let ex = r.json().executor;
  for (let i = 0; i < 20 && (ex.tasks || ex.waits); i += 1) {
    await sleep(250);
    ex = (await request('GET', `${worker}/_capi/stats`, { fresh: true, headers: { authorization: `Bearer ${SECRETS.CAPI_ADMIN_TOKEN}` } })).json().executor;
  }
  assert(ex.spawned >= c.collected + c.matched, `the executor ran the handlers' work: ${JSON.stringify(ex)}`);
  eq(ex.tasks, 0, 'executor tasks left unfinished');
  eq(ex.waits, 0, 'executor promise slots left in use');
});

test('logs: structured JSON without raw email, phone or secrets', async () => {
  const text = fs.readFileSync(wranglerLog, 'utf8');
  const lines = workerLogs(wranglerLog);
  assert(!lines.some((l) => l.msg === 'analytics_write_failed'), 'Analytics Engine datapoints were written');
  assert(lines.length > 20, `worker log lines found (${lines.length})`);
  for (const l of lines) assert(l.level && l.msg, 'every line has level and msg');
  for (const needle of [...RAW_PII, ...Object.values(SECRETS)]) {
    assert(!text.toLowerCase().includes(needle.toLowerCase()), `log contains ${needle.slice(0, 6)}…`);
  }
});

// ------------------------------------------------------------------------------------------

function copyBuild(dir) {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['index.js', 'index_bg.wasm']) fs.copyFileSync(path.join(root, 'cf-worker/build', f), path.join(dir, f));
  return path.join(dir, 'index.js');
}

async function main() {
  const sinkPortRecord = path.join(work, 'sink-events.jsonl');
  const sinkUrl = await startSink({ token: SECRETS.CAPI_TOKEN, hmacSecret: SECRETS.CAPI_HMAC_SECRET, record: sinkPortRecord, logFile: sinkLog });
  sink = sinkClient(sinkUrl);
  origin = await startOrigin(await freePort());
  const config = {
    destination: { format: 'seed', url: `${sinkUrl}/v1/conversions`, allow_http_loopback: true, timeout_ms: 1500, advertiser_id: 777, data_source_key: 'worker-test' },
    auth: { bearer_token_env: 'CAPI_TOKEN', hmac: { secret_env: 'CAPI_HMAC_SECRET' } },
    identifiers: { default_calling_code: '1', phone_as: 'HashedPhone' },
    consent: { honor_gpc: true, cookie: { name: 'capi_consent', deny_values: ['denied'] } },
    limits: { max_body_bytes: MAX_BODY, dedup_window_ms: 600000, dedup_capacity: 10000 },
    retry: { max_attempts: 3, max_age_ms: 60000, base_backoff_ms: 200, max_backoff_ms: 1000 },
    rules: [
      {
        name: 'checkout', conversion_type: 'Purchase',
        match: { method: 'POST', path: '/api/checkout', status: [200, 201], content_type: 'application/json' },
        extract: { order_id: 'response:/order/id', value: 'response:/order/total', currency: 'response:/order/currency', email: 'response:/customer/email', phone: 'response:/customer/phone', guid: 'cookie:capi_guid', first_party_id: 'response:/customer/id' },
      },
      { name: 'lead', conversion_type: 'Lead', match: { method: 'POST', path: '/forms/*/submit' }, extract: { email: 'form:email', phone: 'form:phone', guid: 'cookie:capi_guid' } },
    ],
  };
  const cfgPath = writeWranglerConfig(path.join(work, 'worker'), {
    name: 'capi-worker-test',
    // A copy: the deploy test rebuilds cf-worker/build, which wrangler dev would reload.
    main: copyBuild(path.join(work, 'bundle')),
    vars: { CAPI_CONFIG: JSON.stringify(config), CAPI_ORIGIN: origin.url, CAPI_ALLOWED_ORIGINS: ALLOWED, CAPI_DLQ_NAME: 'capi-dlq' },
    secrets: SECRETS,
    analytics: true,
  });
  worker = await startWrangler({ name: 'capi', configPath: cfgPath, port: await freePort(), logFile: wranglerLog, readyPath: '/_capi/stats', readyHeaders: { authorization: `Bearer ${SECRETS.CAPI_ADMIN_TOKEN}` }, persistTo: path.join(work, 'state') });
  console.log(`worker ${worker}, sink ${sinkUrl}, origin ${origin.url}; logs in ${path.relative(root, keepLogs)}/`);

  let passed = 0;
  let failed = 0;
  for (const t of tests) {
    const started = Date.now();
    try {
      await sink.reset();
      await t.fn();
      passed += 1;
      console.log(`ok   ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${t.name}: ${e.message}`);
    }
  }
  return { passed, failed };
}

let result = { passed: 0, failed: 1 };
const deadline = setTimeout(async () => {
  console.log('FAIL the worker tests did not finish in 7 minutes');
  await stopAll();
  console.log(`${result.passed} passed, ${tests.length - result.passed} failed`);
  process.exit(1);
}, 7 * 60 * 1000);
try {
  result = await main();
} catch (e) {
  console.log(`FAIL setup: ${e.message}`);
  result = { passed: 0, failed: tests.length };
} finally {
  clearTimeout(deadline);
  await stopAll();
  origin?.server.close();
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(`${result.passed} passed, ${result.failed} failed`);
process.exit(result.failed ? 1 : 0);
