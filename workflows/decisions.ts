// Pure decision logic: the same recorded figures always give the same decision.
// Used by the workflow (deterministic), by bench/noise and by unit tests directly.
import type { CampaignCarry, CrashFix, Group, Pool, RunResult } from '../common/shared';
import type { CampaignConfig } from '../common/config';

export const EMPTY_GROUP: Group = { n: 0, mean: 0, m2: 0 };

/** Welford's update: identical runs give exactly zero spread, whatever their size. */
export function addRun(g: Group, x: number): Group {
  const n = g.n + 1;
  const delta = x - g.mean;
  const mean = g.mean + delta / n;
  return { n, mean, m2: g.m2 + delta * (x - mean) };
}

export function groupOf(xs: number[]): Group {
  return xs.reduce(addRun, EMPTY_GROUP);
}

export function mean(g: Group): number {
  return g.mean;
}

/** Sum of squared deviations from the group's mean. */
export function groupSS(g: Group): number {
  return g.n < 2 ? 0 : Math.max(0, g.m2);
}

export function closeGroup(pool: Pool, g: Group): Pool {
  return g.n < 2 ? pool : { ss: pool.ss + groupSS(g), dof: pool.dof + g.n - 1 };
}

/** Run-to-run standard deviation from the pool and the open groups; null when nothing was repeated. */
export function noiseSigma(pool: Pool, open: Group[] = []): number | null {
  const all = open.reduce(closeGroup, pool);
  return all.dof === 0 ? null : Math.sqrt(all.ss / all.dof);
}

/** Improvement in the "better" direction: positive means better. */
export function improvement(metric: number, best: number, direction: 'lower' | 'higher'): number {
  return direction === 'lower' ? best - metric : metric - best;
}

export interface NoisePolicy {
  direction: 'lower' | 'higher';
  minImprovement: number;
  /** Margin in standard deviations of the measured difference. */
  k: number;
  /** Fresh runs of a promising candidate before it is kept. */
  confirmRuns: number;
  /** The best commit is re-run up to this many times in all, so its mean sharpens. */
  bestRuns: number;
}

/** A single run this much beyond the margin (in units of the margin) is kept without confirmation. */
export const CLEAR_WIN = 1.5;

export function noisePolicy(config: Pick<CampaignConfig, 'metric' | 'keep' | 'noise'>): NoisePolicy {
  return { direction: config.metric.direction, minImprovement: config.keep.minImprovement, ...config.noise };
}

/**
 * What judging says of a candidate: keep or discard with the figure that decided it (the mean of
 * `group`, after `runs` runs of the candidate), crash with the run that failed, or confirm: inside
 * the noise, fresh runs decide. `suspect`: why the gain looked too good to be true.
 */
export type Judgement =
  | {
      kind: 'keep' | 'discard';
      metric: number;
      delta: number;
      evidence: string;
      runs: number;
      group: Group;
      suspect?: string;
    }
  | { kind: 'crash'; evidence: string; runs: number; failedRun: number; suspect?: string }
  | { kind: 'confirm'; evidence: string };
/** The judgements of the kinds named (`JudgementOf<'keep' | 'discard'>` has a figure). */
export type JudgementOf<K extends Judgement['kind']> = Judgement & { kind: K };

/**
 * Stage 1, one run of the candidate against the best's mean:
 * not better → discard; far outside the noise → keep; better but inside the noise → confirm.
 * With no noise estimate (one baseline run) this is autoresearch's rule; with zero noise
 * (every repeated run identical) one run is the truth.
 */
export function judgeFirstRun(
  x: number,
  best: Group,
  sigma: number | null,
  p: NoisePolicy,
): JudgementOf<'keep' | 'discard' | 'confirm'> {
  const b = mean(best);
  const gain = improvement(x, b, p.direction);
  const vs = `${fmt(x)} vs best ${fmt(b)} (${best.n} run${best.n === 1 ? '' : 's'})`;
  const one = (kind: 'keep' | 'discard', evidence: string): JudgementOf<'keep' | 'discard'> => ({
    kind,
    metric: x,
    delta: x - b,
    evidence,
    runs: 1,
    group: groupOf([x]),
  });
  if (gain <= p.minImprovement) {
    return one(
      'discard',
      `${vs}: ${gain > 0 ? `better by ${fmt(gain)}, not more than minImprovement ${fmt(p.minImprovement)}` : 'not better'}`,
    );
  }
  if (sigma === null) return one('keep', `${vs}: better by ${fmt(gain)}; no noise estimate (one baseline run)`);
  if (sigma === 0) return one('keep', `${vs}: better by ${fmt(gain)}; repeated runs are identical (no noise)`);
  const margin = Math.max(p.minImprovement, p.k * sigma * Math.sqrt(1 + 1 / best.n));
  if (gain > CLEAR_WIN * margin || p.confirmRuns === 0) {
    return gain > margin
      ? one(
          'keep',
          `${vs}: better by ${fmt(gain)} > ${p.confirmRuns ? `${CLEAR_WIN} x ` : ''}margin ${fmt(margin)} (k=${p.k}, sigma=${fmt(sigma)})`,
        )
      : one('discard', `${vs}: better by ${fmt(gain)}, inside margin ${fmt(margin)} (k=${p.k}, sigma=${fmt(sigma)})`);
  }
  return {
    kind: 'confirm',
    evidence: `${vs}: better by ${fmt(gain)}, inside ${CLEAR_WIN} x margin ${fmt(margin)} (sigma=${fmt(sigma)}): confirming with ${p.confirmRuns} more seeds`,
  };
}

