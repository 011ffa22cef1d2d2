// The one price table for Anthropic models, in USD per million tokens, and the cost of a usage.
// Update prices here and nowhere else. Source: ../shared/notes/anthropic.md (late 2026).
import type { TokenUsage } from './shared';

interface Price {
  /** USD per million uncached input tokens. */
  input: number;
  /** USD per million output tokens (thinking included). */
  output: number;
}

/**
 * Prices by model family. A model not listed here is refused rather than guessed at: a campaign
 * with a wrong price would enforce `maxCostUsd` against the wrong numbers.
 */
const PRICE_TABLE: { family: string; models: string[]; price: Price }[] = [
  { family: 'Opus 5.5', models: ['claude-opus-5-5'], price: { input: 4, output: 20 } },
  {
    family: 'Opus 4.x–5',
    models: ['claude-opus-5', 'claude-opus-4-8', 'claude-opus-4-7', 'claude-opus-4-6', 'claude-opus-4-5'],
    price: { input: 5, output: 25 },
  },
  { family: 'Sonnet 5.5', models: ['claude-sonnet-5-5'], price: { input: 2, output: 10 } },
  { family: 'Sonnet 4.x', models: ['claude-sonnet-4-6', 'claude-sonnet-4-5'], price: { input: 3, output: 15 } },
  { family: 'Haiku 4.5', models: ['claude-haiku-4-5'], price: { input: 1, output: 5 } },
];

/** Multipliers of the input price for prompt caching. */
export const CACHE_WRITE_5M = 1.25;
export const CACHE_WRITE_1H = 2;
export const CACHE_READ = 0.1;

export const KNOWN_MODELS: string[] = PRICE_TABLE.flatMap((row) => row.models);

/** The price of a model id; dated snapshots (claude-haiku-4-5-20251001) price as their alias. */
export function priceOf(model: string): Price {
  const alias = model.replace(/-\d{8}$/, '');
  const row = PRICE_TABLE.find((r) => r.models.includes(alias));
  if (!row) {
    throw new Error(
      `no price known for model "${model}": set proposer.model to one of ${KNOWN_MODELS.join(', ')} (or add its price to common/prices.ts)`,
    );
  }
  return row.price;
}

/**
 * Usage as priced: `cacheWriteTokens` is the total written to the cache; `cacheWrite5mTokens`
 * says how many of them went to the 5-minute cache. Writes without that split are priced at the
 * 1-hour rate: it is what Nightlab asks for, and the higher price errs on the side of the budget.
 */
export type PricedUsage = TokenUsage & { cacheWrite5mTokens?: number };

/** USD for one usage (one request, or a sum of requests of one model). */
export function costOf(model: string, usage: PricedUsage): number {
  const p = priceOf(model);
  const write5m = Math.min(usage.cacheWrite5mTokens ?? 0, usage.cacheWriteTokens);
  const write1h = usage.cacheWriteTokens - write5m;
  const inputEquivalent =
    usage.inputTokens + write5m * CACHE_WRITE_5M + write1h * CACHE_WRITE_1H + usage.cacheReadTokens * CACHE_READ;
  return (inputEquivalent * p.input + usage.outputTokens * p.output) / 1e6;
}
