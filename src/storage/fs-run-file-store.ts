import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, lstat, mkdir, readdir, realpath, rename, rm, stat, symlink } from 'node:fs/promises';
import { isAbsolute, join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { folderTarLayout, tarStream } from './folder-tar.js';
import { assertRunFileName, type ByteRange, type RunFileInfo, type RunFileStore } from './run-file-store.js';

/** Bytes of a file, or of a folder's files, not following links. */
async function ownBytesOf(path: string): Promise<number> {
  const info = await lstat(path).catch(() => null);
  if (info === null) return 0;
  if (!info.isDirectory()) return info.isFile() ? info.size : 0;
  let total = 0;
  for (const child of await readdir(path)) total += await ownBytesOf(join(path, child));
  return total;
}

/** A copy of file or folder `source` at `target`: hard links (no bytes copied), or copies across file systems. */
async function copyLinked(source: string, target: string): Promise<void> {
  const info = await stat(source);
  if (info.isDirectory()) {
    await mkdir(target, { recursive: true });
    for (const child of await readdir(source)) await copyLinked(join(source, child), join(target, child));
    return;
  }
  await link(source, target).catch(async (error: NodeJS.ErrnoException) => {
    if (!['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP'].includes(error.code ?? '')) throw error;
    await copyFile(source, target);
  });
}

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

  localPath(runId: string, name: string): string {
    return this.#pathOf(runId, name);
  }

  async publish(runId: string, name: string): Promise<RunFileInfo> {
    const path = this.#pathOf(runId, name);
    const hash = createHash('sha256');
    await pipeline(createReadStream(path), hash);
    return { byteSize: (await stat(path)).size, sha256: hash.digest('hex') };
  }

  async publishTar(runId: string, name: string, prefix: string): Promise<RunFileInfo> {
    const layout = await folderTarLayout(this.#pathOf(runId, name), prefix);
    const hash = createHash('sha256');
    await pipeline(tarStream(layout), hash);
    return { byteSize: layout.size, sha256: hash.digest('hex') };
  }

  async read(runId: string, name: string, range?: ByteRange): Promise<Readable | null> {
    const path = this.#pathOf(runId, name);
    const info = await stat(path).catch(() => null);
    if (info === null || !info.isFile()) return null;
    return createReadStream(path, range === undefined ? {} : { start: range.start, end: range.end });
  }

  async readTar(runId: string, name: string, prefix: string, size: number, range?: ByteRange): Promise<Readable | null> {
    const layout = await folderTarLayout(this.#pathOf(runId, name), prefix).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
    // Another size: a file of the folder (or of the base model it links to) changed since it was published.
    if (layout === null || layout.size !== size) return null;
    return tarStream(layout, range);
  }

  async detachLinks(runId: string, name: string): Promise<void> {
    const root = await realpath(this.root);
    const inRuns = (path: string) => {
      const inside = relative(root, path);
      return inside !== '' && !inside.startsWith('..') && !isAbsolute(inside);
    };
    const visit = async (path: string): Promise<void> => {
      const info = await lstat(path);
      if (info.isSymbolicLink()) {
        const target = await realpath(path);
        const staging = `${path}.detaching`;
        await rm(staging, { recursive: true, force: true });
        if (inRuns(target)) await copyLinked(target, staging);
        else await symlink(target, staging);
        await rm(path, { force: true }); // the link, never what it points to
        await rename(staging, path);
      } else if (info.isDirectory()) {
        for (const child of await readdir(path)) await visit(join(path, child));
      }
    };
    await visit(this.#pathOf(runId, name));
  }

  async link(runId: string, name: string, target: string): Promise<void> {
    const path = this.#pathOf(runId, name);
    await rm(path, { recursive: true, force: true });
    await symlink(target, path);
  }

  async ownBytes(runId: string, names: string[]): Promise<number> {
    let total = 0;
    for (const name of names) total += await ownBytesOf(this.#pathOf(runId, name));
    return total;
  }

  async deleteFiles(runId: string, names: string[]): Promise<void> {
    // fs.rm removes a link, never what it points to.
    for (const name of names) await rm(this.#pathOf(runId, name), { recursive: true, force: true });
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
