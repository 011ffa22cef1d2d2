// Pure decision logic: the same recorded figures always give the same decision.
// Used by the workflow (deterministic) and by unit tests directly.
import type { CampaignCarry, ExperimentStatus, RunResult } from '../common/shared';
import type { CampaignConfig } from '../common/config';

export interface Decision {
  status: ExperimentStatus;
  /** Signed change against the best so far, in the metric's units (metric - best). */
  delta: number | null;
  reason: string;
}

/** Improvement in the "better" direction: positive means better. */
export function improvement(metric: number, best: number, direction: 'lower' | 'higher'): number {
  return direction === 'lower' ? best - metric : metric - best;
}

/**
 * autoresearch's rule, made explicit: a run without a metric is a crash; a metric better than
 * the best by more than `minImprovement` is kept; equal or worse is discarded.
 */
export function decide(run: Pick<RunResult, 'outcome' | 'metric' | 'reason'>, best: number | null, config: Pick<CampaignConfig, 'metric' | 'keep'>): Decision {
  if (run.outcome !== 'ok' || run.metric === null || !Number.isFinite(run.metric)) {
    return { status: 'crash', delta: null, reason: run.reason || `run ended: ${run.outcome}` };
  }
  if (best === null) return { status: 'keep', delta: null, reason: 'baseline' };
  const delta = run.metric - best;
  const gain = improvement(run.metric, best, config.metric.direction);
  const min = config.keep.minImprovement;
  if (gain > min) return { status: 'keep', delta, reason: `improved by ${fmt(gain)} (> ${fmt(min)})` };
  return { status: 'discard', delta, reason: gain > 0 ? `improved by ${fmt(gain)}, not more than minImprovement ${fmt(min)}` : `not better than best ${fmt(best)}` };
}

/** Why the campaign should end now, or null to go on. */
export function budgetExhausted(s: Pick<CampaignCarry, 'experiments' | 'costUsd' | 'startedAtMs'>, budget: CampaignConfig['budget'], nowMs: number): string | null {
  if (budget.maxExperiments !== null && s.experiments >= budget.maxExperiments) return `budget reached: ${s.experiments} of ${budget.maxExperiments} experiments`;
  if (budget.maxHours !== null && nowMs - s.startedAtMs >= budget.maxHours * 3_600_000) return `budget reached: ${budget.maxHours} h`;
  if (budget.maxCostUsd !== null && s.costUsd >= budget.maxCostUsd) return `budget reached: $${s.costUsd.toFixed(2)} of $${budget.maxCostUsd.toFixed(2)} proposer cost`;
  return null;
}

/** After a crash: the next experiment tries to fix it, while attempts remain. */
export function nextFix(
  current: CampaignCarry['fix'],
  crashed: { sha: string; experiment: number },
  maxFixAttempts: number,
): CampaignCarry['fix'] {
  const left = current ? current.attemptsLeft - 1 : maxFixAttempts;
  return left > 0 ? { crashedSha: crashed.sha, experiment: crashed.experiment, attemptsLeft: left } : null;
}

function fmt(x: number): string {
  return Number(x.toPrecision(4)).toString();
}

export function initialCarry(nowMs: number): CampaignCarry {
  return {
    next: 0,
    experiments: 0,
    kept: 0,
    crashes: 0,
    best: null,
    baselineMetric: null,
    fix: null,
    attempt: 0,
    rejectedInARow: 0,
    costUsd: 0,
    startedAtMs: nowMs,
    paused: false,
    stopRequested: false,
    statusMessage: 'starting',
    notes: [],
  };
}
