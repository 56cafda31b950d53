// Primitives shared by every resource schema.
import { Type, type TSchema } from 'typebox';
import { idPattern } from '../db/ids.js';

export const Timestamp = Type.String({ format: 'date-time', description: 'RFC 3339 UTC timestamp' });

/** A prefixed resource id such as ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA. */
export function ResourceId(prefix: string, description: string) {
  return Type.String({ pattern: idPattern(prefix), description, examples: [`${prefix}_01JD3Q5V8Z6ZK2W7M4N1T0X9PA`] });
}

export const DEFAULT_PAGE_LIMIT = 20;
export const MAX_PAGE_LIMIT = 100;

export const PaginationQuery = Type.Object(
  {
    limit: Type.Integer({
      minimum: 1,
      maximum: MAX_PAGE_LIMIT,
      default: DEFAULT_PAGE_LIMIT,
      description: 'Most items to return',
    }),
    cursor: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: 'next_cursor of the previous page; omit for the first page' }),
    ),
  },
  { additionalProperties: false },
);

/** A page of `item`s, newest first, and the cursor of the next page (null on the last page). */
export function Page<T extends TSchema>(item: T, description: string) {
  return Type.Object(
    {
      data: Type.Array(item),
      next_cursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as cursor to get the next page; null when this is the last page',
      }),
    },
    { description, additionalProperties: false },
  );
}
