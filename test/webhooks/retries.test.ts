// Delivery that loses nothing, on a dispatcher whose clock the test moves (no test sleeps
// through a retry delay): an hour-long outage, a receiver that hangs, Retry-After, 410 Gone,
// an endpoint that fails for days, redelivery, addresses refused at connect time, and two
// replicas on one database sending each attempt once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestApp } from '../helper.js';
import { withCaptioningApp } from '../support/captioning.js';
import { sample } from '../support/metrics.js';
import { ManualClock, startReceiver, verified } from '../support/webhook-receiver.js';

const ENV = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_TIMEOUT_MS: '500' };
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** An app whose dispatcher runs on `clock`, with no jitter. */
function appOn(t: Parameters<typeof withCaptioningApp>[0], clock: ManualClock, env: Record<string, string> = {}) {
  return withCaptioningApp(t, { env: { ...ENV, ...env }, webhooks: { clock, random: () => 0 } });
}

async function endpointFor(ctx: TestApp, url: string): Promise<{ id: string; secret: string }> {
  const response = await ctx.app.inject({ method: 'POST', url: '/v1/webhook-endpoints', headers: ctx.auth, payload: { url } });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

async function ping(ctx: TestApp, endpointId: string): Promise<string> {
  const response = await ctx.app.inject({ method: 'POST', url: `/v1/webhook-endpoints/${endpointId}/test`, headers: ctx.auth });
  assert.equal(response.statusCode, 202, response.body);
  return response.json().id;
}

interface MessageState { id: string; status: string; attempts: number; next_attempt_at: Date; last_error: string | null }

async function messagesOf(ctx: TestApp): Promise<MessageState[]> {
  const { rows } = await ctx.db.query<MessageState>(
    'SELECT id, status, attempts, next_attempt_at, last_error FROM webhook_messages WHERE tenant_id = $1 ORDER BY id', [ctx.tenantId],
  );
  return rows;
}

/** Wakes the dispatcher until none of the tenant's messages is due at the clock's time. */
async function drain(ctx: TestApp, clock: ManualClock): Promise<MessageState[]> {
  for (let i = 0; i < 400; i++) {
    ctx.app.webhooks.wake();
    const messages = await messagesOf(ctx);
    const due = messages.filter((m) => m.status === 'sending' || (m.status === 'pending' && m.next_attempt_at <= clock.now()));
    if (due.length === 0) return messages;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('webhook messages stayed due');
}

test('an hour-long outage (503): every message arrives after recovery, each webhook-id succeeds once, nothing is lost', async (t) => {
  const clock = new ManualClock();
  const ctx = await appOn(t, clock);
  const receiver = await startReceiver(t);
  const outageEnds = clock.now().getTime() + HOUR;
  receiver.answer = () => (clock.now().getTime() < outageEnds ? { status: 503, body: 'down for maintenance' } : { status: 200 });
  const endpoint = await endpointFor(ctx, receiver.url);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await ping(ctx, endpoint.id));

  // Five minutes at a time through the outage and past the 2 h retry that follows it.
  while (clock.now().getTime() < outageEnds + 3 * HOUR) {
    await drain(ctx, clock);
    clock.advance(5 * MINUTE);
  }
  const messages = await drain(ctx, clock);
  assert.deepEqual(messages.map((m) => m.status), ids.map(() => 'succeeded'));
  // Attempts at 0, 5 s, 5 min, 35 min (all in the outage), then 2 h 35 min: the fifth succeeds.
  assert.deepEqual(messages.map((m) => m.attempts), ids.map(() => 5));
  const ok = receiver.received.filter((r) => r.answered === 200);
  assert.deepEqual(ok.map((r) => r.id).sort(), [...ids].sort(), 'each message succeeded exactly once');
  for (const webhook of receiver.received) assert.equal(verified(endpoint.secret, webhook).type, 'ping');
  assert.equal(new Set(receiver.received.filter((r) => r.id === ids[0]).map((r) => r.body)).size, 1, 'every retry sends the same body');

  const detail = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-messages/${ids[0]}`, headers: ctx.auth })).json();
  assert.deepEqual(detail.attempts.map((a: { status_code: number }) => a.status_code), [503, 503, 503, 503, 200]);
  assert.equal(detail.attempts[0].response_body, 'down for maintenance');
  const gaps = detail.attempts.slice(1).map((a: { started_at: string }, i: number) => Date.parse(a.started_at) - Date.parse(detail.attempts[i].next_attempt_at));
  assert.ok(gaps.every((gap: number) => gap >= 0), 'no attempt before its time');
  const scheduled = detail.attempts.slice(0, 4).map((a: { started_at: string; next_attempt_at: string }) => Date.parse(a.next_attempt_at) - Date.parse(a.started_at));
  assert.deepEqual(scheduled, [5 * SECOND, 5 * MINUTE, 30 * MINUTE, 2 * HOUR], 'the Standard Webhooks schedule (jitter pinned to 0 here)');
  const endpointAfter = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-endpoints/${endpoint.id}`, headers: ctx.auth })).json();
  assert.equal(endpointAfter.failing_since, null, 'a success ends the failure streak');
  const metrics = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.equal(sample(metrics, 'sdxl_webhook_attempts_total{result="retrying"}'), 20, '/metrics: four failed attempts of each');
  assert.equal(sample(metrics, 'sdxl_webhook_attempts_total{result="delivered"}'), 5);
  assert.equal(sample(metrics, 'sdxl_webhook_delivery_lag_seconds_count'), 5);
  assert.ok(sample(metrics, 'sdxl_webhook_delivery_lag_seconds_sum')! >= 5 * 2.5 * 3600, 'each delivered about 2 h 35 min after its event');
});

