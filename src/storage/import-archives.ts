// The archives of dataset imports, as files DATA_DIR/imports/<import id>.archive: written
// from the request as its bytes arrive (hashed and counted on the way, never held whole),
// read by the worker, deleted when the import ends.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const SUFFIX = '.archive';
const PARTIAL_SUFFIX = '.partial';
/** Bytes kept from the start of the archive, for sniffing its format (a tar's magic is at 257). */
const HEAD_BYTES = 512;

export interface StoredArchive {
  bytes: number;
  sha256: string;
  /** The first bytes, for sniffing. */
  head: Buffer;
}

/** The body passed `maxBytes`: nothing was kept. */
export class ArchiveTooLargeError extends Error {
  override name = 'ArchiveTooLargeError';
}

export class ImportArchives {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  pathOf(id: string): string {
    return join(this.root, `${id}${SUFFIX}`);
  }

  /**
   * Writes `source` to the import's file, durably, while hashing it. Throws
   * ArchiveTooLargeError past `maxBytes`, and whatever the source throws; in every failure
   * the partial file is removed.
   */
  async write(id: string, source: Readable, maxBytes: number): Promise<StoredArchive> {
    await mkdir(this.root, { recursive: true });
    const partial = `${this.pathOf(id)}${PARTIAL_SUFFIX}`;
    const hash = createHash('sha256');
    let bytes = 0;
    let head = Buffer.alloc(0);
    async function* counted(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of chunks) {
        bytes += chunk.length;
        if (bytes > maxBytes) throw new ArchiveTooLargeError(`the archive is larger than ${maxBytes} bytes`);
        if (head.length < HEAD_BYTES) head = Buffer.concat([head, chunk.subarray(0, HEAD_BYTES - head.length)]);
        hash.update(chunk);
        yield chunk;
      }
    }
    const file = createWriteStream(partial, { flags: 'wx' });
    try {
      // The request is not destroyed when the limit is met: the refusal must still reach the client.
      await pipeline(counted(source.iterator({ destroyOnReturn: false })), file);
      const handle = await open(partial, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(partial, this.pathOf(id));
    } catch (error) {
      // A stream that failed before its file was open still creates it once the open completes:
      // wait for its close, or the partial file would appear after this removed it.
      if (!file.closed) await once(file, 'close').catch(() => undefined);
      await rm(partial, { force: true });
      throw error;
    }
    return { bytes, sha256: hash.digest('hex'), head };
  }

  async remove(id: string): Promise<void> {
    await rm(this.pathOf(id), { force: true });
  }

  /** When the archive of `id` was stored; null when there is none. */
  async storedAt(id: string): Promise<Date | null> {
    const info = await stat(this.pathOf(id)).catch(() => null);
    return info === null ? null : info.mtime;
  }

  /** Ids of the stored archives (not the partial ones: a request may be writing them). */
  async ids(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names.filter((name) => name.endsWith(SUFFIX)).map((name) => name.slice(0, -SUFFIX.length));
  }
}
