// Without a loadable native engine (`npm ci && npm start` before `npm run build:native`),
// the models routes answer a 503 problem that says what to do; the rest of the API works.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withTestApp } from '../../helper.js';

// Before anything in this process loads the addon: the only path tried is one that does not exist.
process.env.SDXL_ENGINE_ADDON = '/nonexistent/sdxl_engine.node';

test('GET /v1/models is a 503 engine-unavailable problem naming the build command', async (t) => {
  const ctx = await withTestApp(t);
  const response = await ctx.app.inject({ method: 'GET', url: '/v1/models', headers: ctx.auth });
  assert.equal(response.statusCode, 503);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  assert.match(response.json().type, /engine-unavailable$/);
  assert.match(response.json().detail, /npm run build:native/);
  const datasets = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: ctx.auth });
  assert.equal(datasets.statusCode, 200, 'the rest of the API answers');
});