test('a receiver that hangs past WEBHOOK_TIMEOUT_MS, one that sends Retry-After, and one that answers 410', async (t) => {
  const clock = new ManualClock();
  const ctx = await appOn(t, clock);
  const hanging = await startReceiver(t);
  hanging.answer = () => ({ status: 200, hang: true });
  const busy = await startReceiver(t);
  busy.answer = () => ({ status: 429, headers: { 'retry-after': '3600' } });
  const gone = await startReceiver(t);
  gone.answer = () => ({ status: 410 });

  const hangingId = await ping(ctx, (await endpointFor(ctx, hanging.url)).id);
  const busyId = await ping(ctx, (await endpointFor(ctx, busy.url)).id);
  const goneEndpoint = await endpointFor(ctx, gone.url);
  const goneId = await ping(ctx, goneEndpoint.id);
  const messages = new Map((await drain(ctx, clock)).map((m) => [m.id, m]));

  const timedOut = messages.get(hangingId)!;
  assert.equal(timedOut.status, 'pending');
  assert.match(timedOut.last_error!, /timed out|timeout|no response/i);
  const attempt = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-messages/${hangingId}`, headers: ctx.auth })).json().attempts[0];
  assert.equal(attempt.error.code, 'timeout');
  assert.equal(attempt.status_code, null);

  const waited = messages.get(busyId)!;
  assert.equal(waited.status, 'pending');
  const busyAttempt = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-messages/${busyId}`, headers: ctx.auth })).json().attempts[0];
  assert.equal(Date.parse(busyAttempt.next_attempt_at) - Date.parse(busyAttempt.started_at), HOUR, 'Retry-After: 3600 instead of 5 s');
  clock.advance(30 * MINUTE);
  await drain(ctx, clock);
  assert.equal(busy.received.length, 1, 'nothing before the hour is up');
  clock.advance(31 * MINUTE);
  await drain(ctx, clock);
  assert.equal(busy.received.length, 2);

  assert.equal(messages.get(goneId)!.status, 'failed');
  const endpoint = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-endpoints/${goneEndpoint.id}`, headers: ctx.auth })).json();
  assert.equal(endpoint.enabled, false);
  assert.equal(endpoint.disabled_reason, 'gone');
  // Nothing more goes to it: a message to a disabled endpoint fails without a request.
  const afterGone = await ping(ctx, goneEndpoint.id);
  await drain(ctx, clock);
  assert.equal(gone.received.length, 1);
  const refused = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-messages/${afterGone}`, headers: ctx.auth })).json();
  assert.equal(refused.status, 'failed');
  assert.equal(refused.attempts[0].error.code, 'endpoint_disabled');

  // Enabled again and redelivered: the same webhook-id, the same body.
  gone.answer = () => ({ status: 204 });
  await ctx.app.inject({ method: 'PATCH', url: `/v1/webhook-endpoints/${goneEndpoint.id}`, headers: ctx.auth, payload: { enabled: true } });
  const redelivered = await ctx.app.inject({ method: 'POST', url: `/v1/webhook-messages/${goneId}/redeliver`, headers: ctx.auth });
  assert.equal(redelivered.statusCode, 202, redelivered.body);
  await drain(ctx, clock);
  assert.equal(gone.received.length, 2);
  assert.equal(gone.received[1]!.id, goneId);
  assert.equal(gone.received[1]!.body, gone.received[0]!.body);
  const again = await ctx.app.inject({ method: 'POST', url: `/v1/webhook-messages/${hangingId}/redeliver`, headers: ctx.auth });
  assert.equal(again.statusCode, 409, 'a message still pending is not redelivered');
});

