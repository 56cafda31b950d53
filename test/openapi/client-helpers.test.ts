// openapi/client: the typed client the console and tests import. Uploads (files, zips and
// caption sidecars) go to the real server; the Server-Sent Events follower is tested
// against a local server speaking text/event-stream, since no route streams yet.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import {
  createApiClient,
  EventStreamParser,
  followEvents,
  StreamRefused,
  uploadImages,
  type ServerSentEvent,
} from '../../openapi/client/index.js';
import { withTestApp } from '../helper.js';
import { jpeg, png } from '../support/images.js';
import { buildZip } from '../support/zip.js';

test('uploadImages sends files, a zip and a caption sidecar as one multipart request', async (t) => {
  const ctx = await withTestApp(t);
  const api = createApiClient({ baseUrl: await ctx.app.listen({ port: 0, host: '127.0.0.1' }), apiKey: ctx.apiKey });
  const created = await api.POST('/v1/datasets', { body: { name: 'Rex', class_word: 'dog' } });
  assert.equal(created.response.status, 201);
  const datasetId = created.data!.id;

  const zip = buildZip([
    { name: 'rex/b.png', data: await png({ width: 256, height: 256, seed: 2 }) },
    { name: 'rex/b.txt', data: Buffer.from('a photo of ohwx dog in a zip') },
  ]);
  const { data, error, response } = await uploadImages(api, datasetId, [
    { name: 'a.jpg', data: await jpeg({ width: 256, height: 320, seed: 1 }), type: 'image/jpeg' },
    { name: 'a.txt', data: Buffer.from('a photo of ohwx dog on grass') },
    { name: 'rex.zip', data: new Blob([new Uint8Array(zip)], { type: 'application/zip' }) },
  ]);
  assert.equal(error, undefined);
  assert.equal(response.status, 201);
  assert.deepEqual(
    data!.data.map((image) => [image.original_filename, image.caption, image.caption_source]),
    [
      ['a.jpg', 'a photo of ohwx dog on grass', 'upload'],
      ['rex/b.png', 'a photo of ohwx dog in a zip', 'upload'],
    ],
  );

  // A refusal is the typed problem naming the field; nothing was stored.
  const refused = await uploadImages(api, datasetId, [{ name: 'notes.jpg', data: Buffer.from('not an image') }]);
  assert.equal(refused.response.status, 415);
  assert.equal(refused.error!.errors?.[0]?.field, 'files');
  assert.match(refused.error!.detail ?? '', /notes\.jpg/);
  const listed = await api.GET('/v1/datasets/{id}/images', { params: { path: { id: datasetId } } });
  assert.equal(listed.data!.data.length, 2);

  // Without the key: 401 problem.
  const anonymous = createApiClient({ baseUrl: ctx.app.listeningOrigin });
  const unauthorized = await anonymous.GET('/v1/datasets');
  assert.equal(unauthorized.response.status, 401);
  assert.equal(unauthorized.error!.status, 401);
});

test('EventStreamParser follows the event-stream format: fields, comments, ids, retry, any line ending, split chunks', () => {
  const parser = new EventStreamParser();
  const text = ': keep-alive\r\nevent: progress\ndata: {"step":1}\nid: 1\n\ndata: a\rdata: b\r\n\r\nid: 2\nretry: 2500\ndata: c\n\ndata\n\n';
  const events: ServerSentEvent[] = [];
  for (const char of text) events.push(...parser.push(char)); // one character at a time
  assert.deepEqual(events, [
    { event: 'progress', data: '{"step":1}', id: '1' },
    { event: 'message', data: 'a\nb', id: '1' },
    { event: 'message', data: 'c', id: '2', retry: 2500 },
    { event: 'message', data: '', id: '2' },
  ]);
  assert.deepEqual(parser.push('data: half'), []);
  parser.discardPartial();
  assert.deepEqual(parser.push('\n'), [], 'a discarded half event is not completed later');
  assert.equal(parser.lastEventId, '2');
});

test('followEvents reconnects with Last-Event-ID after a dropped stream and stops on 204', async (t) => {
  const seen: Array<{ lastEventId: string | undefined; authorization: string | undefined }> = [];
  const server = http.createServer((request, response) => {
    seen.push({ lastEventId: request.headers['last-event-id'] as string | undefined, authorization: request.headers.authorization });
    if (seen.length === 1) {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('retry: 10\nid: 1\nevent: progress\ndata: {"step":1}\n\n');
      response.write('id: 2\nevent: progress\ndata: {"step":2}\n\ndata: cut off');
      setTimeout(() => response.destroy(), 100); // once sent, the connection drops in the middle of an event
    } else if (seen.length === 2) {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.end('id: 3\nevent: done\ndata: {"status":"succeeded"}\n\n');
    } else {
      response.writeHead(204).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;

  const events: ServerSentEvent[] = [];
  for await (const event of followEvents(url, { apiKey: 'sdxl_test' })) events.push(event);
  assert.deepEqual(
    events.map((event) => [event.id, event.event, event.data]),
    [
      ['1', 'progress', '{"step":1}'],
      ['2', 'progress', '{"step":2}'],
      ['3', 'done', '{"status":"succeeded"}'],
    ],
  );
  assert.deepEqual(seen, [
    { lastEventId: undefined, authorization: 'Bearer sdxl_test' },
    { lastEventId: '2', authorization: 'Bearer sdxl_test' },
    { lastEventId: '3', authorization: 'Bearer sdxl_test' },
  ]);
});

test('followEvents throws StreamRefused with the problem document of a refusal', async (t) => {
  const server = http.createServer((_request, response) => {
    response.writeHead(404, { 'content-type': 'application/problem+json' });
    response.end(JSON.stringify({ type: 'about:blank', title: 'Not found', status: 404, detail: 'No such run', instance: '/x', request_id: 'r1' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
  await assert.rejects(
    async () => {
      for await (const _event of followEvents(url)) assert.fail('no event expected');
    },
    (error: unknown) => error instanceof StreamRefused && error.status === 404 && error.problem?.detail === 'No such run',
  );
});
