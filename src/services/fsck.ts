// npm run fsck: checks that the database and DATA_DIR agree, and with repair fixes what can
// be fixed without guessing:
//  - corrupt blobs (bytes that do not hash to their name): moved to DATA_DIR/lost+found;
//  - rows without files: a dataset image or a run artifact whose file is gone is deleted
//    (nothing can serve or train on it); other rows naming a missing blob (a run's snapshot,
//    a LoRA, a generated or class image) are reported, for a restore from a backup;
//  - files without rows: blobs no row references (after the orphan grace period, as the
//    maintenance sweep does) and run folders of runs that do not exist are removed.
// Safe to run beside a live service: blobs are released under their lock, and nothing younger
// than the grace period counts as an orphan.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Database } from '../db/database.js';
import { BLOB_REFERENCES, createImagesRepository } from '../repositories/images.js';
import type { FsBlobStore } from '../storage/fs-blob-store.js';
import type { RunFileStore } from '../storage/run-file-store.js';
import type { ImagesService } from './images.js';
import { folderOfTar } from './models.js';

/** What is wrong, and whether this run fixed it. */
export interface FsckProblem {
  kind: 'corrupt-blob' | 'missing-blob' | 'missing-artifact' | 'orphan-blob' | 'orphan-run-folder';
  /** The blob, row or folder, as an operator would look for it. */
  what: string;
  repaired: boolean;
  /** What the repair did, or why there is none. */
  note: string;
}

export interface FsckReport {
  checked: { blobs: number; blobRows: number; artifacts: number; runFolders: number };
  problems: FsckProblem[];
}

export interface FsckOptions {
  repair: boolean;
  /** An unreferenced blob younger than this is not an orphan yet (an upload may be committing it). */
  orphanGraceMs: number;
}

const RUN_ID = /^tr_[0-9A-Z]{26}$/;

export class FsckService {
  readonly #db: Database;
  readonly #blobs: FsBlobStore;
  readonly #images: ImagesService;
  readonly #runFiles: RunFileStore;
  readonly #runsRoot: string;
  readonly #lostAndFound: string;

  constructor(options: { db: Database; blobs: FsBlobStore; images: ImagesService; runFiles: RunFileStore; runsRoot: string; lostAndFound: string }) {
    this.#db = options.db;
    this.#blobs = options.blobs;
    this.#images = options.images;
    this.#runFiles = options.runFiles;
    this.#runsRoot = options.runsRoot;
    this.#lostAndFound = options.lostAndFound;
  }

  async check(options: FsckOptions): Promise<FsckReport> {
    const report: FsckReport = { checked: { blobs: 0, blobRows: 0, artifacts: 0, runFolders: 0 }, problems: [] };
    await this.#checkBlobs(options, report);
    await this.#checkBlobRows(options, report);
    await this.#checkArtifacts(options, report);
    await this.#checkRunFolders(options, report);
    return report;
  }

  /** Every blob's bytes against its name, and whether a row references it. */
  async #checkBlobs({ repair, orphanGraceMs }: FsckOptions, report: FsckReport): Promise<void> {
    const images = createImagesRepository(this.#db);
    for await (const sha256 of this.#blobs.list()) {
      report.checked.blobs++;
      const file = this.#blobs.pathOf(sha256);
      if ((await hashOf(file)) !== sha256) {
        if (repair) {
          await fs.mkdir(this.#lostAndFound, { recursive: true });
          await fs.rename(file, path.join(this.#lostAndFound, sha256));
        }
        report.problems.push({
          kind: 'corrupt-blob', what: `blob ${sha256}`, repaired: repair,
          note: repair ? `its bytes do not hash to its name: moved to ${this.#lostAndFound}` : 'its bytes do not hash to its name',
        });
        continue;
      }
      const writtenAt = await this.#blobs.writtenAt(sha256);
      const old = writtenAt !== null && Date.now() - writtenAt.getTime() >= orphanGraceMs;
      if (!old || (await images.isBlobReferenced(sha256))) continue;
      // Released under the blob's lock, re-checking the references: a row committed meanwhile keeps it.
      const removed = repair && (await this.#images.releaseOrphanBlob(sha256));
      report.problems.push({ kind: 'orphan-blob', what: `blob ${sha256}`, repaired: removed, note: removed ? 'no row references it: removed' : 'no row references it' });
    }
  }

  /** Every row that names a blob, against the blob store. */
  async #checkBlobRows({ repair }: FsckOptions, report: FsckReport): Promise<void> {
    for (const [table, column] of BLOB_REFERENCES) {
      const { rows } = await this.#db.query<{ sha256: string; n: number }>(
        `SELECT ${column} AS sha256, count(*)::integer AS n FROM ${table} GROUP BY ${column} ORDER BY ${column}`);
      for (const { sha256, n } of rows) {
        report.checked.blobRows += n;
        if (await this.#blobs.exists(sha256)) continue;
        // A dataset image without its bytes can neither be served nor trained on: the dataset is better without it.
        const deletable = table === 'images';
        if (repair && deletable) await this.#db.query(`DELETE FROM images WHERE sha256 = $1`, [sha256]);
        report.problems.push({
          kind: 'missing-blob', what: `${n} ${table} row(s) naming blob ${sha256}`, repaired: repair && deletable,
          note: deletable ? (repair ? 'the bytes are gone: the image rows were deleted' : 'the bytes are gone') : 'the bytes are gone: restore DATA_DIR from a backup',
        });
      }
    }
  }

  /** Every published run file against the run's folder. */
  async #checkArtifacts({ repair }: FsckOptions, report: FsckReport): Promise<void> {
    const { rows } = await this.#db.query<{ run_id: string; name: string }>('SELECT run_id, name FROM training_run_artifacts ORDER BY run_id, name');
    for (const { run_id: runId, name } of rows) {
      report.checked.artifacts++;
      const file = this.#runFiles.localPath(runId, folderOfTar(name) ?? name);
      if (await fs.access(file).then(() => true, () => false)) continue;
      if (repair) await this.#db.query('DELETE FROM training_run_artifacts WHERE run_id = $1 AND name = $2', [runId, name]);
      report.problems.push({
        kind: 'missing-artifact', what: `artifact ${name} of training run ${runId}`, repaired: repair,
        note: repair ? 'its file is gone: the artifact row was deleted' : 'its file is gone',
      });
    }
  }

  /** Every run folder against training_runs. */
  async #checkRunFolders({ repair }: FsckOptions, report: FsckReport): Promise<void> {
    const names = (await fs.readdir(this.#runsRoot).catch(() => [] as string[])).filter((name) => RUN_ID.test(name)).sort();
    report.checked.runFolders = names.length;
    if (names.length === 0) return;
    const { rows } = await this.#db.query<{ id: string }>('SELECT id FROM training_runs WHERE id = ANY($1::text[])', [names]);
    const known = new Set(rows.map((row) => row.id));
    for (const runId of names.filter((name) => !known.has(name))) {
      if (repair) await this.#runFiles.deleteRun(runId);
      report.problems.push({
        kind: 'orphan-run-folder', what: `${path.join(this.#runsRoot, runId)}`, repaired: repair,
        note: repair ? 'no training run has this id: removed' : 'no training run has this id',
      });
    }
  }
}

async function hashOf(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await fs.open(file, 'r');
  try {
    for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer);
  } finally {
    await handle.close().catch(() => {});
  }
  return hash.digest('hex');
}
