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

/** The pool without a group closed into it before (`closeGroup` undone). */
export function reopenGroup(pool: Pool, g: Group): Pool {
  return g.n < 2 ? pool : { ss: Math.max(0, pool.ss - groupSS(g)), dof: Math.max(0, pool.dof - (g.n - 1)) };
}

/** Run-to-run standard deviation from the pool and the open groups; null when nothing was repeated. */
export function noiseSigma(pool: Pool, open: Group[] = []): number | null {
  const all = pooled(pool, open);
  return all.dof === 0 ? null : Math.sqrt(all.ss / all.dof);
}

/** The pool with the open groups' squares added (they count; they stay open). */
export function pooled(pool: Pool, open: Group[]): Pool {
  return open.reduce(closeGroup, pool);
}

/** Improvement in the "better" direction: positive means better. */
export function improvement(metric: number, best: number, direction: 'lower' | 'higher'): number {
  return direction === 'lower' ? best - metric : metric - best;
}

export interface NoisePolicy {
  direction: 'lower' | 'higher';
  minImprovement: number;
  /** Margin in standard deviations of the measured difference (the confirmation rule). */
  k: number;
  /** Fresh runs of a promising candidate before it is kept; sequentially, the most runs after the first. */
  confirmRuns: number;
  /** The best commit is re-run up to this many times in all, so its mean sharpens. */
  bestRuns: number;
  /** Sequential rule: the share of changes that do nothing it may keep. */
  falseKeep: number;
  /** Sequential rule: the gain, in noise sigmas, it finds `DETECTION` of the time. */
  detect: number;
}

/** A single run this much beyond the margin (in units of the margin) is kept without confirmation. */
export const CLEAR_WIN = 1.5;

export function noisePolicy(config: Pick<CampaignConfig, 'metric' | 'keep' | 'noise'>): NoisePolicy {
  return { direction: config.metric.direction, minImprovement: config.keep.minImprovement, ...config.noise };
}

/**
 * Whether a campaign's config has the sequential rule's settings: a config parsed before they
 * existed (a campaign started before) keeps the confirmation rule for the campaign's whole life.
 */
/** A first run stopped early, losing to the best's curves: a discard with no final figure. */
export interface StoppedEarly {
  kind: 'discard';
  metric: null;
  delta: null;
  evidence: string;
  runs: 1;
  stopped: true;
  suspect?: undefined;
}

/** How an experiment ended: judged on its runs, or stopped early. */
export type Verdict = JudgementOf<'keep' | 'discard' | 'crash'> | StoppedEarly;

/**
 * The early stop's audit after a first run on best `sha`: a stop counts one more in a row; a run let
 * through on purpose (`audited`) that did not lose (`fine`) turns stopping off on this best; any run to
 * the end starts the count again. Another best starts afresh.
 */
export function nextEarlyStops(
  prev: { sha: string; inARow: number; off: boolean } | undefined,
  r: { sha: string; stopped: boolean; audited: boolean; fine: boolean },
): { sha: string; inARow: number; off: boolean } {
  const e = prev?.sha === r.sha ? prev : { sha: r.sha, inARow: 0, off: false };
  if (r.stopped) return { ...e, inARow: e.inARow + 1 };
  return { ...e, inARow: 0, off: e.off || (r.audited && r.fine) };
}

/** A first run stopped early (its outcome `stopped`): discarded on the early stop's evidence, no more runs. */
export function judgeStopped(first: Pick<RunResult, 'reason'>): StoppedEarly {
  return { kind: 'discard', metric: null, delta: null, evidence: first.reason, runs: 1, stopped: true };
}

