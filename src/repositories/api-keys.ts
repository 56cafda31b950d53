// SQL for API keys. Only hashes are stored: see services/api-keys.ts for why sha256 is enough.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import type { Tenant } from './tenants.js';

export interface ApiKeyOwner {
  keyId: string;
  tenant: Tenant;
}

export function createApiKeysRepository(db: Queryable) {
  return {
    async insert(tenantId: string, keyHash: string, keyPrefix: string): Promise<string> {
      const id = newId('key');
      await db.query('INSERT INTO api_keys (id, tenant_id, key_hash, key_prefix) VALUES ($1, $2, $3, $4)', [
        id,
        tenantId,
        keyHash,
        keyPrefix,
      ]);
      return id;
    },

    /** The tenant owning the unrevoked key with this hash, or null. */
    async findOwnerByHash(keyHash: string): Promise<ApiKeyOwner | null> {
      const { rows } = await db.query<{ key_id: string; tenant_id: string; tenant_name: string }>(
        `SELECT k.id AS key_id, t.id AS tenant_id, t.name AS tenant_name
           FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
          WHERE k.key_hash = $1 AND k.revoked_at IS NULL`,
        [keyHash],
      );
      const row = rows[0];
      return row ? { keyId: row.key_id, tenant: { id: row.tenant_id, name: row.tenant_name } } : null;
    },

    /** Marks the key revoked; false when there is no such unrevoked key. */
    async revokeById(keyId: string): Promise<boolean> {
      const { rowCount } = await db.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [keyId]);
      return rowCount > 0;
    },

    async revokeByHash(keyHash: string): Promise<boolean> {
      const { rowCount } = await db.query('UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL', [keyHash]);
      return rowCount > 0;
    },
  };
}
export type ApiKeysRepository = ReturnType<typeof createApiKeysRepository>;
