// The typed client of the service, for the console, the tests and anyone calling from
// TypeScript: openapi-fetch over the types generated from openapi/openapi.json
// (schema.d.ts, `npm run openapi`), plus the two things generators do badly: uploading
// files and zips as multipart/form-data, and following a Server-Sent Events stream.
//
//   const api = createApiClient({ baseUrl: 'http://127.0.0.1:3000', apiKey });
//   const { data, error } = await api.GET('/v1/datasets/{id}', { params: { path: { id } } });
//   // data: Dataset on 200; error: Problem (RFC 9457) on 401/404
import createClient, { type Client, type ClientOptions } from 'openapi-fetch';
import type { components, operations, paths } from './schema.js';

export type { components, operations, paths };
export type ApiClient = Client<paths>;
export type Problem = components['schemas']['Problem'];

export interface ApiClientOptions extends Omit<ClientOptions, 'baseUrl'> {
  /** Where the service is, e.g. http://127.0.0.1:3000 (no /v1). */
  baseUrl: string;
  /** An API key (sdxl_...); sent as `Authorization: Bearer <key>` on every request. */
  apiKey?: string;
}

/** An openapi-fetch client for this service: every path, body and answer typed from the document. */
export function createApiClient({ baseUrl, apiKey, headers, ...options }: ApiClientOptions): ApiClient {
  return createClient<paths>({
    ...options,
    baseUrl: baseUrl.replace(/\/+$/, ''),
    headers: { ...(apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` }), ...headers },
  });
}

// ---------------------------------------------------------------- uploads

/** One file of an upload: an image (JPEG, PNG, WebP), a .zip of images, or a name.txt caption. */
export interface UploadFile {
  name: string;
  data: Blob | Uint8Array;
  /** Sent as the part's Content-Type; the server sniffs the bytes anyway. */
  type?: string;
}

/** The form body of `POST /v1/datasets/{id}/images`: each file as a `files` part. */
export function uploadForm(files: readonly UploadFile[]): FormData {
  const form = new FormData();
  for (const file of files) {
    const type = file.type ?? 'application/octet-stream';
    // (a copy: Blob takes only ArrayBuffer-backed views, and a Node Buffer may be pooled)
    const blob = file.data instanceof Blob ? file.data : new Blob([new Uint8Array(file.data)], { type });
    form.append('files', blob, file.name);
  }
  return form;
}

/**
 * Uploads files (and zips, and caption sidecars) to a dataset in one request; all or nothing.
 * Resolves with openapi-fetch's result: `data.data` lists the images (201, or 200 when all
 * were duplicates); `error` is the Problem of a refusal (it names the file).
 */
export function uploadImages(client: ApiClient, datasetId: string, files: readonly UploadFile[]) {
  return client.POST('/v1/datasets/{id}/images', {
    params: { path: { id: datasetId } },
    // The document describes the form's fields; the body itself is a FormData, sent as is
    // so that fetch writes the multipart boundary.
    body: {} as never,
    bodySerializer: () => uploadForm(files),
  });
}

// ---------------------------------------------------------------- Server-Sent Events

/** One event of a text/event-stream (WHATWG HTML, "Server-sent events"). */
export interface ServerSentEvent {
  /** `event:` field; "message" when the server names none. */
  event: string;
  data: string;
  /** The last `id:` seen on the stream so far (what a reconnect sends as Last-Event-ID). */
  id: string;
  /** `retry:` of this event, in milliseconds, when it had one. */
  retry?: number;
}

export interface FollowEventsOptions {
  apiKey?: string;
  /** Resume after this event id (sent as Last-Event-ID). */
  lastEventId?: string;
  /** Reconnect, with Last-Event-ID, when the connection ends or drops (default true). */
  reconnect?: boolean;
  /** Wait before reconnecting unless the server sent `retry:` (default 1000 ms). */
  retryMs?: number;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/** A non-2xx answer to a stream request, with its problem document when it sent one. */
export class StreamRefused extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
  ) {
    super(`event stream refused: HTTP ${status}${problem?.detail ? `: ${problem.detail}` : ''}`);
    this.name = 'StreamRefused';
  }
}

/** Splits a text/event-stream into events, keeping the last id across events. */
export class EventStreamParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private retry: number | undefined;
  lastEventId: string;

  constructor(lastEventId = '') {
    this.lastEventId = lastEventId;
  }

  /** Feeds decoded text; returns the events it completed. */
  push(text: string): ServerSentEvent[] {
    this.buffer += text;
    const events: ServerSentEvent[] = [];
    let newline: RegExpExecArray | null;
    const lineEnd = /\r\n|\r|\n/g;
    let start = 0;
    while ((newline = lineEnd.exec(this.buffer)) !== null) {
      // A lone \r at the very end may be half of \r\n: wait for more text.
      if (newline[0] === '\r' && newline.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(start, newline.index);
      start = newline.index + newline[0].length;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** Forgets a half-received event (the connection ended inside it); keeps the last id. */
  discardPartial(): void {
    this.buffer = '';
    this.clearEvent();
  }

  private clearEvent(): void {
    this.data = [];
    this.event = '';
    this.retry = undefined;
  }

  private line(line: string): ServerSentEvent | undefined {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return undefined; // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
    return undefined;
  }

  private dispatch(): ServerSentEvent | undefined {
    const event: ServerSentEvent | undefined =
      this.data.length === 0
        ? undefined
        : {
            event: this.event || 'message',
            data: this.data.join('\n'),
            id: this.lastEventId,
            ...(this.retry === undefined ? {} : { retry: this.retry }),
          };
    this.clearEvent();
    return event;
  }
}

/**
 * Follows a Server-Sent Events stream of the service (e.g. a run's progress), yielding each
 * event; reconnects with Last-Event-ID when the connection ends, as EventSource does, until
 * the server answers 204, the caller stops iterating, or `signal` aborts. A refusal (401,
 * 404, ...) throws StreamRefused with the problem document.
 */
export async function* followEvents(url: string | URL, options: FollowEventsOptions = {}): AsyncGenerator<ServerSentEvent> {
  const { apiKey, reconnect = true, signal } = options;
  const fetchImpl = options.fetch ?? fetch;
  const parser = new EventStreamParser(options.lastEventId);
  let waitMs = options.retryMs ?? 1000;
  for (;;) {
    const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-cache' };
    if (apiKey !== undefined) headers.authorization = `Bearer ${apiKey}`;
    if (parser.lastEventId !== '') headers['last-event-id'] = parser.lastEventId;
    let response: Response | undefined;
    try {
      response = await fetchImpl(url, { headers, ...(signal ? { signal } : {}) });
    } catch (error) {
      if (signal?.aborted || !reconnect) throw error;
    }
    if (response !== undefined) {
      if (response.status === 204) return; // the server says: nothing more, do not reconnect
      if (!response.ok) {
        const isProblem = (response.headers.get('content-type') ?? '').includes('json');
        throw new StreamRefused(response.status, isProblem ? ((await response.json()) as Problem) : undefined);
      }
      if (response.body === null) return;
      const decoder = new TextDecoder();
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          for (const event of parser.push(decoder.decode(chunk, { stream: true }))) {
            if (event.retry !== undefined) waitMs = event.retry;
            yield event;
          }
        }
      } catch (error) {
        if (signal?.aborted || !reconnect) throw error; // else: a dropped connection, reconnect
      }
      parser.discardPartial(); // an unterminated last event is dropped, as EventSource does
    }
    if (!reconnect || signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      signal?.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
    if (signal?.aborted) return;
  }
}
