// Every error is application/problem+json: unknown routes, thrown ProblemErrors, plugin
// errors with a 4xx status, and 500s whose details stay out of the response.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp } from '../../src/app.js';
import { ProblemError } from '../../src/errors.js';
import { testConfig } from '../helper.js';

async function appWithRoutes(t: import('node:test').TestContext) {
  const app = await buildApp(await testConfig(), { logger: false });
  t.after(() => app.close());
  app.get('/test/boom', async () => {
    throw new Error('secret connection string postgres://user:pw@db');
  });
  app.get('/test/conflict', async () => {
    throw new ProblemError({ status: 409, type: 'conflict', title: 'Conflict', detail: 'busy', headers: { 'retry-after': '5' } });
  });
  app.get('/test/teapot', async () => {
    throw Object.assign(new Error('plugin says no'), { statusCode: 418 });
  });
  await app.ready();
  return app;
}

function assertProblem(response: { statusCode: number; headers: Record<string, unknown>; json(): any }, status: number) {
  assert.equal(response.statusCode, status);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const problem = response.json();
  for (const member of ['type', 'title', 'instance', 'request_id']) assert.equal(typeof problem[member], 'string', member);
  assert.equal(problem.status, status);
  return problem;
}

test('unknown routes answer a 404 problem, with or without a key', async (t) => {
  const app = await appWithRoutes(t);
  for (const [method, url] of [['GET', '/nope'], ['POST', '/v1/nope'], ['DELETE', '/v1/datasets'], ['GET', '/v2/datasets?x=1']] as const) {
    const problem = assertProblem(await app.inject({ method, url }), 404);
    assert.equal(problem.instance, url.split('?')[0]);
    assert.match(problem.detail, new RegExp(`${method} ${url.split('?')[0]}`));
  }
});

test('a thrown ProblemError keeps its status, type, detail and headers', async (t) => {
  const app = await appWithRoutes(t);
  const response = await app.inject({ method: 'GET', url: '/test/conflict' });
  const problem = assertProblem(response, 409);
  assert.equal(problem.type, 'tag:sdxl-lora-service,2026:problem:conflict');
  assert.equal(problem.detail, 'busy');
  assert.equal(response.headers['retry-after'], '5');
});

test('plugin errors with a 4xx status pass their status and message through', async (t) => {
  const app = await appWithRoutes(t);
  const problem = assertProblem(await app.inject({ method: 'GET', url: '/test/teapot' }), 418);
  assert.equal(problem.type, 'about:blank');
  assert.equal(problem.title, "I'm a Teapot");
  assert.equal(problem.detail, 'plugin says no');
});

test('unexpected errors answer 500 without leaking their message', async (t) => {
  const app = await appWithRoutes(t);
  const response = await app.inject({ method: 'GET', url: '/test/boom' });
  const problem = assertProblem(response, 500);
  assert.doesNotMatch(response.body, /secret|postgres:\/\//);
  assert.equal(problem.title, 'Internal Server Error');
});

test('request ids: a plain incoming x-request-id is kept, anything else replaced', async (t) => {
  const app = await appWithRoutes(t);
  const kept = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'abc-123' } });
  assert.equal(kept.headers['x-request-id'], 'abc-123');
  assert.equal(kept.json().request_id, 'abc-123');
  const replaced = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'bad id\nwith newline' } });
  assert.match(String(replaced.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  const fresh = await app.inject({ method: 'GET', url: '/healthz' });
  assert.match(String(fresh.headers['x-request-id']), /^[0-9a-f-]{36}$/);
});

test('a request that arrives while the server closes gets a 503 problem and Connection: close', async (t) => {
  const net = await import('node:net');
  const app = await buildApp(await testConfig(), { logger: false });
  t.after(() => app.close());
  app.get('/test/slow', async () => {
    await new Promise((resolve) => setTimeout(resolve, 400));
    return { done: true };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as import('node:net').AddressInfo;

  // A slow request is in flight on a keep-alive connection when close() begins; the
  // client then sends a second request on that connection (pipelined).
  const socket = net.connect({ host: '127.0.0.1', port });
  let received = '';
  socket.on('data', (chunk) => (received += chunk.toString()));
  const ended = new Promise((resolve) => socket.on('close', resolve));
  socket.write('GET /test/slow HTTP/1.1\r\nHost: test\r\n\r\n');
  await new Promise((resolve) => setTimeout(resolve, 150));
  const closed = app.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.write('GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n');
  await ended;
  await closed;

  const responses = received.split(/(?=HTTP\/1\.1 )/);
  assert.equal(responses.length, 2, received);
  assert.match(responses[0]!, /^HTTP\/1\.1 200 /, 'the in-flight request finished');
  assert.match(responses[0]!, /"done":true/);
  assert.match(responses[1]!, /^HTTP\/1\.1 503 /);
  assert.match(responses[1]!, /content-type: application\/problem\+json/i);
  assert.match(responses[1]!, /connection: close/i);
  assert.match(responses[1]!, /"type":"tag:sdxl-lora-service,2026:problem:shutting-down"/);
});