test('an endpoint whose every attempt failed for WEBHOOK_DISABLE_AFTER_MS is disabled (failing); a message out of attempts fails', async (t) => {
  const clock = new ManualClock();
  const ctx = await appOn(t, clock, { WEBHOOK_DISABLE_AFTER_MS: String(24 * HOUR) });
  const receiver = await startReceiver(t);
  receiver.answer = () => ({ status: 500 });
  const endpoint = await endpointFor(ctx, receiver.url);
  const id = await ping(ctx, endpoint.id);
  while (clock.now().getTime() - Date.now() < 30 * HOUR) {
    await drain(ctx, clock);
    clock.advance(HOUR);
  }
  const [message] = await drain(ctx, clock);
  assert.equal(message!.status, 'failed');
  assert.equal(message!.attempts, 8, 'immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h');
  assert.equal(receiver.received.filter((r) => r.id === id).length, 8);
  const after = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-endpoints/${endpoint.id}`, headers: ctx.auth })).json();
  assert.equal(after.enabled, false);
  assert.equal(after.disabled_reason, 'failing');
  assert.notEqual(after.failing_since, null);
});

test('addresses are checked at connect time: a name that resolves to the metadata address fails its attempt, a 302 to it is not followed', async (t) => {
  const clock = new ManualClock();
  const receiver = await startReceiver(t);
  receiver.answer = () => ({ status: 302, headers: { location: 'http://169.254.169.254/latest/meta-data/' } });
  const port = new URL(receiver.url).port;
  const ctx = await withCaptioningApp(t, {
    env: ENV,
    webhooks: {
      clock,
      random: () => 0,
      // hooks.example resolves to the cloud metadata address; redirector.example to the (allowed) receiver.
      lookup: async (name) => [{ address: name === 'hooks.example' ? '169.254.169.254' : '127.0.0.1', family: 4 }],
    },
  });
  const rebinding = await endpointFor(ctx, `http://hooks.example:${port}/hooks`);
  const redirector = await endpointFor(ctx, `http://redirector.example:${port}/hooks`);
  const toMetadata = await ping(ctx, rebinding.id);
  const redirected = await ping(ctx, redirector.id);
  await drain(ctx, clock);

  const refused = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-messages/${toMetadata}`, headers: ctx.auth })).json();
  assert.equal(refused.attempts[0].error.code, 'forbidden_address');
  assert.match(refused.attempts[0].error.message, /169\.254\.169\.254/);
  const followed = (await ctx.app.inject({ method: 'GET', url: `/v1/webhook-messages/${redirected}`, headers: ctx.auth })).json();
  assert.equal(followed.attempts[0].status_code, 302, 'the 302 is the answer, not followed');
  assert.equal(followed.status, 'pending', 'and a failure that is retried');
  assert.equal(receiver.received.length, 1, 'only the redirector was reached');
});

test('two replicas on one database send each attempt once', async (t) => {
  const clock = new ManualClock();
  const first = await appOn(t, clock);
  const second = await withCaptioningApp(t, { env: ENV, apiKey: first.apiKey, webhooks: { clock, random: () => 0 } });
  const receiver = await startReceiver(t);
  let calls = 0;
  receiver.answer = () => (++calls % 3 === 0 ? { status: 500 } : { status: 200 });
  const endpoint = await endpointFor(first, receiver.url);
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) ids.push(await ping(i % 2 === 0 ? first : second, endpoint.id));
  for (let i = 0; i < 20; i++) {
    second.app.webhooks.wake();
    await drain(first, clock);
    clock.advance(10 * MINUTE);
  }
  const messages = await drain(first, clock);
  assert.deepEqual(messages.map((m) => m.status), ids.map(() => 'succeeded'));
  const { rows } = await first.db.query<{ message_id: string; n: number }>(
    'SELECT message_id, count(*)::integer AS n FROM webhook_attempts WHERE message_id = ANY($1) GROUP BY message_id', [ids],
  );
  const attempts = new Map(rows.map((r) => [r.message_id, r.n]));
  for (const id of ids) {
    const sent = receiver.received.filter((r) => r.id === id);
    assert.equal(sent.length, attempts.get(id), `${id}: one request per recorded attempt`);
    assert.equal(sent.filter((r) => r.answered === 200).length, 1, `${id} succeeded once`);
  }
  const owners = await first.db.query<{ n: number }>('SELECT count(DISTINCT lease_owner)::integer AS n FROM webhook_messages WHERE id = ANY($1)', [ids]);
  assert.equal(owners.rows[0]!.n, 0, 'no lease is left behind');
});
