// Owners of recently used API keys, so a request does not ask the database who its key
// belongs to. Revocation is honoured within API_KEY_CACHE_MS at worst: every entry expires
// after that long, and a committed change to api_keys (revoke, delete, a tenant deleted)
// sends NOTIFY api_keys, on which each replica empties its cache at once. Unknown keys are
// never cached, so guessing fills nothing; the entries are bounded and the oldest leave first.
import type { ApiKeyOwner } from '../repositories/api-keys.js';

export interface ApiKeyCacheOptions {
  /** How long an entry is trusted; 0 disables the cache. */
  ttlMs: number;
  /** Most entries kept (one per key in use). */
  maxEntries?: number;
  now?: () => number;
}

const DEFAULT_MAX_ENTRIES = 10_000;

export class ApiKeyCache {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  /** Key hash → owner and when it stops being trusted; Map order is insertion order, oldest first. */
  readonly #entries = new Map<string, { owner: ApiKeyOwner; expiresAt: number }>();

  constructor(options: ApiKeyCacheOptions) {
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#now = options.now ?? Date.now;
  }

  get(keyHash: string): ApiKeyOwner | undefined {
    const entry = this.#entries.get(keyHash);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#now()) {
      this.#entries.delete(keyHash);
      return undefined;
    }
    return entry.owner;
  }

  set(keyHash: string, owner: ApiKeyOwner): void {
    if (this.#ttlMs === 0) return;
    this.#entries.delete(keyHash);
    this.#entries.set(keyHash, { owner, expiresAt: this.#now() + this.#ttlMs });
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  /** Something changed in api_keys: trust nothing cached. */
  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
