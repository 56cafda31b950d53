// API keys for the caption providers: from an environment variable or, when that is empty,
// from a secret file (a mounted Kubernetes/Docker secret). The value is wrapped so that
// logging or serialising a config object prints "[redacted]" instead of the key.
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/** An API key that does not show itself in logs, JSON or util.inspect; reveal() is for the HTTP client only. */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

export class SecretFileError extends Error {
  override name = 'SecretFileError';
}

/**
 * The key from `value` when it is non-empty, else from the file at `filePath` (trimmed, so a
 * trailing newline of `echo key > file` does not end up in the Authorization header).
 * undefined when neither gives a key. The error names the variable and path, never the content.
 */
export function readSecret(value: string | undefined, filePath: string | undefined, fileVariable: string): Secret | undefined {
  const direct = value?.trim() ?? '';
  if (direct !== '') return new Secret(direct);
  if (filePath === undefined || filePath.trim() === '') return undefined;
  let content: string;
  try {
    content = readFileSync(filePath.trim(), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new SecretFileError(`${fileVariable}: cannot read ${filePath.trim()} (${code})`);
  }
  const key = content.trim();
  if (key === '') throw new SecretFileError(`${fileVariable}: ${filePath.trim()} is empty`);
  return new Secret(key);
}

/** Longest provider error text kept in an error message. */
const MAX_MESSAGE_CHARS = 300;

/**
 * Makes provider error text safe to log and store: removes the keys (some servers echo the
 * key they were sent), replaces long base64 runs (servers that echo the request would echo
 * image bytes) and cuts the text short.
 */
export function redactText(text: string, secrets: readonly (Secret | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    const key = secret?.reveal();
    if (key !== undefined && key !== '') out = out.split(key).join(REDACTED);
  }
  out = out.replace(/[A-Za-z0-9+/=_-]{100,}/g, '[data]');
  return out.length > MAX_MESSAGE_CHARS ? `${out.slice(0, MAX_MESSAGE_CHARS)}...` : out;
}
