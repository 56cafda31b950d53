// A real small file system for tests of a full disk: a tmpfs of a given size mounted on a
// temporary folder (root only), filled by a file of the test's own up to a chosen free space,
// and unmounted after the test. Where it cannot be mounted, `skipReason()` says why.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

const FILLER = '.test-filler';

/** Why this machine cannot mount one, or undefined when it can (probed once, with a mount and an unmount). */
let probed: string | undefined | null = null;
function probe(): string | undefined {
  if (process.platform !== 'linux') return 'tmpfs mounts are Linux only';
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return undefined;
  } catch (error) {
    return `cannot mount a tmpfs here: ${String((error as { stderr?: Buffer }).stderr ?? error).trim()}`;
  } finally {
    fs.rmdirSync(dir);
  }
}

export class SmallFilesystem {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static skipReason(): string | undefined {
    if (probed === null) probed = probe();
    return probed;
  }

  /** Mounts a tmpfs of `bytes` on a new folder; unmounted and removed after `t`. */
  static mount(t: TestContext, bytes: number): SmallFilesystem {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-small-fs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]);
    t.after(() => {
      execFileSync('umount', ['-l', dir]);
      fs.rmdirSync(dir);
    });
    return new SmallFilesystem(dir);
  }

  freeBytes(): number {
    const stats = fs.statfsSync(this.dir);
    return stats.bavail * stats.bsize;
  }

  /** Grows the test's filler file until `leave` bytes are free (0: until the file system refuses a byte more). */
  fill(leave = 0): void {
    const fd = fs.openSync(path.join(this.dir, FILLER), 'a');
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    try {
      for (let want = this.freeBytes() - leave; want > 0; want = this.freeBytes() - leave) {
        try {
          fs.writeSync(fd, chunk, 0, Math.min(chunk.length, want));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') return;
          throw error;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Removes the filler: the room it took is free again. */
  empty(): void {
    fs.rmSync(path.join(this.dir, FILLER), { force: true });
  }
}
