// ROLE=api and ROLE=worker as two processes on one database and DATA_DIR, as the Helm chart
// deploys them: the API replica queues a run and never trains it; the worker answers only
// probes and /metrics, is ready once it has loaded the engine and its PRELOAD_MODELS, trains
// the run, and its /metrics shows the training series moving; on SIGTERM it checkpoints the
// run, hands it back and exits 0; a second worker resumes it to success.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createRun,
  datasetWithPhotos,
  getRun,
  issueKey,
  pollUntil,
  sleep,
  startService,
  useProcessTestBed,
  waitForFinish,
  type ServiceProcess,
} from './service-process.js';
import { sample } from '../support/metrics.js';

const bed = useProcessTestBed('sdxl-roles-');
const PARAMS = { resolution: 128, max_steps: 100_000, checkpoint_every: 0, save_peft: false, rank: 4, alpha: 4, seed: 3 };

async function scrape(service: ServiceProcess): Promise<string> {
  const response = await service.request('GET', '/metrics');
  assert.equal(response.status, 200, response.body);
  assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return response.body;
}

test('an api replica and a worker: the worker trains, reports metrics, and hands its run back on SIGTERM', { timeout: 240_000 }, async (t) => {
  const api = await startService(t, { name: 'api', databaseUrl: bed.database.url, dataDir: bed.dataDir, env: { ROLE: 'api', TRAINING_SLOTS: '1' } });
  const auth = await issueKey(bed.db);
  const datasetId = await datasetWithPhotos(api, auth, 3);
  const run = await createRun(api, auth, datasetId, PARAMS);

  // The API replica runs no job, whatever TRAINING_SLOTS says.
  await sleep(2500);
  assert.equal((await getRun(api, auth, run.id)).status, 'queued', `the api replica does not train\n${api.tail()}`);

  const startWorker = (name: string) => startService(t, {
    name,
    databaseUrl: bed.database.url,
    dataDir: bed.dataDir,
    env: { ROLE: 'worker', TRAINING_SLOTS: '1', GENERATION_SLOTS: '1', PRELOAD_MODELS: 'sdxl-tiny-demo', MIGRATE_ON_START: 'false' },
  });
  const worker = await startWorker('worker');
  const context = () => `${api.tail(15)}\n${worker.tail(30)}`;

  // Probes and metrics only: the API is not served here.
  assert.equal((await worker.request('GET', '/healthz')).status, 200);
  const notServed = await worker.request('GET', `/v1/training-runs/${run.id}`, { headers: auth });
  assert.equal(notServed.status, 404, 'a worker does not serve the API');
  assert.match(String(notServed.headers['content-type']), /^application\/problem\+json/);
  assert.equal((await worker.request('GET', '/docs')).status, 404, 'nor its documentation');
  const ready = await pollUntil('the worker to be ready', async () => {
    const response = await worker.request('GET', '/readyz');
    if (response.status === 503) assert.match(response.json<{ detail: string }>().detail, /Loading models: sdxl-tiny-demo/);
    return response.status === 200 ? response : undefined;
  }, { timeoutMs: 60_000, context });
  assert.equal(ready.json<{ status: string }>().status, 'ready');
  assert.match(worker.output(), /"msg":"model preloaded"/);

  // The worker claims the run; its metrics move while it trains.
  await pollUntil('the run to train', async () => {
    const current = await getRun(api, auth, run.id);
    return current.status === 'running' && (current.progress?.step ?? 0) >= 2 ? current : undefined;
  }, { timeoutMs: 90_000, intervalMs: 200, context });
  const steps = (text: string) => sample(text, 'sdxl_training_step_seconds_count') ?? 0;
  const first = await pollUntil('a step time in /metrics', async () => {
    const text = await scrape(worker);
    return steps(text) > 0 ? text : undefined;
  }, { timeoutMs: 30_000, intervalMs: 250, context });
  // A later step: polled, since a step's time depends on the machine's load.
  const second = await pollUntil('a later step in /metrics', async () => {
    const text = await scrape(worker);
    return steps(text) > steps(first) ? text : undefined;
  }, { timeoutMs: 30_000, intervalMs: 250, context });
  assert.equal(sample(second, 'sdxl_training_runs_active'), 1);
  assert.ok((sample(second, 'sdxl_training_images_per_second') ?? 0) > 0, 'images per second');
  assert.ok(Number.isFinite(sample(second, 'sdxl_training_loss')), 'a loss');
  assert.equal(sample(second, 'sdxl_training_runs{status="running"}'), 1, 'runs by status, read from the database');
  assert.equal(sample(second, 'sdxl_queue_depth{kind="training"}'), 0);
  assert.equal(sample(second, 'sdxl_model_cache_misses_total'), 1, 'the preloaded model');
  assert.ok((sample(second, 'sdxl_model_cache_resident_bytes') ?? 0) > 0, 'resident bytes');
  assert.ok(sample(second, 'nodejs_eventloop_lag_seconds') !== undefined, 'event-loop lag');
  assert.ok(sample(second, 'sdxl_db_pool_connections{state="max"}') === 10, 'pool size');
  assert.equal(sample(second, 'sdxl_gpu_memory_bytes{state="in_use"}'), undefined, 'no GPU series on the CPU');
  // The API replica counts its requests by route template, never by id.
  const apiMetrics = await scrape(api);
  assert.match(apiMetrics, /http_request_duration_seconds_count\{method="GET",route="\/v1\/training-runs\/:id",status_code="200"\} \d+/);
  assert.doesNotMatch(apiMetrics, new RegExp(run.id), 'no ids in labels');
  assert.equal(sample(apiMetrics, 'sdxl_training_runs_active'), 0, 'the api replica trains nothing');

  // SIGTERM: checkpoint, hand back, exit 0.
  const stopping = performance.now();
  const exit = await worker.stop();
  t.diagnostic(`SIGTERM to exit, with a checkpoint written: ${Math.round(performance.now() - stopping)} ms`);
  assert.equal(exit.code, 0, `exits 0 after SIGTERM\n${worker.tail()}`);
  assert.match(worker.output(), /"msg":"training run checkpointed and handed back \(shutting down\)"/, worker.tail());
  const handedBack = await getRun(api, auth, run.id);
  assert.equal(handedBack.status, 'queued', 'handed back to the queue');

  // The next worker resumes it (attempt 2); a cancel then ends it cleanly.
  const next = await startWorker('next worker');
  const resumed = await pollUntil('the run to resume', async () => {
    const current = await getRun(api, auth, run.id);
    return current.status === 'running' && current.attempt === 2 ? current : undefined;
  }, { timeoutMs: 90_000, intervalMs: 200, context: () => next.tail() });
  assert.equal(resumed.attempt, 2);
  assert.equal((await api.request('POST', `/v1/training-runs/${run.id}/cancel`, { headers: auth })).status, 202);
  assert.equal((await waitForFinish(api, auth, run.id)).status, 'canceled');
  await next.stop();
  await api.stop();
});