export function configuredSequential(config: Pick<CampaignConfig, 'noise'>): boolean {
  const noise: Partial<CampaignConfig['noise']> = config.noise;
  return noise.falseKeep !== undefined && noise.detect !== undefined;
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

// The sequential rule: after each run of the candidate, keep, discard or run it once more.
// It weighs "the change gains `detect` noise sigmas" against "it gains nothing" (Wald's sequential
// probability ratio test on the standardized difference of the means): the log of how much likelier
// the runs are under the first than under the second grows with each run while the change helps and
// falls while it does not, and the judge stops at the first bound it crosses. Each run counts, the
// first included: the bounds are set for the whole sequence, so choosing to go on is no bias.

/** The share of `detect`-sigma gains the sequential rule keeps. */
export const DETECTION = 0.9;
/**
 * Runs come in whole steps, so the log-odds overshoot a bound by about 0.583 x the last step's
 * spread (Siegmund's correction to Wald's bounds): the bounds are pulled in by about as much, or
 * whole runs would buy error rates far below those asked for. The factors are calibrated on
 * bench:noise: less for the keep bound, as a false keep costs more than a run.
 */
const OVERSHOOT = { keep: 0.45, discard: 0.6 };
/** On the last run allowed, keep when the runs favour the gain by at least these log-odds. */
const LAST_RUN_ODDS = 1;

/**
 * Bounds on the log-odds of a `detect`-sigma gain after `runs` runs of the candidate against `best`
 * runs of the best: keep at or above `keep`, discard at or below `discard`.
 */
export function sequentialBounds(
  p: Pick<NoisePolicy, 'falseKeep' | 'detect'>,
  runs: number,
  best: number,
): { keep: number; discard: number } {
  // The spread of the log-odds' last step: the information (inverse variance, in noise units) the
  // last run added to the difference of the means.
  const step = p.detect * Math.sqrt(information(runs, best) - information(runs - 1, best));
  return {
    keep: Math.max(0, Math.log(DETECTION / p.falseKeep) - OVERSHOOT.keep * step),
    discard: Math.min(0, Math.log((1 - DETECTION) / (1 - p.falseKeep)) + OVERSHOOT.discard * step),
  };
}

/** The inverse variance of the difference of two means of `a` and `b` unit-noise runs (0 with no runs). */
function information(a: number, b: number): number {
  return a === 0 ? 0 : 1 / (1 / a + 1 / b);
}

/**
 * A t statistic with `dof` degrees of freedom as the normal deviate of the same tail (Wallace's
 * approximation, within 0.04 for dof >= 2 up to t = 10): a noise estimate from few runs is itself
 * noisy, so early in a campaign the same gain weighs less.
 */
export function normalOfT(t: number, dof: number): number {
  if (!Number.isFinite(dof)) return t;
  return Math.sign(t) * ((8 * dof + 1) / (8 * dof + 3)) * Math.sqrt(dof * Math.log1p((t * t) / dof));
}

/** z with a normal tail of `p` above it, for 0 < p <= 0.5 (Abramowitz and Stegun 26.2.23, within 0.00045). */
export function upperNormalQuantile(p: number): number {
  const t = Math.sqrt(-2 * Math.log(p));
  return (
    t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
  );
}

/**
 * One look of the sequential rule at the candidate's runs (`runs`, all since it was last rebased)
 * against the best's, with the campaign's pooled noise: keep, discard, or 'confirm' (one more run).
 * `last`: no more runs are allowed, so it decides. The noise estimate pools the closed groups, the
 * best's runs and the candidate's; with none it is autoresearch's rule, with zero noise one run decides.
 */
export function judgeSequential(
  runs: Group,
  best: Group,
  pool: Pool,
  p: NoisePolicy,
  last: boolean,
): JudgementOf<'keep' | 'discard' | 'confirm'> {
  const m = mean(runs);
  const b = mean(best);
  const gain = improvement(m, b, p.direction);
  const what = runs.n === 1 ? fmt(m) : `mean of ${runs.n} runs ${fmt(m)}`;
  const vs = `${what} vs best ${fmt(b)} (${best.n} run${best.n === 1 ? '' : 's'})`;
  const decide = (kind: 'keep' | 'discard', evidence: string): JudgementOf<'keep' | 'discard'> => ({
    kind,
    metric: m,
    delta: m - b,
    evidence: `${vs}: ${evidence}`,
    runs: runs.n,
    group: runs,
  });
  const better = gain > p.minImprovement;
  const by = better
    ? `better by ${fmt(gain)}`
    : gain > 0
      ? `better by ${fmt(gain)}, not more than minImprovement ${fmt(p.minImprovement)}`
      : 'not better';
  if (!better && (runs.n === 1 || last)) return decide('discard', by);
  const noise = pooled(pool, [best, runs]);
  if (noise.dof === 0) return decide(better ? 'keep' : 'discard', `${by}; no noise estimate (one baseline run)`);
  const sigma = Math.sqrt(noise.ss / noise.dof);
  if (sigma === 0) return decide(better ? 'keep' : 'discard', `${by}; repeated runs are identical (no noise)`);
  const info = information(runs.n, best.n);
  const z = normalOfT((gain / sigma) * Math.sqrt(info), noise.dof);
  const odds = p.detect * z * Math.sqrt(info) - (p.detect * p.detect * info) / 2;
  const bounds = sequentialBounds(p, runs.n, best.n);
  const spread = `z ${fmt(z)}, sigma ${fmt(sigma)} from ${noise.dof} dof`;
  const facts = `${by} (${spread}), log-odds of a ${fmt(p.detect)}-sigma gain ${fmt(odds)}`;
  if (last) {
    // Also a test of its own at the falseKeep level: with a small `detect` most judgements end here.
    const critical = upperNormalQuantile(p.falseKeep / 2);
    const keep = better && odds >= LAST_RUN_ODDS && z >= critical;
    const verdict = keep
      ? `>= ${LAST_RUN_ODDS} and z >= ${fmt(critical)}`
      : `not both >= ${LAST_RUN_ODDS} and z >= ${fmt(critical)}`;
    return decide(keep ? 'keep' : 'discard', `${facts}: ${verdict} on the last run allowed`);
  }
  if (better && odds >= bounds.keep) return decide('keep', `${facts} >= keep bound ${fmt(bounds.keep)}`);
  if (odds <= bounds.discard) return decide('discard', `${facts} <= discard bound ${fmt(bounds.discard)}`);
  return {
    kind: 'confirm',
    evidence: `${vs}: ${facts}, between ${fmt(bounds.discard)} and ${fmt(bounds.keep)}: one more run`,
  };
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
