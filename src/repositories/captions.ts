// SQL for captions: every version of every image's caption (image_captions), the copy of
// the current one on images, and the cache of provider answers. Every statement is scoped
// by tenant_id: another tenant's image or dataset reads as absent.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';

export type CaptionSource = 'upload' | 'manual' | 'anthropic' | 'openai-compatible' | 'template';

/** Written by a person (a sidecar or the API): a job keeps these unless it says overwrite. */
export const HUMAN_SOURCES: readonly CaptionSource[] = ['upload', 'manual'];

export interface CaptionRow {
  id: string;
  tenant_id: string;
  dataset_id: string;
  image_id: string;
  caption: string;
  source: CaptionSource;
  model: string | null;
  prompt_version: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cost_usd: number | null;
  cached: boolean;
  normalized: boolean;
  job_id: string | null;
  is_current: boolean;
  created_at: Date;
}

/** An image of a dataset with its current caption (caption_* null when it has none). */
export interface ImageCaptionRow {
  image_id: string;
  dataset_id: string;
  original_filename: string | null;
  sha256: string;
  format: 'jpeg' | 'png' | 'webp';
  byte_size: number;
  /** As displayed: after the EXIF orientation. */
  width: number;
  height: number;
  caption_row: CaptionRow | null;
}

export interface NewCaption {
  caption: string;
  source: CaptionSource;
  model?: string | null;
  promptVersion?: string | null;
  inputTokens?: number | null;
  outputTokens?: number | null;
  costUsd?: number | null;
  cached?: boolean;
  normalized?: boolean;
  jobId?: string | null;
}

/** Everything that determines a provider's answer for one image. */
export interface CacheKey {
  tenantId: string;
  sha256: string;
  provider: string;
  model: string;
  promptVersion: string;
  trigger: string;
  classWord: string;
  /** '' when there is none. */
  styleHint: string;
}

export interface CachedCaption {
  caption: string;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number | null;
}

const COLUMNS =
  'id, tenant_id, dataset_id, image_id, caption, source, model, prompt_version, input_tokens, output_tokens, cost_usd, cached, normalized, job_id, is_current, created_at';
const C_COLUMNS = COLUMNS.split(', ').map((c) => `c.${c}`).join(', ');

/** An ImageCaptionRow as the query returns it: the caption as row_to_json made it. */
type JoinedRow = Omit<ImageCaptionRow, 'caption_row'> & { caption_json: CaptionRow | null };

const JOINED_SELECT = `
  SELECT i.id AS image_id, i.dataset_id, i.original_filename, i.sha256, i.format, i.byte_size, i.width, i.height,
         CASE WHEN c.id IS NULL THEN NULL ELSE row_to_json(c) END AS caption_json
    FROM images i
    LEFT JOIN LATERAL (SELECT ${C_COLUMNS} FROM image_captions c
                        WHERE c.image_id = i.id AND c.tenant_id = i.tenant_id AND c.is_current) c ON true`;

/** row_to_json turns timestamps into strings and leaves numbers as numbers. */
function fromJoined(row: JoinedRow): ImageCaptionRow {
  const c = row.caption_json;
  return {
    image_id: row.image_id,
    dataset_id: row.dataset_id,
    original_filename: row.original_filename,
    sha256: row.sha256,
    format: row.format,
    byte_size: Number(row.byte_size),
    width: row.width,
    height: row.height,
    caption_row: c === null ? null : { ...c, created_at: new Date(c.created_at) },
  };
}

