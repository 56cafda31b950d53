// A captioning job in batch mode: its queued images go to the provider's batch API (at most
// maxRequests requests and the provider's byte limit per batch), each batch is recorded with
// the items it carries before anything else happens, and the job's open batches are polled
// every pollMs until they end; then their results are read as a stream and written as they
// come, through the same steps as an interactive answer (caption-items.ts). A failed request
// goes into a new batch while the retry budget lasts (shouldResubmit), then becomes the
// item's error. A worker that takes the job over (restart, lost lease) finds the batches in
// the database and polls them: no image is sent twice, none already captioned is sent again.
import { setTimeout as delay } from 'node:timers/promises';
import { CaptionError, type BatchItemResult, type BatchRequest, type CaptionBatches } from '../captioning/captioner.js';
import type { CaptionRequestPolicy } from '../captioning/config.js';
import { shouldResubmit } from '../captioning/retry.js';
import { createCaptionBatchesRepository, type BatchRow, type WaitingItem } from '../repositories/caption-batches.js';
import { createCaptioningJobsRepository } from '../repositories/captioning-jobs.js';
import { BatchPacker } from './caption-batch-packer.js';
import { forEachLimited } from './for-each-limited.js';
import type { CaptionItems, CaptionItemsContext } from './caption-items.js';

export interface BatchRunPolicy {
  /** Most requests in one batch. */
  maxRequests: number;
  /** Time between two looks at the batches in flight. */
  pollMs: number;
  /** The retry budget a failed request shares with interactive mode. */
  request: CaptionRequestPolicy;
}

export interface BatchRunContext extends CaptionItemsContext {
  batches: CaptionBatches;
  items: CaptionItems;
  policy: BatchRunPolicy;
  /** Images prepared, and results written, at once (CAPTION_CONCURRENCY). */
  concurrency: number;
  /** A failure every other request would share (a refused key): stops the job. */
  fatal(error: CaptionError): void;
}

/** Runs the job's batches until no item is queued or carried by an open batch, or the run is aborted. */
export async function captionInBatches(ctx: BatchRunContext): Promise<void> {
  const { db, job, controller, policy } = ctx;
  const signal = controller.signal;
  const jobs = createCaptioningJobsRepository(db);
  const batches = createCaptionBatchesRepository(db);
  for (;;) {
    await submitQueued(ctx, await jobs.queuedItems(job.id));
    for (const batch of await batches.open(job.id)) {
      if (signal.aborted) return;
      await poll(ctx, batch);
    }
    if (signal.aborted) return;
    if ((await batches.open(job.id)).length === 0 && (await jobs.queuedItems(job.id)).length === 0) return;
    try {
      await delay(policy.pollMs, undefined, { signal });
    } catch {
      return;
    }
  }
}

/** Cancels the job's open batches at the provider (best effort) and gives them up. */
export async function abandonBatches(ctx: Pick<BatchRunContext, 'db' | 'job' | 'logger'>, provider: CaptionBatches | undefined): Promise<void> {
  const batches = createCaptionBatchesRepository(ctx.db);
  for (const batch of await batches.open(ctx.job.id)) {
    if (provider === undefined || batch.status === 'ended') continue;
    try {
      await provider.cancel(batch.provider_batch_id);
    } catch (error) {
      ctx.logger.warn({ job: ctx.job.id, batch: batch.provider_batch_id, err: error }, 'could not cancel a caption batch');
    }
  }
  await batches.abandonOpen(ctx.job.id);
}

/**
 * Builds the requests of the queued items that need one, `concurrency` images at a time, and sends
 * them in batches within the limits, one batch after another. While a batch is being sent no
 * lane starts another image, so memory holds about one batch and a few requests.
 */
async function submitQueued(ctx: BatchRunContext, queued: readonly string[]): Promise<void> {
  const { controller, items, batches, subject, policy } = ctx;
  const packer = new BatchPacker({ maxRequests: policy.maxRequests, maxBytes: batches.maxBatchBytes });
  // Resolves false once a batch could not be sent (the provider is unreachable for now, or refused
  // it): the images not sent stay queued for the next poll.
  let sending: Promise<boolean> = Promise.resolve(true);
  const send = (batch: BatchRequest[]): Promise<boolean> => {
    sending = sending.then((ok) => ok && submit(ctx, batch));
    return sending;
  };
  await forEachLimited(queued, ctx.concurrency, controller.signal, async (imageId) => {
    if (!(await sending)) return;
    const found = await items.lookup(imageId);
    if (found.settled) return;
    let request: BatchRequest;
    try {
      request = await batches.request(imageId, found.image, subject, controller.signal);
    } catch (error) {
      if (!(error instanceof CaptionError)) throw error;
      // The run was aborted while the image was being prepared.
      if (error.code === 'canceled') return;
      await items.finish(imageId, { status: 'failed', error: { code: error.code, message: error.message, attempts: 0, httpStatus: null } });
      return;
    }
    const full = packer.add(request);
    if (full !== undefined) await send(full);
  });
  const last = packer.flush();
  if (last.length > 0 && !controller.signal.aborted) await send(last);
  await sending;
}

