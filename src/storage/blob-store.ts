import type { Readable } from 'node:stream';

/** Identity of a stored blob: its content hash is its address. */
export interface BlobRef {
  /** Lower-case hex SHA-256 of the bytes. */
  sha256: string;
  /** Size in bytes. */
  size: number;
}

/**
 * Content-addressed byte storage. Putting the same bytes twice stores them once.
 * The filesystem implementation lives in fs-blob-store.ts; an S3-compatible one
 * only has to honour the same contract (put is durable when it resolves).
 */
export interface BlobStore {
  /** Stores the bytes durably and returns their address; a no-op when they are already stored. */
  put(bytes: Uint8Array): Promise<BlobRef>;
  /** The whole blob, or null when it does not exist. */
  get(sha256: string): Promise<Buffer | null>;
  /** A stream of the blob, or null when it does not exist. */
  stream(sha256: string): Promise<Readable | null>;
  exists(sha256: string): Promise<boolean>;
  /** When the blob was written, or null when it does not exist. */
  writtenAt(sha256: string): Promise<Date | null>;
  /** Removes the blob; true when something was removed. */
  delete(sha256: string): Promise<boolean>;
  /** Every stored address (used by the orphan sweep). */
  list(): AsyncIterable<string>;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Addresses come from URLs and rows: refuse anything that is not a plain hex digest before touching storage. */
export function assertSha256(sha256: string): void {
  if (!SHA256_HEX.test(sha256)) throw new TypeError(`Expected a lower-case hex SHA-256 but received ${JSON.stringify(sha256)}`);
}

export function isSha256(value: string): boolean {
  return SHA256_HEX.test(value);
}
