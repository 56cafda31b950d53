// Idempotency-Key (IETF httpapi draft "The Idempotency-Key HTTP Header Field") on create
// endpoints. A route opts in with `config: { idempotent: true }`; this plugin then documents
// the optional header (and the 409/422 it may cause) on the route, and hooks it:
//   preValidation  the header is 1..255 printable ASCII characters, or 400;
//   preHandler     claims (tenant, key) in one statement, or answers from the existing
//                  record: the stored response (replayed), 422 (another request), 409 (in flight);
//   onSend         stores a 2xx answer; any other answer frees the key, so a corrected
//                  retry with the same key runs normally.
// The key is claimed after validation: a request refused by its schema claims nothing.
import type { FastifyReply, FastifyRequest, FastifySchema, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { createHash, randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { ProblemError, fieldError, invalidInput } from '../errors.js';
import { createIdempotencyKeysRepository, type ClaimLifetimes, type IdempotencyKeyRow } from '../repositories/idempotency-keys.js';
import { problemResponses } from '../schemas/problem.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Honour an Idempotency-Key request header on this route (plugins/idempotency.ts). */
    idempotent?: boolean;
  }
}

/** Lower-case, as Node names request headers: fastify lower-cases a headers schema only with its own validator compiler, not with src/validation.ts. */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const REPLAYED_HEADER = 'idempotent-replayed';

export const IDEMPOTENCY_LIFETIMES: ClaimLifetimes = {
  // Longer than any create request takes; a claim older than this was left by a process that died.
  inFlightMs: 5 * 60_000,
  // Stripe's window: long enough for a client's retries after an outage.
  storedMs: 24 * 3_600_000,
};

const KEY = /^[\x20-\x7E]{1,255}$/;
/** What a replay repeats besides status and body; request ids and dates are the retry's own. */
const STORED_HEADERS = ['content-type', 'location'];
/** A record deleted between a lost claim and its read is claimed again; after this many, 409. */
const CLAIM_ATTEMPTS = 3;

const IdempotencyKeyHeader = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: '^[ -~]+$',
  description:
    'Makes a retry of this request safe. A request with a key this tenant used in the last 24 hours, with the same ' +
    'method, path and body, creates nothing and gets the first response again (status, body, Location, with ' +
    '`Idempotent-Replayed: true`). The same key with another request: 422 idempotency-key-reused; while the first ' +
    'request is still running: 409 idempotency-key-in-flight (Retry-After: 1). Only 2xx responses are kept: after ' +
    'any other answer the key is free again, so a corrected retry may reuse it. 1 to 255 printable ASCII characters.',
  examples: ['8e03978e-40d5-43e8-bc93-6894a57f9324'],
});

/** JSON with object keys sorted at every depth, so equal bodies give equal text whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    const fields = Object.keys(object)
      .filter((name) => object[name] !== undefined)
      .sort()
      .map((name) => `${JSON.stringify(name)}:${canonicalJson(object[name])}`);
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** sha256 (hex) of what makes two requests the same request: method, route pattern, its params, parsed body. */
export function requestFingerprint(method: string, route: string, params: unknown, body: unknown): string {
  return createHash('sha256').update(canonicalJson({ method, route, params: params ?? {}, body: body ?? null })).digest('hex');
}

/** The route schema with the optional header and the answers it may cause (the route's own 409/422 kept). */
function documented(schema: FastifySchema): FastifySchema {
  const headers = (schema.headers ?? { type: 'object', properties: {} }) as { type?: unknown; properties?: Record<string, unknown> };
  if (headers.type !== 'object') throw new Error('an idempotent route\'s headers schema must be an object schema');
  return {
    ...schema,
    headers: { ...headers, properties: { ...headers.properties, [IDEMPOTENCY_KEY_HEADER]: IdempotencyKeyHeader } },
    response: { ...problemResponses(409, 422), ...(schema.response as object | undefined) },
  };
}

function appendHook<T>(existing: T | T[] | undefined, hook: T): T[] {
  return [...(existing === undefined ? [] : Array.isArray(existing) ? existing : [existing]), hook];
}

function keyReused(): ProblemError {
  return new ProblemError({
    status: 422,
    type: 'idempotency-key-reused',
    title: 'Idempotency-Key reused',
    detail: 'This Idempotency-Key was used with a different request (method, path or body); send a new key for a new request',
    errors: [fieldError('headers', IDEMPOTENCY_KEY_HEADER, 'was already used with a different request')],
  });
}

function keyInFlight(): ProblemError {
  return new ProblemError({
    status: 409,
    type: 'idempotency-key-in-flight',
    title: 'Idempotency-Key in use',
    detail: 'A request with this Idempotency-Key is still being processed; retry shortly to get its response',
    errors: [fieldError('headers', IDEMPOTENCY_KEY_HEADER, 'belongs to a request that is still being processed')],
    headers: { 'retry-after': '1' },
  });
}

