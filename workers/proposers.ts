// The proposers this worker process can offer, beyond the built-in mutate and command ones.
// Secrets are read here, in the worker, and nowhere else.
import type { ActivityDeps } from '../activities';

export function workerProposers(env: NodeJS.ProcessEnv = process.env): NonNullable<ActivityDeps['proposers']> {
  void env;
  return {};
}
