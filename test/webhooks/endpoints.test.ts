// /v1/webhook-endpoints and /v1/webhook-secret over HTTP: create (201 with its secret),
// list, read, change, delete; refusals name the field and store nothing; a ping is
// delivered signed with the endpoint's secret; the tenant's secret rotates.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withCaptioningApp } from '../support/captioning.js';
import { startReceiver, verified } from '../support/webhook-receiver.js';

const ENV = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' };

test('an endpoint is created with its own secret, listed, changed and deleted; another tenant sees none of it', async (t) => {
  const ctx = await withCaptioningApp(t, { env: ENV });
  const receiver = await startReceiver(t);
  const api = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object, auth = ctx.auth) =>
    ctx.app.inject({ method, url, headers: auth, ...(payload === undefined ? {} : { payload }) });

  const created = await api('POST', '/v1/webhook-endpoints', { url: receiver.url, description: 'ci' });
  assert.equal(created.statusCode, 201, created.body);
  const endpoint = created.json();
  assert.match(endpoint.id, /^whep_/);
  assert.equal(created.headers.location, `/v1/webhook-endpoints/${endpoint.id}`);
  assert.match(endpoint.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  assert.deepEqual(endpoint.events, [
    'training_run.succeeded', 'training_run.failed', 'training_run.canceled',
    'captioning_job.succeeded', 'captioning_job.failed', 'captioning_job.canceled',
    'generation.succeeded', 'generation.failed', 'generation.canceled',
    'dataset_import.succeeded', 'dataset_import.failed',
  ], 'the terminal events by default');
  assert.equal(endpoint.enabled, true);

  const secret = (await api('GET', `/v1/webhook-endpoints/${endpoint.id}/secret`)).json();
  assert.deepEqual(secret, { secret: endpoint.secret, previous_secret_expires_at: null });
  const tenantSecret = (await api('GET', '/v1/webhook-secret')).json();
  assert.notEqual(tenantSecret.secret, endpoint.secret, 'the tenant signs per-request webhooks with a secret of its own');

  const patched = await api('PATCH', `/v1/webhook-endpoints/${endpoint.id}`, { events: ['training_run.started'], enabled: false });
  assert.equal(patched.statusCode, 200, patched.body);
  assert.deepEqual(patched.json().events, ['training_run.started']);
  assert.equal(patched.json().enabled, false);
  assert.equal(patched.json().secret, undefined, 'the secret is shown only on creation and at /secret');

  const list = (await api('GET', '/v1/webhook-endpoints')).json();
  assert.deepEqual(list.data.map((e: { id: string }) => e.id), [endpoint.id]);

  const other = { authorization: `Bearer ${await ctx.createTenantKey()}` };
  assert.equal((await api('GET', `/v1/webhook-endpoints/${endpoint.id}`, undefined, other)).statusCode, 404);
  assert.equal((await api('GET', `/v1/webhook-endpoints/${endpoint.id}/secret`, undefined, other)).statusCode, 404);
  assert.deepEqual((await api('GET', '/v1/webhook-endpoints', undefined, other)).json().data, []);

  assert.equal((await api('DELETE', `/v1/webhook-endpoints/${endpoint.id}`)).statusCode, 204);
  assert.equal((await api('GET', `/v1/webhook-endpoints/${endpoint.id}`)).statusCode, 404);
  assert.equal((await api('DELETE', `/v1/webhook-endpoints/${endpoint.id}`)).statusCode, 404);

  const paused = await api('POST', '/v1/webhook-endpoints', { url: receiver.url, enabled: false });
  assert.equal(paused.statusCode, 201, paused.body);
  assert.equal(paused.json().enabled, false, 'created disabled');
  assert.equal(paused.json().disabled_reason, null, 'by its owner, not by the service');
});

