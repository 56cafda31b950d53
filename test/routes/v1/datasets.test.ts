// /v1/datasets: CRUD, pagination and tenant isolation, on Postgres and on embedded PGlite.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DATABASE_MODES, withTestApp, type TestApp } from '../../helper.js';

const PROBLEM_JSON = /^application\/problem\+json/;

async function createDataset(t: TestApp, body: Record<string, unknown>, key = t.apiKey) {
  const response = await t.app.inject({
    method: 'POST',
    url: '/v1/datasets',
    headers: { authorization: `Bearer ${key}` },
    payload: body,
  });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

for (const mode of DATABASE_MODES) {
  describe(`datasets on ${mode.name}`, () => {
    test('create answers 201 with the dataset, defaults and a Location', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const response = await ctx.app.inject({
        method: 'POST',
        url: '/v1/datasets',
        headers: ctx.auth,
        payload: { name: 'Rex the dog', class_word: 'dog' },
      });
      assert.equal(response.statusCode, 201);
      const dataset = response.json();
      assert.match(dataset.id, /^ds_[0-9A-HJKMNP-TV-Z]{26}$/);
      assert.equal(dataset.name, 'Rex the dog');
      assert.equal(dataset.trigger_token, 'ohwx');
      assert.equal(dataset.class_word, 'dog');
      assert.equal(dataset.image_count, 0);
      assert.equal(dataset.created_at, dataset.updated_at);
      assert.ok(!Number.isNaN(Date.parse(dataset.created_at)));
      assert.equal(response.headers.location, `/v1/datasets/${dataset.id}`);

      const stored = await ctx.db.query<{ tenant_id: string; name: string }>(
        'SELECT tenant_id, name FROM datasets WHERE id = $1',
        [dataset.id],
      );
      assert.deepEqual(stored.rows, [{ tenant_id: ctx.tenantId, name: 'Rex the dog' }]);
    });

    test('get, patch and delete round-trip', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const created = await createDataset(ctx, { name: 'Style A', class_word: 'style', trigger_token: 'sks' });
      assert.equal(created.trigger_token, 'sks');

      const got = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${created.id}`, headers: ctx.auth });
      assert.equal(got.statusCode, 200);
      assert.deepEqual(got.json(), created);

      await new Promise((resolve) => setTimeout(resolve, 5));
      const patched = await ctx.app.inject({
        method: 'PATCH',
        url: `/v1/datasets/${created.id}`,
        headers: ctx.auth,
        payload: { name: 'Style B', class_word: 'painting' },
      });
      assert.equal(patched.statusCode, 200);
      const after = patched.json();
      assert.equal(after.name, 'Style B');
      assert.equal(after.class_word, 'painting');
      assert.equal(after.trigger_token, 'sks', 'fields not sent stay as they were');
      assert.equal(after.created_at, created.created_at);
      assert.ok(Date.parse(after.updated_at) > Date.parse(created.updated_at), 'updated_at moves on PATCH');

      const deleted = await ctx.app.inject({ method: 'DELETE', url: `/v1/datasets/${created.id}`, headers: ctx.auth });
      assert.equal(deleted.statusCode, 204);
      assert.equal(deleted.body, '');

      const gone = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${created.id}`, headers: ctx.auth });
      assert.equal(gone.statusCode, 404);
      assert.match(String(gone.headers['content-type']), PROBLEM_JSON);
      const again = await ctx.app.inject({ method: 'DELETE', url: `/v1/datasets/${created.id}`, headers: ctx.auth });
      assert.equal(again.statusCode, 404);
    });

    test('unknown and malformed ids answer 404 problems', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      for (const id of ['ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', 'not-an-id']) {
        for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
          const response = await ctx.app.inject({
            method,
            url: `/v1/datasets/${id}`,
            headers: ctx.auth,
            ...(method === 'PATCH' ? { payload: { name: 'x' } } : {}),
          });
          assert.equal(response.statusCode, 404, `${method} ${id}`);
          const problem = response.json();
          assert.equal(problem.status, 404);
          assert.equal(problem.instance, `/v1/datasets/${id}`);
        }
      }
    });

    test('list pages newest first with an opaque cursor until next_cursor is null', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const created: string[] = [];
      for (let i = 0; i < 7; i++) created.push((await createDataset(ctx, { name: `set ${i}`, class_word: 'person' })).id);
      const newestFirst = [...created].reverse();

      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: string = cursor === null ? '?limit=3' : `?limit=3&cursor=${encodeURIComponent(cursor)}`;
        const response = await ctx.app.inject({ method: 'GET', url: `/v1/datasets${query}`, headers: ctx.auth });
        assert.equal(response.statusCode, 200, response.body);
        const page = response.json();
        assert.ok(page.data.length <= 3);
        seen.push(...page.data.map((d: { id: string }) => d.id));
        cursor = page.next_cursor;
        if (cursor !== null) assert.doesNotMatch(cursor, /ds_/, 'the cursor does not show the id in clear');
        pages++;
      } while (cursor !== null && pages < 10);
      assert.equal(pages, 3);
      assert.deepEqual(seen, newestFirst);

      const defaults = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: ctx.auth });
      assert.equal(defaults.json().data.length, 7);
      assert.equal(defaults.json().next_cursor, null);

      const exact = await ctx.app.inject({ method: 'GET', url: '/v1/datasets?limit=7', headers: ctx.auth });
      assert.equal(exact.json().next_cursor, null, 'no empty last page when the count is a multiple of limit');
    });

    test('another tenant sees none of it: list is empty, every id answers 404, nothing changes', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const mine = await createDataset(ctx, { name: 'private', class_word: 'person' });
      const otherKey = await ctx.createTenantKey();
      const other = { authorization: `Bearer ${otherKey}` };
      const theirs = await createDataset(ctx, { name: 'theirs', class_word: 'cat' }, otherKey);

      const list = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: other });
      assert.deepEqual(list.json().data.map((d: { id: string }) => d.id), [theirs.id]);

      const url = `/v1/datasets/${mine.id}`;
      assert.equal((await ctx.app.inject({ method: 'GET', url, headers: other })).statusCode, 404);
      assert.equal((await ctx.app.inject({ method: 'PATCH', url, headers: other, payload: { name: 'hijacked' } })).statusCode, 404);
      assert.equal((await ctx.app.inject({ method: 'DELETE', url, headers: other })).statusCode, 404);

      const still = await ctx.app.inject({ method: 'GET', url, headers: ctx.auth });
      assert.deepEqual(still.json(), mine);
      // The cursor of one tenant does not reveal another's rows either.
      const myList = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: ctx.auth });
      assert.deepEqual(myList.json().data.map((d: { id: string }) => d.id), [mine.id]);
    });

    test('missing or wrong API key answers 401 with WWW-Authenticate', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const cases: Array<[string, Record<string, string>, RegExp]> = [
        ['no header', {}, /^Bearer realm="sdxl-lora-service"$/],
        ['unknown key', { authorization: 'Bearer sdxl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }, /error="invalid_token"/],
        ['not bearer', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }, /error="invalid_token"/],
        ['key without scheme', { authorization: ctx.apiKey }, /error="invalid_token"/],
        ['key with a typo', { authorization: `Bearer ${ctx.apiKey.slice(0, -1)}x` }, /error="invalid_token"/],
      ];
      for (const [name, headers, challenge] of cases) {
        for (const [method, url] of [['GET', '/v1/datasets'], ['POST', '/v1/datasets'], ['GET', '/v1/datasets/ds_x']] as const) {
          const response = await ctx.app.inject({ method, url, headers, ...(method === 'POST' ? { payload: { name: 'a', class_word: 'b' } } : {}) });
          assert.equal(response.statusCode, 401, `${name}: ${method} ${url}`);
          assert.match(String(response.headers['www-authenticate']), challenge, name);
          assert.match(String(response.headers['content-type']), PROBLEM_JSON);
          assert.equal(response.json().status, 401);
        }
      }
      const { rows } = await ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM datasets WHERE tenant_id = $1', [ctx.tenantId]);
      assert.equal(rows[0]!.n, 0, 'no unauthenticated POST stored anything');

      const ok = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: { authorization: `bearer  ${ctx.apiKey}` } });
      assert.equal(ok.statusCode, 200, 'the scheme is case-insensitive');
    });

    test('revoked keys stop working', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      await ctx.db.query('UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1', [ctx.tenantId]);
      const response = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: ctx.auth });
      assert.equal(response.statusCode, 401);
    });

    test('keys are stored only as sha256 hashes', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const { rows } = await ctx.db.query<{ key_hash: string; key_prefix: string }>(
        'SELECT key_hash, key_prefix FROM api_keys WHERE tenant_id = $1',
        [ctx.tenantId],
      );
      assert.equal(rows.length, 1);
      const { createHash } = await import('node:crypto');
      assert.equal(rows[0]!.key_hash, createHash('sha256').update(ctx.apiKey).digest('hex'));
      assert.ok(ctx.apiKey.startsWith(rows[0]!.key_prefix) && rows[0]!.key_prefix.length < 12);
    });
  });
}
