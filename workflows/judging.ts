// How one candidate is judged, run by run: the same procedure in the workflow (where a run is a
// GPU activity) and in bench/noise and bench/campaigns (where a run is a draw from a simulated trainer).
// The sequential rule (judgeSequentially; campaigns started since the `sequential-judging` patch):
//   after each run: keep, discard, or one more run (the best re-run beside it while it has few runs).
// The confirmation rule (judgeCandidate; campaigns started before):
//   1. one run; not better → discard; far outside the noise → keep; else
//   2. confirmation runs with other seeds, while the best is re-run until it has `bestRuns` runs;
//      the fresh runs' mean decides.
// A candidate built on a commit that is no longer the best is rebased onto it and must prove
// itself again with fresh runs: the combination of its change and the new best never ran.
import type { Group, NoiseState } from '../common/shared';
import {
  addRun,
  closeGroup,
  EMPTY_GROUP,
  groupOf,
  judgeConfirmed,
  mean,
  judgeFirstRun,
  judgeSequential,
  noiseSigma,
  suspectGain,
  type JudgementOf,
  type NoisePolicy,
} from './decisions';

/** A rebase can race another keep; after this many rounds the candidate is discarded. */
const MAX_ROUNDS = 3;

/** A run as judging sees it. */
export interface RunLite {
  metric: number | null;
  failed: boolean;
  reason: string;
}

/** What judging needs from its caller: runs, and where the candidate stands. */
export interface JudgingIO {
  /** Runs the candidate's current commit as run `run` of its experiment (the seed is the run index); `fresh`: on clean caches. */
  candidate(run: number, fresh?: boolean): Promise<RunLite>;
  /** Re-runs the best commit as run `run` of the best's experiment. */
  best(best: { sha: string; experiment: number }, run: number): Promise<RunLite>;
  /** True when the candidate's parent is the current best. */
  onBest(): boolean;
  /** Rebases the candidate onto the current best; false when it conflicts. */
  rebase(): Promise<boolean>;
  /**
   * Called the moment a keep is decided, in the same step as the check that the candidate is on
   * the best, so the caller can make it the best before any other experiment is judged. (An
   * `await` between the decision and the adoption would let a second experiment be judged
   * against the same old best and kept too, and move the branch off the first keep.)
   */
  adopt?(keep: { group: Group; runs: number }): void;
}

/**
 * The first run has been made; judges it and confirms when needed. Mutates `state` (noise, best
 * re-runs). With `suspects` (the largest gain kept so far), a gain far beyond anything seen is
 * confirmed with fresh runs on clean caches instead of being kept on one run, and flagged.
 */
