// npm run fsck [-- --repair]: checks that the database (DATABASE_URL, or the embedded one
// under DATA_DIR: stop the server first) and DATA_DIR agree (src/services/fsck.ts), prints
// each problem on a line and a summary. Exit status, as fsck(8) has it: 0 nothing wrong,
// 1 problems found and all repaired, 4 problems left (without --repair: every one found).
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { openDatabase } from '../db/open.js';
import { BLOBS_SUBDIR, THUMBNAILS_SUBDIR } from '../routes/v1/images/index.js';
import { FsckService } from '../services/fsck.js';
import { uploadLimits } from '../services/image-limits.js';
import { ImagesService } from '../services/images.js';
import { ORPHAN_BLOB_GRACE_MS } from '../services/maintenance.js';
import { ThumbnailCache } from '../services/thumbnails.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';
import { FsRunFileStore } from '../storage/fs-run-file-store.js';
import { RUNS_SUBDIR } from '../storage/run-file-store.js';

/** Where corrupt blobs are moved to inside DATA_DIR, for an operator to look at. */
export const LOST_AND_FOUND_SUBDIR = 'lost+found';

let repair = false;
try {
  ({ values: { repair = false } } = parseArgs({ options: { repair: { type: 'boolean' } }, strict: true }));
} catch (error) {
  console.error(`${(error as Error).message}\nusage: npm run fsck [-- --repair]`);
  process.exit(2);
}

const config = loadConfig();
const db = await openDatabase(config);
let exitCode = 0;
try {
  const blobs = new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR));
  const images = new ImagesService(db, blobs, uploadLimits(config), { thumbnails: new ThumbnailCache(path.join(config.dataDir, THUMBNAILS_SUBDIR)) });
  const runsRoot = path.join(config.dataDir, RUNS_SUBDIR);
  const fsck = new FsckService({
    db, blobs, images, runFiles: new FsRunFileStore(runsRoot), runsRoot, lostAndFound: path.join(config.dataDir, LOST_AND_FOUND_SUBDIR),
  });
  const report = await fsck.check({ repair, orphanGraceMs: ORPHAN_BLOB_GRACE_MS });
  for (const problem of report.problems) {
    console.log(`${problem.repaired ? 'repaired' : 'found'} ${problem.kind}: ${problem.what}: ${problem.note}`);
  }
  const { blobs: blobCount, blobRows, artifacts, runFolders } = report.checked;
  const left = report.problems.filter((problem) => !problem.repaired).length;
  console.log(
    `checked ${blobCount} blobs, ${blobRows} rows naming blobs, ${artifacts} run artifacts, ${runFolders} run folders: ` +
      (report.problems.length === 0 ? 'clean' : `${report.problems.length} problem(s), ${report.problems.length - left} repaired, ${left} left`),
  );
  exitCode = report.problems.length === 0 ? 0 : left === 0 ? 1 : 4;
} finally {
  await db.close();
}
process.exit(exitCode);
