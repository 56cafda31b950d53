// Oversized requests reach the client as their problem+json, not as a reset connection. The
// service runs as a child process (a client in the same process as the server never races the
// server's close, so it cannot show this): each request is sent 20 times with Node's fetch
// (undici, what openapi-fetch and our generated client use) and 20 times with curl, and every
// answer must be the refusal, read whole. Before plugins/unread-bodies.ts, fetch got EPIPE on
// 12 of 20 JSON bodies over BODY_LIMIT_BYTES: the server closed the connection while the
// client was still sending.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { filesBody } from '../support/multipart.js';
import { issueKey, startService, useProcessTestBed, type ServiceProcess } from './service-process.js';

const TRIES = 20;
const MiB = 1024 * 1024;
const CURL = '/usr/bin/curl';
const bed = useProcessTestBed('sdxl-oversized-');

interface Sent {
  url: string;
  headers: Record<string, string>;
  body: Buffer;
}

interface Answer {
  status: number;
  contentType: string;
  type: string;
}

/** What each try of `request` got through fetch: its answer, or the error code of a failed send. */
async function viaFetch(service: ServiceProcess, request: Sent): Promise<Array<Answer | string>> {
  const answers: Array<Answer | string> = [];
  for (let i = 0; i < TRIES; i++) {
    try {
      const response = await fetch(`http://127.0.0.1:${service.port}${request.url}`, { method: 'POST', headers: request.headers, body: new Uint8Array(request.body) });
      const problem = (await response.json()) as { type?: string };
      answers.push({ status: response.status, contentType: response.headers.get('content-type') ?? '', type: problem.type ?? '' });
    } catch (error) {
      answers.push(`failed: ${(error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message}`);
    }
  }
  return answers;
}

/** The same through curl (the body from a file, as `curl --data-binary @file` sends it). */
async function viaCurl(service: ServiceProcess, request: Sent): Promise<Array<Answer | string>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sdxl-oversized-'));
  try {
    const file = path.join(dir, 'body');
    await writeFile(file, request.body);
    const headers = Object.entries(request.headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
    const answers: Array<Answer | string> = [];
    for (let i = 0; i < TRIES; i++) {
      const args = ['-sS', '-X', 'POST', ...headers, '--data-binary', `@${file}`, '-w', '\n%{http_code} %{content_type}', `http://127.0.0.1:${service.port}${request.url}`];
      const { stdout } = await promisify(execFile)(CURL, args, { maxBuffer: 4 * MiB }).catch((error: { stdout?: string; stderr?: string }) => ({ stdout: `failed: ${error.stderr}` }));
      const lines = stdout.trimEnd().split('\n');
      const [status, contentType] = (lines.at(-1) ?? '').split(' ');
      try {
        const problem = JSON.parse(lines.slice(0, -1).join('\n')) as { type?: string };
        answers.push({ status: Number(status), contentType: contentType ?? '', type: problem.type ?? '' });
      } catch {
        answers.push(stdout);
      }
    }
    return answers;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function assertAllRefused(answers: Array<Answer | string>, status: number, type: RegExp, client: string): void {
  const wrong = answers.filter((answer) => typeof answer === 'string' || answer.status !== status || !answer.contentType.startsWith('application/problem+json') || !type.test(answer.type));
  assert.equal(wrong.length, 0, `${client}: ${wrong.length} of ${answers.length} tries did not get the ${status} problem: ${JSON.stringify(wrong.slice(0, 3))}`);
}

test('oversized requests get their problem+json, with fetch and with curl', { skip: existsSync(CURL) ? false : `no ${CURL}` }, async (t) => {
  const service = await startService(t, { name: 'oversized', databaseUrl: bed.database.url, dataDir: bed.dataDir, env: { UPLOAD_MAX_REQUEST_BYTES: String(2 * MiB) } });
  const auth = await issueKey(bed.db);
  const created = await service.request('POST', '/v1/datasets', { headers: auth, json: { name: 'oversized', class_word: 'dog' } });
  assert.equal(created.status, 201, created.body);
  const datasetId = created.json<{ id: string }>().id;
  const json = Buffer.from(JSON.stringify({ name: 'x'.repeat(6 * MiB) }));
  const upload = filesBody([{ name: 'big.png', contentType: 'image/png', data: Buffer.alloc(6 * MiB, 7) }]);
  const cases: Array<[string, Sent, number, RegExp]> = [
    ['a 6 MiB JSON body over BODY_LIMIT_BYTES (1 MiB): 413',
      { url: '/v1/datasets', headers: { 'content-type': 'application/json', ...auth }, body: json }, 413, /payload-too-large/],
    ['the same body without an API key: 401, answered before the body is read',
      { url: '/v1/datasets', headers: { 'content-type': 'application/json' }, body: json }, 401, /unauthorized|authentication/],
    ['a 6 MiB upload over UPLOAD_MAX_REQUEST_BYTES (2 MiB): 413, refused part-way through the parts',
      { url: `/v1/datasets/${datasetId}/images`, headers: { ...upload.headers, ...auth }, body: upload.payload }, 413, /too-large/],
    ['a 6 MiB archive over UPLOAD_MAX_REQUEST_BYTES: 413',
      { url: `/v1/datasets/${datasetId}/imports`, headers: { 'content-type': 'application/gzip', ...auth }, body: Buffer.alloc(6 * MiB, 1) }, 413, /too-large/],
  ];
  for (const [title, request, status, type] of cases) {
    await t.test(title, async () => {
      assertAllRefused(await viaFetch(service, request), status, type, 'fetch');
      assertAllRefused(await viaCurl(service, request), status, type, 'curl');
    });
  }
});
