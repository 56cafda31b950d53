// A webhook survives the death of its process. The service runs as a child process on a
// real Postgres; a captioning job finishes (its status change and its message commit
// together), the dispatcher starts the delivery, and the process is killed with SIGKILL
// while the receiver still holds the request. A new process claims the message once the
// dead one's lease has run out and delivers it: the same webhook-id, verified by
// `standardwebhooks`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startReceiver, verified } from '../support/webhook-receiver.js';
import { datasetWithPhotos, issueKey, pollUntil, startService, useProcessTestBed } from './service-process.js';

const bed = useProcessTestBed('sdxl-webhook-crash-');
/** Short, so the dead process's lease (2 x timeout + 5 s) runs out soon. */
const ENV = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', WEBHOOK_TIMEOUT_MS: '2000', TRAINING_SLOTS: '0' };

test('kill -9 after the status change commits and before the delivery completes: the next process delivers the message', async (t) => {
  const receiver = await startReceiver(t);
  receiver.answer = () => ({ status: 200, hang: true });
  const first = await startService(t, { name: 'first', databaseUrl: bed.database.url, dataDir: bed.dataDir, env: ENV });
  const auth = await issueKey(bed.db);
  const endpoint = await first.request('POST', '/v1/webhook-endpoints', { headers: auth, json: { url: receiver.url } });
  assert.equal(endpoint.status, 201, endpoint.body);
  const { secret } = endpoint.json<{ secret: string }>();
  const datasetId = await datasetWithPhotos(first, auth, 1);
  const job = await first.request('POST', `/v1/datasets/${datasetId}/captioning-jobs`, { headers: auth, json: { provider: 'template' } });
  assert.equal(job.status, 202, job.body);

  const [held] = await receiver.waitFor(1);
  await first.kill();
  const { rows: [message] } = await bed.db.query<{ id: string; status: string; attempts: number }>(
    'SELECT id, status, attempts FROM webhook_messages WHERE id = $1', [held!.id],
  );
  assert.equal(message!.status, 'sending', 'the dead process held it');
  assert.equal(message!.attempts, 0, 'and recorded no attempt');

  receiver.answer = () => ({ status: 200 });
  const second = await startService(t, { name: 'second', databaseUrl: bed.database.url, dataDir: bed.dataDir, env: ENV });
  const [, delivered] = await receiver.waitFor(2, 60_000);
  assert.equal(delivered!.id, held!.id, 'the same webhook-id');
  const body = verified(secret, delivered!);
  assert.equal(body.type, 'captioning_job.succeeded');
  assert.equal(body.data.id, job.json<{ id: string }>().id);

  const settled = await pollUntil('the message to be recorded as delivered', async () => {
    const response = await second.request('GET', `/v1/webhook-messages/${held!.id}`, { headers: auth });
    const view = response.json<{ status: string; attempts: Array<{ status_code: number }> }>();
    return view.status === 'succeeded' ? view : undefined;
  }, { context: () => second.tail() });
  assert.deepEqual(settled.attempts.map((a) => a.status_code), [200]);
});
