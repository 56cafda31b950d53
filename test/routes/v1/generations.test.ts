// /v1/generations over HTTP with the app's own generation worker on the demo model: sync
// mode (Prefer: wait), the queue, images as PNG with AUTOMATIC1111 parameters or converted,
// seeds, samplers, cancel, list; and the generation.succeeded webhook.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { DATABASE_MODES, withTestApp, type TestApp } from '../../helper.js';
import { generate, pixels } from '../../support/generations-api.js';
import { createDataset, upload } from '../../support/images-api.js';
import { png } from '../../support/images.js';
import { sample } from '../../support/metrics.js';
import { filesBody } from '../../support/multipart.js';
import { startReceiver } from '../../support/webhook-receiver.js';
import { PARAMETERS_KEYWORD, readPngText } from '../../../src/services/png-parameters.js';

const DEMO = 'sdxl-tiny-demo';
const QUICK = { model: DEMO, prompt: 'a photo of a dog on a beach', width: 64, height: 64, steps: 3, seed: 11 };
const FINISHED = ['succeeded', 'failed', 'canceled'];

function post(ctx: TestApp, payload: unknown, headers: Record<string, string> = {}) {
  return ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: { ...ctx.auth, ...headers }, payload: payload as object });
}

async function until(ctx: TestApp, id: string, done: (g: any) => boolean): Promise<any> {
  for (let i = 0; i < 600; i++) {
    const generation = (await ctx.app.inject({ method: 'GET', url: `/v1/generations/${id}`, headers: ctx.auth })).json();
    if (done(generation)) return generation;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`generation ${id} did not get there`);
}

