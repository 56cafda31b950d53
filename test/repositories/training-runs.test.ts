// The training-run queue (migrations/004): fair between tenants, one claim per run across
// workers (SKIP LOCKED), runs of a dead worker claimed again after their lease, what every replica hears of a run (migration 017), and every
// worker statement scoped by its lease; a run is claimed only when the devices it asks are free. On Postgres and on embedded PGlite.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createTrainingRunEventsRepository } from '../../src/repositories/training-run-events.js';
import { createTrainingRunsRepository, type NewTrainingRun } from '../../src/repositories/training-runs.js';
import { DATABASE_MODES, testTenantName, withTestApp, type TestApp } from '../helper.js';
import { issueApiKey } from '../../src/services/api-keys.js';

async function tenant(ctx: TestApp): Promise<string> {
  return (await issueApiKey(ctx.db, testTenantName())).tenant.id;
}

function run(tenantId: string, name: string, params: Record<string, unknown> = { rank: 16 }): NewTrainingRun {
  return {
    tenantId,
    datasetId: 'ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA',
    modelId: 'sdxl-tiny-demo',
    name,
    params,
    metadata: {},
    triggerToken: 'ohwx',
    classWord: 'dog',
    images: [
      { image_id: 'img_1', sha256: 'a'.repeat(64), caption: 'a photo of ohwx dog', original_filename: 'a.jpg', width: 640, height: 480 },
      { image_id: 'img_2', sha256: 'b'.repeat(64), caption: 'a photo of ohwx dog on grass', original_filename: null, width: null, height: null },
    ],
  };
}

/** An app on this file's database with an empty queue (the database is shared by the file's tests). */
async function appWithEmptyQueue(t: Parameters<typeof withTestApp>[0], embedded: boolean): Promise<TestApp> {
  // No training worker in these apps: the test claims by hand.
  const ctx = await withTestApp(t, { embedded, env: { TRAINING_SLOTS: '0' } });
  await ctx.db.query('DELETE FROM training_runs');
  return ctx;
}

async function queue(ctx: TestApp, tenantId: string, name: string, params?: Record<string, unknown>) {
  return ctx.db.transaction((tx) => createTrainingRunsRepository(tx).insert(run(tenantId, name, params)));
}

