// The committed OpenAPI document passes `redocly lint` with its recommended rules
// (openapi/redocly.yaml): no errors and no warnings, except the findings listed with
// their reasons in openapi/.redocly.lint-ignore.yaml.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { openapiFile, projectRoot } from '../../src/paths.js';

const REDOCLY = path.join(projectRoot, 'node_modules', '@redocly', 'cli', 'bin', 'cli.js');
const CONFIG = path.join(projectRoot, 'openapi', 'redocly.yaml');

interface LintReport {
  totals: { errors: number; warnings: number; ignored: number };
  problems: Array<{ ruleId: string; message: string; location: Array<{ pointer: string }> }>;
}

function lint(file: string): LintReport {
  const result = spawnSync(process.execPath, [REDOCLY, 'lint', file, '--config', CONFIG, '--format=json'], {
    cwd: projectRoot,
    encoding: 'utf8',
    // No telemetry and no update check: the tests reach no network.
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  });
  const json = result.stdout.slice(result.stdout.indexOf('{'));
  assert.ok(json.startsWith('{'), `redocly printed no report (exit ${result.status}): ${result.stderr}`);
  return JSON.parse(json) as LintReport;
}

const describe = (report: LintReport) =>
  report.problems.map((problem) => `${problem.ruleId} at ${problem.location[0]?.pointer}: ${problem.message}`).join('\n');

test('openapi/openapi.json has no lint errors or warnings (recommended rules)', () => {
  const report = lint(openapiFile);
  assert.equal(report.totals.errors, 0, describe(report));
  assert.equal(report.totals.warnings, 0, describe(report));
  assert.equal(report.totals.ignored, 2, 'the two probe entries of .redocly.lint-ignore.yaml, and no others');
});

test('the lint finds what it is there to find: a document without servers is an error', () => {
  const document = JSON.parse(fs.readFileSync(openapiFile, 'utf8')) as { servers?: unknown };
  delete document.servers;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-lint-'));
  try {
    const file = path.join(dir, 'openapi.json');
    fs.writeFileSync(file, JSON.stringify(document));
    const report = lint(file);
    assert.ok(report.totals.errors >= 1, describe(report));
    assert.ok(report.problems.some((problem) => problem.ruleId === 'no-empty-servers'), describe(report));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
