// The whole flow over real HTTP, on Postgres and on PGlite: dataset, upload, caption
// (template), train on the demo model, follow the run's Server-Sent Events to its end with
// the generated client's followEvents, then download the LoRA (ETag, If-None-Match, Range)
// and check it with the engine's safetensors reader.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { followEvents } from '../../../openapi/client/index.js';
import { inspectSafetensors } from '../../../src/engine/index.js';
import { DATABASE_MODES, withTestApp } from '../../helper.js';
import { httpApi } from '../../support/http-api.js';
import { png } from '../../support/images.js';

const FINISHED = ['succeeded', 'failed', 'canceled'];

for (const mode of DATABASE_MODES) {
  describe(`training run flow on ${mode.name}`, () => {
    test('upload, caption, train, follow SSE to succeeded, download and read the LoRA', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
      const api = httpApi(base, ctx.auth);

      const dataset = await (await api('POST', '/v1/datasets', { name: 'rex', class_word: 'dog', trigger_token: 'ohwx' })).json() as { id: string };
      const form = new FormData();
      form.append('files', new Blob([new Uint8Array(await png({ width: 256, height: 256, seed: 7 }))], { type: 'image/png' }), 'a.png');
      form.append('files', new Blob([new Uint8Array(await png({ width: 320, height: 256, seed: 8 }))], { type: 'image/png' }), 'b.png');
      assert.equal((await api('POST', `/v1/datasets/${dataset.id}/images`, form)).status, 201);
      const captioning = await api('POST', `/v1/datasets/${dataset.id}/captioning-jobs`, { provider: 'template' });
      assert.equal(captioning.status, 202, await captioning.clone().text());
      const jobUrl = captioning.headers.get('location')!;
      for (let job = await (await api('GET', jobUrl)).json(); !['succeeded', 'failed', 'canceled'].includes(job.status); job = await (await api('GET', jobUrl)).json()) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }

      const params = {
        resolution: 64, max_steps: 4, checkpoint_every: 2, save_peft: true,
        validation: { every: 2, prompts: ['a photo of ohwx dog'], steps: 2 },
      };
      const created = await api('POST', '/v1/training-runs', { dataset_id: dataset.id, model: 'sdxl-tiny-demo', params });
      assert.equal(created.status, 202, await created.clone().text());
      const run = await created.json() as { id: string };

      const events: Array<{ id: string; type: string; data: Record<string, any> }> = [];
      for await (const message of followEvents(`${base}/v1/training-runs/${run.id}/events`, { apiKey: ctx.apiKey, retryMs: 50 })) {
        const event = JSON.parse(message.data);
        assert.equal(message.event, event.type);
        assert.equal(message.id, event.id);
        events.push(event);
      }
      const ids = events.map((e) => BigInt(e.id));
      assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), 'event ids increase');
      const statuses = events.filter((e) => e.type === 'status').map((e) => e.data.status);
      assert.deepEqual(statuses, ['queued', 'starting', 'running', 'succeeded']);
      assert.ok(events.some((e) => e.type === 'progress' && e.data.phase === 'training'), 'progress events');
      assert.deepEqual(events.filter((e) => e.type === 'checkpoint').map((e) => e.data.step), [2, 4], 'a checkpoint every 2 steps and at the end');
      const validations = events.filter((e) => e.type === 'validation');
      assert.ok(validations.some((e) => e.data.step === 2 && e.data.images.length === 1), JSON.stringify(validations));
      assert.ok(events.some((e) => e.type === 'log' && /succeeded/.test(e.data.message)));

      // The run ended: a reconnect is told to stop (204).
      const again = await api('GET', `/v1/training-runs/${run.id}/events`, undefined, { accept: 'text/event-stream', 'last-event-id': events.at(-1)!.id });
      assert.equal(again.status, 204);
      // The same events as JSON pages.
      const page = await (await api('GET', `/v1/training-runs/${run.id}/events?limit=2&after=${events[0]!.id}`)).json();
      assert.deepEqual(page.data.map((e: { id: string }) => e.id), events.slice(1, 3).map((e) => e.id));
      assert.equal(page.has_more, true);
      const logs = await api('GET', `/v1/training-runs/${run.id}/logs`);
      assert.match(logs.headers.get('content-type')!, /^text\/plain/);
      assert.match(await logs.text(), /step 4\/4 loss|succeeded: 4 steps/);

      const finished = await (await api('GET', `/v1/training-runs/${run.id}`)).json();
      assert.ok(FINISHED.includes(finished.status));
      assert.equal(finished.status, 'succeeded', JSON.stringify(finished.error));
      assert.equal(finished.output.lora_url, `/v1/training-runs/${run.id}/artifacts/lora.safetensors`);

      const artifacts = (await (await api('GET', `/v1/training-runs/${run.id}/artifacts`)).json()).data as Array<Record<string, any>>;
      assert.deepEqual([...new Set(artifacts.map((a) => a.kind))].sort(), ['checkpoint', 'lora', 'lora_peft', 'validation_image']);
      const lora = artifacts.find((a) => a.kind === 'lora')!;
      assert.equal(lora.content_url, finished.output.lora_url);

      const download = await api('GET', lora.content_url);
      assert.equal(download.status, 200);
      const bytes = Buffer.from(await download.arrayBuffer());
      assert.equal(bytes.length, lora.byte_size);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), lora.sha256);
      assert.equal(download.headers.get('etag'), `"${lora.sha256}"`);
      assert.equal(download.headers.get('accept-ranges'), 'bytes');
      assert.equal((await api('GET', lora.content_url, undefined, { 'if-none-match': `"${lora.sha256}"` })).status, 304);
      // A broken download resumes: the rest from byte 100, a suffix, and If-Range.
      const rest = await api('GET', lora.content_url, undefined, { range: 'bytes=100-' });
      assert.equal(rest.status, 206);
      assert.equal(rest.headers.get('content-range'), `bytes 100-${bytes.length - 1}/${bytes.length}`);
      assert.deepEqual(Buffer.from(await rest.arrayBuffer()), bytes.subarray(100));
      const tail = await api('GET', lora.content_url, undefined, { range: 'bytes=-10', 'if-range': `"${lora.sha256}"` });
      assert.deepEqual(Buffer.from(await tail.arrayBuffer()), bytes.subarray(bytes.length - 10));
      const stale = await api('GET', lora.content_url, undefined, { range: 'bytes=0-9', 'if-range': '"0000"' });
      assert.equal(stale.status, 200, 'If-Range no longer matching: the whole file');
      await stale.arrayBuffer();
      const past = await api('GET', lora.content_url, undefined, { range: `bytes=${bytes.length}-` });
      assert.equal(past.status, 416);
      assert.equal(past.headers.get('content-range'), `bytes */${bytes.length}`);
      const image = artifacts.find((a) => a.kind === 'validation_image')!;
      const png_ = await api('GET', image.content_url);
      assert.equal(png_.headers.get('content-type'), 'image/png');
      assert.equal(Buffer.from(await png_.arrayBuffer()).subarray(1, 4).toString(), 'PNG');

      // Kohya's layout with its metadata, float16 by default, and our own keys.
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lora-')), 'lora.safetensors');
      fs.writeFileSync(file, bytes);
      const header = await inspectSafetensors(file);
      const names = Object.keys(header.tensors);
      assert.ok(names.length > 0 && names.every((name) => name.startsWith('lora_unet_')), names.slice(0, 3).join());
      assert.ok(names.some((name) => name.endsWith('.lora_down.weight')) && names.some((name) => name.endsWith('.alpha')));
      assert.ok(Object.values(header.tensors).every((info) => info.dtype === 'F16'), 'save_dtype float16');
      assert.equal(header.metadata.ss_network_dim, '16');
      assert.equal(header.metadata['sdxl_lora_service.run_id'], run.id);
      assert.equal(header.metadata['sdxl_lora_service.base_model'], 'sdxl-tiny-demo');
      assert.match(header.metadata['sdxl_lora_service.dataset_hash']!, /^[0-9a-f]{64}$/);
      assert.equal(header.metadata['modelspec.trigger_phrase'], 'ohwx');
    });
  });
}