for (const mode of DATABASE_MODES) {
  describe(`training-run queue on ${mode.name}`, () => {
    test('a run is stored queued with its image snapshot in order', async (t) => {
      const ctx = await appWithEmptyQueue(t, mode.embedded);
      const runs = createTrainingRunsRepository(ctx.db);
      const created = await queue(ctx, ctx.tenantId, 'first');
      assert.match(created.id, /^tr_[0-9A-Z]{26}$/);
      assert.equal(created.status, 'queued');
      assert.equal(created.attempt, 0);
      assert.deepEqual(created.params, { rank: 16 });
      assert.deepEqual((await runs.images(created.id)).map((image) => image.image_id), ['img_1', 'img_2']);
      assert.deepEqual((await runs.images(created.id)).map((image) => [image.width, image.height]), [[640, 480], [null, null]]);
      assert.equal((await runs.get(ctx.tenantId, created.id))?.name, 'first');
      assert.equal(await runs.get(await tenant(ctx), created.id), null, "another tenant's run is not found");
    });

    test("claims are fair between tenants: one tenant's queue does not hold back another's first run", async (t) => {
      const ctx = await appWithEmptyQueue(t, mode.embedded);
      const runs = createTrainingRunsRepository(ctx.db);
      const busy = ctx.tenantId;
      const other = await tenant(ctx);
      for (let i = 0; i < 4; i++) await queue(ctx, busy, `busy-${i}`);
      await queue(ctx, other, 'other-0');
      const order: string[] = [];
      for (let i = 0; i < 5; i++) {
        const claimed = await runs.claimNext(`worker-${i}`, 60_000, 1);
        assert.ok(claimed);
        assert.equal(claimed.status, 'starting');
        assert.equal(claimed.attempt, 1);
        order.push(claimed.name!);
      }
      assert.deepEqual(order, ['busy-0', 'other-0', 'busy-1', 'busy-2', 'busy-3']);
      assert.equal(await runs.claimNext('worker-x', 60_000, 1), null, 'nothing left to claim');
    });

    test('concurrent workers claim each run once', async (t) => {
      const ctx = await appWithEmptyQueue(t, mode.embedded);
      const runs = createTrainingRunsRepository(ctx.db);
      const ids = new Set<string>();
      for (let i = 0; i < 6; i++) ids.add((await queue(ctx, ctx.tenantId, `r${i}`)).id);
      const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => runs.claimNext(`w${i}`, 60_000, 1)));
      const claimed = claims.filter((claim) => claim !== null).map((claim) => claim!.id);
      assert.equal(claimed.length, 6);
      assert.deepEqual(new Set(claimed), ids);
    });

    test("a dead worker's run is claimed again after its lease (attempt 2); the old worker can no longer touch it", async (t) => {
      const ctx = await appWithEmptyQueue(t, mode.embedded);
      const runs = createTrainingRunsRepository(ctx.db);
      const created = await queue(ctx, ctx.tenantId, 'crash');
      assert.ok(await runs.claimNext('dead', 1, 1));
      await new Promise((resolve) => setTimeout(resolve, 20));
      const again = await runs.claimNext('alive', 60_000, 1);
      assert.equal(again?.id, created.id);
      assert.equal(again?.attempt, 2);
      assert.equal(again?.lease_owner, 'alive');
      assert.equal(await runs.heartbeat(created.id, 'dead', 60_000), null, 'the dead worker lost its lease');
      assert.equal(await runs.finish(created.id, 'dead', 'succeeded'), false);
      assert.deepEqual(await runs.heartbeat(created.id, 'alive', 60_000), { cancelRequested: false });
    });

    test('a run asking 2 devices is not claimed with 1 free; a later 1-device run (or one stored before devices) is', async (t) => {
      const ctx = await appWithEmptyQueue(t, mode.embedded);
      const runs = createTrainingRunsRepository(ctx.db);
      const wide = await queue(ctx, ctx.tenantId, 'two devices', { rank: 16, devices: 2 });
      const narrow = await queue(ctx, ctx.tenantId, 'one device', { rank: 16, devices: 1 });
      const older = await queue(ctx, ctx.tenantId, 'stored before devices');
      assert.equal((await runs.claimNext('w1', 60_000, 1))?.id, narrow.id, 'the oldest run that fits one free device');
      assert.equal((await runs.claimNext('w1', 60_000, 1))?.id, older.id, 'a run without params.devices asks one');
      assert.equal(await runs.claimNext('w1', 60_000, 1), null, 'the 2-device run waits for 2 free devices');
      assert.equal((await runs.get(ctx.tenantId, wide.id))?.status, 'queued');
      assert.equal((await runs.claimNext('w2', 60_000, 2))?.id, wide.id, 'claimed with 2 free');
    });

    test('release hands a run back to the queue; finish ends it with its outcome', async (t) => {
      const ctx = await appWithEmptyQueue(t, mode.embedded);
      const runs = createTrainingRunsRepository(ctx.db);
      const created = await queue(ctx, ctx.tenantId, 'handback');
      await runs.claimNext('w1', 60_000, 1);
      assert.equal(await runs.release(created.id, 'w1'), true);
      assert.equal((await runs.get(ctx.tenantId, created.id))?.status, 'queued');
      const resumed = await runs.claimNext('w2', 60_000, 1);
      assert.equal(resumed?.attempt, 2);
      assert.equal(await runs.finish(created.id, 'w2', 'failed', { error: { code: 'engine_error', message: 'out of memory' }, metrics: { steps: 3 } }), true);
      const done = await runs.get(ctx.tenantId, created.id);
      assert.equal(done?.status, 'failed');
      assert.equal(done?.error_code, 'engine_error');
      assert.deepEqual(done?.metrics, { steps: 3 });
      assert.ok(done?.completed_at instanceof Date);
      assert.equal(done?.lease_owner, null);
      assert.equal(await runs.claimNext('w3', 60_000, 1), null, 'a finished run is not claimed');
    });

    test('every replica hears a run queued or handed back, and each of its events, with the run id; an event of a run held by another worker is not recorded', async (t) => {
      const ctx = await appWithEmptyQueue(t, mode.embedded);
      const heard: string[] = [];
      for (const channel of ['training_runs_queued', 'training_run_events']) {
        const listener = await ctx.db.listen(channel, (payload) => heard.push(`${channel} ${payload ?? '(reconnected)'}`));
        t.after(() => listener.close());
      }
      const until = async (entry: string) => {
        for (let i = 0; i < 200 && !heard.includes(entry); i++) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.ok(heard.includes(entry), `heard ${entry}: ${heard.join('; ')}`);
      };
      const runs = createTrainingRunsRepository(ctx.db);
      const events = createTrainingRunEventsRepository(ctx.db);
      const created = await queue(ctx, ctx.tenantId, 'notified');
      await until('training_runs_queued ');
      await until(`training_run_events ${created.id}`); // its status event (queued)
      heard.length = 0;
      await runs.claimNext('w1', 60_000, 1);
      await until(`training_run_events ${created.id}`); // starting
      heard.length = 0;
      assert.equal(await events.append(created.id, 'w1', 'log', { level: 'info', message: 'hello' }), true);
      await until(`training_run_events ${created.id}`);
      assert.equal(await events.append(created.id, 'w2', 'log', { level: 'info', message: 'not the owner' }), false);
      await runs.release(created.id, 'w1');
      await until('training_runs_queued ');
      const logs = (await events.list(created.id, '0', 100, ['log'])).map((event) => event.data.message);
      assert.deepEqual(logs, ['hello']);
    });
  });
}
