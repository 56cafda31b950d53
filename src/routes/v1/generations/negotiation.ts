// Reading two request headers of the generations routes: Prefer (RFC 7240) and Accept
// (RFC 9110 §12.5.1), each to the one decision the route needs.
import { IMAGE_FORMATS, type ImageMediaType } from '../../../services/generations.js';

/** The longest a request may wait for its generation, as Replicate's sync mode. */
export const MAX_WAIT_SECONDS = 60;

/**
 * Seconds to wait from `Prefer: wait=N` (a bare `wait` means the most), capped at
 * MAX_WAIT_SECONDS; undefined when the client prefers no wait. Preferences are hints: an
 * unreadable one is ignored, as §2 asks.
 */
export function preferredWaitSeconds(header: string | string[] | undefined): number | undefined {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  for (const value of values) {
    for (const preference of value.split(',')) {
      const [token = '', argument] = preference.split(';')[0]!.split('=').map((part) => part.trim());
      if (token.toLowerCase() !== 'wait') continue;
      if (argument === undefined || argument === '') return MAX_WAIT_SECONDS;
      const seconds = Number(argument.replace(/^"|"$/g, ''));
      if (Number.isInteger(seconds) && seconds >= 0) return Math.min(seconds, MAX_WAIT_SECONDS);
    }
  }
  return undefined;
}

/** The image type the client accepts most (PNG when it does not care); undefined when it accepts none of ours. */
export function negotiateImageType(accept: string | undefined): ImageMediaType | undefined {
  if (accept === undefined || accept.trim() === '') return 'image/png';
  const ranges = accept.split(',').map((entry) => {
    const [range = '', ...parameters] = entry.split(';').map((part) => part.trim().toLowerCase());
    const q = parameters.find((parameter) => parameter.startsWith('q='));
    return { range, q: q === undefined ? 1 : Number(q.slice(2)) };
  });
  const quality = (type: string): number => {
    // The most specific range that matches decides (§12.5.1).
    const exact = ranges.find((r) => r.range === type);
    if (exact !== undefined) return exact.q;
    const family = ranges.find((r) => r.range === 'image/*');
    if (family !== undefined) return family.q;
    return ranges.find((r) => r.range === '*/*')?.q ?? 0;
  };
  let best: ImageMediaType | undefined;
  let bestQ = 0;
  // In order of our preference, so ties go to PNG (with its parameters chunk).
  for (const type of Object.keys(IMAGE_FORMATS) as ImageMediaType[]) {
    const q = quality(type);
    if (Number.isFinite(q) && q > bestQ) {
      best = type;
      bestQ = q;
    }
  }
  return best;
}