/** The body as stored text; undefined when it cannot be stored (a stream). */
function storableBody(payload: unknown): string | undefined {
  if (payload === undefined || payload === null) return '';
  if (typeof payload === 'string') return payload;
  if (Buffer.isBuffer(payload)) return payload.toString('utf8');
  return undefined;
}

interface Claim {
  tenantId: string;
  key: string;
  token: string;
}

export default fp(
  async (fastify) => {
    const keys = createIdempotencyKeysRepository(fastify.db);
    // The claim a request holds until its answer settles it; nothing when it sent no key or was replayed.
    const claims = new WeakMap<FastifyRequest, Claim>();

    const checkHeader = async (request: FastifyRequest): Promise<void> => {
      const value = request.headers[IDEMPOTENCY_KEY_HEADER];
      if (value === undefined) return;
      if (typeof value !== 'string' || !KEY.test(value)) {
        throw invalidInput('Invalid headers: idempotency-key', [
          fieldError('headers', IDEMPOTENCY_KEY_HEADER, 'must be 1 to 255 printable ASCII characters'),
        ]);
      }
    };

    const replay = (reply: FastifyReply, stored: IdempotencyKeyRow): FastifyReply =>
      reply
        .code(stored.response_status!)
        .headers(stored.response_headers ?? {})
        .header(REPLAYED_HEADER, 'true')
        .send(stored.response_body ?? '');

    const claimOrAnswer = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
      const key = request.headers[IDEMPOTENCY_KEY_HEADER];
      if (typeof key !== 'string') return undefined;
      const tenantId = request.tenant.id;
      const fingerprint = requestFingerprint(request.method, request.routeOptions.url ?? request.url, request.params, request.body);
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        const token = randomUUID();
        if (await keys.claim(tenantId, key, fingerprint, token, IDEMPOTENCY_LIFETIMES)) {
          claims.set(request, { tenantId, key, token });
          return undefined;
        }
        const held = await keys.find(tenantId, key);
        if (held === null) continue;
        if (held.fingerprint !== fingerprint) throw keyReused();
        if (held.response_status === null) throw keyInFlight();
        request.log.info({ idempotencyKey: key, status: held.response_status }, 'idempotent request replayed');
        return replay(reply, held);
      }
      throw keyInFlight();
    };

    // Errors are answered through onSend too (plugins/errors.ts), so every answer settles the claim here.
    const settle = async (request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> => {
      const claim = claims.get(request);
      if (claim === undefined) return payload;
      claims.delete(request);
      const status = reply.statusCode;
      try {
        if (status < 200 || status > 299) {
          await keys.release(claim.tenantId, claim.key, claim.token);
          return payload;
        }
        const body = storableBody(payload);
        if (body === undefined) {
          // Freeing the key would let a retry create a second resource: it stays in flight until abandoned.
          request.log.error({ idempotencyKey: claim.key }, 'a streamed response cannot be stored for Idempotency-Key replay');
          return payload;
        }
        const headers: Record<string, string> = {};
        for (const name of STORED_HEADERS) {
          const value = reply.getHeader(name);
          if (value !== undefined) headers[name] = String(value);
        }
        if (!(await keys.complete(claim.tenantId, claim.key, claim.token, { status, headers, body }))) {
          request.log.warn({ idempotencyKey: claim.key }, 'the Idempotency-Key claim was taken over before the response was stored');
        }
      } catch (error) {
        // The answer itself stands: a key left in flight is taken over once abandoned.
        request.log.error({ err: error, idempotencyKey: claim.key }, 'could not settle the Idempotency-Key record');
      }
      return payload;
    };

    // A request that ended without passing onSend (a hijacked reply, a failed write) frees its key.
    const releaseUnsettled = async (request: FastifyRequest): Promise<void> => {
      const claim = claims.get(request);
      if (claim === undefined) return;
      claims.delete(request);
      await keys.release(claim.tenantId, claim.key, claim.token).catch((error: unknown) => {
        request.log.error({ err: error, idempotencyKey: claim.key }, 'could not release the Idempotency-Key record');
      });
    };

    fastify.addHook('onRoute', (route: RouteOptions) => {
      if (route.config?.idempotent !== true) return;
      route.schema = documented(route.schema ?? {});
      route.preValidation = appendHook(route.preValidation, checkHeader) as RouteOptions['preValidation'];
      route.preHandler = appendHook(route.preHandler, claimOrAnswer) as RouteOptions['preHandler'];
      route.onSend = appendHook(route.onSend, settle) as RouteOptions['onSend'];
      route.onResponse = appendHook(route.onResponse, releaseUnsettled) as RouteOptions['onResponse'];
    });
  },
  { name: 'idempotency', dependencies: ['database', 'auth', 'errors'] },
);
