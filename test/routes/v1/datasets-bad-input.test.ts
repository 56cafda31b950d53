// Bad input to /v1/datasets: each case answers the right status with an RFC 9457 body
// (naming the field where there is one) and leaves the stored datasets unchanged.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DATABASE_MODES, withTestApp } from '../../helper.js';

/** Small enough that a test can exceed it cheaply. */
const BODY_LIMIT_BYTES = 4096;

interface BadCase {
  name: string;
  method: 'POST' | 'PATCH' | 'GET';
  /** 'existing' targets the dataset made before the cases run. */
  target: 'collection' | 'existing';
  query?: string;
  contentType?: string;
  /** Sent as-is when a string, as JSON otherwise. */
  body?: unknown;
  status: number;
  /** The field the problem's errors[] must name. */
  field?: string;
  type?: string;
}

const cases: BadCase[] = [
  { name: 'malformed JSON on create', method: 'POST', target: 'collection', contentType: 'application/json', body: '{"name": "x",', status: 400, type: 'malformed-json' },
  { name: 'malformed JSON on update', method: 'PATCH', target: 'existing', contentType: 'application/json', body: "{'name': 'x'}", status: 400, type: 'malformed-json' },
  { name: 'empty JSON body', method: 'POST', target: 'collection', contentType: 'application/json', body: '', status: 400, type: 'malformed-json' },
  { name: 'oversize JSON body', method: 'POST', target: 'collection', body: { name: 'big', class_word: 'dog', padding: 'x'.repeat(BODY_LIMIT_BYTES) }, status: 413, type: 'payload-too-large' },
  { name: 'oversize JSON body on update', method: 'PATCH', target: 'existing', body: { name: 'y'.repeat(BODY_LIMIT_BYTES * 2) }, status: 413, type: 'payload-too-large' },
  { name: 'unknown field on create', method: 'POST', target: 'collection', body: { name: 'a', class_word: 'dog', colour: 'red' }, status: 400, field: 'colour' },
  { name: 'unknown field on update', method: 'PATCH', target: 'existing', body: { image_count: 99 }, status: 400, field: 'image_count' },
  { name: 'empty update', method: 'PATCH', target: 'existing', body: {}, status: 400 },
  { name: 'missing name', method: 'POST', target: 'collection', body: { class_word: 'dog' }, status: 400, field: 'name' },
  { name: 'missing class word', method: 'POST', target: 'collection', body: { name: 'a' }, status: 400, field: 'class_word' },
  { name: 'name too long', method: 'POST', target: 'collection', body: { name: 'n'.repeat(101), class_word: 'dog' }, status: 400, field: 'name' },
  { name: 'name of blanks only', method: 'PATCH', target: 'existing', body: { name: '   ' }, status: 400, field: 'name' },
  { name: 'name of the wrong type', method: 'POST', target: 'collection', body: { name: 42, class_word: 'dog' }, status: 400, field: 'name' },
  { name: 'trigger token with spaces', method: 'POST', target: 'collection', body: { name: 'a', class_word: 'dog', trigger_token: 'oh wx' }, status: 400, field: 'trigger_token' },
  { name: 'trigger token with spaces on update', method: 'PATCH', target: 'existing', body: { trigger_token: 'sks dog' }, status: 400, field: 'trigger_token' },
  { name: 'empty class word', method: 'PATCH', target: 'existing', body: { class_word: '' }, status: 400, field: 'class_word' },
  { name: 'JSON array instead of an object', method: 'POST', target: 'collection', body: [{ name: 'a', class_word: 'dog' }], status: 400 },
  { name: 'text/plain body', method: 'POST', target: 'collection', contentType: 'text/plain', body: 'name=a', status: 415, type: 'unsupported-media-type' },
  { name: 'XML body on update', method: 'PATCH', target: 'existing', contentType: 'application/xml', body: '<name>a</name>', status: 415, type: 'unsupported-media-type' },
  { name: 'form-encoded body', method: 'POST', target: 'collection', contentType: 'application/x-www-form-urlencoded', body: 'name=a&class_word=dog', status: 415, type: 'unsupported-media-type' },
  { name: 'cursor that is not base64 JSON', method: 'GET', target: 'collection', query: 'cursor=%25%25garbage', status: 400, field: 'cursor' },
  { name: 'cursor forged around a non-id', method: 'GET', target: 'collection', query: `cursor=${Buffer.from('{"after":"\' OR 1=1 --"}').toString('base64url')}`, status: 400, field: 'cursor' },
  { name: 'limit of zero', method: 'GET', target: 'collection', query: 'limit=0', status: 400, field: 'limit' },
  { name: 'limit above the maximum', method: 'GET', target: 'collection', query: 'limit=101', status: 400, field: 'limit' },
  { name: 'limit that is not a number', method: 'GET', target: 'collection', query: 'limit=ten', status: 400, field: 'limit' },
  { name: 'unknown query parameter', method: 'GET', target: 'collection', query: 'sort=name', status: 400, field: 'sort' },
];

for (const mode of DATABASE_MODES) {
  describe(`bad dataset input on ${mode.name}`, () => {
    test(`${cases.length} bad requests each answer a problem and change nothing`, async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { BODY_LIMIT_BYTES: String(BODY_LIMIT_BYTES) } });
      const created = await ctx.app.inject({ method: 'POST', url: '/v1/datasets', headers: ctx.auth, payload: { name: 'keep', class_word: 'dog' } });
      assert.equal(created.statusCode, 201);
      const existing = created.json().id as string;
      const snapshot = async () =>
        (await ctx.db.query('SELECT * FROM datasets WHERE tenant_id = $1 ORDER BY id', [ctx.tenantId])).rows;
      const before = await snapshot();

      for (const c of cases) {
        await t.test(c.name, async () => {
          const path = c.target === 'existing' ? `/v1/datasets/${existing}` : '/v1/datasets';
          const url = c.query ? `${path}?${c.query}` : path;
          const raw = typeof c.body === 'string';
          const response = await ctx.app.inject({
            method: c.method,
            url,
            headers: {
              ...ctx.auth,
              ...(c.contentType ? { 'content-type': c.contentType } : c.body !== undefined ? { 'content-type': 'application/json' } : {}),
            },
            ...(c.body !== undefined ? { payload: raw ? (c.body as string) : JSON.stringify(c.body) } : {}),
          });
          assert.equal(response.statusCode, c.status, response.body);
          assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
          const problem = response.json();
          assert.equal(problem.status, c.status);
          assert.equal(typeof problem.title, 'string');
          assert.equal(typeof problem.detail, 'string');
          assert.equal(problem.instance, path);
          assert.equal(problem.request_id, response.headers['x-request-id']);
          if (c.type) assert.equal(problem.type, `tag:sdxl-lora-service,2026:problem:${c.type}`);
          if (c.status === 400 && !c.type) {
            assert.equal(problem.type, 'tag:sdxl-lora-service,2026:problem:validation-error');
            assert.ok(Array.isArray(problem.errors) && problem.errors.length > 0, 'validation problems list errors');
          }
          if (c.field) {
            const named = problem.errors.find((e: { field: string }) => e.field === c.field);
            assert.ok(named, `errors name ${c.field}: ${JSON.stringify(problem.errors)}`);
            assert.equal(named.pointer, `/${c.field}`);
            assert.equal(typeof named.message, 'string');
          }
          assert.deepEqual(await snapshot(), before, 'stored datasets unchanged');
        });
      }
    });
  });
}
