// A local server that speaks the Anthropic Message Batches API for the batch-mode tests, beside
// the Messages API of mock-anthropic.ts (POST /v1/messages still answers from its script, for
// the consistency pass): create (POST /v1/messages/batches), retrieve (GET .../{id}), results
// as JSONL at the batch's results_url, and cancel (POST .../{id}/cancel), with the real shapes
// (message_batch with processing_status, request_counts, results_url; result lines of type
// succeeded, errored, canceled or expired). A batch stays in_progress until released (or for
// processingMs), and every custom_id's submissions are counted.
import { anthropicError, headerCheck, messageParamsCheck, messagesPrecheck, ScriptedServer, toolUseReply, type MockReply, type RecordedRequest } from './mock-anthropic.js';

/** The result of one request: `submission` is 1 the first time its custom_id is sent, 2 the next... */
export type BatchAnswer = (customId: string, params: any, submission: number) => unknown;

interface MockBatch {
  id: string;
  createdAt: string;
  /** When the batch ends; Infinity while held. */
  endsAt: number;
  canceled: boolean;
  results: { custom_id: string; result: any }[];
}

const CUSTOM_ID = /^[a-zA-Z0-9_-]{1,64}$/;
/** Batch ids stay unique across reset(), like the real API's. */
let batchCounter = 0;

/** A succeeded result whose message calls `toolName` with `input`. */
export function succeeded(toolName: string, input: unknown, usage = { input_tokens: 1800, output_tokens: 60 }): unknown {
  return { type: 'succeeded', message: (toolUseReply(toolName, input, usage).body) };
}

/** An errored result, as the API writes it: the error the request would have got alone. */
export function errored(type: string, message: string): unknown {
  return { type: 'errored', error: { type: 'error', error: { type, message }, request_id: null } };
}

export class MockBatchesApi {
  readonly server: ScriptedServer;
  /** Times each custom_id was sent in a batch. */
  readonly submissions = new Map<string, number>();
  /** Provider batch ids, in creation order. */
  readonly created: string[] = [];
  readonly canceled: string[] = [];
  /** API keys answered 401 authentication_error (a revoked key). */
  readonly refusedKeys = new Set<string>();
  /** How long a new batch stays in_progress; Infinity holds it until release(). */
  processingMs = 0;
  answer: BatchAnswer;
  readonly #batches = new Map<string, MockBatch>();

