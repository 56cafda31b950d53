// A local HTTP server that speaks the Anthropic Messages API (POST /v1/messages) for the
// captioner tests: it records every request and answers from a script of replies with the
// real response shapes (message with tool_use blocks and usage; {type:'error', error:{...}}).
// Like the real API at version 2026-10-21 it refuses sampling parameters with a 400.
// ScriptedServer, the recording/scripted part, is shared with mock-openai.ts.
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body (undefined when not JSON). */
  body: any;
  /** performance.now() when the request arrived. */
  receivedAt: number;
}

export interface MockReply {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
  /** Sent as is instead of body as JSON (e.g. JSONL), with its content-type in headers. */
  text?: string;
  /** Wait this long before answering (a slow server). */
  delayMs?: number;
}

/** Records requests and answers each with the next scripted reply (or `fallback` when none is left). */
export class ScriptedServer {
  readonly requests: RecordedRequest[] = [];
  readonly #script: MockReply[] = [];
  readonly #server: Server;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #waiters: ((request: RecordedRequest) => void)[] = [];
  #baseUrl = '';

  constructor(
    /** Answers a request before the script is consulted (protocol checks); undefined = go on. */
    private readonly precheck: (request: RecordedRequest) => MockReply | undefined,
    private readonly fallback: (request: RecordedRequest) => MockReply,
  ) {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try { body = JSON.parse(raw); } catch { body = undefined; }
        const recorded: RecordedRequest = {
          method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, receivedAt: performance.now(),
        };
        this.requests.push(recorded);
        for (const wake of this.#waiters.splice(0)) wake(recorded);
        const reply = this.precheck(recorded) ?? this.#script.shift() ?? this.fallback(recorded);
        this.#answer(res, reply);
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.#baseUrl = `http://127.0.0.1:${port}`;
    return this;
  }

  get origin(): string {
    return this.#baseUrl;
  }

  /** Replies for the next requests, in order. */
  enqueue(...replies: MockReply[]): void {
    this.#script.push(...replies);
  }

  /** Resolves when the next request arrives. */
  nextRequest(): Promise<RecordedRequest> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Replies not yet used. */
  get pending(): number {
    return this.#script.length;
  }

  /** Forgets recorded requests and unused replies (between tests). */
  reset(): void {
    this.requests.length = 0;
    this.#script.length = 0;
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #answer(res: ServerResponse, reply: MockReply): void {
    const send = () => {
      if (res.destroyed) return;
      res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      res.end(reply.text ?? JSON.stringify(reply.body));
    };
    if (reply.delayMs === undefined) return send();
    const timer = setTimeout(() => { this.#timers.delete(timer); send(); }, reply.delayMs);
    this.#timers.add(timer);
  }
}

let messageCounter = 0;

/** A Messages API answer whose content is one tool_use block with `input`. */
export function toolUseReply(name: string, input: unknown, usage = { input_tokens: 1800, output_tokens: 60 }): MockReply {
  messageCounter += 1;
  return {
    status: 200,
    headers: { 'request-id': `req_mock_${messageCounter}` },
    body: {
      id: `msg_mock_${messageCounter}`,
      type: 'message',
      role: 'assistant',
      model: 'claude-haiku-5-5',
      content: [{ type: 'tool_use', id: `toolu_mock_${messageCounter}`, name, input }],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    },
  };
}

/** A Messages API answer with text only (no tool call), e.g. a refusal. */
export function textReply(text: string, stopReason = 'end_turn', usage = { input_tokens: 1800, output_tokens: 20 }): MockReply {
  messageCounter += 1;
  return {
    status: 200,
    body: {
      id: `msg_mock_${messageCounter}`, type: 'message', role: 'assistant', model: 'claude-haiku-5-5',
      content: [{ type: 'text', text }], stop_reason: stopReason, stop_sequence: null,
      usage: { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens },
    },
  };
}

/** An Anthropic error answer. */
export function anthropicError(status: number, type: string, message: string, headers: Record<string, string> = {}): MockReply {
  return { status, headers: { 'request-id': 'req_mock_error', ...headers }, body: { type: 'error', error: { type, message }, request_id: 'req_mock_error' } };
}

/** What every Anthropic API request must carry: credentials and the anthropic-version header. */
export function headerCheck(request: RecordedRequest): MockReply | undefined {
  const auth = request.headers['x-api-key'] ?? request.headers.authorization;
  if (auth === undefined) return anthropicError(401, 'authentication_error', 'missing credentials');
  if (request.headers['anthropic-version'] === undefined) return anthropicError(400, 'invalid_request_error', 'anthropic-version header is required');
  return undefined;
}

/** A Messages request's body check: the API version refuses sampling parameters. */
export function messageParamsCheck(params: any): MockReply | undefined {
  for (const field of ['temperature', 'top_p', 'top_k']) {
    if (params !== undefined && params !== null && field in params) return anthropicError(400, 'invalid_request_error', `${field}: Extra inputs are not permitted`);
  }
  return undefined;
}

/** POST /v1/messages's protocol checks; other routes are 404. */
export function messagesPrecheck(request: RecordedRequest): MockReply | undefined {
  if (request.method !== 'POST' || request.path !== '/v1/messages') {
    return anthropicError(404, 'not_found_error', `no route ${request.method} ${request.path}`);
  }
  return headerCheck(request) ?? messageParamsCheck(request.body);
}

/** Starts a Messages API server; `fallback` answers when the script is empty (default: a 500, so a missing script shows). */
export function startMockAnthropic(fallback?: (request: RecordedRequest) => MockReply): Promise<ScriptedServer> {
  return new ScriptedServer(messagesPrecheck, fallback ?? (() => anthropicError(500, 'api_error', 'mock script is empty'))).start();
}
