// A local HTTP server that speaks the OpenAI chat-completions protocol (POST /v1/chat/completions)
// the way self-hosted servers (vLLM, llama.cpp) do, for the openai-compatible captioner tests.
import { ScriptedServer, type MockReply, type RecordedRequest } from './mock-anthropic.js';

export type { MockReply, RecordedRequest } from './mock-anthropic.js';

let completionCounter = 0;

/** A chat.completion whose message content is `content` (a JSON string for structured output). */
export function completionReply(content: string | null, usage = { prompt_tokens: 1500, completion_tokens: 50 }, finishReason = 'stop'): MockReply {
  completionCounter += 1;
  return {
    status: 200,
    body: {
      id: `chatcmpl-mock${completionCounter}`,
      object: 'chat.completion',
      created: 1_790_000_000,
      model: 'Qwen/Qwen2.5-VL-7B-Instruct',
      choices: [{ index: 0, message: { role: 'assistant', content, tool_calls: [] }, logprobs: null, finish_reason: finishReason }],
      usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
    },
  };
}

/** An OpenAI-style error answer. */
export function openaiError(status: number, message: string, headers: Record<string, string> = {}): MockReply {
  return { status, headers, body: { object: 'error', error: { message, type: status === 429 ? 'rate_limit_error' : 'server_error', code: status } } };
}

/** Starts a chat-completions server under /v1; the captioner's base URL is `${origin}/v1`. */
export function startMockOpenAi(requiredKey?: string): Promise<ScriptedServer> {
  const precheck = (request: RecordedRequest): MockReply | undefined => {
    if (request.method !== 'POST' || request.path !== '/v1/chat/completions') return openaiError(404, `no route ${request.path}`);
    // Like api.openai.com, the refusal repeats the key it was given (a client must not log it).
    if (requiredKey !== undefined && request.headers.authorization !== `Bearer ${requiredKey}`) {
      return openaiError(401, `Incorrect API key provided: ${String(request.headers.authorization).replace(/^Bearer /, '')}`);
    }
    return undefined;
  };
  return new ScriptedServer(precheck, () => openaiError(500, 'mock script is empty')).start();
}
