// The service rides out a database crash. It runs as a child process on a Postgres server of
// the test's own, which is stopped with `pg_ctl stop -m immediate` (every backend killed, as a
// crash or a failover kills them) for 10 s, twice the training lease, while a run trains, a
// generation is queued, webhooks are due and clients keep calling the API. Meanwhile every
// API answer is a 503 problem+json naming the database, with Retry-After, within 5 s; the
// process stays alive (/healthz 200, /readyz 503). Once the server is back: the run finishes
// on its first attempt with the same LoRA bytes as a run without the outage, its events are
// all there once and in order, the generation succeeds, every webhook arrives once per
// message id, an upload refused during the outage stored nothing, and fsck is clean.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { projectRoot } from '../../src/paths.js';
import { OwnPostgres } from '../support/own-postgres.js';
import { png } from '../support/images.js';
import { filesBody } from '../support/multipart.js';
import { startReceiver, verified } from '../support/webhook-receiver.js';
import {
  createRun,
  datasetWithPhotos,
  issueKey,
  openDatabase,
  pollUntil,
  readSafetensors,
  sleep,
  startService,
  waitForFinish,
  type HttpResponse,
  type ServiceProcess,
} from './service-process.js';

const LEASE_MS = 5_000;
const OUTAGE_MS = 2 * LEASE_MS;
/** Long enough (about 80 ms a step) that the run trains on through the outage. */
const PARAMS = { resolution: 128, max_steps: 200, checkpoint_every: 50, rank: 4, alpha: 4, seed: 4321 };
const DATABASE_UNAVAILABLE = 'tag:sdxl-lora-service,2026:problem:database-unavailable';

interface Answer {
  what: string;
  status: number;
  ms: number;
  type?: string;
  retryAfter?: string;
  contentType?: string;
}

async function timed(what: string, request: () => Promise<HttpResponse>): Promise<Answer> {
  const started = performance.now();
  const response = await request();
  const ms = performance.now() - started;
  const problem = /^application\/problem\+json/.test(String(response.headers['content-type'])) ? response.json<{ type: string }>() : undefined;
  return {
    what, status: response.status, ms: Math.round(ms),
    ...(problem === undefined ? {} : { type: problem.type }),
    ...(response.headers['retry-after'] === undefined ? {} : { retryAfter: String(response.headers['retry-after']) }),
    contentType: String(response.headers['content-type']),
  };
}