for (const mode of DATABASE_MODES) {
  describe(`generations on ${mode.name}`, () => {
    test('Prefer: wait answers 201 with the finished generation; its PNG carries A1111 parameters; WebP and JPEG by Accept', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const response = await post(ctx, { ...QUICK, negative_prompt: 'blurry', sampler: 'dpmpp_2m_karras', guidance_scale: 6.5 }, { prefer: 'wait=30' });
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(response.headers['preference-applied'], 'wait=30');
      const generation = response.json();
      assert.equal(response.headers.location, `/v1/generations/${generation.id}`);
      assert.match(generation.id, /^gen_/);
      assert.equal(generation.status, 'succeeded', JSON.stringify(generation.error));
      assert.deepEqual(generation.params, {
        prompt: QUICK.prompt, negative_prompt: 'blurry', width: 64, height: 64, steps: 3, guidance_scale: 6.5,
        sampler: 'dpmpp_2m_karras', seed: 11, num_images: 1,
      });
      assert.deepEqual(generation.output, [{ index: 0, seed: 11, width: 64, height: 64, content_url: `/v1/generations/${generation.id}/images/0` }]);
      for (const key of ['queue_seconds', 'load_seconds', 'generate_seconds', 'encode_seconds']) assert.equal(typeof generation.metrics[key], 'number', key);
      const metrics = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
      assert.equal(sample(metrics, 'sdxl_generations_total{status="succeeded"}'), 1, '/metrics');
      assert.equal(sample(metrics, 'sdxl_generation_duration_seconds_count{phase="total"}'), 1);
      assert.equal(sample(metrics, 'sdxl_model_cache_misses_total'), 1, 'the model was loaded once');

      const image = await ctx.app.inject({ method: 'GET', url: generation.output[0].content_url, headers: ctx.auth });
      assert.equal(image.statusCode, 200);
      assert.equal(image.headers['content-type'], 'image/png');
      assert.equal(image.headers.vary, 'Accept');
      const png = image.rawPayload;
      assert.deepEqual(await sharp(png).metadata().then((m) => [m.format, m.width, m.height]), ['png', 64, 64]);
      assert.equal(
        readPngText(png).get(PARAMETERS_KEYWORD),
        `${QUICK.prompt}\nNegative prompt: blurry\nSteps: 3, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 11, Size: 64x64, Model: ${DEMO}`,
      );
      const notModified = await ctx.app.inject({ method: 'GET', url: generation.output[0].content_url, headers: { ...ctx.auth, 'if-none-match': image.headers.etag as string } });
      assert.equal(notModified.statusCode, 304);

      const webp = await ctx.app.inject({ method: 'GET', url: generation.output[0].content_url, headers: { ...ctx.auth, accept: 'image/webp' } });
      assert.equal(webp.headers['content-type'], 'image/webp');
      assert.equal((await sharp(webp.rawPayload).metadata()).format, 'webp');
      assert.deepEqual(await sharp(webp.rawPayload).raw().toBuffer(), await sharp(png).raw().toBuffer(), 'lossless');
      assert.notEqual(webp.headers.etag, image.headers.etag);
      const jpeg = await ctx.app.inject({ method: 'GET', url: generation.output[0].content_url, headers: { ...ctx.auth, accept: 'image/avif, image/jpeg;q=0.9, */*;q=0.1' } });
      assert.equal(jpeg.headers['content-type'], 'image/jpeg');
      const none = await ctx.app.inject({ method: 'GET', url: generation.output[0].content_url, headers: { ...ctx.auth, accept: 'image/avif' } });
      assert.equal(none.statusCode, 406);
      assert.match(String(none.headers['content-type']), /^application\/problem\+json/);
      const missing = await ctx.app.inject({ method: 'GET', url: `/v1/generations/${generation.id}/images/1`, headers: ctx.auth });
      assert.equal(missing.statusCode, 404);
    });

    test('without Prefer the generation is queued (202) and polled to its end; list and cancel', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const response = await post(ctx, QUICK);
      assert.equal(response.statusCode, 202, response.body);
      assert.equal(response.headers['preference-applied'], undefined);
      const queued = response.json();
      const done = await until(ctx, queued.id, (g) => FINISHED.includes(g.status));
      assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
      const list = await ctx.app.inject({ method: 'GET', url: '/v1/generations?status=succeeded&limit=5', headers: ctx.auth });
      assert.deepEqual(list.json().data.map((g: { id: string }) => g.id), [queued.id]);
      const finishedCancel = await ctx.app.inject({ method: 'POST', url: `/v1/generations/${queued.id}/cancel`, headers: ctx.auth });
      assert.equal(finishedCancel.statusCode, 409);
      const other = await ctx.createTenantKey();
      const foreign = await ctx.app.inject({ method: 'GET', url: `/v1/generations/${queued.id}`, headers: { authorization: `Bearer ${other}` } });
      assert.equal(foreign.statusCode, 404);
    });
  });
}

