// The steps every image of a captioning job goes through, whichever way its request is sent
// (one at a time, or in a provider's batch): before any request, the image is looked up,
// skipped when a person wrote its caption, answered from the cache when it can be; after the
// provider answered, the answer goes to the cache first (it is paid for), then the job's
// usage, the caption (with its history row), and the item's outcome.
import type { FastifyBaseLogger } from 'fastify';
import type { CaptionImageInput, CaptionOutcome, Captioner, CaptionSubject } from '../captioning/captioner.js';
import type { Database } from '../db/database.js';
import { createCaptioningJobsRepository, type ItemOutcome, type JobRow } from '../repositories/captioning-jobs.js';
import { createCaptionsRepository, type CacheKey, type CachedCaption, type CaptionSource } from '../repositories/captions.js';
import { isHumanCaption, type CaptionsService } from '../services/captions.js';
import { IMAGE_MEDIA_TYPES } from '../services/file-sniffing.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { StopReason } from './job-runner.js';

export interface CaptionItemsContext {
  db: Database;
  blobs: BlobStore;
  captions: CaptionsService;
  logger: FastifyBaseLogger;
  /** The worker's lease owner. */
  owner: string;
  job: JobRow;
  captioner: Captioner;
  subject: CaptionSubject;
  controller: AbortController;
}

/** Settled: nothing to ask (skipped, cached, missing or deleted); else the image to send and its cache key. */
export type ItemLookup = { settled: true } | { settled: false; image: CaptionImageInput; key: CacheKey };

export class CaptionItems {
  constructor(private readonly ctx: CaptionItemsContext) {}

  /** Records how the item ended; a lost lease stops the job's run. */
  async finish(imageId: string, outcome: ItemOutcome): Promise<void> {
    const { db, job, owner, controller } = this.ctx;
    const jobs = createCaptioningJobsRepository(db);
    // Nothing updated: the image was deleted meanwhile (its item went with it), or another worker owns the job now.
    if (!(await jobs.finishItem(job.id, owner, imageId, outcome)) && !(await jobs.holdsLease(job.id, owner))) {
      controller.abort('lease-lost' satisfies StopReason);
    }
  }

  /** Settles the item when no request is needed; else returns what to send. */
  async lookup(imageId: string): Promise<ItemLookup> {
    const { db, job, blobs } = this.ctx;
    const image = await createCaptionsRepository(db).findImage(job.tenant_id, imageId);
    // A deleted image takes its item with it (ON DELETE CASCADE): nothing to record.
    if (image === null) return { settled: true };
    if (!job.overwrite && isHumanCaption(image)) {
      await this.finish(imageId, { status: 'skipped' });
      return { settled: true };
    }
    const key = this.keyOf(image.sha256);
    const cached = await createCaptionsRepository(db).cached(key);
    if (cached !== null) {
      await this.#write(imageId, cached, { model: key.model, promptVersion: key.promptVersion, cached: true });
      return { settled: true };
    }
    const bytes = await blobs.get(image.sha256);
    if (bytes === null) {
      await this.finish(imageId, { status: 'failed', error: { code: 'image_missing', message: 'the image\'s bytes are missing from storage', attempts: 0, httpStatus: null } });
      return { settled: true };
    }
    return {
      settled: false,
      key,
      image: { imageId, filename: image.original_filename ?? imageId, sha256: image.sha256, bytes, mediaType: IMAGE_MEDIA_TYPES[image.format] },
    };
  }

  /** A provider's answer: cached before anything else can fail, counted, then written. */
  async record(imageId: string, key: CacheKey, outcome: CaptionOutcome): Promise<void> {
    const { db, job } = this.ctx;
    const answer: CachedCaption = { caption: outcome.caption, input_tokens: outcome.usage.inputTokens, output_tokens: outcome.usage.outputTokens, cost_usd: outcome.costUsd };
    await createCaptionsRepository(db).cache(key, answer);
    await createCaptioningJobsRepository(db).addUsage(job.id, answer.input_tokens, answer.output_tokens, answer.cost_usd);
    await this.#write(imageId, answer, { model: outcome.model, promptVersion: outcome.promptVersion, cached: false });
  }

  async #write(imageId: string, answer: CachedCaption, how: { model: string; promptVersion: string; cached: boolean }): Promise<void> {
    const { job, captioner, captions } = this.ctx;
    const write = await captions.writeFromJob(job.tenant_id, imageId, {
      caption: answer.caption,
      source: captioner.provider as CaptionSource,
      model: how.model,
      promptVersion: how.promptVersion,
      inputTokens: answer.input_tokens,
      outputTokens: answer.output_tokens,
      costUsd: answer.cost_usd,
      cached: how.cached,
      jobId: job.id,
    }, job.overwrite);
    if (write.written) await this.finish(imageId, { status: 'succeeded', cached: how.cached, captionId: write.caption.id });
    // A person wrote a caption while the provider was answering: theirs stays.
    else if (write.reason === 'human-caption') await this.finish(imageId, { status: 'skipped' });
  }

  /** The cache key of the job's answer for an image with this hash. */
  keyOf(sha256: string): CacheKey {
    const { job, captioner, subject } = this.ctx;
    return {
      tenantId: job.tenant_id,
      sha256,
      provider: captioner.provider,
      model: captioner.model,
      promptVersion: captioner.promptVersion,
      trigger: subject.trigger,
      classWord: subject.classWord,
      styleHint: subject.styleHint ?? '',
    };
  }
}
