// Every error leaves as RFC 9457 application/problem+json: route errors, validation
// failures, body-parser errors (bad JSON 400, too large 413, unsupported type 415),
// unknown routes (404), the database out of reach (503 with Retry-After), a full disk (507).
// 5xx details stay in the log, never in the response.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { STATUS_CODES } from 'node:http';
import { isDatabaseUnavailable } from '../db/unavailable.js';
import { ProblemError, databaseUnavailable, fieldError, problemType, type FieldError } from '../errors.js';
import { PROBLEM_CONTENT_TYPE } from '../schemas/problem.js';
import { insufficientStorage, isDiskFull } from '../storage/disk-space.js';

const DATABASE_UNAVAILABLE_TYPE = problemType('database-unavailable');

interface AjvLikeError {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

function pointerToField(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
}

/** Ajv errors -> one FieldError each, naming the offending field itself (missing or unknown ones included). */
export function toFieldErrors(part: string, errors: readonly AjvLikeError[]): FieldError[] {
  const out: FieldError[] = [];
  for (const error of errors) {
    let field = pointerToField(error.instancePath ?? '');
    let message = error.message ?? 'is invalid';
    const extra = error.params?.additionalProperty ?? error.params?.missingProperty;
    if (error.keyword === 'additionalProperties' && typeof extra === 'string') {
      field = field ? `${field}.${extra}` : extra;
      message = 'is not a known field';
    } else if (error.keyword === 'required' && typeof extra === 'string') {
      field = field ? `${field}.${extra}` : extra;
      message = 'is required';
    }
    if (!out.some((e) => e.field === field && e.message === message)) out.push(fieldError(part, field, message));
  }
  return out;
}

interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: FieldError[];
  headers?: Record<string, string>;
}

function statusProblem(status: number, slug: string | undefined, detail: string): Problem {
  return { type: slug ? problemType(slug) : 'about:blank', title: STATUS_CODES[status] ?? 'Error', status, detail };
}

function toProblem(thrown: FastifyError | ProblemError | Error, request: FastifyRequest): Problem {
  const error = isDatabaseUnavailable(thrown) ? databaseUnavailable()
    : isDiskFull(thrown) ? insufficientStorage("The server's storage is full; nothing of this request was stored")
    : thrown;
  if (error instanceof ProblemError) {
    return { type: error.type, title: error.title, status: error.status, detail: error.detail, errors: error.errors, headers: error.headers };
  }
  const fe = error as FastifyError;
  if (fe.validation) {
    const part = fe.validationContext ?? 'body';
    const errors = toFieldErrors(part, fe.validation as AjvLikeError[]);
    const fields = errors.map((e) => e.field || part).join(', ');
    return {
      type: problemType('validation-error'),
      title: 'Invalid request',
      status: 400,
      detail: `Invalid ${part}: ${fields}`,
      errors,
    };
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { ...statusProblem(400, 'malformed-json', 'The request body is not valid JSON'), title: 'Malformed JSON' };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return statusProblem(413, 'payload-too-large', 'The request body is larger than this endpoint accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return statusProblem(
        415,
        'unsupported-media-type',
        `Content-Type ${request.headers['content-type'] ?? '(none)'} is not accepted here`,
      );
  }
  const status = fe.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    // Errors of fastify and its plugins (multipart limits, ...): their message is meant for the client.
    return statusProblem(status, status === 413 ? 'payload-too-large' : undefined, fe.message);
  }
  const serverStatus = status !== undefined && status >= 500 && status < 600 ? status : 500;
  return statusProblem(serverStatus, undefined, 'The server failed to handle this request; see its log for the request id');
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, problem: Problem): FastifyReply {
  const body: Record<string, unknown> = {
    type: problem.type,
    title: problem.title,
    status: problem.status,
    ...(problem.detail !== undefined ? { detail: problem.detail } : {}),
    instance: request.url.split('?')[0],
    request_id: String(request.id),
    ...(problem.errors !== undefined ? { errors: problem.errors } : {}),
  };
  return reply
    .status(problem.status)
    .headers(problem.headers ?? {})
    .type(PROBLEM_CONTENT_TYPE)
    .send(body);
}

export default fp(
  async (fastify) => {
    // While closing, a request that arrives on an open keep-alive connection gets a 503
    // problem (fastify's own answer to it is plain JSON), and the connection is closed.
    let closing = false;
    fastify.addHook('preClose', async () => {
      closing = true;
    });
    fastify.addHook('onRequest', async (_request, reply) => {
      if (!closing) return;
      reply.header('connection', 'close');
      throw new ProblemError({
        status: 503,
        type: 'shutting-down',
        title: 'Service Unavailable',
        detail: 'The server is shutting down; retry the request',
        headers: { 'retry-after': '1' },
      });
    });

    fastify.setErrorHandler((error: FastifyError | ProblemError, request, reply) => {
      const problem = toProblem(error, request);
      if (problem.type === DATABASE_UNAVAILABLE_TYPE) request.log.warn({ err: error }, 'request refused: the database is unavailable');
      else if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
      else request.log.info({ status: problem.status, detail: problem.detail }, 'request rejected');
      return sendProblem(reply, request, problem);
    });

    fastify.setNotFoundHandler((request, reply) =>
      sendProblem(reply, request, statusProblem(404, 'not-found', `No route ${request.method} ${request.url.split('?')[0]}`)),
    );
  },
  { name: 'errors' },
);
