// Issuing and checking API keys.
//
// A key is "sdxl_" + 32 random bytes (base64url). It is shown once and only its sha256
// is stored. A fast unsalted hash is enough here, unlike for passwords: with 256 bits
// of randomness there is nothing to guess, so slow hashes (bcrypt, argon2) and salts,
// which defend low-entropy secrets against dictionaries, would add cost per request and
// nothing else. Being deterministic, the hash is also the lookup key (unique index).
import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../db/database.js';
import { createApiKeysRepository, type ApiKeyOwner } from '../repositories/api-keys.js';
import type { ApiKeyCache } from './api-key-cache.js';
import { createTenantsRepository, type Tenant } from '../repositories/tenants.js';

export const API_KEY_PREFIX = 'sdxl_';
const API_KEY_RANDOM_BYTES = 32;
/** Characters of a key kept in clear (prefix plus 4) to tell keys apart. */
const VISIBLE_KEY_CHARS = API_KEY_PREFIX.length + 4;

export const DEFAULT_TENANT_NAME = 'default';

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export interface IssuedApiKey {
  /** The secret; not retrievable later. */
  key: string;
  keyId: string;
  tenant: Tenant;
}

/** Creates a key for the tenant called `tenantName` (creating the tenant when new). */
export async function issueApiKey(db: Database, tenantName: string): Promise<IssuedApiKey> {
  return db.transaction(async (tx) => {
    const tenant = await createTenantsRepository(tx).upsertByName(tenantName);
    const key = API_KEY_PREFIX + randomBytes(API_KEY_RANDOM_BYTES).toString('base64url');
    const keyId = await createApiKeysRepository(tx).insert(tenant.id, hashApiKey(key), key.slice(0, VISIBLE_KEY_CHARS));
    return { key, keyId, tenant };
  });
}

/** The owner of `key`, or null when it is unknown or revoked; from `cache` when it holds the key. */
export async function findKeyOwner(db: Database, key: string, cache?: ApiKeyCache): Promise<ApiKeyOwner | null> {
  if (!key.startsWith(API_KEY_PREFIX)) return null;
  const hash = hashApiKey(key);
  const cached = cache?.get(hash);
  if (cached !== undefined) return cached;
  const owner = await createApiKeysRepository(db).findOwnerByHash(hash);
  if (owner !== null) cache?.set(hash, owner);
  return owner;
}

/**
 * Revokes a key, named by its id (key_...) or by the key itself; false when no unrevoked
 * key matches. Replicas stop accepting it at once (NOTIFY), at worst after API_KEY_CACHE_MS.
 */
export async function revokeApiKey(db: Database, idOrKey: string): Promise<boolean> {
  const keys = createApiKeysRepository(db);
  return idOrKey.startsWith(API_KEY_PREFIX) ? keys.revokeByHash(hashApiKey(idOrKey)) : keys.revokeById(idOrKey);
}

/** On a database with no tenant at all, creates the default tenant and a key for it; null otherwise. */
export async function issueFirstApiKey(db: Database): Promise<IssuedApiKey | null> {
  if ((await createTenantsRepository(db).count()) > 0) return null;
  return issueApiKey(db, DEFAULT_TENANT_NAME);
}
