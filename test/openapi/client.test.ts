// What an SDK user gets from openapi/openapi.json: a TypeScript client generated with
// openapi-typescript, used through openapi-fetch. The client program in
// fixtures/every-operation.ts must type-check with `tsc --strict` against types generated
// now from the committed document, and must run against the real server, calling every
// operation of the document.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { clientSchemaFile, generateClientSchema } from '../../scripts/openapi-client.js';
import { openapiFile, projectRoot } from '../../src/paths.js';
import { withTestApp } from '../helper.js';
import { jpeg, png } from '../support/images.js';
import { buildTar } from '../support/tar.js';
import { callEveryOperation } from './fixtures/every-operation.js';
import { goldenDir } from '../engine/fixtures.js';

const PROGRAM = path.join(projectRoot, 'test', 'openapi', 'fixtures', 'every-operation.ts');
const COMMITTED_TYPES_IMPORT = '../../../openapi/client/schema.js';
const committedDocument = fs.readFileSync(openapiFile, 'utf8');
const document = JSON.parse(committedDocument) as { paths: Record<string, Record<string, { operationId?: string }>> };

// Inside the project, so that the program resolves openapi-fetch and @types/node from node_modules.
const scratch = path.join(projectRoot, 'node_modules', '.cache', `sdxl-client-check-${randomBytes(4).toString('hex')}`);
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Writes the program beside `schema` (generated types) and runs tsc --strict on it. */
function typeCheckProgram(name: string, schema: string): { status: number | null; output: string } {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'schema.d.ts'), schema);
  const program = fs.readFileSync(PROGRAM, 'utf8');
  assert.ok(program.includes(COMMITTED_TYPES_IMPORT), 'the program imports the generated types');
  fs.writeFileSync(path.join(dir, 'every-operation.ts'), program.replace(COMMITTED_TYPES_IMPORT, './schema.js'));
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2022', 'DOM'],
        types: ['node'],
        noEmit: true,
        skipLibCheck: true,
      },
      files: ['every-operation.ts', 'schema.d.ts'],
    }),
  );
  const tsc = spawnSync(process.execPath, [path.join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], {
    encoding: 'utf8',
  });
  return { status: tsc.status, output: tsc.stdout + tsc.stderr };
}

function operationIds(): string[] {
  return Object.values(document.paths)
    .flatMap((item) => Object.values(item).map((operation) => operation.operationId))
    .filter((id): id is string => id !== undefined)
    .sort();
}

test('openapi/client/schema.d.ts is what openapi-typescript generates from the document (run `npm run openapi`)', async () => {
  assert.equal(fs.readFileSync(clientSchemaFile, 'utf8'), await generateClientSchema(committedDocument));
});

test('the client program type-checks with tsc --strict against types generated from the committed document', async () => {
  const { status, output } = typeCheckProgram('committed', await generateClientSchema(committedDocument));
  assert.equal(status, 0, output);
});

test('the same program does not type-check when the document marks a defaulted field required', async () => {
  // The defect SDK users met: `limit` (default 20) and `overwrite` (default false) marked required.
  const broken = JSON.parse(committedDocument) as {
    paths: Record<string, Record<string, { parameters?: Array<{ name: string; required?: boolean }>; requestBody?: any }>>;
  };
  for (const parameter of broken.paths['/v1/datasets']!.get!.parameters!) if (parameter.name === 'limit') parameter.required = true;
  broken.paths['/v1/datasets/{id}/captioning-jobs']!.post!.requestBody.content['application/json'].schema.required = ['overwrite'];
  const { status, output } = typeCheckProgram('defaults-required', await generateClientSchema(JSON.stringify(broken)));
  assert.notEqual(status, 0);
  assert.match(output, /every-operation\.ts\(\d+,\d+\): error TS\d+/);
  assert.match(output, /Property 'overwrite' is missing/);
  // GET /v1/datasets without a query no longer compiles: the required `limit` needs an init argument.
  assert.match(output, /error TS2554: Expected 2 arguments, but got 1/);
});