/**
 * Stage 2: only the fresh confirmation runs decide (the first run was chosen for looking good,
 * so counting it would favour luck). Keep when the mean's gain clears k standard errors.
 */
export function judgeConfirmed(
  fresh: Group,
  best: Group,
  sigma: number | null,
  p: NoisePolicy,
): JudgementOf<'keep' | 'discard'> {
  const m = mean(fresh);
  const b = mean(best);
  const gain = improvement(m, b, p.direction);
  const margin = Math.max(p.minImprovement, p.k * (sigma ?? 0) * Math.sqrt(1 / fresh.n + 1 / best.n));
  const evidence = `mean of ${fresh.n} fresh runs ${fmt(m)} vs best ${fmt(b)} (${best.n} runs): ${gain > 0 ? 'better' : 'worse'} by ${fmt(Math.abs(gain))}, margin ${fmt(margin)} (k=${p.k}, sigma=${fmt(sigma ?? 0)})`;
  return { kind: gain > margin ? 'keep' : 'discard', metric: m, delta: m - b, evidence, runs: fresh.n, group: fresh };
}

/** The baseline's runs: kept as the first best (their mean; their spread, the first noise estimate), or a crash. */
export function judgeBaseline(runs: RunResult[]): JudgementOf<'keep' | 'crash'> {
  const failedRun = runs.findIndex(runFailed);
  if (failedRun >= 0) return { kind: 'crash', evidence: runs[failedRun].reason, runs: runs.length, failedRun };
  const group = groupOf(runs.map((r) => r.metric!));
  const evidence = `baseline: mean of ${runs.length} run${runs.length > 1 ? 's' : ''}${spreadText(group)}`;
  return { kind: 'keep', metric: mean(group), delta: 0, evidence, runs: runs.length, group };
}

/** The spread of a group of runs, for people: empty for one run. */
export function spreadText(group: Group): string {
  return group.n > 1
    ? `; noise sigma ${noiseSigma({ ss: 0, dof: 0 }, [group])!.toPrecision(3)} from ${group.n} runs`
    : '';
}

/** A gain this many noise sigmas beyond the best, in one step, is suspect... */
export const SUSPECT_SIGMAS = 20;
/** ...when it is also this many times the largest gain kept so far (or nothing was kept yet). */
export const SUSPECT_FACTOR = 3;

/**
 * Why a first run's gain is suspect (far beyond anything the campaign has seen: a faked figure, a
 * leak, a bug in the scoring), or null. Such a gain is never kept on one run: fresh runs on clean
 * caches confirm it, and a person is told, whatever the outcome. Unknown or zero noise: not judged.
 */
export function suspectGain(
  x: number,
  best: Group,
  sigma: number | null,
  largestGain: number | null,
  p: Pick<NoisePolicy, 'direction'>,
): string | null {
  if (sigma === null || !(sigma > 0)) return null;
  const gain = improvement(x, mean(best), p.direction);
  const sd = sigma * Math.sqrt(1 + 1 / best.n);
  if (gain < SUSPECT_SIGMAS * sd) return null;
  if (largestGain !== null && largestGain > 0 && gain < SUSPECT_FACTOR * largestGain) return null;
  const seen =
    largestGain !== null && largestGain > 0
      ? `${fmt(gain / largestGain)} x the largest gain kept so far (${fmt(largestGain)})`
      : 'before any keep';
  return `suspect gain: ${fmt(gain)} is ${fmt(gain / sd)} noise sigmas in one step, ${seen}`;
}

/** A run that ended without a usable metric. */
export function runFailed(run: Pick<RunResult, 'outcome' | 'metric'>): boolean {
  return run.outcome !== 'ok' || run.metric === null || !Number.isFinite(run.metric);
}

/** Why no new experiment may start now, or null when one may. */
export function launchBlocked(
  s: Pick<CampaignCarry, 'next' | 'costUsd' | 'startedAtMs'>,
  budget: CampaignConfig['budget'],
  nowMs: number,
): string | null {
  const launched = s.next - 1;
  if (budget.maxExperiments !== null && launched >= budget.maxExperiments)
    return `budget reached: ${launched} of ${budget.maxExperiments} experiments`;
  if (budget.maxHours !== null && nowMs - s.startedAtMs >= budget.maxHours * 3_600_000)
    return `budget reached: ${budget.maxHours} h`;
  if (budget.maxCostUsd !== null && s.costUsd >= budget.maxCostUsd)
    return `budget reached: $${s.costUsd.toFixed(2)} of $${budget.maxCostUsd.toFixed(2)} proposer cost`;
  return null;
}

/** After a crash: the next experiment tries to fix it, while attempts remain. */
export function nextFix(
  current: CrashFix | null,
  crashed: { sha: string; experiment: number },
  maxFixAttempts: number,
): CrashFix | null {
  const left = current ? current.attemptsLeft - 1 : maxFixAttempts;
  return left > 0 ? { crashedSha: crashed.sha, experiment: crashed.experiment, attemptsLeft: left } : null;
}

export function fmt(x: number): string {
  return Number(x.toPrecision(4)).toString();
}

export function initialCarry(nowMs: number): CampaignCarry {
  return {
    next: 0,
    experiments: 0,
    kept: 0,
    crashes: 0,
    best: null,
    pool: { ss: 0, dof: 0 },
    baselineMetric: null,
    fix: null,
    rejectedInARow: 0,
    costUsd: 0,
    startedAtMs: nowMs,
    paused: false,
    stopRequested: false,
    statusMessage: 'starting',
    notes: [],
  };
}
