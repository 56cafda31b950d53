// LoRAs as resources: registered when a training run succeeds, or uploaded and checked by
// the engine against their base model (every key must name a module it has, with shapes
// that fit); listed, downloaded and deleted (not while a generation waits for one).
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Database, Queryable } from '../db/database.js';
import { idPattern } from '../db/ids.js';
import { isInvalidArgument } from '../engine/index.js';
import { fieldError, invalidInput, notFound, ProblemError } from '../errors.js';
import { createImagesRepository } from '../repositories/images.js';
import { createLorasRepository, type LoraRow, type NewLora } from '../repositories/loras.js';
import type { GenerationLora } from '../repositories/generations.js';
import { LORA_ID_PREFIX, type Lora } from '../schemas/loras.js';
import { FAMILY_NAMES, type ModelFamily } from '../schemas/model-families.js';
import type { BaseModel } from '../schemas/models.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { ModelsService } from './models.js';
import { decodeCursor, toPage } from './pagination.js';
import type { ResidentModels } from './resident-models.js';

const LORA_ID = new RegExp(idPattern(LORA_ID_PREFIX));
/** The safetensors format's own cap on its JSON header (the Rust reference refuses more). */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;
const SAFETENSORS_LENGTH_BYTES = 8;

export function loraContentUrl(id: string): string {
  return `/v1/loras/${id}/content`;
}

export function toLora(row: LoraRow): Lora {
  return {
    id: row.id,
    name: row.name,
    source: row.source,
    training_run_id: row.training_run_id,
    model: row.model_id,
    trigger_phrase: row.trigger_phrase,
    sha256: row.sha256,
    autov3: row.autov3,
    byte_size: Number(row.byte_size),
    layout: row.layout,
    rank: row.rank,
    alpha: row.alpha,
    modules: row.modules,
    components: row.components,
    content_url: loraContentUrl(row.id),
    created_at: row.created_at.toISOString(),
  };
}

/** What the file's hashes and header say, before the engine looks at its tensors. */
export interface LoraFileFacts {
  sha256: string;
  /** AUTOMATIC1111's AutoV3: sha256 of everything after the header. */
  autov3: string;
  byteSize: number;
  /** The names of its tensors, as its header lists them. */
  tensorNames: string[];
}

/** Why an uploaded file is not a usable LoRA: a 422 naming the file field (and the keys). */
export class LoraFileError extends Error {
  override name = 'LoraFileError';
  constructor(message: string, readonly problems: string[] = []) {
    super(message);
  }
}

/**
 * Checks the safetensors framing of a LoRA file's bytes (an 8-byte little-endian header
 * length, then a JSON object that fits in the file) without trusting the length, and
 * hashes them: the caller reads the file once and stores these same bytes.
 */
export function loraFileFacts(bytes: Buffer): LoraFileFacts {
  if (bytes.length < SAFETENSORS_LENGTH_BYTES) throw new LoraFileError(`The file has ${bytes.length} bytes: too short to be a .safetensors file`);
  const headerBytes = bytes.readBigUInt64LE(0);
  if (headerBytes > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
    throw new LoraFileError(`The file declares a ${headerBytes} byte header; safetensors headers are at most ${MAX_SAFETENSORS_HEADER_BYTES} bytes`);
  }
  const dataStart = SAFETENSORS_LENGTH_BYTES + Number(headerBytes);
  if (dataStart > bytes.length) {
    throw new LoraFileError(`The file declares a ${headerBytes} byte header but has only ${bytes.length} bytes: not a .safetensors file, or cut short`);
  }
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString('utf8', SAFETENSORS_LENGTH_BYTES, dataStart));
  } catch {
    throw new LoraFileError('The file is not a .safetensors file: its header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new LoraFileError('The file is not a .safetensors file: its header is not a JSON object');
  }
  return {
    sha256: createHash('sha256').update(bytes).digest('hex'),
    autov3: createHash('sha256').update(bytes.subarray(dataStart)).digest('hex'),
    byteSize: bytes.length,
    tensorNames: Object.keys(header).filter((name) => name !== '__metadata__'),
  };
}

export interface LorasServiceOptions {
  db: Database;
  blobs: BlobStore;
  models: ModelsService;
  resident: ResidentModels;
}

