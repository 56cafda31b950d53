// Idempotency-Key on the three create endpoints (datasets, captioning jobs, training runs):
// a retry is answered with the first response and creates nothing; the same key with another
// request is 422, one still in flight 409; keys are per tenant; only 2xx answers are kept,
// expire after 24 h, and an abandoned claim is taken over; on Postgres and PGlite.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { generateOpenApiJson } from '../../../src/cli/openapi.js';
import { IDEMPOTENCY_LIFETIMES, requestFingerprint } from '../../../src/plugins/idempotency.js';
import { createIdempotencyKeysRepository } from '../../../src/repositories/idempotency-keys.js';
import { DATABASE_MODES, withTestApp, type TestApp } from '../../helper.js';
import { createDataset, upload } from '../../support/images-api.js';
import { png } from '../../support/images.js';
import { filesBody } from '../../support/multipart.js';

const DATASET = { name: 'Rex the dog', class_word: 'dog', trigger_token: 'sks' };

function post(ctx: TestApp, url: string, payload: object, key?: string, apiKey = ctx.apiKey) {
  const headers: Record<string, string> = { authorization: `Bearer ${apiKey}` };
  if (key !== undefined) headers['idempotency-key'] = key;
  return ctx.app.inject({ method: 'POST', url, headers, payload });
}