test('URLs refused on their face are 400s naming the field, and nothing is stored', async (t) => {
  const ctx = await withCaptioningApp(t, { env: { WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' } });
  const refused = [
    'http://example.com/hook', // plain http without WEBHOOK_ALLOW_HTTP
    'ftp://example.com/hook',
    'https://user:secret@example.com/hook',
    'not a url',
    'https://10.0.0.1/hook',
    'https://169.254.169.254/latest/meta-data',
    'https://[::1]/hook',
    'https://[fd00::1]/hook',
    'https://0x0a.0.0.1/hook',
    'https://0177.0.0.2/hook',
    'https://100.64.0.1/hook',
    'https://[::ffff:192.168.1.1]/hook',
    'https://0.0.0.0/hook',
    'https://224.0.0.1/hook',
    'https://2130706434/hook', // 127.0.0.2 in decimal
  ];
  for (const url of refused) {
    const response = await ctx.app.inject({ method: 'POST', url: '/v1/webhook-endpoints', headers: ctx.auth, payload: { url } });
    assert.equal(response.statusCode, 400, `${url}: ${response.body}`);
    assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.deepEqual(response.json().errors.map((e: { field: string }) => e.field), ['url'], url);
  }
  // The decimal spelling of 127.0.0.1 is that address, which this app's WEBHOOK_ALLOWED_HOSTS allows.
  const allowed = await ctx.app.inject({ method: 'POST', url: '/v1/webhook-endpoints', headers: ctx.auth, payload: { url: 'https://2130706433/hook' } });
  assert.equal(allowed.statusCode, 201, allowed.body);
  const unknownEvent = await ctx.app.inject({
    method: 'POST', url: '/v1/webhook-endpoints', headers: ctx.auth, payload: { url: 'https://example.com/hook', events: ['training_run.exploded'] },
  });
  assert.equal(unknownEvent.statusCode, 400);
  assert.match(unknownEvent.body, /events/);
  const { rows } = await ctx.db.query<{ n: number }>('SELECT count(*)::integer AS n FROM webhook_endpoints WHERE tenant_id = $1', [ctx.tenantId]);
  assert.equal(rows[0]!.n, 1, 'only the allowed one');

  const run = await ctx.app.inject({
    method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
    payload: { dataset_id: 'ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', model: 'sdxl-tiny-demo', webhook: { url: 'https://192.168.0.10/hook' } },
  });
  assert.equal(run.statusCode, 400, run.body);
  assert.deepEqual(run.json().errors.map((e: { field: string }) => e.field), ['webhook.url']);

  const otherResource = await ctx.app.inject({
    method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
    payload: { dataset_id: 'ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', model: 'sdxl-tiny-demo', webhook: { url: 'https://example.com/hook', events: ['captioning_job.succeeded'] } },
  });
  assert.equal(otherResource.statusCode, 400, 'a run\'s webhook names the run\'s events only');
  assert.match(otherResource.json().errors[0].field, /^webhook\.events/);
  const { rows: runs } = await ctx.db.query<{ n: number }>('SELECT count(*)::integer AS n FROM training_runs WHERE tenant_id = $1', [ctx.tenantId]);
  assert.equal(runs[0]!.n, 0);
});

test('a ping is delivered, signed with the endpoint\'s secret; after a rotation both secrets sign until the overlap ends', async (t) => {
  const ctx = await withCaptioningApp(t, { env: ENV });
  const receiver = await startReceiver(t);
  const endpoint = (await ctx.app.inject({ method: 'POST', url: '/v1/webhook-endpoints', headers: ctx.auth, payload: { url: receiver.url } })).json();

  const ping = await ctx.app.inject({ method: 'POST', url: `/v1/webhook-endpoints/${endpoint.id}/test`, headers: ctx.auth });
  assert.equal(ping.statusCode, 202, ping.body);
  const [first] = await receiver.waitFor(1);
  const body = verified(endpoint.secret, first!);
  assert.equal(body.type, 'ping');
  assert.equal(first!.id, ping.json().id, 'webhook-id is the message id');
  assert.equal(body.data.endpoint_id, endpoint.id);

  const rotated = await ctx.app.inject({ method: 'POST', url: `/v1/webhook-endpoints/${endpoint.id}/rotate-secret`, headers: ctx.auth });
  assert.equal(rotated.statusCode, 200, rotated.body);
  const { secret: newSecret, previous_secret_expires_at: overlapEnds } = rotated.json();
  assert.notEqual(newSecret, endpoint.secret);
  const overlapHours = (Date.parse(overlapEnds) - Date.now()) / 3_600_000;
  assert.ok(overlapHours > 23.9 && overlapHours <= 24, `the old secret signs for 24 h more (${overlapHours} h)`);

  await ctx.app.inject({ method: 'POST', url: `/v1/webhook-endpoints/${endpoint.id}/test`, headers: ctx.auth });
  const [, second] = await receiver.waitFor(2);
  assert.equal(second!.signature.split(' ').length, 2, 'two signatures during the overlap');
  assert.equal(verified(endpoint.secret, second!).type, 'ping', 'a receiver holding only the old secret still verifies');
  assert.equal(verified(newSecret, second!).type, 'ping', 'and one holding the new one');

  // The overlap is over: only the new secret signs.
  await ctx.db.query(`UPDATE webhook_secrets SET previous_expires_at = now() - interval '1 second' WHERE owner_id = $1`, [endpoint.id]);
  await ctx.app.inject({ method: 'POST', url: `/v1/webhook-endpoints/${endpoint.id}/test`, headers: ctx.auth });
  const [, , third] = await receiver.waitFor(3);
  assert.equal(third!.signature.split(' ').length, 1);
  assert.throws(() => verified(endpoint.secret, third!));
  assert.equal(verified(newSecret, third!).type, 'ping');
  assert.equal((await ctx.app.inject({ method: 'GET', url: `/v1/webhook-endpoints/${endpoint.id}/secret`, headers: ctx.auth })).json().previous_secret_expires_at, null);

  const tenantRotated = await ctx.app.inject({ method: 'POST', url: '/v1/webhook-secret/rotate', headers: ctx.auth });
  assert.equal(tenantRotated.statusCode, 200);
  assert.notEqual(tenantRotated.json().previous_secret_expires_at, null);
});