  constructor(answer: BatchAnswer, messagesFallback: (request: RecordedRequest) => MockReply) {
    this.answer = answer;
    this.server = new ScriptedServer((request) => this.#route(request), messagesFallback);
  }

  async start(): Promise<this> {
    await this.server.start();
    return this;
  }

  /** Ends the held batches (the first `count` of them, oldest first, when given). */
  release(count = Infinity): void {
    let n = 0;
    for (const batch of this.#batches.values()) {
      if (batch.endsAt === Infinity && n++ < count) batch.endsAt = Date.now();
    }
  }

  /** Batches not ended yet. */
  get inProgress(): number {
    return [...this.#batches.values()].filter((b) => !this.#ended(b)).length;
  }

  reset(): void {
    this.server.reset();
    this.submissions.clear();
    this.created.length = 0;
    this.canceled.length = 0;
    this.refusedKeys.clear();
    this.#batches.clear();
    this.processingMs = 0;
  }

  close(): Promise<void> {
    return this.server.close();
  }

  #ended(batch: MockBatch): boolean {
    return batch.canceled || Date.now() >= batch.endsAt;
  }

  #route(request: RecordedRequest): MockReply | undefined {
    if (!request.path.startsWith('/v1/messages/batches')) return messagesPrecheck(request);
    const denied = headerCheck(request);
    if (denied !== undefined) return denied;
    const key = request.headers['x-api-key'] ?? request.headers.authorization?.replace(/^Bearer /, '');
    if (this.refusedKeys.has(String(key))) return anthropicError(401, 'authentication_error', 'invalid x-api-key');
    const [, id, action] = /^\/v1\/messages\/batches(?:\/([^/?]+))?(?:\/([^/?]+))?/.exec(request.path) ?? [];
    if (request.method === 'POST' && id === undefined) return this.#create(request.body);
    const batch = id === undefined ? undefined : this.#batches.get(id);
    if (batch === undefined) return anthropicError(404, 'not_found_error', `no batch ${id ?? ''}`);
    if (request.method === 'GET' && action === undefined) return { status: 200, body: this.#view(batch) };
    if (request.method === 'GET' && action === 'results') {
      if (!this.#ended(batch)) return anthropicError(400, 'invalid_request_error', `batch ${batch.id} has not ended`);
      return { status: 200, headers: { 'content-type': 'application/binary' }, body: null, text: batch.results.map((r) => JSON.stringify(r)).join('\n') + '\n' };
    }
    if (request.method === 'POST' && action === 'cancel') {
      this.canceled.push(batch.id);
      if (!this.#ended(batch)) {
        batch.canceled = true;
        for (const r of batch.results) r.result = { type: 'canceled' };
      }
      return { status: 200, body: { ...this.#view(batch), processing_status: 'canceling', results_url: null } };
    }
    return anthropicError(404, 'not_found_error', `no route ${request.method} ${request.path}`);
  }

  #create(body: any): MockReply {
    const requests = body?.requests;
    if (!Array.isArray(requests) || requests.length === 0) return anthropicError(400, 'invalid_request_error', 'requests: must be a non-empty array');
    const seen = new Set<string>();
    for (const r of requests) {
      if (typeof r?.custom_id !== 'string' || !CUSTOM_ID.test(r.custom_id)) return anthropicError(400, 'invalid_request_error', 'custom_id: invalid');
      if (seen.has(r.custom_id)) return anthropicError(400, 'invalid_request_error', `custom_id ${r.custom_id} is used twice`);
      seen.add(r.custom_id);
      const bad = messageParamsCheck(r.params);
      if (bad !== undefined) return bad;
    }
    const id = `msgbatch_mock_${String(++batchCounter).padStart(4, '0')}`;
    const results = requests.map((r: { custom_id: string; params: unknown }) => {
      const submission = (this.submissions.get(r.custom_id) ?? 0) + 1;
      this.submissions.set(r.custom_id, submission);
      return { custom_id: r.custom_id, result: this.answer(r.custom_id, r.params, submission) };
    });
    const batch: MockBatch = { id, createdAt: new Date().toISOString(), endsAt: Date.now() + this.processingMs, canceled: false, results };
    this.#batches.set(id, batch);
    this.created.push(id);
    return { status: 200, body: this.#view(batch) };
  }

  #view(batch: MockBatch): Record<string, unknown> {
    const ended = this.#ended(batch);
    const counts = { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
    if (!ended) counts.processing = batch.results.length;
    else for (const r of batch.results) counts[r.result.type as 'succeeded'] += 1;
    return {
      id: batch.id,
      type: 'message_batch',
      processing_status: ended ? 'ended' : 'in_progress',
      request_counts: counts,
      created_at: batch.createdAt,
      ended_at: ended ? new Date().toISOString() : null,
      expires_at: new Date(Date.parse(batch.createdAt) + 24 * 3600_000).toISOString(),
      archived_at: null,
      cancel_initiated_at: batch.canceled ? new Date().toISOString() : null,
      results_url: ended ? `${this.server.origin}/v1/messages/batches/${batch.id}/results` : null,
    };
  }
}

/** Starts a Batches API server (and Messages API, answered by `messagesFallback`). */
export function startMockAnthropicBatches(answer: BatchAnswer, messagesFallback: (request: RecordedRequest) => MockReply): Promise<MockBatchesApi> {
  return new MockBatchesApi(answer, messagesFallback).start();
}