async function count(ctx: TestApp, table: 'datasets' | 'captioning_jobs' | 'training_runs', tenantId = ctx.tenantId): Promise<number> {
  const { rows } = await ctx.db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${table} WHERE tenant_id = $1`, [tenantId]);
  return rows[0]!.n;
}

async function addPhotos(ctx: TestApp, datasetId: string): Promise<void> {
  const response = await upload(ctx, datasetId, filesBody([
    { name: 'a.png', data: await png({ width: 256, height: 256, seed: 11 }) },
    { name: 'b.png', data: await png({ width: 256, height: 256, seed: 12 }) },
  ]));
  assert.equal(response.statusCode, 201, response.body);
}

/** `replay` repeats `first`: status, Location, Content-Type and body, marked as a replay. */
function assertReplay(first: LightMyRequestResponse, replay: LightMyRequestResponse): void {
  assert.equal(replay.statusCode, first.statusCode, replay.body);
  assert.equal(replay.headers.location, first.headers.location);
  assert.equal(replay.headers['content-type'], first.headers['content-type']);
  assert.equal(replay.body, first.body);
  assert.equal(replay.headers['idempotent-replayed'], 'true');
  assert.equal(first.headers['idempotent-replayed'], undefined);
}

function assertProblem(response: LightMyRequestResponse, status: number, type: string): any {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const problem = response.json();
  assert.equal(problem.type, `tag:sdxl-lora-service,2026:problem:${type}`);
  return problem;
}

function namesHeader(problem: any): void {
  assert.ok(
    problem.errors.some((e: { in: string; field: string }) => e.in === 'headers' && e.field === 'idempotency-key'),
    JSON.stringify(problem),
  );
}

for (const mode of DATABASE_MODES) {
  describe(`Idempotency-Key on ${mode.name}`, () => {
    test('a dataset create is replayed with its status, Location and body, and creates nothing more', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const key = randomUUID();
      const first = await post(ctx, '/v1/datasets', DATASET, key);
      assert.equal(first.statusCode, 201, first.body);
      assert.equal(first.headers.location, `/v1/datasets/${first.json().id}`);
      // Same body with its keys in another order: the same request.
      const replay = await post(ctx, '/v1/datasets', { trigger_token: 'sks', class_word: 'dog', name: 'Rex the dog' }, key);
      assertReplay(first, replay);
      assert.equal(await count(ctx, 'datasets'), 1);

      // Without the header nothing changes: each request creates.
      assert.equal((await post(ctx, '/v1/datasets', DATASET)).statusCode, 201);
      assert.equal((await post(ctx, '/v1/datasets', DATASET)).statusCode, 201);
      assert.equal(await count(ctx, 'datasets'), 3);
    });

    test('a captioning job create is replayed; a 409 before it was not kept, so the same retry ran', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const url = `/v1/datasets/${datasetId}/captioning-jobs`;
      const key = randomUUID();
      assertProblem(await post(ctx, url, { provider: 'template' }, key), 409, 'dataset-empty');

      await addPhotos(ctx, datasetId);
      const first = await post(ctx, url, { provider: 'template' }, key);
      assert.equal(first.statusCode, 202, first.body);
      assert.equal(first.headers.location, `/v1/captioning-jobs/${first.json().id}`);
      const replay = await post(ctx, url, { provider: 'template' }, key);
      assertReplay(first, replay);
      assert.equal(await count(ctx, 'captioning_jobs'), 1);

      // The same key on another dataset is another request.
      const other = await createDataset(ctx);
      assertProblem(await post(ctx, `/v1/datasets/${other}/captioning-jobs`, { provider: 'template' }, key), 422, 'idempotency-key-reused');
      assert.equal(await count(ctx, 'captioning_jobs'), 1);
    });

    test('a training run create is replayed; a 422 before it was not kept, so a corrected retry ran', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { TRAINING_SLOTS: '0' } });
      const datasetId = await createDataset(ctx);
      await addPhotos(ctx, datasetId);
      const key = randomUUID();
      const wrong = await post(ctx, '/v1/training-runs', { dataset_id: datasetId, model: 'no-such-model' }, key);
      assertProblem(wrong, 422, 'model-not-found');

      const body = { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { resolution: 64, max_steps: 3 } };
      const first = await post(ctx, '/v1/training-runs', body, key);
      assert.equal(first.statusCode, 202, first.body);
      assert.equal(first.headers.location, `/v1/training-runs/${first.json().id}`);
      const replay = await post(ctx, '/v1/training-runs', body, key);
      assertReplay(first, replay);
      assert.equal(await count(ctx, 'training_runs'), 1);
    });

    test('the same key with another body is 422 naming the header, and creates nothing', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const key = randomUUID();
      assert.equal((await post(ctx, '/v1/datasets', DATASET, key)).statusCode, 201);
      const problem = assertProblem(await post(ctx, '/v1/datasets', { ...DATASET, name: 'Rex' }, key), 422, 'idempotency-key-reused');
      namesHeader(problem);
      assert.equal(await count(ctx, 'datasets'), 1);
    });

    test('while the first request is in flight the key is 409 with Retry-After; an abandoned claim is taken over', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const keys = createIdempotencyKeysRepository(ctx.db);
      const key = randomUUID();
      const token = randomUUID();
      const fingerprint = requestFingerprint('POST', '/v1/datasets', {}, DATASET);
      assert.equal(await keys.claim(ctx.tenantId, key, fingerprint, token, IDEMPOTENCY_LIFETIMES), true);
      assert.equal(await keys.claim(ctx.tenantId, key, fingerprint, randomUUID(), IDEMPOTENCY_LIFETIMES), false, 'one claim at a time');

      const busy = await post(ctx, '/v1/datasets', DATASET, key);
      const problem = assertProblem(busy, 409, 'idempotency-key-in-flight');
      assert.equal(busy.headers['retry-after'], '1');
      namesHeader(problem);
      // Another body is refused as such even while the first runs.
      assertProblem(await post(ctx, '/v1/datasets', { ...DATASET, name: 'Rex' }, key), 422, 'idempotency-key-reused');
      assert.equal(await count(ctx, 'datasets'), 0);

      // A claim older than 5 minutes was left by a process that died: the next request runs.
      await ctx.db.query("UPDATE idempotency_keys SET created_at = now() - interval '6 minutes' WHERE tenant_id = $1 AND key = $2", [ctx.tenantId, key]);
      const first = await post(ctx, '/v1/datasets', DATASET, key);
      assert.equal(first.statusCode, 201, first.body);
      assert.equal(await keys.release(ctx.tenantId, key, token), false, 'the old claim cannot free its successor');
      assertReplay(first, await post(ctx, '/v1/datasets', DATASET, key));
      assert.equal(await count(ctx, 'datasets'), 1);
    });

    test('requests racing with one key create one resource', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const key = randomUUID();
      const responses = await Promise.all(Array.from({ length: 6 }, () => post(ctx, '/v1/datasets', DATASET, key)));
      const created = responses.filter((r) => r.statusCode === 201);
      assert.ok(created.length >= 1, responses.map((r) => r.body).join('\n'));
      for (const response of responses) {
        if (response.statusCode !== 201) assertProblem(response, 409, 'idempotency-key-in-flight');
      }
      assert.equal(new Set(created.map((r) => r.json().id)).size, 1);
      assert.equal(await count(ctx, 'datasets'), 1);
    });

    test('keys are per tenant: another tenant\'s same key creates its own resource', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const otherKey = await ctx.createTenantKey();
      const key = randomUUID();
      const mine = await post(ctx, '/v1/datasets', DATASET, key);
      const theirs = await post(ctx, '/v1/datasets', DATASET, key, otherKey);
      assert.equal(mine.statusCode, 201);
      assert.equal(theirs.statusCode, 201, theirs.body);
      assert.notEqual(theirs.json().id, mine.json().id);
      assert.equal(theirs.headers['idempotent-replayed'], undefined);
      assert.equal(await count(ctx, 'datasets'), 1);
    });

    test('an invalid key is 400 naming the header, and creates nothing', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      for (const key of ['', 'k'.repeat(256), 'tab\there', 'caf\u00e9']) {
        const problem = assertProblem(await post(ctx, '/v1/datasets', DATASET, key), 400, 'validation-error');
        namesHeader(problem);
      }
      assert.equal(await count(ctx, 'datasets'), 0);
      const { rows } = await ctx.db.query('SELECT key FROM idempotency_keys WHERE tenant_id = $1', [ctx.tenantId]);
      assert.deepEqual(rows, []);
      // The longest and widest key that is allowed.
      assert.equal((await post(ctx, '/v1/datasets', DATASET, '!' + ' ~'.repeat(127))).statusCode, 201);
    });

    test('a response stored more than 24 h ago is not replayed: the request runs anew', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const key = randomUUID();
      const old = await post(ctx, '/v1/datasets', DATASET, key);
      assert.equal(old.statusCode, 201);
      await ctx.db.query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE tenant_id = $1 AND key = $2", [ctx.tenantId, key]);
      const fresh = await post(ctx, '/v1/datasets', DATASET, key);
      assert.equal(fresh.statusCode, 201, fresh.body);
      assert.equal(fresh.headers['idempotent-replayed'], undefined);
      assert.notEqual(fresh.json().id, old.json().id);
      assertReplay(fresh, await post(ctx, '/v1/datasets', DATASET, key));
      assert.equal(await count(ctx, 'datasets'), 2);
    });
  });
}

test('the document shows the optional Idempotency-Key header and its 409/422 on the create operations only', async () => {
  const document = JSON.parse(await generateOpenApiJson()) as {
    paths: Record<string, Record<string, { operationId: string; parameters?: Array<{ in: string; name: string; required?: boolean }>; responses: Record<string, unknown> }>>;
  };
  const withHeader: string[] = [];
  for (const item of Object.values(document.paths)) {
    for (const operation of Object.values(item)) {
      const header = operation.parameters?.find((p) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key');
      if (header === undefined) continue;
      withHeader.push(operation.operationId);
      assert.notEqual(header.required, true, operation.operationId);
      assert.ok(operation.responses['409'] && operation.responses['422'], operation.operationId);
    }
  }
  assert.deepEqual(withHeader.sort(), ['createCaptioningJob', 'createDataset', 'createDatasetImport', 'createGeneration', 'createTrainingRun', 'createWebhookEndpoint']);
});