describe('generations: images, seeds and samplers', () => {
  test('image i of a call is the 1-image call with seed + i; a seed makes the same image again, Euler ancestral too; samplers differ', async (t) => {
    const ctx = await withTestApp(t);
    const batch = await generate(ctx, { ...QUICK, num_images: 3, seed: 100 });
    assert.deepEqual(batch.output.map((o: { seed: number }) => o.seed), [100, 101, 102]);
    const single = await generate(ctx, { ...QUICK, num_images: 1, seed: 102 });
    // The same image, up to rounding: a batch of 3 runs other matrix blockings than a batch of 1.
    const [alone, inBatch] = [await pixels(ctx, single.id), await pixels(ctx, batch.id, 2)];
    let largest = 0;
    let total = 0;
    for (let i = 0; i < alone.length; i++) {
      const diff = Math.abs(alone[i]! - inBatch[i]!);
      largest = Math.max(largest, diff);
      total += diff;
    }
    assert.ok(largest <= 3 && total / alone.length < 0.05, `image 2 of the batch vs seed 102 alone: max ${largest}, mean ${total / alone.length}`);
    assert.notDeepEqual(await pixels(ctx, batch.id, 0), await pixels(ctx, batch.id, 1));

    const images = new Map<string, Buffer>();
    for (const sampler of ['euler', 'euler_a', 'dpmpp_2m_karras']) {
      const first = await generate(ctx, { ...QUICK, sampler, seed: 5 });
      const again = await generate(ctx, { ...QUICK, sampler, seed: 5 });
      const bytes = await pixels(ctx, first.id);
      assert.deepEqual(await pixels(ctx, again.id), bytes, `${sampler}: same seed, same image`);
      images.set(sampler, bytes);
    }
    assert.notDeepEqual(images.get('euler'), images.get('euler_a'));
    assert.notDeepEqual(images.get('euler'), images.get('dpmpp_2m_karras'));
  });

  test('a seed left out is chosen and shown; guidance 1 turns CFG off and still makes an image', async (t) => {
    const ctx = await withTestApp(t);
    const { seed: _seed, ...withoutSeed } = QUICK;
    const generation = await generate(ctx, { ...withoutSeed, guidance_scale: 1 });
    assert.ok(Number.isInteger(generation.params.seed) && generation.params.seed >= 0);
    assert.equal(generation.output[0].seed, generation.params.seed);
  });

  test('a queued generation is canceled at once; Prefer: wait gives 202 when the time runs out', async (t) => {
    const ctx = await withTestApp(t, { env: { GENERATION_SLOTS: '0' } });
    const waited = await post(ctx, QUICK, { prefer: 'respond-async, wait=1' });
    assert.equal(waited.statusCode, 202);
    assert.equal(waited.headers['preference-applied'], 'wait=1');
    assert.equal(waited.json().status, 'queued');
    const canceled = await ctx.app.inject({ method: 'POST', url: `/v1/generations/${waited.json().id}/cancel`, headers: ctx.auth });
    assert.equal(canceled.statusCode, 202);
    assert.equal(canceled.json().status, 'canceled');
    assert.equal(canceled.json().output, null);
  });

  test('a generation runs on its own slot while a long training run trains', async (t) => {
    const ctx = await withTestApp(t);
    const datasetId = await createDataset(ctx);
    const uploaded = await upload(ctx, datasetId, filesBody([{ name: 'a.png', data: await png({ width: 256, height: 256, seed: 4 }) }]));
    assert.equal(uploaded.statusCode, 201, uploaded.body);
    const created = await ctx.app.inject({
      method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
      payload: { dataset_id: datasetId, model: DEMO, params: { resolution: 64, max_steps: 100_000, checkpoint_every: 0, save_peft: false } },
    });
    const runUrl = `/v1/training-runs/${created.json().id}`;
    for (let i = 0; i < 600 && (await ctx.app.inject({ method: 'GET', url: runUrl, headers: ctx.auth })).json().status !== 'running'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const generation = await generate(ctx, QUICK);
    assert.equal((await ctx.app.inject({ method: 'GET', url: runUrl, headers: ctx.auth })).json().status, 'running', 'the run still trains');
    assert.ok(generation.metrics.queue_seconds < 5, `waited ${generation.metrics.queue_seconds} s in the queue`);
    await ctx.app.inject({ method: 'POST', url: `${runUrl}/cancel`, headers: ctx.auth });
  });

  test('generation.succeeded reaches a per-request webhook with the generation as data', async (t) => {
    const receiver = await startReceiver(t);
    const ctx = await withTestApp(t, { env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' } });
    const generation = await generate(ctx, { ...QUICK, webhook: { url: receiver.url } });
    assert.deepEqual(generation.webhook, { url: receiver.url, events: ['generation.succeeded', 'generation.failed', 'generation.canceled'] });
    for (let i = 0; i < 100 && receiver.received.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(receiver.received.length, 1);
    const body = JSON.parse(receiver.received[0]!.body);
    assert.equal(body.type, 'generation.succeeded');
    assert.equal(body.data.id, generation.id);
    assert.equal(body.data.output[0].content_url, generation.output[0].content_url);
  });
});
