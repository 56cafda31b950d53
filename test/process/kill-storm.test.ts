// A kill -9 storm leaves the database and DATA_DIR in agreement. The service runs as a child
// process on a real Postgres; ten times, it is started, given uploads, training runs and
// generations at once, and killed with SIGKILL at a random moment while they are in flight.
// A last process then finishes whatever the dead ones left (every run and generation ends,
// none failed), and fsck finds no row without its file, no file without its row.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths.js';
import { png } from '../support/images.js';
import { filesBody } from '../support/multipart.js';
import {
  TERMINAL_STATUSES,
  datasetWithPhotos,
  issueKey,
  pollUntil,
  sleep,
  startService,
  useProcessTestBed,
  type ServiceProcess,
} from './service-process.js';

const run = promisify(execFile);
const bed = useProcessTestBed('sdxl-kill-storm-');
const KILLS = 10;
/** Short: a dead process's jobs are claimed again soon by the next one. */
const ENV = { TRAINING_LEASE_MS: '2000', TENANT_MAX_QUEUED_RUNS: '100', TENANT_MAX_QUEUED_GENERATIONS: '100' };

/** Sends work without waiting for it: the kill comes while it is in flight. */
function fire(service: ServiceProcess, auth: { authorization: string }, datasetId: string, round: number): Array<Promise<unknown>> {
  const upload = (async () => {
    const body = filesBody(await Promise.all([0, 1].map(async (i) => ({
      name: `round-${round}-${i}.png`, contentType: 'image/png', data: await png({ width: 256, height: 256, seed: 1000 + 10 * round + i }),
    }))));
    return service.request('POST', `/v1/datasets/${datasetId}/images`, { headers: { ...auth, ...body.headers }, body: body.payload });
  })();
  const runPosted = service.request('POST', '/v1/training-runs', {
    headers: auth, json: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { resolution: 64, max_steps: 30, checkpoint_every: 5, rank: 4, alpha: 4, seed: round } },
  });
  const generation = service.request('POST', '/v1/generations', { headers: auth, json: { model: 'sdxl-tiny-demo', prompt: `round ${round}`, steps: 8 } });
  // A killed process answers nothing more: its requests fail, which is what this storm is.
  return [upload, runPosted, generation].map((request) => request.catch(() => undefined));
}

test('ten kill -9 at random moments during uploads, runs and generations: the last process finishes every job and fsck is clean', { timeout: 600_000 }, async (t) => {
  const first = await startService(t, { name: 'setup', databaseUrl: bed.database.url, dataDir: bed.dataDir, env: ENV });
  const auth = await issueKey(bed.db);
  const datasetId = await datasetWithPhotos(first, auth, 2);
  await first.stop();

  for (let round = 0; round < KILLS; round++) {
    const service = await startService(t, { name: `storm ${round}`, databaseUrl: bed.database.url, dataDir: bed.dataDir, env: ENV });
    const inFlight = fire(service, auth, datasetId, round);
    await sleep(100 + Math.floor(Math.random() * 2500));
    await service.kill();
    await Promise.all(inFlight);
  }

  const last = await startService(t, { name: 'after the storm', databaseUrl: bed.database.url, dataDir: bed.dataDir, env: ENV });
  const ended = await pollUntil('every run and generation to end', async () => {
    const { rows } = await bed.db.query<{ kind: string; status: string; error_code: string | null; n: number }>(
      `SELECT 'run' AS kind, status, error_code, count(*)::integer AS n FROM training_runs GROUP BY status, error_code
        UNION ALL SELECT 'generation', status, error_code, count(*)::integer FROM generations GROUP BY status, error_code`);
    return rows.every((row) => TERMINAL_STATUSES.includes(row.status)) ? rows : undefined;
  }, { timeoutMs: 300_000, intervalMs: 1000, context: () => last.tail() });
  t.diagnostic(`after ${KILLS} kills: ${ended.map((row) => `${row.n} ${row.kind}(s) ${row.status}${row.error_code === null ? '' : ` (${row.error_code})`}`).join(', ')}`);
  // A job whose process died under it too often gives up (attempts_exhausted), by design; nothing else fails.
  assert.deepEqual(ended.filter((row) => row.status !== 'succeeded' && row.error_code !== 'attempts_exhausted'), [], 'every other job succeeded');
  await last.stop();

  const fsck = await run('npm', ['run', '--silent', 'fsck'], { cwd: projectRoot, env: { ...process.env, DATABASE_URL: bed.database.url, DATA_DIR: bed.dataDir, LOG_LEVEL: 'silent' } })
    .catch((error: { stdout: string; stderr: string }) => assert.fail(`fsck found problems:\n${error.stdout}${error.stderr}`));
  assert.match(fsck.stdout, /: clean/);
});
