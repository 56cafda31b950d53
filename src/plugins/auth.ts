// Bearer API keys. `fastify.authenticate` is an onRequest hook that the /v1 routes install;
// it sets request.tenant, which every repository call is scoped by. Key owners are cached
// for API_KEY_CACHE_MS; NOTIFY api_keys (migration 010) empties the cache on every replica
// when a key is revoked, so a revocation takes effect at once, and after the TTL at worst.
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ProblemError } from '../errors.js';
import type { Tenant } from '../repositories/tenants.js';
import { ApiKeyCache } from '../services/api-key-cache.js';
import { findKeyOwner } from '../services/api-keys.js';

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
  interface FastifyRequest {
    /** The caller's tenant; set by authenticate, so present in every /v1 handler. */
    tenant: Tenant;
    apiKeyId: string;
  }
}

const REALM = 'sdxl-lora-service';
const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

function unauthorized(detail: string, invalidToken: boolean): ProblemError {
  // RFC 6750 §3: a challenge always; error="invalid_token" only when a token was sent.
  const challenge = `Bearer realm="${REALM}"` + (invalidToken ? ', error="invalid_token"' : '');
  return new ProblemError({ status: 401, type: 'unauthorized', title: 'Unauthorized', detail, headers: { 'www-authenticate': challenge } });
}

/**
 * Adds the tenant to the request's logger. Fastify already made that logger for this request
 * alone, so it is given the binding (pino's setBindings) instead of a second child per request,
 * which measured 20 to 25 % more CPU on a cached-key GET (docs/perf.md).
 */
function bindTenant(request: FastifyRequest, tenantId: string): void {
  const log = request.log as FastifyBaseLogger & { setBindings?: (bindings: Record<string, unknown>) => void };
  if (typeof log.setBindings === 'function') log.setBindings({ tenant: tenantId });
  else request.log = request.log.child({ tenant: tenantId });
}

export default fp(
  async (fastify) => {
    fastify.decorateRequest('tenant', null as unknown as Tenant);
    fastify.decorateRequest('apiKeyId', '');
    const cache = new ApiKeyCache({ ttlMs: fastify.config.apiKeyCacheMs });
    // A worker authenticates no request: it needs no cache to empty, nor the connection LISTEN holds.
    if (fastify.config.apiKeyCacheMs > 0 && fastify.config.role !== 'worker') {
      // While its connection is down, a revoked key is refused once its cache entry expires (API_KEY_CACHE_MS).
      const listener = await fastify.db.listen('api_keys', () => cache.clear());
      fastify.addHook('onClose', async () => {
        await listener.close();
      });
    }
    fastify.decorate('authenticate', async (request: FastifyRequest) => {
      const header = request.headers.authorization;
      if (header === undefined || header === '') {
        throw unauthorized('Send an API key as Authorization: Bearer <key>', false);
      }
      const match = BEARER.exec(header);
      if (!match) throw unauthorized('The Authorization header must be Bearer <key>', true);
      const owner = await findKeyOwner(fastify.db, match[1]!, cache);
      if (!owner) throw unauthorized('The API key is not valid', true);
      request.tenant = owner.tenant;
      request.apiKeyId = owner.keyId;
      bindTenant(request, owner.tenant.id);
    });
  },
  { name: 'auth', dependencies: ['database', 'errors'] },
);
