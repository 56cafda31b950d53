// Errors that carry their HTTP answer. Anything thrown in a route that is a
// ProblemError is rendered as RFC 9457 application/problem+json by plugins/errors.ts;
// anything else becomes a 500 whose details stay in the log.
import { STATUS_CODES } from 'node:http';

/** Problem `type` URIs: tag URIs (RFC 4151), as RFC 9457 §4 suggests for types that are not meant to be dereferenced. */
export const PROBLEM_TYPE_BASE = 'tag:sdxl-lora-service,2026:problem:';

export function problemType(slug: string): string {
  return PROBLEM_TYPE_BASE + slug;
}

/** One invalid input, named both as a JSON pointer into its request part and as a plain field path. */
export interface FieldError {
  /** Request part: body, querystring, params or headers. */
  in: string;
  /** RFC 6901 pointer inside that part, e.g. /name. */
  pointer: string;
  /** Dotted path, e.g. name or items.0.caption; empty when the whole part is wrong. */
  field: string;
  message: string;
}

export interface ProblemInit {
  status: number;
  /** Short slug appended to PROBLEM_TYPE_BASE; omitted means about:blank. */
  type?: string;
  title?: string;
  detail?: string;
  errors?: FieldError[];
  /** Extra response headers (WWW-Authenticate, Retry-After, ...). */
  headers?: Record<string, string>;
}

export class ProblemError extends Error {
  override name = 'ProblemError';
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string | undefined;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string>;

  constructor(init: ProblemInit) {
    super(init.detail ?? init.title ?? STATUS_CODES[init.status] ?? 'Error');
    this.status = init.status;
    this.type = init.type === undefined ? 'about:blank' : problemType(init.type);
    this.title = init.title ?? STATUS_CODES[init.status] ?? 'Error';
    this.detail = init.detail;
    this.errors = init.errors;
    this.headers = init.headers ?? {};
  }
}

export function notFound(resource: string, id: string): ProblemError {
  return new ProblemError({ status: 404, type: 'not-found', title: 'Not Found', detail: `${resource} ${id} does not exist` });
}

export function invalidInput(detail: string, errors: FieldError[]): ProblemError {
  return new ProblemError({ status: 400, type: 'validation-error', title: 'Invalid request', detail, errors });
}

/** A well-formed request that the base model it names cannot take (a param of another model family, a size beyond the model's): 422. */
export function unsupportedByModel(detail: string, errors: FieldError[]): ProblemError {
  return new ProblemError({ status: 422, type: 'unsupported-by-model', title: 'Not supported by the base model', detail, errors });
}

export function fieldError(where: string, field: string, message: string): FieldError {
  const pointer = field === '' ? '' : '/' + field.split('.').map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
  return { in: where, pointer, field, message };
}

/** How soon a client may retry a request the database could not serve: a restart or failover takes seconds. */
export const DATABASE_RETRY_AFTER_S = 5;

/** The database cannot be reached (restart, failover, network cut): 503, and the client retries after Retry-After. */
export function databaseUnavailable(): ProblemError {
  return new ProblemError({
    status: 503,
    type: 'database-unavailable',
    title: 'Database unavailable',
    detail: `The database does not answer; retry in ${DATABASE_RETRY_AFTER_S} s`,
    headers: { 'retry-after': String(DATABASE_RETRY_AFTER_S) },
  });
}
