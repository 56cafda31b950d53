// GET /v1/quality-metrics: every metric with its network, whether this server has it under
// METRICS_MODELS_DIR (the engine's file checks on the fixture networks) and why not.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withTestApp, type TestApp } from '../../helper.js';
import { metricsModelsDir } from '../../support/metrics-models.js';

const ORDER = ['clip_t', 'clip_i', 'hps', 'lpips', 'fid', 'kid', 'is'];
const NETWORK = { clip_t: 'clip', clip_i: 'clip', hps: 'hps', lpips: 'lpips', fid: 'inception', kid: 'inception', is: 'inception' } as const;

async function list(ctx: TestApp): Promise<Array<{ metric: keyof typeof NETWORK; network: string; available: boolean; reason: string | null; description: string }>> {
  const response = await ctx.app.inject({ method: 'GET', url: '/v1/quality-metrics', headers: ctx.auth });
  assert.equal(response.statusCode, 200, response.body);
  return response.json().data;
}

describe('GET /v1/quality-metrics', () => {
  test('without METRICS_MODELS_DIR no metric is available, each saying so; the key is needed', async (t) => {
    const ctx = await withTestApp(t);
    const data = await list(ctx);
    assert.deepEqual(data.map((entry) => entry.metric), ORDER);
    for (const entry of data) {
      assert.equal(entry.network, NETWORK[entry.metric]);
      assert.equal(entry.available, false);
      assert.equal(entry.reason, 'METRICS_MODELS_DIR is not set on this server');
      assert.ok(entry.description.length > 20);
    }
    const anonymous = await ctx.app.inject({ method: 'GET', url: '/v1/quality-metrics' });
    assert.equal(anonymous.statusCode, 401);
  });

  test('a METRICS_MODELS_DIR that is not a folder makes none available', async (t) => {
    const ctx = await withTestApp(t, { env: { METRICS_MODELS_DIR: '/nonexistent/metrics-models' } });
    for (const entry of await list(ctx)) assert.deepEqual([entry.available, entry.reason], [false, 'METRICS_MODELS_DIR is not a folder on this server']);
  });

  test('with every network, every metric is available', async (t) => {
    const ctx = await withTestApp(t, { env: { METRICS_MODELS_DIR: metricsModelsDir() } });
    const data = await list(ctx);
    assert.deepEqual(data.map((entry) => [entry.metric, entry.network, entry.available, entry.reason]), ORDER.map((metric) => [metric, NETWORK[metric as keyof typeof NETWORK], true, null]));
  });

  test('with some networks, the others are unavailable and the reason names the missing files', async (t) => {
    const ctx = await withTestApp(t, { env: { METRICS_MODELS_DIR: metricsModelsDir(['lpips', 'hps']) } });
    const data = await list(ctx);
    assert.deepEqual(data.filter((entry) => entry.available).map((entry) => entry.metric), ['hps', 'lpips']);
    for (const entry of data.filter((e) => !e.available)) {
      assert.match(entry.reason ?? '', new RegExp(entry.network), `${entry.metric}: ${entry.reason}`);
      assert.ok(!(entry.reason ?? '').includes('/tmp/'), 'no server path');
    }
  });
});
