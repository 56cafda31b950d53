// Base models kept loaded for generations: one copy per (model, device, dtype), shared by
// every generation that runs on it at once (the engine's forward passes never change the
// frozen weights, and LoRAs are applied per call, unmerged). Models no generation holds
// are evicted least recently used first when the resident bytes pass MODEL_CACHE_BYTES; a
// model in use is never evicted, so the budget may be passed while all of them are busy.
// (The trainer loads its own copy: it changes which modules carry gradients.)
import { loadModel, type LoadOptions, type Model } from '../engine/index.js';
import type { ModelsService } from './models.js';

const BYTES_PER_ELEMENT: Record<string, number> = { float32: 4, bfloat16: 2, float16: 2 };

export interface ResidentModelsOptions {
  models: ModelsService;
  /** "cpu", "cuda" or "cuda:N". */
  device: string;
  /** "float32", "bfloat16" or "float16". */
  dtype: string;
  /** MODEL_CACHE_BYTES: resident weights kept when no generation holds them. */
  maxBytes: number;
  /** LORA_CACHE_BYTES: parsed LoRAs each resident model keeps (the engine's own cache). */
  loraCacheBytes: number;
  /** Loads a model (tests count loads). */
  load?: (options: LoadOptions) => Promise<Model>;
}

/** A model held for one generation; release() when done with it. */
export interface HeldModel {
  model: Model;
  /** Seconds this acquire waited for a load (0 when the model was resident). */
  loadSeconds: number;
  release(): void;
}

interface Entry {
  key: string;
  loading: Promise<Model>;
  model: Model | undefined;
  bytes: number;
  users: number;
  lastUsed: number;
}

export interface ResidentModelsStats {
  resident: number;
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
}

export class ResidentModels {
  readonly #options: ResidentModelsOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #stats = { hits: 0, misses: 0, evictions: 0 };
  #clock = 0;

  constructor(options: ResidentModelsOptions) {
    this.#options = options;
  }

  get device(): string {
    return this.#options.device;
  }

  get dtype(): string {
    return this.#options.dtype;
  }

  /**
   * The model loaded on this process's device and dtype, held until release(). `tenantId`:
   * whose request it is (a tenant's own model is found for that tenant only; null: the
   * server's models only). Tenant models' ids are unique, so every tenant shares a copy of
   * a server model and no tenant ever meets another's.
   */
  async acquire(tenantId: string | null, modelId: string): Promise<HeldModel> {
    const { device, dtype } = this.#options;
    const key = `${modelId}|${device}|${dtype}`;
    let entry = this.#entries.get(key);
    const started = performance.now();
    if (entry === undefined) {
      this.#stats.misses++;
      const load = this.#options.load ?? loadModel;
      const loading = this.#options.models.get(tenantId, modelId).then((resolved) =>
        load({
          modelPath: resolved.modelPath,
          ...(resolved.configDir === undefined ? {} : { configDir: resolved.configDir }),
          device,
          dtype,
          loraCacheBytes: this.#options.loraCacheBytes,
        }),
      );
      entry = { key, loading, model: undefined, bytes: 0, users: 0, lastUsed: 0 };
      this.#entries.set(key, entry);
      const created = entry;
      loading.then(
        (model) => {
          created.model = model;
          const info = model.describe();
          const elements = info.unetParameters + info.vaeParameters + info.textEncoderParameters + info.textEncoder2Parameters;
          created.bytes = elements * (BYTES_PER_ELEMENT[info.dtype] ?? 4);
        },
        () => this.#entries.delete(key), // a failed load is tried again by the next acquire
      );
    } else {
      this.#stats.hits++;
    }
    const wasResident = entry.model !== undefined;
    entry.users++;
    entry.lastUsed = ++this.#clock;
    let model: Model;
    try {
      model = await entry.loading;
    } catch (error) {
      entry.users--;
      throw error;
    }
    const loadSeconds = wasResident ? 0 : (performance.now() - started) / 1000;
    this.#evict();
    let released = false;
    const held = entry;
    return {
      model,
      loadSeconds,
      release: () => {
        if (released) return;
        released = true;
        held.users--;
        held.lastUsed = ++this.#clock;
        this.#evict();
      },
    };
  }

  stats(): ResidentModelsStats {
    let bytes = 0;
    let resident = 0;
    for (const entry of this.#entries.values()) {
      if (entry.model === undefined) continue;
      resident++;
      bytes += entry.bytes;
    }
    return { resident, bytes, ...this.#stats };
  }

  /** Models no generation holds, least recently used first, until the resident bytes fit. */
  #evict(): void {
    const loaded = [...this.#entries.values()].filter((entry) => entry.model !== undefined);
    let total = loaded.reduce((sum, entry) => sum + entry.bytes, 0);
    for (const entry of loaded.sort((a, b) => a.lastUsed - b.lastUsed)) {
      if (total <= this.#options.maxBytes) return;
      if (entry.users > 0) continue;
      this.#entries.delete(entry.key);
      entry.model!.dispose(); // jobs still running on it finish first (the engine holds a reference)
      total -= entry.bytes;
      this.#stats.evictions++;
    }
  }

  /** Lets go of a model that no longer exists (a deleted tenant model): at once when no generation holds it, else when the last one releases it. */
  forget(modelId: string): void {
    for (const entry of [...this.#entries.values()]) {
      if (!entry.key.startsWith(`${modelId}|`)) continue;
      this.#entries.delete(entry.key);
      // Generations still running on it finish first: the engine holds its own reference.
      void entry.loading.then((model) => model.dispose(), () => {});
    }
  }

  /** Forgets every model (the process is closing; running generations have stopped). */
  close(): void {
    for (const entry of this.#entries.values()) entry.model?.dispose();
    this.#entries.clear();
  }
}
