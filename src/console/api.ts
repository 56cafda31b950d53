// The console's way to the API: the typed client generated from openapi/openapi.json
// (so a changed route breaks the build, not the page), the API key kept for this tab
// only, problems turned into errors a page can show, and the two things fetch cannot
// do alone here: bytes behind the Authorization header as object URLs, and uploads
// with progress (XMLHttpRequest).
import { createApiClient, uploadForm, type ApiClient, type components, type operations, type Problem } from '../../openapi/client/index.js';
import { archiveContentType, datasetImportOf, type DatasetImport } from './dataset-imports.js';

export type { ApiClient, Problem };
export type Schemas = components['schemas'];
export type Dataset = Schemas['Dataset'];
export type TrainingRun = Schemas['TrainingRun'];
export type TrainingRunEvent = Schemas['TrainingRunEvent'];
export type TrainingRunArtifact = Schemas['TrainingRunArtifact'];
export type Generation = Schemas['Generation'];
export type BaseModel = Schemas['BaseModel'];
export type Lora = Schemas['Lora'];
export type CaptioningJob = Schemas['CaptioningJob'];
/** A dataset's image (its schema is inline in the document, so it is named through its operation). */
export type Image = operations['listImages']['responses'][200]['content']['application/json']['data'][number];

/** sessionStorage: the key lives as long as the tab, and never in a URL or a cookie. */
const KEY_STORAGE = 'sdxl-lora-service.api-key';

export function storedApiKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function storeApiKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY_STORAGE);
  else sessionStorage.setItem(KEY_STORAGE, key);
}

export function apiClient(apiKey: string): ApiClient {
  return createApiClient({ baseUrl: location.origin, apiKey });
}

/** A refusal of the API, with its RFC 9457 problem document when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
  ) {
    super(problem?.detail ?? problem?.title ?? `The service answered HTTP ${status}`);
    this.name = 'ApiError';
  }

  /** The message of a field error whose dotted path is `field` (e.g. "params.max_steps"). */
  fieldMessage(field: string): string | undefined {
    return this.problem?.errors?.find((error) => error.field === field)?.message;
  }
}

function isProblem(value: unknown): value is Problem {
  return typeof value === 'object' && value !== null && 'status' in value && 'title' in value;
}

/** openapi-fetch's result as a value, or an ApiError. */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  // fetch rejects only when nothing answered (offline, the service down).
  const { data, error, response } = await call.catch(() => {
    throw new ApiError(0, undefined);
  });
  if (!response.ok || error !== undefined) throw new ApiError(response.status, isProblem(error) ? error : undefined);
  return data as T;
}

async function problemOf(response: Response): Promise<Problem | undefined> {
  if (!(response.headers.get('content-type') ?? '').includes('json')) return undefined;
  const body: unknown = await response.json().catch(() => undefined);
  return isProblem(body) ? body : undefined;
}

/** The bytes at an API path (an image, an artifact), fetched with the key. */
export async function fetchBlob(apiKey: string, path: string): Promise<Blob> {
  const response = await fetch(path, { headers: { authorization: `Bearer ${apiKey}` } });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.blob();
}

/**
 * The JSON at an API path the generated client does not know yet (a route newer than
 * openapi/openapi.json, such as GET /v1/quality-metrics), fetched with the key.
 */
export async function fetchJson(apiKey: string, path: string): Promise<unknown> {
  const response = await fetch(path, { headers: { authorization: `Bearer ${apiKey}`, accept: 'application/json' } }).catch(() => {
    throw new ApiError(0, undefined);
  });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.json();
}

/** Saves the bytes at an API path as a file, through a short-lived object URL. */
export async function download(apiKey: string, path: string, filename: string): Promise<void> {
  const url = URL.createObjectURL(await fetchBlob(apiKey, path));
  try {
    const link = document.createElement('a');
    link.href = url;
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
  } finally {
    // After the click has been handled: revoking at once can cancel the download.
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

/**
 * Sends `body` with XMLHttpRequest (fetch reports no upload progress), with the key,
 * reporting bytes sent. Resolves with the JSON answer; rejects with the ApiError of a refusal.
 */
function sendWithProgress(
  apiKey: string,
  path: string,
  body: XMLHttpRequestBodyInit,
  headers: Record<string, string>,
  onProgress: (progress: UploadProgress) => void,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open('POST', path);
    request.setRequestHeader('authorization', `Bearer ${apiKey}`);
    for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
    request.responseType = 'json';
    request.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress({ loaded: event.loaded, total: event.total });
    });
    request.addEventListener('load', () => {
      const answer: unknown = request.response;
      if (request.status >= 200 && request.status < 300) resolve(answer);
      else reject(new ApiError(request.status, isProblem(answer) ? answer : undefined));
    });
    request.addEventListener('error', () => reject(new ApiError(0, undefined)));
    request.send(body);
  });
}

/**
 * POST /v1/datasets/{id}/images with one file, reporting bytes sent. Resolves with the
 * stored images; rejects with the ApiError of a refusal (its detail names the file).
 */
export async function uploadWithProgress(
  apiKey: string,
  datasetId: string,
  file: File,
  onProgress: (progress: UploadProgress) => void,
): Promise<UploadedImages> {
  const form = uploadForm([{ name: file.name, data: file, type: file.type }]);
  return (await sendWithProgress(apiKey, `/v1/datasets/${encodeURIComponent(datasetId)}/images`, form, {}, onProgress)) as UploadedImages;
}

/**
 * POST /v1/datasets/{id}/imports with an archive as the raw body (no multipart parsing on
 * the way; the name in ?filename=),
 * reporting bytes sent. Resolves with the DatasetImport of the 202 once the bytes are stored.
 */
export async function uploadArchive(
  apiKey: string,
  datasetId: string,
  file: File,
  onProgress: (progress: UploadProgress) => void,
): Promise<DatasetImport> {
  const path = `/v1/datasets/${encodeURIComponent(datasetId)}/imports?filename=${encodeURIComponent(file.name)}`;
  const headers = { 'content-type': archiveContentType(file.name), 'idempotency-key': newIdempotencyKey() };
  const created = datasetImportOf(await sendWithProgress(apiKey, path, file, headers, onProgress));
  if (created === null) throw new Error('The service answered the import without a dataset import');
  return created;
}

/** The answer of an upload: one entry per image stored (a zip gives several). */
export interface UploadedImages {
  data: Array<{ id: string; original_filename: string | null; duplicate: boolean }>;
}

/** A v4 UUID. crypto.randomUUID exists only in secure contexts, and the console may be served over plain http on a LAN. */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A message for any error a page catches. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 0) return 'The service could not be reached.';
    // Field errors the detail does not already say.
    const fields = (error.problem?.errors ?? [])
      .filter((field) => !error.message.includes(field.message))
      .map((field) => `${field.field || field.in}: ${field.message}`);
    return [error.message, ...fields].join('; ');
  }
  return error instanceof Error ? error.message : String(error);
}
