// Conditional and partial downloads (RFC 9110 §13 and §14) for content addressed by
// its SHA-256: the ETag is the quoted hash (or the hash and the name of a derived
// representation), so it never changes for the same URL.
import type { ByteRange } from '../storage/run-file-store.js';

/**
 * §13.1.2 If-None-Match against the ETag `etag` (quoted, as sent: `"abc"` or `W/"abc"`):
 * weak comparison, a list of tags, or "*".
 */
export function ifNoneMatchTag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const opaque = etag.replace(/^W\//, '');
  return header.split(',').some((tag) => {
    const trimmed = tag.trim();
    return trimmed === '*' || trimmed.replace(/^W\//, '') === opaque;
  });
}

/** If-None-Match against the ETag of content addressed by its SHA-256 (the quoted hash). */
export function ifNoneMatch(header: string | undefined, sha256: string): boolean {
  return ifNoneMatchTag(header, `"${sha256}"`);
}

/**
 * §14.2 Range, for one range of a `size`-byte representation: the range to send,
 * 'unsatisfiable' (416), or undefined to send the whole (no Range, one this server does
 * not do, several ranges, or an If-Range that no longer matches: §13.1.5 strong match).
 */
export function requestedRange(
  range: string | undefined,
  ifRange: string | undefined,
  sha256: string,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  if (range === undefined) return undefined;
  if (ifRange !== undefined && ifRange.trim() !== `"${sha256}"`) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
  if (match === null) return undefined; // another unit, or several ranges: the whole file is a valid answer
  const [, first, last] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    // A suffix: the last N bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - length), end: size - 1 };
  }
  const start = Number(first);
  if (start >= size) return 'unsatisfiable';
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (end < start) return undefined; // invalid: ignored, as §14.2 allows
  return { start, end };
}