test('the client program calls every operation against the real server: typed bodies and typed problems', async (t) => {
  // No training worker: the program's run stays queued until it cancels it.
  const ctx = await withTestApp(t, { env: { TRAINING_SLOTS: '0', WEBHOOK_SLOTS: '0' } });
  const address = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const photos = [
    { name: 'rex1.jpg', bytes: await jpeg({ width: 320, height: 384, seed: 11 }) },
    { name: 'rex2.png', bytes: await png({ width: 300, height: 300, seed: 12 }) },
  ];
  const report = await callEveryOperation({
    baseUrl: address,
    apiKey: ctx.apiKey,
    photos,
    sidecar: { name: 'rex1.txt', text: 'a photo of ohwx dog on a beach' },
    lora: { name: 'watercolor.safetensors', bytes: fs.readFileSync(path.join(goldenDir, 'lora', 'tiny_lora_peft.safetensors')) },
    archive: {
      name: 'more-rex.tar',
      bytes: buildTar([
        { name: 'rex/rex3.jpg', data: await jpeg({ width: 320, height: 320, seed: 13 }) },
        { name: 'rex/rex3.txt', data: 'a photo of ohwx dog in a field' },
      ]),
    },
  });

  assert.deepEqual([...new Set(report.called)].sort(), operationIds(), 'every operation of the document is called');

  assert.equal(report.demoModel.id, 'sdxl-tiny-demo');
  assert.equal(report.demoModel.owner, 'server');
  assert.equal(report.problems.deleteServerModel?.status, 403);
  assert.match(report.problems.deleteServerModel!.type, /model-read-only$/);
  assert.ok(report.demoModel.parameters.total > 0);
  assert.match(report.dataset.id, /^ds_/);
  assert.equal(report.dataset.trigger_token, 'ohwx', 'the default trigger token, not sent by the client');
  assert.equal(report.renamed.name, 'Rex');
  assert.equal(report.uploadedStatus, 201);
  assert.equal(report.imageCount, 2);
  assert.ok(report.contentBytes > 0);
  assert.equal(report.job.status, 'succeeded');
  assert.equal(report.job.options.overwrite, false, 'the server filled in the default');
  assert.equal(report.job.progress.skipped, 1, 'the sidecar caption was kept');
  assert.equal(report.datasetImport.status, 'succeeded');
  assert.equal(report.datasetImport.format, 'tar');
  assert.equal(report.datasetImport.filename, 'more-rex.tar');
  assert.deepEqual([report.datasetImport.progress.images_stored, report.datasetImport.progress.captions_attached], [1, 1]);
  assert.equal(report.problems.cancelFinishedImport?.status, 409);
  assert.equal(report.captionAfterEdit, 'a photo of ohwx dog in the snow');
  assert.ok(report.historyLength >= 2);
  assert.ok(report.exportBytes > 22, 'a zip with entries');

  assert.equal(report.trainingRun.status, 'canceled');
  assert.equal(report.trainingRun.params.max_steps, 1000, 'every param defaulted');
  assert.ok(report.runEventCount >= 2, 'queued and canceled');
  assert.equal(report.artifactCount, 0);
  assert.equal(report.lora.layout, 'peft', 'the demo model has the fixture LoRA\'s modules');
  assert.equal(report.generation.status, 'succeeded');
  assert.equal(report.generation.params.width, 128, "the demo model's default_resolution");
  assert.equal(report.generation.loras[0]?.lora_id, report.lora.id);
  assert.ok(report.generationImageBytes > 0);
  assert.equal(report.problems.cancelFinishedGeneration?.status, 409);
  assert.equal(report.webhookEndpoint.description, 'ci');
  assert.deepEqual(report.webhookEndpoint.events, [
    'training_run.succeeded', 'training_run.failed', 'training_run.canceled',
    'captioning_job.succeeded', 'captioning_job.failed', 'captioning_job.canceled',
    'generation.succeeded', 'generation.failed', 'generation.canceled',
    'dataset_import.succeeded', 'dataset_import.failed',
  ]);
  assert.equal(report.ping.event_type, 'ping');
  assert.equal(report.ping.status, 'pending');
  assert.ok(report.rotatedSecretOverlaps, 'a rotated secret keeps the old one signing for a while');
  assert.equal(report.problems.redeliverPending?.status, 409);
  assert.match(report.runLog, /status queued\n.*status canceled\n$/s);
  assert.equal(report.problems.missingArtifact?.status, 404);
  assert.equal(report.problems.cancelCanceledRun!.status, 409);

  const invalid = report.problems.invalidTriggerToken!;
  assert.equal(invalid.status, 400);
  assert.deepEqual(invalid.errors?.map((error) => error.field), ['trigger_token']);
  assert.equal(report.problems.cancelFinishedJob!.status, 409);
  assert.match(report.problems.cancelFinishedJob!.type, /captioning-job-finished$/);
  assert.equal(report.problems.deletedDataset!.status, 404);
});