test('Postgres crashes for twice the lease while a run trains: the API answers 503s, and the run, the generation, the webhooks and the uploads come out whole', {
  skip: OwnPostgres.skipReason(),
  timeout: 300_000,
}, async (t) => {
  const postgres = await OwnPostgres.create(t);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-database-outage-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const receiver = await startReceiver(t);
  receiver.answer = () => ({ status: 200 });
  const service = await startService(t, {
    name: 'outage',
    databaseUrl: postgres.url,
    dataDir,
    env: { TRAINING_LEASE_MS: String(LEASE_MS), TRAINING_SLOTS: '1', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' },
  });
  const context = () => `${service.tail()}\n---- the test's Postgres log:\n${postgres.log().split('\n').slice(-20).join('\n')}`;
  const db = openDatabase(postgres.url);
  const auth = await issueKey(db);
  await db.close();
  const endpoint = await service.request('POST', '/v1/webhook-endpoints', { headers: auth, json: { url: receiver.url } });
  assert.equal(endpoint.status, 201, endpoint.body);
  const { secret } = endpoint.json<{ secret: string }>();
  const datasetId = await datasetWithPhotos(service, auth, 3);

  const reference = await createRun(service, auth, datasetId, PARAMS);
  const referenceDone = await waitForFinish(service, auth, reference.id, 120_000);
  assert.equal(referenceDone.status, 'succeeded', JSON.stringify(referenceDone.error));

  const run = await createRun(service, auth, datasetId, PARAMS);
  const stepAtCrash = await pollUntil('the run to train', async () => {
    const view = (await service.request('GET', `/v1/training-runs/${run.id}`, { headers: auth })).json<{ progress: { phase: string; step: number } | null }>();
    return view.progress?.phase === 'training' && view.progress.step >= 5 ? view.progress.step : undefined;
  }, { context });
  const generation = await service.request('POST', '/v1/generations', { headers: auth, json: { model: 'sdxl-tiny-demo', prompt: 'a dog', steps: 20 } });
  assert.equal(generation.status, 202, generation.body);
  const generationId = generation.json<{ id: string }>().id;
  const upload = filesBody([{ name: 'late.png', contentType: 'image/png', data: await png({ width: 256, height: 256, seed: 77 }) }]);

  await postgres.crash();
  const crashedAt = performance.now();
  const answers: Answer[] = [];
  const health: number[] = [];
  while (performance.now() - crashedAt < OUTAGE_MS) {
    answers.push(
      await timed('GET run', () => service.request('GET', `/v1/training-runs/${run.id}`, { headers: auth })),
      await timed('GET datasets', () => service.request('GET', '/v1/datasets', { headers: auth })),
      await timed('POST dataset', () => service.request('POST', '/v1/datasets', { headers: auth, json: { name: 'during the outage' } })),
      await timed('POST images', () => service.request('POST', `/v1/datasets/${datasetId}/images`, { headers: { ...auth, ...upload.headers }, body: upload.payload })),
      await timed('GET readyz', () => service.request('GET', '/readyz')),
    );
    health.push((await service.request('GET', '/healthz')).status);
    await sleep(250);
  }
  // The first requests may still find the server shutting down; every later one finds it gone.
  const refused = answers.filter((answer) => answer.status === 503);
  assert.ok(refused.length >= answers.length - 5, `every answer during the outage is a 503:\n${JSON.stringify(answers.filter((a) => a.status !== 503))}`);
  for (const answer of refused) {
    assert.equal(answer.type, DATABASE_UNAVAILABLE, JSON.stringify(answer));
    assert.equal(answer.retryAfter, '5', JSON.stringify(answer));
    assert.match(answer.contentType ?? '', /^application\/problem\+json/, JSON.stringify(answer));
  }
  const slowest = Math.max(...answers.map((answer) => answer.ms));
  assert.ok(slowest < 5_000, `every answer within 5 s (the slowest took ${slowest} ms)`);
  assert.ok(health.every((status) => status === 200), `/healthz stays 200: ${health.join(', ')}`);
  t.diagnostic(`${answers.length} requests during the outage: ${refused.length} answered 503, the slowest in ${slowest} ms`);

  await postgres.start();
  const backAt = performance.now();
  const ready = await pollUntil('the service to be ready again', async () => ((await service.request('GET', '/readyz')).status === 200 ? performance.now() : undefined), { context });
  t.diagnostic(`ready ${Math.round(ready - backAt)} ms after the server was back; the run was at step ${stepAtCrash} of ${PARAMS.max_steps} when it crashed`);
  assert.ok(service.running, 'the process lived through the outage');

  // The run: trained on, its reports waited and landed; the same LoRA as without the outage.
  const done = await waitForFinish(service, auth, run.id, 120_000);
  assert.equal(done.status, 'succeeded', `${JSON.stringify(done.error)}\n${context()}`);
  assert.equal(done.attempt, 1, 'finished on its first attempt');
  const lora = readSafetensors(path.join(dataDir, 'runs', run.id, 'lora.safetensors'));
  const expected = readSafetensors(path.join(dataDir, 'runs', reference.id, 'lora.safetensors'));
  assert.ok(lora.data.equals(expected.data), 'the same LoRA tensors, byte for byte, as the run without the outage');

  const eventsResponse = await service.request('GET', `/v1/training-runs/${run.id}/events?limit=1000`, { headers: auth });
  assert.equal(eventsResponse.status, 200, eventsResponse.body);
  const events = eventsResponse.json<{ data: Array<{ id: string; type: string; data: Record<string, unknown> }> }>().data;
  const ids = events.map((event) => BigInt(event.id));
  assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), 'event ids only grow');
  const seen = new Set<string>();
  // Progress reports and the per-step log lines name their step: each is recorded once (a phase's log line may recur).
  for (const event of events.filter((e) => e.type === 'progress' || (e.type === 'log' && /^step \d+\//.test(String(e.data.message))))) {
    const key = `${event.type} ${JSON.stringify(event.data)}`;
    assert.ok(!seen.has(key), `recorded once: ${key}`);
    seen.add(key);
  }
  const steps = events.filter((e) => e.type === 'progress').map((e) => e.data.step as number);
  assert.ok(steps.every((step, i) => i === 0 || step >= steps[i - 1]!), `progress in order: ${steps.join(', ')}`);
  assert.equal(steps.at(-1), PARAMS.max_steps);
  assert.match(service.output(), /the database is unavailable: the run's reports wait for it/, 'the run reported during the outage, and its reports waited');
  const statuses = events.filter((e) => e.type === 'status').map((e) => e.data.status);
  assert.deepEqual(statuses, ['queued', 'starting', 'running', 'succeeded'], 'never handed back nor claimed again');

  const generated = await pollUntil('the generation to finish', async () => {
    const view = (await service.request('GET', `/v1/generations/${generationId}`, { headers: auth })).json<{ status: string; error: unknown }>();
    return ['succeeded', 'failed', 'canceled'].includes(view.status) ? view : undefined;
  }, { context });
  assert.equal(generated.status, 'succeeded', JSON.stringify(generated.error));

  // The upload refused during the outage stored nothing; sent again, it is stored.
  const images = await service.request('GET', `/v1/datasets/${datasetId}/images?limit=100`, { headers: auth });
  assert.equal(images.json<{ data: unknown[] }>().data.length, 3, 'nothing of the refused uploads');
  const again = await service.request('POST', `/v1/datasets/${datasetId}/images`, { headers: { ...auth, ...upload.headers }, body: upload.payload });
  assert.equal(again.status, 201, again.body);

  // Every webhook: the run's and the generation's ends among them, each message id delivered once.
  const messages = await pollUntil('every webhook message to be delivered', async () => {
    const list = (await service.request('GET', '/v1/webhook-messages?limit=100', { headers: auth })).json<{ data: Array<{ id: string; status: string; event_type: string }> }>().data;
    const ended = ['training_run.succeeded', 'generation.succeeded'].every((type) => list.filter((m) => m.event_type === type).length >= (type === 'training_run.succeeded' ? 2 : 1));
    return ended && list.every((m) => m.status === 'succeeded') ? list : undefined;
  }, { timeoutMs: 60_000, context });
  const received = receiver.received.map((webhook) => webhook.id);
  assert.deepEqual([...received].sort(), messages.map((m) => m.id).sort(), 'each message delivered once, none twice');
  for (const webhook of receiver.received) verified(secret, webhook);

  // The database and DATA_DIR agree: no row without its file, no file without its row.
  const fsck = await new Promise<{ code: number | null; output: string }>((resolve) => {
    execFile('npm', ['run', '--silent', 'fsck'], { cwd: projectRoot, env: { ...process.env, DATABASE_URL: postgres.url, DATA_DIR: dataDir, LOG_LEVEL: 'silent' } },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, output: stdout + stderr }));
  });
  assert.equal(fsck.code, 0, fsck.output);
  assert.match(fsck.output, /: clean/);
});
