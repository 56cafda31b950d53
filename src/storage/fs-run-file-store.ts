import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertRunFileName, type ByteRange, type RunFileInfo, type RunFileStore } from './run-file-store.js';

/**
 * Run files on a local (or shared) file system: `<root>/<run id>/<name>`, written there
 * by the trainer itself (which writes each file to a temporary name and renames it).
 */
export class FsRunFileStore implements RunFileStore {
  constructor(readonly root: string) {}

  async workDir(runId: string): Promise<string> {
    assertRunFileName(runId, 'x');
    const dir = join(this.root, runId);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  async publish(runId: string, name: string): Promise<RunFileInfo> {
    const path = this.#pathOf(runId, name);
    const hash = createHash('sha256');
    await pipeline(createReadStream(path), hash);
    return { byteSize: (await stat(path)).size, sha256: hash.digest('hex') };
  }

  async read(runId: string, name: string, range?: ByteRange): Promise<Readable | null> {
    const path = this.#pathOf(runId, name);
    const info = await stat(path).catch(() => null);
    if (info === null || !info.isFile()) return null;
    return createReadStream(path, range === undefined ? {} : { start: range.start, end: range.end });
  }

  async deleteRun(runId: string): Promise<void> {
    assertRunFileName(runId, 'x');
    await rm(join(this.root, runId), { recursive: true, force: true });
  }

  #pathOf(runId: string, name: string): string {
    assertRunFileName(runId, name);
    return join(this.root, runId, name);
  }
}
