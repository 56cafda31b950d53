// Opaque keyset cursors: base64url of {"after": <last id of the page>}. Ids are
// time-ordered (src/db/ids.ts), so "newest first" pages are "id < after".
import { fieldError, invalidInput } from '../errors.js';

interface CursorPayload {
  after: string;
}

export function encodeCursor(lastId: string): string {
  return Buffer.from(JSON.stringify({ after: lastId } satisfies CursorPayload)).toString('base64url');
}

/** The id the page starts after; a 400 naming the cursor field when it is not one of ours. */
export function decodeCursor(cursor: string, idPattern: RegExp): string {
  try {
    const payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (
      typeof payload === 'object' && payload !== null &&
      typeof (payload as CursorPayload).after === 'string' &&
      idPattern.test((payload as CursorPayload).after)
    ) {
      return (payload as CursorPayload).after;
    }
  } catch {
    // fall through: not base64url JSON
  }
  throw invalidInput('The cursor is not valid; pass next_cursor from a previous page unchanged', [
    fieldError('querystring', 'cursor', 'is not a cursor returned by this endpoint'),
  ]);
}

/** Splits a result of limit+1 rows into the page and the next cursor. */
export function toPage<Row extends { id: string }, Item>(rows: Row[], limit: number, map: (row: Row) => Item) {
  const hasMore = rows.length > limit;
  const pageRows = hasMore ? rows.slice(0, limit) : rows;
  const last = pageRows[pageRows.length - 1];
  return {
    data: pageRows.map(map),
    next_cursor: hasMore && last ? encodeCursor(last.id) : null,
  };
}
