// The proposers this worker process can offer, beyond the built-in mutate and command ones.
// Secrets are read here, in the worker, and nowhere else: the API key goes into the proposer's
// client and never into workflow inputs, history, results or logs.
import type { ActivityDeps } from '../activities';
import { anthropicProposer } from '../proposers/anthropic';

export function workerProposers(env: NodeJS.ProcessEnv = process.env): NonNullable<ActivityDeps['proposers']> {
  if (!env.ANTHROPIC_API_KEY) return {};
  return {
    anthropic: anthropicProposer({ apiKey: env.ANTHROPIC_API_KEY, baseURL: env.ANTHROPIC_BASE_URL || undefined }),
  };
}
