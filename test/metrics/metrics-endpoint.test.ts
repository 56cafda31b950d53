// GET /metrics in one process: Prometheus text with the HTTP histogram by route template
// (ids never become labels, unknown URLs share one value), the database pool, the queues
// read from the database, behind METRICS_TOKEN when set, or alone on METRICS_PORT.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { withTestApp } from '../helper.js';
import { sample } from '../support/metrics.js';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('/metrics counts requests by route template and status, and reads the pool and the queues', async (t) => {
  const ctx = await withTestApp(t);
  const ids: string[] = [];
  for (const name of ['a', 'b']) {
    const created = await ctx.app.inject({ method: 'POST', url: '/v1/datasets', headers: ctx.auth, payload: { name, class_word: 'dog' } });
    ids.push(created.json().id);
  }
  for (const id of ids) assert.equal((await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${id}`, headers: ctx.auth })).statusCode, 200);
  await ctx.app.inject({ method: 'GET', url: '/v1/datasets/ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', headers: ctx.auth });
  await ctx.app.inject({ method: 'GET', url: '/no/such/path/4711' });

  const response = await ctx.app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(response.statusCode, 200);
  assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = response.body;
  assert.equal(sample(text, 'http_request_duration_seconds_count{method="GET",route="/v1/datasets/:id",status_code="200"}'), 2, 'both ids in one series');
  assert.equal(sample(text, 'http_request_duration_seconds_count{method="GET",route="/v1/datasets/:id",status_code="404"}'), 1);
  assert.equal(sample(text, 'http_request_duration_seconds_count{method="POST",route="/v1/datasets",status_code="201"}'), 2);
  assert.equal(sample(text, 'http_request_duration_seconds_count{method="GET",route="unmatched",status_code="404"}'), 1);
  // Labels only: a sample's value (free bytes, RSS) may hold any digits.
  const labels = (text.match(/\{[^}]*\}/g) ?? []).join('\n');
  assert.ok(labels.includes('route="/v1/datasets/:id"'), 'the label sets are read');
  for (const id of ids) assert.ok(!labels.includes(id), 'no id in any label');
  assert.ok(!labels.includes('4711'), 'no raw URL in any label');

  assert.equal(sample(text, 'sdxl_db_pool_connections{state="max"}'), 10);
  assert.ok((sample(text, 'sdxl_db_pool_connections{state="idle"}') ?? -1) >= 0);
  assert.ok((sample(text, 'sdxl_db_pool_waiting') ?? -1) >= 0, 'queries waiting for a connection (the scrape\'s own may be)');
  for (const kind of ['captioning', 'training', 'generation', 'webhook']) {
    assert.equal(sample(text, `sdxl_queue_depth{kind="${kind}"}`), 0, kind);
    assert.equal(sample(text, `sdxl_queue_oldest_wait_seconds{kind="${kind}"}`), 0, kind);
  }
  for (const status of ['queued', 'running', 'succeeded', 'failed', 'canceled']) assert.equal(sample(text, `sdxl_training_runs{status="${status}"}`), 0);
  assert.equal(sample(text, 'sdxl_model_cache_hits_total'), 0);
  assert.equal(sample(text, 'sdxl_training_runs_active'), 0);
  assert.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== undefined, 'event-loop lag');
  assert.ok(sample(text, 'process_resident_memory_bytes') !== undefined);
});

test('a queued job shows in the queue depth, with how long it has waited', async (t) => {
  // No generation slots here: what is queued stays queued.
  const ctx = await withTestApp(t, { env: { GENERATION_SLOTS: '0' } });
  const created = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: { model: 'sdxl-tiny-demo', prompt: 'a dog' } });
  assert.equal(created.statusCode, 202, created.body);
  await ctx.db.query("UPDATE generations SET created_at = now() - interval '90 seconds' WHERE id = $1", [created.json().id]);
  const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.equal(sample(text, 'sdxl_queue_depth{kind="generation"}'), 1);
  const wait = sample(text, 'sdxl_queue_oldest_wait_seconds{kind="generation"}')!;
  assert.ok(wait >= 90 && wait < 120, `waited ${wait} s`);
  assert.equal(sample(text, 'sdxl_queue_depth{kind="training"}'), 0);
});

test('METRICS_TOKEN: /metrics asks for it as a bearer token', async (t) => {
  const ctx = await withTestApp(t, { env: { METRICS_TOKEN: 'scrape-secret' } });
  const bare = await ctx.app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(bare.statusCode, 401);
  assert.match(String(bare.headers['content-type']), /^application\/problem\+json/);
  assert.equal((await ctx.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer wrong' } })).statusCode, 401);
  assert.equal((await ctx.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ctx.apiKey}` } })).statusCode, 401, 'an API key is not the metrics token');
  const ok = await ctx.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer scrape-secret' } });
  assert.equal(ok.statusCode, 200);
  assert.match(ok.body, /^# HELP /m);
});

test('METRICS_PORT: /metrics is served there alone, with its token, and not on PORT', async (t) => {
  const port = await freePort();
  const ctx = await withTestApp(t, { env: { METRICS_PORT: String(port), METRICS_TOKEN: 'tok' } });
  assert.equal((await ctx.app.inject({ method: 'GET', url: '/metrics' })).statusCode, 404, 'not on the API port');
  const url = `http://127.0.0.1:${port}`;
  assert.equal((await fetch(`${url}/metrics`)).status, 401);
  const ok = await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer tok' } });
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /sdxl_queue_depth\{kind="training"\} 0/);
  assert.equal((await fetch(`${url}/v1/datasets`, { headers: { authorization: 'Bearer tok' } })).status, 404, 'nothing else there');
  await ctx.app.close();
  await assert.rejects(fetch(`${url}/metrics`), 'closed with the app');
});

test('a run on several devices: its all-reduce time per reported step, and the pool of a TRAIN_DEVICES worker', async (t) => {
  const ctx = await withTestApp(t, { env: { TRAIN_DEVICES: 'cpu*3', GENERATION_SLOTS: '0' } });
  const meter = ctx.app.metrics.trainingRun();
  const report = (step: number, metrics: Record<string, number>) => meter.report({ phase: 'training', step, total: 4, message: '', metrics, files: [] });
  report(1, { allreduce_ms: 12 });
  report(1, { allreduce_ms: 12 }); // the same step again: counted once
  report(2, {}); // an engine that does not say it
  report(3, { allreduce_ms: 3 });
  meter.end();
  const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.equal(sample(text, 'sdxl_training_allreduce_seconds_count'), 2);
  assert.equal(sample(text, 'sdxl_training_allreduce_seconds_sum'), 0.015);
  assert.equal(sample(text, 'sdxl_training_devices'), 3);
  assert.equal(sample(text, 'sdxl_training_devices_busy'), 0);
  assert.ok(!/^sdxl_gpu_memory_bytes\{/m.test(text), 'no GPU memory series for CPU devices');
});
