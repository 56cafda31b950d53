// Checks a provider's structured answer before it becomes a training caption. A caption must
// be a non-empty string that starts with the trigger token as a whole word (case-insensitive,
// since the SDXL CLIP tokenizers lower-case anyway) and names the class word somewhere; it is
// trimmed, whitespace (line breaks included) is collapsed, the trigger is re-spelt as configured,
// and it must fit in maxChars. Anything else is an invalid answer (retried once by the caller).
import type { CaptionSubject } from './captioner.js';

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Validates one caption string against the subject and the length limit. */
export function checkCaption(raw: unknown, subject: CaptionSubject, maxChars: number): Checked<string> {
  if (typeof raw !== 'string') return { ok: false, reason: 'caption is missing or not a string' };
  const caption = raw.replace(/\s+/g, ' ').trim();
  if (caption === '') return { ok: false, reason: 'caption is empty' };
  if (caption.length > maxChars) return { ok: false, reason: `caption is ${caption.length} characters, more than ${maxChars}` };
  const trigger = new RegExp(`^${escapeRegExp(subject.trigger)}(?![\\p{L}\\p{N}_])`, 'iu');
  if (!trigger.test(caption)) return { ok: false, reason: 'caption does not begin with the trigger token' };
  const classWord = new RegExp(`(?<![\\p{L}\\p{N}_])${escapeRegExp(subject.classWord)}(?![\\p{L}\\p{N}_])`, 'iu');
  if (!classWord.test(caption)) return { ok: false, reason: 'caption does not name the class word' };
  return { ok: true, value: subject.trigger + caption.slice(subject.trigger.length) };
}

/** Validates the tool/function input of one caption answer: an object with a string `caption`. */
export function checkCaptionAnswer(input: unknown, subject: CaptionSubject, maxChars: number): Checked<string> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { ok: false, reason: 'answer is not a JSON object' };
  }
  return checkCaption((input as Record<string, unknown>).caption, subject, maxChars);
}

/**
 * Validates the consistency pass answer: exactly one caption per id sent, each a valid caption.
 * Returns the captions in the order of `ids`.
 */
export function checkNormalizeAnswer(
  input: unknown,
  ids: readonly string[],
  subject: CaptionSubject,
  maxChars: number,
): Checked<string[]> {
  if (typeof input !== 'object' || input === null || !Array.isArray((input as Record<string, unknown>).captions)) {
    return { ok: false, reason: 'answer has no captions array' };
  }
  const byId = new Map<string, string>();
  for (const item of (input as { captions: unknown[] }).captions) {
    if (typeof item !== 'object' || item === null) return { ok: false, reason: 'a captions entry is not an object' };
    const { id, caption } = item as Record<string, unknown>;
    if (typeof id !== 'string' || !ids.includes(id)) return { ok: false, reason: 'a captions entry has an unknown id' };
    if (byId.has(id)) return { ok: false, reason: `id ${id} is answered twice` };
    const checked = checkCaption(caption, subject, maxChars);
    if (!checked.ok) return { ok: false, reason: `${id}: ${checked.reason}` };
    byId.set(id, checked.value);
  }
  const missing = ids.filter((id) => !byId.has(id));
  if (missing.length > 0) return { ok: false, reason: `no caption for ${missing.join(', ')}` };
  return { ok: true, value: ids.map((id) => byId.get(id) as string) };
}
