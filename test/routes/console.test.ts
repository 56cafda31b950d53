// GET /console and its assets: the built console served with its security headers, a
// year's cache on hashed names and revalidation of the page, the console's own URLs
// answered with its page, and a clear 503 when it has not been built.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { buildApp } from '../../src/app.js';
import { consoleDir } from '../../src/paths.js';
import { CONSOLE_CSP } from '../../src/routes/console.js';
import { testConfig, withTestApp } from '../helper.js';
import { ensureConsoleBuilt } from '../support/browser.js';

await ensureConsoleBuilt();

function assertSecurityHeaders(headers: Record<string, unknown>): void {
  assert.equal(headers['content-security-policy'], CONSOLE_CSP);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  assert.equal(headers['x-frame-options'], 'DENY');
}

test('the CSP allows only the console\'s own scripts and styles and forbids framing', () => {
  const directives = new Map(CONSOLE_CSP.split('; ').map((directive) => {
    const [name, ...values] = directive.split(' ');
    return [name!, values] as const;
  }));
  assert.deepEqual(directives.get('script-src'), ["'self'"]);
  assert.deepEqual(directives.get('style-src'), ["'self'"]);
  assert.deepEqual(directives.get('frame-ancestors'), ["'none'"]);
  assert.deepEqual(directives.get('default-src'), ["'none'"]);
  assert.ok(!CONSOLE_CSP.includes('unsafe-inline') && !CONSOLE_CSP.includes('unsafe-eval'));
});

test('the page: no inline script, hashed assets it names exist, revalidated, secured', async (t) => {
  const { app } = await withTestApp(t);
  const page = await app.inject({ method: 'GET', url: '/console' });
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.equal(page.headers['cache-control'], 'no-cache');
  assertSecurityHeaders(page.headers);
  // Every <script> has a src: the CSP would block an inline one.
  const scripts = [...page.body.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  assert.ok(scripts.length >= 1);
  for (const [, attributes, body] of scripts) {
    assert.match(attributes!, /src="\/console\/assets\/[\w-]+\.js"/);
    assert.equal(body!.trim(), '');
  }
  assert.doesNotMatch(page.body, /\sstyle=|<style/);

  const assets = [...page.body.matchAll(/(?:src|href)="(\/console\/assets\/([^"]+))"/g)];
  assert.ok(assets.some(([, , name]) => name!.endsWith('.css')), 'the stylesheet is linked');
  for (const [, url, name] of assets) {
    assert.match(name!, /-[A-Z0-9]{8}\.(js|css|svg)$/, `${name} carries a content hash`);
    const asset = await app.inject({ method: 'GET', url: url! });
    assert.equal(asset.statusCode, 200, url);
    assert.equal(asset.headers['cache-control'], 'public, max-age=31536000, immutable');
    assertSecurityHeaders(asset.headers);
    assert.deepEqual(asset.rawPayload, fs.readFileSync(path.join(consoleDir, 'assets', name!)));
    const again = await app.inject({ method: 'GET', url: url!, headers: { 'if-none-match': String(asset.headers.etag) } });
    assert.equal(again.statusCode, 304);
  }
  const script = assets.find(([, , name]) => name!.endsWith('.js'))!;
  const js = await app.inject({ method: 'GET', url: script[1]! });
  assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');

  const revalidated = await app.inject({ method: 'GET', url: '/console', headers: { 'if-none-match': String(page.headers.etag) } });
  assert.equal(revalidated.statusCode, 304);
});

test('the console\'s own URLs answer its page; an unknown asset is a 404 problem; / leads to it', async (t) => {
  const { app } = await withTestApp(t);
  const index = (await app.inject({ method: 'GET', url: '/console' })).body;
  for (const url of ['/console/', '/console/runs/tr_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', '/console/generate?run=tr_x', '/console/datasets/ds_1']) {
    const response = await app.inject({ method: 'GET', url });
    assert.equal(response.statusCode, 200, url);
    assert.equal(response.body, index, url);
  }
  const missing = await app.inject({ method: 'GET', url: '/console/assets/app-NOPE0000.js' });
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.headers['content-type'], 'application/problem+json; charset=utf-8');
  assert.equal(missing.headers['x-content-type-options'], 'nosniff');
  const root = await app.inject({ method: 'GET', url: '/' });
  assert.equal(root.statusCode, 302);
  assert.equal(root.headers.location, '/console/');
  // Not part of the API's description.
  const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, unknown> };
  assert.ok(Object.keys(document.paths).every((p) => !p.startsWith('/console') && p !== '/'));
});

test('a service whose console is not built says so with a 503 problem; the API still works', async (t) => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'no-console-'));
  t.after(() => fs.rmSync(empty, { recursive: true, force: true }));
  const app = await buildApp(await testConfig(), { logger: false, console: { dir: empty } });
  t.after(() => app.close());
  const response = await app.inject({ method: 'GET', url: '/console/runs' });
  assert.equal(response.statusCode, 503);
  assert.match(response.json().detail, /npm run build/);
  assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
});

test('a worker serves no console', async (t) => {
  const app = await buildApp(await testConfig({ env: { ROLE: 'worker', TRAINING_SLOTS: '0', GENERATION_SLOTS: '0', CAPTIONING_SLOTS: '0' } }), { logger: false });
  t.after(() => app.close());
  assert.equal((await app.inject({ method: 'GET', url: '/console' })).statusCode, 404);
});
