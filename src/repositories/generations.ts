// SQL of generations and their images: training runs' twin (./training-runs.ts) on the
// shared job queue. The worker's statements are scoped by its lease (lease_owner).
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import {
  claimNextRunLike, countOpenLocked, INTERRUPTION_COUNT, finishRunLike, recordHeldJson, recordProgress, releaseRunLike, renewLease, requestCancelRunLike,
  type LeasedJobColumns, type RunLikeOutcome,
} from './lease-sql.js';
import { GENERATION_ID_PREFIX, type GenerationParams } from '../schemas/generations.js';

export type GenerationStatus = 'queued' | 'starting' | 'running' | 'succeeded' | 'failed' | 'canceled';

/** A LoRA as a generation uses it, fixed when it was queued. */
export interface GenerationLora {
  lora_id: string;
  name: string;
  scale: number;
  sha256: string;
  autov3: string;
}

export interface GenerationRow extends LeasedJobColumns {
  id: string;
  tenant_id: string;
  model_id: string;
  status: GenerationStatus;
  params: GenerationParams;
  loras: GenerationLora[];
  progress: Record<string, unknown> | null;
  metrics: Record<string, number> | null;
  /** What the worker scored of its images (params.evaluation); null before, or when not asked. */
  evaluation: { values: Record<string, number>; unavailable: Record<string, string> } | null;
  claimed_at: Date | null;
  attempt: number;
  /** Claims after its process died (graceful hand-backs do not count). */
  interruptions: number;
  webhook_url: string | null;
  webhook_events: string[] | null;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
}

export interface GenerationImageRow {
  generation_id: string;
  index: number;
  seed: string | number;
  width: number;
  height: number;
  sha256: string;
  byte_size: string | number;
}

const COLUMNS =
  'id, tenant_id, model_id, status, params, loras, progress, metrics, evaluation, error_code, error_message, cancel_requested_at, ' +
  'lease_owner, lease_expires_at, heartbeat_at, claimed_at, attempt, interruptions, webhook_url, webhook_events, created_at, started_at, completed_at';

const HELD = ['starting', 'running'] as const;

export function createGenerationsRepository(db: Queryable) {
  return {
    async insert(tenantId: string, generation: {
      modelId: string; params: GenerationParams; loras: GenerationLora[]; webhook: { url: string; events: string[] } | null;
    }): Promise<GenerationRow> {
      const { rows } = await db.query<GenerationRow>(
        `INSERT INTO generations (id, tenant_id, model_id, params, loras, webhook_url, webhook_events)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
        [newId(GENERATION_ID_PREFIX), tenantId, generation.modelId, JSON.stringify(generation.params), JSON.stringify(generation.loras),
          generation.webhook?.url ?? null, generation.webhook?.events ?? null],
      );
      return rows[0]!;
    },

    async get(tenantId: string, id: string): Promise<GenerationRow | null> {
      const { rows } = await db.query<GenerationRow>(`SELECT ${COLUMNS} FROM generations WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    async list(tenantId: string, filter: { status?: GenerationStatus; loraId?: string }, limit: number, before?: string): Promise<GenerationRow[]> {
      const { rows } = await db.query<GenerationRow>(
        `SELECT ${COLUMNS} FROM generations
          WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR loras @> jsonb_build_array(jsonb_build_object('lora_id', $3::text)))
            AND ($4::text IS NULL OR id < $4)
          ORDER BY id DESC LIMIT $5`,
        [tenantId, filter.status ?? null, filter.loraId ?? null, before ?? null, limit],
      );
      return rows;
    },

    /** The images of generations, by generation id, index order. */
    async images(ids: string[]): Promise<Map<string, GenerationImageRow[]>> {
      const byId = new Map<string, GenerationImageRow[]>(ids.map((id) => [id, []]));
      if (ids.length === 0) return byId;
      const { rows } = await db.query<GenerationImageRow>(
        'SELECT generation_id, index, seed, width, height, sha256, byte_size FROM generation_images WHERE generation_id = ANY($1::text[]) ORDER BY generation_id, index',
        [ids],
      );
      for (const row of rows) byId.get(row.generation_id)?.push(row);
      return byId;
    },

    async image(tenantId: string, id: string, index: number): Promise<GenerationImageRow | null> {
      const { rows } = await db.query<GenerationImageRow>(
        `SELECT i.generation_id, i.index, i.seed, i.width, i.height, i.sha256, i.byte_size
           FROM generation_images i JOIN generations g ON g.id = i.generation_id
          WHERE g.tenant_id = $1 AND i.generation_id = $2 AND i.index = $3`,
        [tenantId, id, index],
      );
      return rows[0] ?? null;
    },

    /** Asks the generation to stop, as a training run (lease-sql.ts); the generation as it now is. */
    async requestCancel(tenantId: string, id: string): Promise<GenerationRow | null> {
      await requestCancelRunLike(db, 'generations', tenantId, id);
      return this.get(tenantId, id);
    },

    /** The tenant's queued and running generations, under a per-tenant lock held to the end of the transaction. */
    countOpenLocked(tenantId: string): Promise<number> {
      return countOpenLocked(db, 'generations', tenantId);
    },

    // ---------------------------------------------------------------- worker side

    /** Takes the next due generation, fair between tenants (lease-sql.ts). */
    claimNext(owner: string, leaseMs: number): Promise<GenerationRow | null> {
      return claimNextRunLike<GenerationRow>(db, 'generations', COLUMNS, owner, leaseMs, INTERRUPTION_COUNT);
    },

    heartbeat(id: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null> {
      return renewLease(db, 'generations', HELD, id, owner, leaseMs);
    },

    progress(id: string, owner: string, progress: Record<string, unknown>, status: 'starting' | 'running'): Promise<boolean> {
      return recordProgress(db, 'generations', id, owner, progress, status);
    },

    release(id: string, owner: string): Promise<boolean> {
      return releaseRunLike(db, 'generations', id, owner);
    },

    async addImage(image: GenerationImageRow): Promise<void> {
      await db.query(
        `INSERT INTO generation_images (generation_id, index, seed, width, height, sha256, byte_size)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (generation_id, index) DO UPDATE SET seed = EXCLUDED.seed, sha256 = EXCLUDED.sha256, byte_size = EXCLUDED.byte_size`,
        [image.generation_id, image.index, image.seed, image.width, image.height, image.sha256, image.byte_size],
      );
    },

    /** Records what the worker scored of the generation's images; false when the lease was lost. */
    evaluation(id: string, owner: string, scored: { values: Record<string, number>; unavailable: Record<string, string> }): Promise<boolean> {
      return recordHeldJson(db, 'generations', 'evaluation', id, owner, scored);
    },

    finish(id: string, owner: string, status: 'succeeded' | 'failed' | 'canceled', outcome: RunLikeOutcome = {}): Promise<boolean> {
      return finishRunLike(db, 'generations', id, owner, status, outcome);
    },
  };
}

export type GenerationsRepository = ReturnType<typeof createGenerationsRepository>;
