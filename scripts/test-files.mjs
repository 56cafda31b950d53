#!/usr/bin/env node
// The TypeScript test files, sorted, for `npm run test:node`; with --second-runtime, those
// worth a second run on another Node.js major (test:node24). Left out of the second run: the
// files whose minutes are the native engine's (training and sampling on the demo models) or
// Chromium's. What they run of our TypeScript (the training and generation workers, the
// reporters, event streams) runs on the second runtime in the files it keeps: training-runs
// trains through the worker, generations samples, crash-resume kills and resumes a run, and
// the Node-API addon is ABI-stable, so one build serves both majors.
//
//   node scripts/test-files.mjs [--second-runtime]
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const ENGINE_BOUND = new Set([
  'test/console/console.e2e.test.ts',
  'test/engine/concurrency.test.ts',
  'test/engine/lora-concurrency.test.ts',
  'test/engine/train.test.ts',
  'test/process/backup-restore.test.ts',
  'test/process/database-outage.test.ts',
  'test/process/kill-storm.test.ts',
  'test/process/large-dataset-training.test.ts',
  'test/routes/v1/full-finetune-flow.test.ts',
  'test/routes/v1/generation-evaluation.test.ts',
  'test/routes/v1/multi-device-training.test.ts',
  'test/routes/v1/prior-preservation.test.ts',
  'test/routes/v1/quality-metrics.test.ts',
  'test/routes/v1/sd15-flow.test.ts',
  'test/routes/v1/training-run-flow.test.ts',
  'test/routes/v1/training-run-metrics.test.ts',
  'test/routes/v1/training-runs-epochs-split.test.ts',
  'test/routes/v1/training-runs-families.test.ts',
]);

const args = process.argv.slice(2);
if (args.some((arg) => arg !== '--second-runtime')) {
  console.error('usage: node scripts/test-files.mjs [--second-runtime]');
  process.exit(2);
}
const files = readdirSync(path.join(root, 'test'), { recursive: true })
  .map((name) => path.posix.join('test', String(name).split(path.sep).join('/')))
  .filter((name) => name.endsWith('.test.ts'))
  .sort();
for (const name of ENGINE_BOUND) {
  if (!files.includes(name)) {
    console.error(`test-files: ${name} is listed as engine-bound but does not exist`);
    process.exit(1);
  }
}
const chosen = args.includes('--second-runtime') ? files.filter((name) => !ENGINE_BOUND.has(name)) : files;
console.log(chosen.join('\n'));
