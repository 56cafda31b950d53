// The captioning module's entry: builds one captioner per configured provider from CaptionConfig.
// Re-exports the contract so that callers import from './captioning/index.js' only.
import type { FastifyBaseLogger } from 'fastify';
import { AnthropicCaptioner } from './anthropic.js';
import type { Captioner, CaptionerRegistry, CaptionProvider } from './captioner.js';
import { CAPTION_PROVIDERS } from './captioner.js';
import type { CaptionConfig } from './config.js';
import { OpenAiCompatibleCaptioner } from './openai-compatible.js';
import { TemplateCaptioner } from './template.js';

export * from './captioner.js';
export { CaptionEnvProperties, captionConfigFromEnv, CaptionConfigError, DEFAULT_ANTHROPIC_MODEL, type CaptionBatchPolicy, type CaptionConfig, type CaptionEnv } from './config.js';
export { SecretFileError } from './secrets.js';
export { PROMPT_VERSION } from './prompts.js';
export { templateCaption, TEMPLATE_PROMPT_VERSION } from './template.js';

/** One captioner per configured provider; the template provider is always there. */
export function createCaptioners(config: CaptionConfig, deps: { logger?: FastifyBaseLogger } = {}): CaptionerRegistry {
  const captioners = new Map<CaptionProvider, Captioner>();
  captioners.set('template', new TemplateCaptioner());
  if (config.anthropic !== undefined) {
    captioners.set('anthropic', new AnthropicCaptioner({
      apiKey: config.anthropic.apiKey,
      baseUrl: config.anthropic.baseUrl,
      model: config.anthropic.model,
      maxTokens: config.maxTokens,
      maxChars: config.maxChars,
      request: config.request,
      logger: deps.logger,
    }));
  }
  if (config.openaiCompatible !== undefined) {
    captioners.set('openai-compatible', new OpenAiCompatibleCaptioner({
      baseUrl: config.openaiCompatible.baseUrl,
      apiKey: config.openaiCompatible.apiKey,
      model: config.openaiCompatible.model,
      maxTokens: config.maxTokens,
      temperature: config.temperature,
      maxChars: config.maxChars,
      request: config.request,
      logger: deps.logger,
    }));
  }
  return {
    defaultProvider: config.defaultProvider,
    get: (provider) => captioners.get(provider),
    configured: () => CAPTION_PROVIDERS.filter((p) => captioners.has(p)),
  };
}