export async function judgeCandidate(
  first: RunLite,
  state: NoiseState,
  p: NoisePolicy,
  io: JudgingIO,
  suspects?: { largestGain: number | null },
): Promise<JudgementOf<'keep' | 'discard' | 'crash'>> {
  if (first.failed) return { kind: 'crash', evidence: first.reason, runs: 1, failedRun: 0 };
  let runs = 1;
  let verdict = judgeFirstRun(first.metric!, state.best.group, sigma(state), p);
  const suspect = suspects ? suspectGain(first.metric!, state.best.group, sigma(state), suspects.largestGain, p) : null;
  if (suspect && verdict.kind !== 'discard') {
    const confirmRuns = Math.max(1, p.confirmRuns);
    verdict = {
      kind: 'confirm',
      evidence: `${suspect}: never kept on one run; confirming with ${confirmRuns} fresh runs on clean caches`,
    };
  }
  const trail = [verdict.evidence];
  let sameCommit: number[] = [first.metric!];
  // A win measured on an old best is re-proven on top of the new one.
  if (verdict.kind === 'keep' && !io.onBest()) {
    verdict = { kind: 'confirm', evidence: 'built on an old best: rebasing and confirming' };
  }
  for (let round = 0; verdict.kind === 'confirm'; round++) {
    if (round === MAX_ROUNDS) {
      state.pool = closeGroup(state.pool, groupOf(sameCommit));
      return discard(`the best moved ${MAX_ROUNDS} times while confirming`);
    }
    if (!io.onBest()) {
      state.pool = closeGroup(state.pool, groupOf(sameCommit));
      sameCommit = [];
      if (!(await io.rebase())) return discard('its change conflicts with a newer kept experiment');
    }
    const fresh = Array.from({ length: Math.max(1, p.confirmRuns) }, (_, i) =>
      suspect ? io.candidate(runs + i, true) : io.candidate(runs + i),
    );
    runs += fresh.length;
    const [results] = await Promise.all([Promise.all(fresh), reRunBest(state, p, io)]);
    const failed = results.findIndex((r) => r.failed);
    if (failed >= 0) {
      state.pool = closeGroup(state.pool, groupOf(sameCommit));
      return {
        kind: 'crash',
        evidence: `confirmation run ${runs - fresh.length + failed} crashed: ${results[failed].reason}`,
        runs,
        failedRun: runs - fresh.length + failed,
        ...(suspect ? { suspect } : {}),
      };
    }
    const metrics = results.map((r) => r.metric!);
    sameCommit = [...sameCommit, ...metrics];
    const group = groupOf(metrics);
    const confirmed = judgeConfirmed(group, state.best.group, sigma(state), p);
    trail.push(confirmed.evidence);
    if (confirmed.kind === 'keep' && !io.onBest()) {
      verdict = { kind: 'confirm', evidence: 'the best moved while confirming' };
      continue;
    }
    if (confirmed.kind !== 'keep') state.pool = closeGroup(state.pool, groupOf(sameCommit));
    return decided({ ...confirmed, evidence: trail.join('; '), runs, group });
  }
  if (verdict.kind === 'discard') state.pool = closeGroup(state.pool, groupOf(sameCommit));
  return decided({ ...verdict, evidence: trail.join('; '), runs, group: groupOf(sameCommit) });

  function decided(j: JudgementOf<'keep' | 'discard'>): JudgementOf<'keep' | 'discard'> {
    if (j.kind === 'keep') io.adopt?.(j);
    return suspect ? { ...j, suspect } : j;
  }

  function discard(why: string): JudgementOf<'discard'> {
    return {
      kind: 'discard',
      metric: first.metric!,
      delta: first.metric! - mean(state.best.group),
      evidence: [...trail, why].join('; '),
      runs,
      group: groupOf([first.metric!]),
      ...(suspect ? { suspect } : {}),
    };
  }
}

/**
 * The sequential rule (workflows/decisions.ts judgeSequential): after each run of the candidate,
 * keep, discard, or run it once more (at most `1 + confirmRuns` runs), the best re-run beside it
 * while the best has fewer than twice the candidate's runs (bestBeside). A candidate decided on its
 * first run costs no other run. A suspect gain is judged on fresh runs on clean caches only; a
 * candidate whose best moved is rebased and judged afresh on the new one. Mutates `state` as
 * judgeCandidate does.
 */
