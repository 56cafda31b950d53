// Caption use cases: reading current captions and their history, manual edits (one image
// or many, all-or-nothing), and the one write path a job uses, which keeps a caption a
// person wrote unless the job says overwrite. Maps rows to the API shape.
import type { Database } from '../db/database.js';
import { idPattern } from '../db/ids.js';
import { fieldError, invalidInput, notFound, type FieldError } from '../errors.js';
import {
  createCaptionsRepository,
  HUMAN_SOURCES,
  type CaptionRow,
  type ImageCaptionRow,
  type NewCaption,
} from '../repositories/captions.js';
import { CAPTION_ID_PREFIX, type BulkCaptionsInput, type Caption, type ImageCaption } from '../schemas/captions.js';
import { IMAGE_ID_PREFIX } from '../schemas/images.js';
import { decodeCursor, toPage } from './pagination.js';

const CAPTION_ID = new RegExp(idPattern(CAPTION_ID_PREFIX));
const IMAGE_ID = new RegExp(idPattern(IMAGE_ID_PREFIX));
const MANUAL = 'manual';

export function toCaption(row: CaptionRow): Caption {
  return {
    id: row.id,
    image_id: row.image_id,
    dataset_id: row.dataset_id,
    caption: row.caption,
    source: row.source,
    model: row.model,
    prompt_version: row.prompt_version,
    usage: row.input_tokens === null ? null : { input_tokens: Number(row.input_tokens), output_tokens: Number(row.output_tokens ?? 0) },
    cost_usd: row.cost_usd === null ? null : Number(row.cost_usd),
    cached: row.cached,
    normalized: row.normalized,
    job_id: row.job_id,
    current: row.is_current,
    created_at: new Date(row.created_at).toISOString(),
  };
}

export function toImageCaption(row: ImageCaptionRow): ImageCaption {
  return {
    image_id: row.image_id,
    original_filename: row.original_filename,
    current: row.caption_row === null ? null : toCaption(row.caption_row),
  };
}

/** True when a person wrote the caption (a sidecar or the API): jobs keep it unless told to overwrite. */
export function isHumanCaption(row: ImageCaptionRow): boolean {
  return row.caption_row !== null && HUMAN_SOURCES.includes(row.caption_row.source);
}

/** What a job's write did: wrote the caption, or kept the one a person wrote. */
export type JobWrite = { written: true; caption: CaptionRow } | { written: false; reason: 'human-caption' | 'image-missing' };

