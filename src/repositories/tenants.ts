// SQL for tenants: the owners of every other row.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';

export interface Tenant {
  id: string;
  name: string;
}

export function createTenantsRepository(db: Queryable) {
  return {
    /** The tenant called `name`, created when missing. */
    async upsertByName(name: string): Promise<Tenant> {
      const { rows } = await db.query<Tenant>(
        `INSERT INTO tenants (id, name) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
         RETURNING id, name`,
        [newId('tn'), name],
      );
      return rows[0]!;
    },

    async count(): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants');
      return rows[0]!.n;
    },
  };
}
export type TenantsRepository = ReturnType<typeof createTenantsRepository>;