export async function judgeSequentially(
  first: RunLite,
  state: NoiseState,
  p: NoisePolicy,
  io: JudgingIO,
  suspects?: { largestGain: number | null },
): Promise<JudgementOf<'keep' | 'discard' | 'crash'>> {
  if (first.failed) return { kind: 'crash', evidence: first.reason, runs: 1, failedRun: 0 };
  const suspect = suspects ? suspectGain(first.metric!, state.best.group, sigma(state), suspects.largestGain, p) : null;
  const trail: string[] = suspect ? [`${suspect}: never kept on one run; judged on fresh runs on clean caches`] : [];
  // The runs that judge (a suspect's first run does not), and every run of the same commit (for the noise).
  let judged = suspect ? EMPTY_GROUP : groupOf([first.metric!]);
  let sameCommit = groupOf([first.metric!]);
  let runs = 1;
  const most = suspect ? Math.max(1, p.confirmRuns) : 1 + p.confirmRuns;
  for (let rebases = 0; ;) {
    const verdict = judged.n ? judgeSequential(judged, state.best.group, state.pool, p, judged.n >= most) : null;
    if (verdict) trail.push(verdict.evidence);
    if (verdict?.kind === 'discard') return decided(verdict);
    // A win (or a hope) measured on an old best is re-proven on top of the new one.
    if (verdict && !io.onBest()) {
      if (++rebases > MAX_ROUNDS) return discard(`the best moved ${MAX_ROUNDS} times while judging`);
      state.pool = closeGroup(state.pool, sameCommit);
      [judged, sameCommit] = [EMPTY_GROUP, EMPTY_GROUP];
      if (!(await io.rebase())) return discard('its change conflicts with a newer kept experiment');
      trail.push('built on an old best: rebased, judged afresh');
      continue;
    }
    if (verdict?.kind === 'keep') return decided(verdict);
    const run = runs++;
    const [r] = await Promise.all([
      io.candidate(run, suspect ? true : undefined),
      reRunBest(state, p, io, bestBeside(state, judged.n + 1)),
    ]);
    if (r.failed) {
      state.pool = closeGroup(state.pool, sameCommit);
      const evidence = `run ${run} crashed: ${r.reason}`;
      return { kind: 'crash', evidence: [...trail, evidence].join('; '), runs, failedRun: run, ...flag() };
    }
    judged = addRun(judged, r.metric!);
    sameCommit = addRun(sameCommit, r.metric!);
  }

  function decided(j: JudgementOf<'keep' | 'discard'>): JudgementOf<'keep' | 'discard'> {
    if (j.kind === 'discard') state.pool = closeGroup(state.pool, sameCommit);
    const out = { ...j, evidence: trail.join('; '), runs, ...flag() };
    if (out.kind === 'keep') io.adopt?.(out);
    return out;
  }

  function discard(why: string): JudgementOf<'keep' | 'discard'> {
    trail.push(why);
    const metric = judged.n ? mean(judged) : first.metric!;
    const group = judged.n ? judged : groupOf([first.metric!]);
    return decided({ kind: 'discard', metric, delta: metric - mean(state.best.group), evidence: '', runs, group });
  }

  function flag(): { suspect?: string } {
    return suspect ? { suspect } : {};
  }
}

/**
 * How many re-runs of the best go beside a candidate's run number `runs`: as many as the best lacks
 * of twice the candidate's runs (reRunBest stops at `bestRuns`). The difference of the means is only
 * as precise as its less-run side, and the best's runs serve every later candidate too; a best
 * with runs enough is not re-run.
 */
function bestBeside(state: NoiseState, runs: number): number {
  return Math.max(0, 2 * runs - state.best.group.n - state.best.pending);
}

/** The new best's runs become the best group; the old best's runs join the noise pool. */
export function adoptBest(
  state: NoiseState,
  best: { sha: string; experiment: number; group: Group; nextRun: number },
): void {
  state.pool = closeGroup(state.pool, state.best.group);
  state.best = { ...best, pending: 0 };
}

export function sigma(state: NoiseState): number | null {
  return noiseSigma(state.pool, [state.best.group]);
}

/**
 * Re-runs the best until it has `bestRuns` runs (counting those in flight), `most` at a time; a run
 * on a best that has since been replaced is dropped.
 */
async function reRunBest(state: NoiseState, p: NoisePolicy, io: JudgingIO, most = Infinity): Promise<void> {
  const want = Math.min(most, Math.max(0, p.bestRuns - state.best.group.n - state.best.pending));
  const target = state.best;
  const runs = Array.from({ length: want }, () => {
    target.pending += 1;
    const run = target.nextRun++;
    return io.best({ sha: target.sha, experiment: target.experiment }, run).then((r) => {
      target.pending -= 1;
      if (!r.failed && state.best === target) target.group = addRun(target.group, r.metric!);
    });
  });
  await Promise.all(runs);
}
