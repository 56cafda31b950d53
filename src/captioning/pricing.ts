// Estimated cost of a caption request from its token usage and the model's list price
// (USD per million tokens, platform.claude.com "Models overview" / pricing). Unknown models,
// self-hosted ones included, have no estimate (null) rather than a wrong one. Requests sent
// through the Message Batches API are billed at half the list price, input and output alike.
import type { CaptionUsage } from './captioner.js';

interface Price {
  inputPerMTok: number;
  outputPerMTok: number;
}

/** Keyed by model alias; dated snapshots ("claude-haiku-4-5-20251001") match their alias. */
const ANTHROPIC_PRICES: Record<string, Price> = {
  'claude-haiku-4-5': { inputPerMTok: 1, outputPerMTok: 5 },
  // Prompts up to 100K tokens; a caption request is a few thousand.
  'claude-haiku-5-5': { inputPerMTok: 0.1, outputPerMTok: 0.5 },
  'claude-sonnet-4-5': { inputPerMTok: 3, outputPerMTok: 15 },
  'claude-sonnet-4-6': { inputPerMTok: 3, outputPerMTok: 15 },
  'claude-sonnet-5': { inputPerMTok: 2, outputPerMTok: 10 },
  'claude-sonnet-5-5': { inputPerMTok: 2, outputPerMTok: 10 },
  'claude-opus-4-5': { inputPerMTok: 5, outputPerMTok: 25 },
  'claude-opus-4-6': { inputPerMTok: 5, outputPerMTok: 25 },
  'claude-opus-5': { inputPerMTok: 5, outputPerMTok: 25 },
  'claude-opus-5-5': { inputPerMTok: 4, outputPerMTok: 20 },
  'claude-fable-5-1': { inputPerMTok: 10, outputPerMTok: 50 },
};

function priceOf(model: string): Price | undefined {
  return ANTHROPIC_PRICES[model] ?? ANTHROPIC_PRICES[model.replace(/-\d{8}$/, '')];
}

/** What a batch request costs, as a share of the same request sent on its own. */
export const BATCH_PRICE_FACTOR = 0.5;

/** Estimated USD, rounded to a millionth of a dollar; null when the model's price is unknown. */
export function estimateCostUsd(model: string, usage: CaptionUsage, options: { batch?: boolean } = {}): number | null {
  const price = priceOf(model);
  if (price === undefined) return null;
  const factor = options.batch === true ? BATCH_PRICE_FACTOR : 1;
  const usd = factor * (usage.inputTokens * price.inputPerMTok + usage.outputTokens * price.outputPerMTok) / 1_000_000;
  return Math.round(usd * 1_000_000) / 1_000_000;
}

export function addUsage(a: CaptionUsage, b: CaptionUsage): CaptionUsage {
  return { inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens };
}

export const NO_USAGE: CaptionUsage = Object.freeze({ inputTokens: 0, outputTokens: 0 });
