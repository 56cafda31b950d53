// Bearer API keys. `fastify.authenticate` is an onRequest hook that the /v1 routes install;
// it sets request.tenant, which every repository call is scoped by.
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ProblemError } from '../errors.js';
import type { Tenant } from '../repositories/tenants.js';
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

export default fp(
  async (fastify) => {
    fastify.decorateRequest('tenant', null as unknown as Tenant);
    fastify.decorateRequest('apiKeyId', '');
    fastify.decorate('authenticate', async (request: FastifyRequest) => {
      const header = request.headers.authorization;
      if (header === undefined || header === '') {
        throw unauthorized('Send an API key as Authorization: Bearer <key>', false);
      }
      const match = BEARER.exec(header);
      if (!match) throw unauthorized('The Authorization header must be Bearer <key>', true);
      const owner = await findKeyOwner(fastify.db, match[1]!);
      if (!owner) throw unauthorized('The API key is not valid', true);
      request.tenant = owner.tenant;
      request.apiKeyId = owner.keyId;
      request.log = request.log.child({ tenant: owner.tenant.id });
    });
  },
  { name: 'auth', dependencies: ['database', 'errors'] },
);
