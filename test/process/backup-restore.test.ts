// A backup restores, done as README "Backups" says: the database dumped with pg_dump first,
// then DATA_DIR copied; restored with pg_restore into a new database beside a copy of the
// volume. The service started on the restored pair serves every resource as the original did
// (a dataset's images, a trained run and its LoRA, the LoRA, a generation's image), and fsck
// finds them in agreement.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths.js';
import { createScratchDatabase } from '../helper.js';
import {
  createRun,
  datasetWithPhotos,
  issueKey,
  startService,
  useProcessTestBed,
  waitForFinish,
  type ServiceProcess,
} from './service-process.js';

const run = promisify(execFile);
const bed = useProcessTestBed('sdxl-backup-');

/** The GET answers a client reads its resources by: each must come back byte for byte after the restore. */
async function readBack(service: ServiceProcess, auth: { authorization: string }, urls: string[]): Promise<Map<string, Buffer>> {
  const answers = new Map<string, Buffer>();
  for (const url of urls) {
    const response = await service.request('GET', url, { headers: auth });
    assert.equal(response.status, 200, `${url}: ${response.body.slice(0, 300)}`);
    answers.set(url, response.bytes);
  }
  return answers;
}

test('pg_dump, then a copy of DATA_DIR, restore to a service that serves every resource as before, and fsck is clean', { timeout: 300_000 }, async (t) => {
  const dumpMajor = Number(/(\d+)/.exec((await run('pg_dump', ['--version'])).stdout)?.[1]);
  const { rows } = await bed.db.query<{ version: string }>("SELECT current_setting('server_version_num') AS version");
  const serverMajor = Math.floor(Number(rows[0]!.version) / 10_000);
  if (!(dumpMajor >= serverMajor)) {
    t.skip(`pg_dump ${dumpMajor} cannot dump a Postgres ${serverMajor} server`);
    return;
  }

  const original = await startService(t, { name: 'original', databaseUrl: bed.database.url, dataDir: bed.dataDir });
  const auth = await issueKey(bed.db);
  const datasetId = await datasetWithPhotos(original, auth, 3);
  const trained = await createRun(original, auth, datasetId, { resolution: 128, max_steps: 6, checkpoint_every: 3, rank: 4, alpha: 4, seed: 11 });
  const done = await waitForFinish(original, auth, trained.id, 120_000);
  assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
  const loras = (await original.request('GET', '/v1/loras', { headers: auth })).json<{ data: Array<{ id: string }> }>().data;
  assert.equal(loras.length, 1);
  const generation = await original.request('POST', '/v1/generations', {
    headers: { ...auth, prefer: 'wait=60' }, json: { model: 'sdxl-tiny-demo', prompt: 'a dog', steps: 4, loras: [{ lora_id: loras[0]!.id, scale: 0.8 }] },
  });
  assert.equal(generation.status, 201, generation.body);
  const generationId = generation.json<{ id: string; status: string }>().id;

  const images = (await original.request('GET', `/v1/datasets/${datasetId}/images`, { headers: auth })).json<{ data: Array<{ id: string }> }>().data;
  const artifacts = (await original.request('GET', `/v1/training-runs/${trained.id}/artifacts`, { headers: auth })).json<{ data: Array<{ name: string; content_url: string }> }>().data;
  assert.ok(artifacts.some((artifact) => artifact.name === 'lora.safetensors'), JSON.stringify(artifacts));
  const resources = [`/v1/datasets/${datasetId}`, ...images.map((image) => `/v1/images/${image.id}`), `/v1/loras/${loras[0]!.id}`];
  const files = [
    ...images.map((image) => `/v1/images/${image.id}/content`),
    ...artifacts.map((artifact) => artifact.content_url),
    `/v1/generations/${generationId}/images/0`,
  ];
  const urls = [...resources, ...files];
  const before = await readBack(original, auth, urls);

  // The backup, in README's order: the database, then the volume.
  const backupDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-backup-files-'));
  t.after(() => fs.rmSync(backupDir, { recursive: true, force: true }));
  const dump = path.join(backupDir, 'database.dump');
  await run('pg_dump', ['--format=custom', `--file=${dump}`, bed.database.url]);
  const volume = path.join(backupDir, 'data');
  await run('cp', ['-a', bed.dataDir, volume]);
  await original.stop();

  // The restore: a new database and the copy of the volume.
  const restored = await createScratchDatabase();
  t.after(() => restored.drop());
  await run('pg_restore', ['--no-owner', `--dbname=${restored.url}`, dump]);
  const service = await startService(t, { name: 'restored', databaseUrl: restored.url, dataDir: volume });
  const after = await readBack(service, auth, urls);
  for (const url of resources) assert.deepEqual(JSON.parse(after.get(url)!.toString()), JSON.parse(before.get(url)!.toString()), `${url}: the same resource`);
  for (const url of files) assert.ok(after.get(url)!.equals(before.get(url)!), `${url}: the same bytes`);
  const listed = (await service.request('GET', '/v1/training-runs', { headers: auth })).json<{ data: Array<{ id: string; status: string }> }>().data;
  assert.deepEqual(listed.map((r) => [r.id, r.status]), [[trained.id, 'succeeded']]);

  const fsck = await run('npm', ['run', '--silent', 'fsck'], { cwd: projectRoot, env: { ...process.env, DATABASE_URL: restored.url, DATA_DIR: volume, LOG_LEVEL: 'silent' } });
  assert.match(fsck.stdout, /: clean/);
  await service.stop();
});