export interface LoraUpload {
  /** A local file holding the upload (the caller removes it). */
  file: string;
  filename: string;
  model: string;
  name?: string;
  triggerPhrase?: string;
}

export class LorasService {
  readonly #deletedListeners: Array<() => Promise<void>> = [];

  constructor(private readonly options: LorasServiceOptions) {}

  /** Lets the images side give back the file only the deleted LoRA held. */
  onDeleted(listener: () => Promise<void>): void {
    this.#deletedListeners.push(listener);
  }

  /** Stores an outside LoRA after the engine has matched every key against the base model. */
  async upload(tenantId: string, upload: LoraUpload): Promise<LoraRow> {
    const { model } = await this.options.models.getNamed(tenantId, upload.model);
    const refuse = (error: LoraFileError) =>
      new ProblemError({
        status: 422,
        type: 'lora-invalid',
        title: 'Not a usable LoRA',
        detail: `${upload.filename}: ${error.message}`,
        errors: [fieldError('body', 'file', error.message), ...error.problems.slice(0, 50).map((problem) => fieldError('body', 'file', problem))],
      });
    // Read once: hashed here, checked by the engine (from the file), stored as a blob.
    const bytes = await fs.readFile(upload.file);
    let facts: LoraFileFacts;
    try {
      facts = loraFileFacts(bytes);
    } catch (error) {
      if (error instanceof LoraFileError) throw refuse(error);
      throw error;
    }
    const held = await this.options.resident.acquire(tenantId, upload.model);
    let check;
    try {
      check = await held.model.checkLora(upload.file);
    } catch (error) {
      if (isInvalidArgument(error)) throw refuse(new LoraFileError(error.message.replaceAll(upload.file, upload.filename)));
      throw error;
    } finally {
      held.release();
    }
    if (check.problems.length > 0) {
      // An SD 1.x LoRA for an SDXL model (or the reverse) lands here: its keys name modules the model does not have.
      throw refuse(new LoraFileError(
        `${check.problems.length} of its keys do not fit base model ${upload.model} (${FAMILY_NAMES[model.family]}); is it a LoRA of another model family?`,
        check.problems,
      ));
    }
    return this.options.db.transaction(async (tx) => {
      await this.options.models.lockForJob(tx, tenantId, upload.model);
      await createImagesRepository(tx).lockBlob(facts.sha256); // as uploads do: see services/images.ts
      await this.options.blobs.put(bytes);
      return createLorasRepository(tx).insert(tenantId, {
      name: upload.name ?? (upload.filename.replace(/\.safetensors$/i, '') || 'lora'),
      source: 'upload',
      training_run_id: null,
      model_id: upload.model,
      trigger_phrase: upload.triggerPhrase ?? null,
      sha256: facts.sha256,
      autov3: facts.autov3,
      byte_size: facts.byteSize,
      layout: check.layout,
      rank: Math.max(...check.ranks),
      alpha: check.alphas[0] ?? Math.max(...check.ranks),
      modules: check.modules,
      components: check.components,
      });
    });
  }

  /**
   * Registers a succeeded run's LoRA (call it in the transaction that marks the run
   * succeeded, after the file is stored as a blob).
   */
  static async registerFromRun(tx: Queryable, tenantId: string, lora: Omit<NewLora, 'source'>): Promise<LoraRow> {
    return createLorasRepository(tx).insert(tenantId, { ...lora, source: 'training_run' });
  }

  async get(tenantId: string, id: string): Promise<LoraRow> {
    const row = await createLorasRepository(this.options.db).get(tenantId, id);
    if (row === null) throw notFound('LoRA', id);
    return row;
  }

  async list(tenantId: string, filter: { model?: string; source?: string }, limit: number, cursor?: string) {
    const before = cursor === undefined ? undefined : decodeCursor(cursor, LORA_ID);
    const rows = await createLorasRepository(this.options.db).list(
      tenantId,
      { ...(filter.model === undefined ? {} : { modelId: filter.model }), ...(filter.source === undefined ? {} : { source: filter.source }) },
      limit + 1,
      before,
    );
    return toPage(rows, limit, toLora);
  }

  async content(tenantId: string, id: string): Promise<{ row: LoraRow; stream: Readable }> {
    const row = await this.get(tenantId, id);
    const stream = await this.options.blobs.stream(row.sha256);
    if (stream === null) throw new Error(`the file of LoRA ${id} is missing from storage`);
    return { row, stream };
  }