export function createCaptionsRepository(db: Queryable) {
  return {
    /** The image with its current caption, locked until the transaction ends (writers of one image queue here); null when absent. */
    async lockImage(tenantId: string, imageId: string): Promise<ImageCaptionRow | null> {
      const { rows } = await db.query<{ id: string }>('SELECT id FROM images WHERE tenant_id = $1 AND id = $2 FOR UPDATE', [tenantId, imageId]);
      if (rows.length === 0) return null;
      return this.findImage(tenantId, imageId);
    },

    /** The image with its current caption; null when the tenant has no such image. */
    async findImage(tenantId: string, imageId: string): Promise<ImageCaptionRow | null> {
      const { rows } = await db.query<JoinedRow>(`${JOINED_SELECT} WHERE i.tenant_id = $1 AND i.id = $2`, [tenantId, imageId]);
      return rows[0] ? fromJoined(rows[0]) : null;
    },

    /** Up to `limit` images of the dataset with their current captions, newest image first, older than `before` when given. */
    async listForDataset(tenantId: string, datasetId: string, limit: number, before?: string): Promise<ImageCaptionRow[]> {
      const { rows } = before === undefined
        ? await db.query<JoinedRow>(
          `${JOINED_SELECT} WHERE i.tenant_id = $1 AND i.dataset_id = $2 ORDER BY i.id DESC LIMIT $3`,
          [tenantId, datasetId, limit],
        )
        : await db.query<JoinedRow>(
          `${JOINED_SELECT} WHERE i.tenant_id = $1 AND i.dataset_id = $2 AND i.id < $3 ORDER BY i.id DESC LIMIT $4`,
          [tenantId, datasetId, before, limit],
        );
      return rows.map(fromJoined);
    },

    /** Every image of the dataset with its current caption, oldest first (export order). */
    async allForDataset(tenantId: string, datasetId: string): Promise<ImageCaptionRow[]> {
      const { rows } = await db.query<JoinedRow>(
        `${JOINED_SELECT} WHERE i.tenant_id = $1 AND i.dataset_id = $2 ORDER BY i.id`,
        [tenantId, datasetId],
      );
      return rows.map(fromJoined);
    },

    /** The images of `imageIds` that belong to the dataset, with their current captions. */
    async findInDataset(tenantId: string, datasetId: string, imageIds: readonly string[]): Promise<ImageCaptionRow[]> {
      if (imageIds.length === 0) return [];
      const { rows } = await db.query<JoinedRow>(
        `${JOINED_SELECT} WHERE i.tenant_id = $1 AND i.dataset_id = $2 AND i.id = ANY($3::text[]) ORDER BY i.id`,
        [tenantId, datasetId, imageIds],
      );
      return rows.map(fromJoined);
    },

    /** Every caption the image has had, newest first, older than the caption id `before` when given. */
    async history(tenantId: string, imageId: string, limit: number, before?: string): Promise<CaptionRow[]> {
      const { rows } = before === undefined
        ? await db.query<CaptionRow>(
          `SELECT ${COLUMNS} FROM image_captions WHERE tenant_id = $1 AND image_id = $2 ORDER BY id DESC LIMIT $3`,
          [tenantId, imageId, limit],
        )
        : await db.query<CaptionRow>(
          `SELECT ${COLUMNS} FROM image_captions WHERE tenant_id = $1 AND image_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4`,
          [tenantId, imageId, before, limit],
        );
      return rows;
    },

    /**
     * Makes `caption` the image's current caption: the previous one stays as history and
     * images.caption/caption_source follow. Run inside a transaction, after lockImage.
     */
    async write(tenantId: string, datasetId: string, imageId: string, caption: NewCaption): Promise<CaptionRow> {
      await db.query('UPDATE image_captions SET is_current = false WHERE tenant_id = $1 AND image_id = $2 AND is_current', [tenantId, imageId]);
      const { rows } = await db.query<CaptionRow>(
        `INSERT INTO image_captions (id, tenant_id, dataset_id, image_id, caption, source, model, prompt_version,
                                     input_tokens, output_tokens, cost_usd, cached, normalized, job_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING ${COLUMNS}`,
        [
          newId('cap'), tenantId, datasetId, imageId, caption.caption, caption.source, caption.model ?? null,
          caption.promptVersion ?? null, caption.inputTokens ?? null, caption.outputTokens ?? null, caption.costUsd ?? null,
          caption.cached ?? false, caption.normalized ?? false, caption.jobId ?? null,
        ],
      );
      await db.query('UPDATE images SET caption = $3, caption_source = $4 WHERE tenant_id = $1 AND id = $2', [
        tenantId, imageId, caption.caption, caption.source,
      ]);
      return rows[0]!;
    },

    async cached(key: CacheKey): Promise<CachedCaption | null> {
      const { rows } = await db.query<CachedCaption>(
        `SELECT caption, input_tokens, output_tokens, cost_usd FROM caption_cache
          WHERE tenant_id = $1 AND sha256 = $2 AND provider = $3 AND model = $4 AND prompt_version = $5
            AND trigger_token = $6 AND class_word = $7 AND style_hint = $8`,
        [key.tenantId, key.sha256, key.provider, key.model, key.promptVersion, key.trigger, key.classWord, key.styleHint],
      );
      return rows[0] ?? null;
    },

    /** Remembers a provider's answer; a later answer for the same key replaces it. */
    async cache(key: CacheKey, answer: CachedCaption): Promise<void> {
      await db.query(
        `INSERT INTO caption_cache (tenant_id, sha256, provider, model, prompt_version, trigger_token, class_word, style_hint,
                                    caption, input_tokens, output_tokens, cost_usd)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (tenant_id, sha256, provider, model, prompt_version, trigger_token, class_word, style_hint)
         DO UPDATE SET caption = EXCLUDED.caption, input_tokens = EXCLUDED.input_tokens,
                       output_tokens = EXCLUDED.output_tokens, cost_usd = EXCLUDED.cost_usd, created_at = now()`,
        [
          key.tenantId, key.sha256, key.provider, key.model, key.promptVersion, key.trigger, key.classWord, key.styleHint,
          answer.caption, answer.input_tokens, answer.output_tokens, answer.cost_usd,
        ],
      );
    },
  };
}
export type CaptionsRepository = ReturnType<typeof createCaptionsRepository>;
