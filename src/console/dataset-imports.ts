// Dataset imports (issue 26): an archive (zip, tar, tar.gz) uploaded to a dataset and
// unpacked by a job. The resource (the API's `DatasetImport` schema) and its events are
// read defensively here (an odd field reads as zero or none), so a page keeps working
// against an older or newer service. Pure (no DOM), so test/console/dataset-imports.test.ts
// runs it under Node.
import type { components } from '../../openapi/client/index.js';
import { formatBytes } from './format.js';

type ApiDatasetImport = components['schemas']['DatasetImport'];
/** The API's `DatasetImport` (id prefix imp_) as read here: a format this console does not know reads as null. */
export type DatasetImport = Omit<ApiDatasetImport, 'format'> & { format: ApiDatasetImport['format'] | null };
export type DatasetImportStatus = DatasetImport['status'];
export type DatasetImportProgress = DatasetImport['progress'];
/** An entry of the archive that was not stored, and why. */
export type DatasetImportRefusal = DatasetImport['refusals'][number];

/** The events of GET /v1/dataset-imports/{id}/events: `progress` while it runs, then one of the final statuses. */
export type DatasetImportEventType = 'progress' | 'succeeded' | 'failed' | 'canceled';

export interface DatasetImportEvent {
  type: DatasetImportEventType;
  import: DatasetImport;
}

const STATUSES: readonly DatasetImportStatus[] = ['queued', 'running', 'succeeded', 'failed', 'canceled'];
const EVENT_TYPES: readonly DatasetImportEventType[] = ['progress', 'succeeded', 'failed', 'canceled'];
const FINISHED: ReadonlySet<DatasetImportStatus> = new Set(['succeeded', 'failed', 'canceled']);
const FORMATS = ['zip', 'tar', 'tar.gz'] as const;
/** The archive types the API takes as a raw body, by file name ending; it sniffs the bytes itself. */
const CONTENT_TYPES: ReadonlyArray<[string, string]> = [
  ['.zip', 'application/zip'],
  ['.tar', 'application/x-tar'],
  ['.tar.gz', 'application/gzip'],
  ['.tgz', 'application/gzip'],
];
/** What the "Import archive" file picker offers. */
export const ARCHIVE_ACCEPT = '.zip,.tar,.tar.gz,.tgz,application/zip,application/x-tar,application/gzip';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const count = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0);
const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/** A DatasetImport from JSON, or null when it is not one (no id or status). */
export function datasetImportOf(value: unknown): DatasetImport | null {
  if (!isRecord(value) || typeof value.id !== 'string' || !STATUSES.includes(value.status as DatasetImportStatus)) return null;
  const progress = isRecord(value.progress) ? value.progress : {};
  const refusals = Array.isArray(value.refusals) ? value.refusals.filter(isRecord) : [];
  const error = isRecord(value.error) ? { code: text(value.error.code) ?? 'error', message: text(value.error.message) ?? '' } : null;
  return {
    id: value.id,
    object: 'dataset_import',
    dataset_id: text(value.dataset_id) ?? '',
    status: value.status as DatasetImportStatus,
    filename: text(value.filename),
    format: FORMATS.find((format) => format === value.format) ?? null,
    bytes: count(value.bytes),
    sha256: text(value.sha256) ?? '',
    progress: {
      bytes_read: count(progress.bytes_read),
      entries_read: count(progress.entries_read),
      images_stored: count(progress.images_stored),
      duplicates: count(progress.duplicates),
      captions_attached: count(progress.captions_attached),
      refused: count(progress.refused),
    },
    refusals: refusals.map((refusal) => ({ entry: text(refusal.entry) ?? '', code: text(refusal.code) ?? '', detail: text(refusal.detail) ?? '' })),
    refusals_truncated: value.refusals_truncated === true,
    caption_conflicts: count(value.caption_conflicts),
    error,
    created_at: text(value.created_at) ?? '',
    started_at: text(value.started_at),
    completed_at: text(value.completed_at),
  };
}

/** A page of GET /v1/datasets/{id}/imports: its well-formed imports, newest first as sent. */
export function datasetImportsOf(body: unknown): { data: DatasetImport[]; next_cursor: string | null } {
  const data = isRecord(body) && Array.isArray(body.data) ? body.data : [];
  return {
    data: data.map(datasetImportOf).filter((entry): entry is DatasetImport => entry !== null),
    next_cursor: isRecord(body) ? text(body.next_cursor) : null,
  };
}

/** One Server-Sent Event of an import's stream (`event:` and `data:`), or null for another kind of event or a malformed one. */
export function importEventOf(event: { event: string; data: string }): DatasetImportEvent | null {
  const type = EVENT_TYPES.find((name) => name === event.event);
  if (type === undefined) return null;
  let data: unknown;
  try {
    data = JSON.parse(event.data);
  } catch {
    return null;
  }
  const parsed = datasetImportOf(data);
  return parsed === null ? null : { type, import: parsed };
}

export function isFinished(entry: DatasetImport): boolean {
  return FINISHED.has(entry.status);
}

/** The Content-Type of a raw-body upload of this archive (the API sniffs the bytes; this only has to be one it takes). */
export function archiveContentType(filename: string): string {
  const lower = filename.toLowerCase();
  // The longest ending first: "x.tar.gz" is gzip, not tar.
  const match = [...CONTENT_TYPES].sort((a, b) => b[0].length - a[0].length).find(([ending]) => lower.endsWith(ending));
  return match?.[1] ?? 'application/octet-stream';
}

/** "12.0 MB of 40.0 MB read · 120 images stored · 3 duplicates · 2 refused" */
export function importProgressText(entry: DatasetImport): string {
  const { progress } = entry;
  const parts: string[] = [];
  if (entry.bytes > 0 && !isFinished(entry)) parts.push(`${formatBytes(progress.bytes_read)} of ${formatBytes(entry.bytes)} read`);
  parts.push(`${progress.images_stored} ${progress.images_stored === 1 ? 'image' : 'images'} stored`);
  if (progress.duplicates > 0) parts.push(`${progress.duplicates} already in the dataset`);
  if (progress.captions_attached > 0) parts.push(`${progress.captions_attached} with captions`);
  if (progress.refused > 0) parts.push(`${progress.refused} refused`);
  return parts.join(' · ');
}

/** The share of the archive read, 0..1 (a bar's value); 1 once finished. */
export function importFraction(entry: DatasetImport): number {
  if (isFinished(entry)) return 1;
  return entry.bytes > 0 ? Math.min(1, entry.progress.bytes_read / entry.bytes) : 0;
}