  /** Deletes the LoRA (its file is released once nothing else holds it); 409 while a generation that uses it waits or runs. */
  async delete(tenantId: string, id: string): Promise<void> {
    await this.options.db.transaction(async (tx) => {
      const loras = createLorasRepository(tx);
      if ((await loras.lockForDelete(tenantId, id)) === null) throw notFound('LoRA', id);
      if (await loras.usedByOpenGeneration(id)) {
        throw new ProblemError({
          status: 409,
          type: 'lora-in-use',
          title: 'LoRA in use',
          detail: `LoRA ${id} is used by a queued or running generation; delete it when that has finished (or cancel it)`,
        });
      }
      await loras.delete(tenantId, id);
    });
    for (const listener of this.#deletedListeners) await listener();
  }

  /**
   * The LoRAs a generation asks for, each by its id or by the run that trained it, locked
   * against deletion until the caller's transaction ends: 404 for one the tenant does not
   * have, 422 for one of another base model (lora-family-mismatch when that model is of
   * another family, as far as `familyOf` still knows it).
   */
  static async resolveForGeneration(
    tx: Queryable,
    tenantId: string,
    model: Pick<BaseModel, 'id' | 'family'>,
    uses: Array<{ lora_id?: string; training_run_id?: string; scale: number }>,
    familyOf: (modelId: string) => Promise<ModelFamily | undefined>,
  ): Promise<GenerationLora[]> {
    const modelId = model.id;
    const loras = createLorasRepository(tx);
    const resolved: GenerationLora[] = [];
    for (const [index, use] of uses.entries()) {
      const field = `loras.${index}`;
      if ((use.lora_id === undefined) === (use.training_run_id === undefined)) {
        throw invalidInput('Name each LoRA by lora_id or by training_run_id, not both and not neither', [
          fieldError('body', field, 'must have exactly one of lora_id and training_run_id'),
        ]);
      }
      let row: LoraRow | null;
      if (use.lora_id !== undefined) {
        row = await loras.lockShared(tenantId, use.lora_id);
        if (row === null) {
          throw new ProblemError({
            status: 404,
            type: 'not-found',
            title: 'Not Found',
            detail: `LoRA ${use.lora_id} does not exist`,
            errors: [fieldError('body', `${field}.lora_id`, 'is not a LoRA of yours')],
          });
        }
      } else {
        row = await loras.lockSharedByTrainingRun(tenantId, use.training_run_id!);
        if (row === null) {
          throw new ProblemError({
            status: 404,
            type: 'not-found',
            title: 'Not Found',
            detail: `Training run ${use.training_run_id} has no LoRA: it does not exist or has not succeeded`,
            errors: [fieldError('body', `${field}.training_run_id`, 'is not a succeeded training run of yours')],
          });
        }
      }
      const named = use.lora_id !== undefined ? `${field}.lora_id` : `${field}.training_run_id`;
      const loraFamily = row.model_id === modelId ? model.family : await familyOf(row.model_id);
      if (loraFamily !== undefined && loraFamily !== model.family) {
        throw new ProblemError({
          status: 422,
          type: 'lora-family-mismatch',
          title: 'LoRA of another model family',
          detail: `LoRA ${row.id} adapts ${row.model_id}, an ${FAMILY_NAMES[loraFamily]} model; ${modelId} is ${FAMILY_NAMES[model.family]}`,
          errors: [fieldError('body', named, `is an ${FAMILY_NAMES[loraFamily]} LoRA (of ${row.model_id}); ${modelId} is ${FAMILY_NAMES[model.family]}`)],
        });
      }
      if (row.model_id !== modelId) {
        throw new ProblemError({
          status: 422,
          type: 'lora-model-mismatch',
          title: 'LoRA of another base model',
          detail: `LoRA ${row.id} adapts ${row.model_id}, not ${modelId}`,
          errors: [fieldError('body', named, `adapts ${row.model_id}, not ${modelId}`)],
        });
      }
      resolved.push({ lora_id: row.id, name: row.name, scale: use.scale, sha256: row.sha256, autov3: row.autov3 });
    }
    return resolved;
  }
}