/** Sends one batch and records it with its items; false when it could not be sent (the items stay queued, or failed). */
async function submit(ctx: BatchRunContext, requests: readonly BatchRequest[]): Promise<boolean> {
  const { db, job, batches, items, logger } = ctx;
  const imageIds = requests.map((r) => r.customId);
  let state;
  try {
    // Not aborted on shutdown: a batch the provider accepted must be recorded, or it would be paid twice.
    state = await batches.submit(requests);
  } catch (error) {
    if (!(error instanceof CaptionError)) throw error;
    if (error.code === 'auth') {
      ctx.fatal(error);
    } else if (error.retryable) {
      logger.warn({ job: job.id, code: error.code, status: error.status, requests: requests.length }, 'caption batch not accepted; trying again at the next poll');
    } else {
      for (const imageId of imageIds) {
        await items.finish(imageId, { status: 'failed', error: { code: error.code, message: error.message, attempts: 1, httpStatus: error.status ?? null } });
      }
    }
    return false;
  }
  const row = await db.transaction((tx) => createCaptionBatchesRepository(tx).insert(job.id, state, imageIds));
  logger.info({ job: job.id, batch: row.id, providerBatch: state.providerBatchId, requests: requests.length }, 'caption batch submitted');
  return true;
}

/** One look at a batch; an ended one has its results written. */
async function poll(ctx: BatchRunContext, batch: BatchRow): Promise<void> {
  const { db, job, batches, logger } = ctx;
  let state;
  try {
    state = await batches.retrieve(batch.provider_batch_id);
  } catch (error) {
    if (!(error instanceof CaptionError)) throw error;
    if (error.code === 'auth') ctx.fatal(error);
    else logger.warn({ job: job.id, batch: batch.id, code: error.code, status: error.status }, 'could not look at a caption batch; trying again at the next poll');
    return;
  }
  await createCaptionBatchesRepository(db).updateState(batch.id, state);
  if (state.status === 'ended') await collect(ctx, batch);
}

/**
 * Writes an ended batch's results as they stream in, at most `concurrency` at once (the stream is
 * read no further meanwhile, so memory stays bounded); a result read again after a restart is skipped.
 */
async function collect(ctx: BatchRunContext, batch: BatchRow): Promise<void> {
  const { db, job, batches, subject, controller, logger } = ctx;
  const waiting = await createCaptionBatchesRepository(db).waitingItems(job.id, batch);
  const writes = new Set<Promise<void>>();
  try {
    for await (const result of batches.results(batch.provider_batch_id, subject, controller.signal)) {
      const item = waiting.get(result.customId);
      if (item === undefined) continue;
      waiting.delete(result.customId);
      if (writes.size >= ctx.concurrency) await Promise.race(writes);
      const write: Promise<void> = writeResult(ctx, result, item).finally(() => writes.delete(write));
      // Seen by Promise.race/all; this handler only keeps a failure from being "unhandled" meanwhile.
      write.catch(() => {});
      writes.add(write);
      if (controller.signal.aborted) break;
    }
  } catch (error) {
    await Promise.allSettled(writes);
    if (controller.signal.aborted) return;
    if (!(error instanceof CaptionError)) throw error;
    logger.warn({ job: job.id, batch: batch.id, code: error.code, status: error.status }, 'could not read a caption batch\'s results; trying again at the next poll');
    return;
  }
  await Promise.all(writes);
  if (controller.signal.aborted) return;
  await db.transaction((tx) => createCaptionBatchesRepository(tx).markCollected(job.id, batch));
  logger.info({ job: job.id, batch: batch.id, providerBatch: batch.provider_batch_id }, 'caption batch results written');
}

/** One result: a caption written like an interactive answer, or a failure sent again or recorded. */
async function writeResult(ctx: BatchRunContext, result: BatchItemResult, item: WaitingItem): Promise<void> {
  const { db, job, items, policy, logger } = ctx;
  const imageId = result.customId;
  if (result.ok) {
    await items.record(imageId, items.keyOf(item.sha256), result.outcome);
    return;
  }
  const { error } = result;
  if (result.usage.inputTokens + result.usage.outputTokens > 0) {
    await createCaptioningJobsRepository(db).addUsage(job.id, result.usage.inputTokens, result.usage.outputTokens, result.costUsd);
  }
  if (shouldResubmit(error, item.attempts, policy.request)) {
    await createCaptionBatchesRepository(db).requeueItem(job.id, imageId);
  } else {
    await items.finish(imageId, { status: 'failed', error: { code: error.code, message: error.message, attempts: item.attempts, httpStatus: error.status ?? null } });
    logger.warn({ job: job.id, image: imageId, code: error.code, attempts: item.attempts }, 'image caption failed');
  }
  if (error.code === 'auth') ctx.fatal(error);
}
