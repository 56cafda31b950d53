// RFC 9457 problem details: one shared schema ($ref Problem in OpenAPI) and a helper
// that documents a route's error answers with it.
import { Type, type TSchema } from 'typebox';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export const FieldErrorSchema = Type.Object(
  {
    in: Type.String({ description: 'Request part: body, querystring, params or headers', examples: ['body'] }),
    pointer: Type.String({ description: 'JSON pointer (RFC 6901) inside that part', examples: ['/name'] }),
    field: Type.String({ description: 'Dotted path of the field, empty for the whole part', examples: ['name'] }),
    message: Type.String({ examples: ['must NOT have more than 100 characters'] }),
  },
  { $id: 'FieldError', additionalProperties: false },
);

export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'URI naming the kind of problem; about:blank when the status says it all' }),
    title: Type.String({ description: 'Short summary of the kind of problem' }),
    status: Type.Integer({ minimum: 400, maximum: 599 }),
    detail: Type.Optional(Type.String({ description: 'What went wrong with this request' })),
    instance: Type.String({ description: 'The request path the problem occurred on' }),
    request_id: Type.String({ description: 'The id this request has in the server log (also the x-request-id header)' }),
    errors: Type.Optional(
      Type.Array(Type.Ref('FieldError'), { description: 'Each invalid field, for validation problems' }),
    ),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details', additionalProperties: true },
);

/** Reference to the shared Problem schema. */
export const ProblemRef = Type.Ref('Problem');

const DESCRIPTIONS: Record<number, string> = {
  400: 'The request is malformed or a field is invalid',
  401: 'The API key is missing or not valid',
  403: 'The API key may not do this',
  404: 'No such resource for this tenant',
  409: 'The resource is in a state that does not allow this',
  413: 'The request body or an uploaded file is too large',
  415: 'The request has an unsupported Content-Type',
  422: 'The request is well-formed but cannot be processed',
  500: 'Unexpected server error',
  503: 'The database is unavailable (retry after Retry-After), the service is not ready, or the native engine is not built',
  507: "The server's storage is full, or below its free-space floor (DATA_DIR_MIN_FREE_BYTES)",
};

/** Response schemas for the listed error statuses, each answered with application/problem+json. */
export function problemResponses(...statuses: number[]): Record<number, TSchema> {
  const responses: Record<number, TSchema> = {};
  for (const status of statuses) {
    responses[status] = {
      description: DESCRIPTIONS[status] ?? 'Error',
      content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemRef } },
    } as unknown as TSchema;
  }
  return responses;
}