export function createCaptionsService(db: Database, limits: { maxChars: number }) {
  /** The caption as stored (trimmed), or the FieldError that refuses it. */
  const checkText = (text: string, field: string): string | FieldError => {
    const trimmed = text.trim();
    if (trimmed === '') return fieldError('body', field, 'must not be blank');
    if (trimmed.includes('\0')) return fieldError('body', field, 'must not contain NUL characters');
    const length = [...trimmed].length;
    if (length > limits.maxChars) {
      return fieldError('body', field, `must NOT have more than ${limits.maxChars} characters (it has ${length}; the limit is CAPTION_MAX_CHARS)`);
    }
    return trimmed;
  };
  const refuse = (errors: FieldError[]) => invalidInput(`Invalid body: ${errors.map((e) => e.field).join(', ')}`, errors);

  return {
    maxChars: limits.maxChars,

    async datasetExists(tenantId: string, datasetId: string): Promise<boolean> {
      const { rows } = await db.query('SELECT 1 FROM datasets WHERE tenant_id = $1 AND id = $2', [tenantId, datasetId]);
      return rows.length > 0;
    },

    /** The image and its current caption; 404 when the tenant has no such image. */
    async get(tenantId: string, imageId: string): Promise<ImageCaption> {
      const row = await createCaptionsRepository(db).findImage(tenantId, imageId);
      if (row === null) throw notFound('image', imageId);
      return toImageCaption(row);
    },

    /** A page of the dataset's images with their current captions; 404 for an unknown dataset. */
    async list(tenantId: string, datasetId: string, limit: number, cursor?: string) {
      const before = cursor === undefined ? undefined : decodeCursor(cursor, IMAGE_ID);
      if (!(await this.datasetExists(tenantId, datasetId))) throw notFound('dataset', datasetId);
      const rows = await createCaptionsRepository(db).listForDataset(tenantId, datasetId, limit + 1, before);
      const page = toPage(rows.map((r) => ({ ...r, id: r.image_id })), limit, toImageCaption);
      return page;
    },

    /** A page of the image's caption versions, newest first; 404 for an unknown image. */
    async history(tenantId: string, imageId: string, limit: number, cursor?: string) {
      const before = cursor === undefined ? undefined : decodeCursor(cursor, CAPTION_ID);
      const repo = createCaptionsRepository(db);
      if ((await repo.findImage(tenantId, imageId)) === null) throw notFound('image', imageId);
      return toPage(await repo.history(tenantId, imageId, limit + 1, before), limit, toCaption);
    },

    /** Sets a manual caption (the previous one stays in the history); 404 for an unknown image, 400 for a bad caption. */
    async setManual(tenantId: string, imageId: string, text: string): Promise<ImageCaption> {
      const checked = checkText(text, 'caption');
      if (typeof checked !== 'string') throw refuse([checked]);
      return db.transaction(async (tx) => {
        const repo = createCaptionsRepository(tx);
        const image = await repo.lockImage(tenantId, imageId);
        if (image === null) throw notFound('image', imageId);
        const current = image.caption_row;
        // Saving the same manual text again adds no version.
        if (current !== null && current.source === MANUAL && current.caption === checked) return toImageCaption(image);
        const caption = await repo.write(tenantId, image.dataset_id, imageId, { caption: checked, source: MANUAL });
        return toImageCaption({ ...image, caption_row: caption });
      });
    },

    /**
     * Sets manual captions on several images of one dataset in one transaction: every
     * caption is stored, or none (a 400 names each bad entry: unknown image, duplicate,
     * bad text).
     */
    async setManualBulk(tenantId: string, datasetId: string, input: BulkCaptionsInput): Promise<ImageCaption[]> {
      if (!(await this.datasetExists(tenantId, datasetId))) throw notFound('dataset', datasetId);
      const errors: FieldError[] = [];
      const texts: string[] = [];
      const seen = new Set<string>();
      input.captions.forEach((entry, i) => {
        const checked = checkText(entry.caption, `captions.${i}.caption`);
        if (typeof checked === 'string') texts.push(checked);
        else errors.push(checked);
        if (seen.has(entry.image_id)) errors.push(fieldError('body', `captions.${i}.image_id`, 'names an image already listed earlier'));
        seen.add(entry.image_id);
      });
      const ids = input.captions.map((c) => c.image_id);
      return db.transaction(async (tx) => {
        const repo = createCaptionsRepository(tx);
        const found = new Set((await repo.findInDataset(tenantId, datasetId, ids.filter((id) => IMAGE_ID.test(id)))).map((r) => r.image_id));
        ids.forEach((id, i) => {
          if (!found.has(id)) errors.push(fieldError('body', `captions.${i}.image_id`, `is not an image of dataset ${datasetId}`));
        });
        if (errors.length > 0) throw refuse(errors);
        const out: ImageCaption[] = [];
        for (const [i, id] of ids.entries()) {
          const image = (await repo.lockImage(tenantId, id))!;
          const text = texts[i]!;
          const current = image.caption_row;
          if (current !== null && current.source === MANUAL && current.caption === text) {
            out.push(toImageCaption(image));
            continue;
          }
          out.push(toImageCaption({ ...image, caption_row: await repo.write(tenantId, datasetId, id, { caption: text, source: MANUAL }) }));
        }
        return out;
      });
    },

    /**
     * A job's write: makes `caption` the image's current caption unless a person wrote
     * the current one and overwrite is false (checked under the image's lock, so an edit
     * made while the provider was answering still wins). An identical current caption is
     * kept as it is.
     */
    async writeFromJob(tenantId: string, imageId: string, caption: NewCaption, overwrite: boolean): Promise<JobWrite> {
      return db.transaction(async (tx) => {
        const repo = createCaptionsRepository(tx);
        const image = await repo.lockImage(tenantId, imageId);
        if (image === null) return { written: false, reason: 'image-missing' };
        if (!overwrite && isHumanCaption(image)) return { written: false, reason: 'human-caption' };
        // The same answer again (a re-run served from the cache) is not a new version.
        const current = image.caption_row;
        if (current !== null && current.caption === caption.caption && current.source === caption.source &&
            current.model === (caption.model ?? null) && current.prompt_version === (caption.promptVersion ?? null) &&
            current.normalized === (caption.normalized ?? false)) {
          return { written: true, caption: current };
        }
        return { written: true, caption: await repo.write(tenantId, image.dataset_id, imageId, caption) };
      });
    },
  };
}
export type CaptionsService = ReturnType<typeof createCaptionsService>;
