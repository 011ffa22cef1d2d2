// The campaign's decisions, pure: noise groups, first-run and confirmed judgements, adopting a
// keep at once, budgets, crash fixes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adoptBest, judgeCandidate, type JudgingIO } from '../workflows/judging';
import {
  closeGroup,
  groupOf,
  groupSS,
  judgeConfirmed,
  judgeFirstRun,
  launchBlocked,
  mean,
  nextFix,
  noiseSigma,
  runFailed,
  type NoisePolicy,
} from '../workflows/decisions';
import { experiments } from '../lib/ledger';
import type { NoiseState } from '../common/shared';

const LOWER: NoisePolicy = { direction: 'lower', minImprovement: 0, k: 2, confirmRuns: 4, bestRuns: 10 };
const HIGHER: NoisePolicy = { ...LOWER, direction: 'higher' };
const best = (...xs: number[]) => groupOf(xs);

test('groups: Welford means and spreads; identical runs give exactly zero noise', () => {
  const g = groupOf([1.5, 1.5, 1.5]);
  assert.equal(mean(g), 1.5);
  assert.equal(groupSS(g), 0, 'no rounding residue');
  assert.equal(noiseSigma({ ss: 0, dof: 0 }, [g]), 0);
  const h = groupOf([1, 2, 3]);
  assert.equal(mean(h), 2);
  assert.ok(Math.abs(groupSS(h) - 2) < 1e-12);
  assert.equal(noiseSigma({ ss: 0, dof: 0 }, [groupOf([7])]), null, 'one run says nothing about noise');
  // Pooling: two groups of spread 1 each (variance 1) give sigma 1.
  const pool = closeGroup(closeGroup({ ss: 0, dof: 0 }, h), groupOf([10, 11, 12]));
  assert.deepEqual(pool.dof, 4);
  assert.ok(Math.abs(noiseSigma(pool)! - 1) < 1e-12);
});

test('runFailed: a run that did not end ok, or has no finite metric, failed', () => {
  for (const outcome of ['crash', 'timeout', 'oom', 'no-metric', 'cancelled'] as const)
    assert.equal(runFailed({ outcome, metric: 0.5 }), true, outcome);
  assert.equal(runFailed({ outcome: 'ok', metric: null }), true);
  assert.equal(runFailed({ outcome: 'ok', metric: NaN }), true);
  assert.equal(runFailed({ outcome: 'ok', metric: Infinity }), true);
  assert.equal(runFailed({ outcome: 'ok', metric: 0.5 }), false);
});

test('judgeFirstRun: not better (or not by minImprovement) is discarded at once, in either direction', () => {
  assert.equal(judgeFirstRun(1.0, best(1.0), 0.01, LOWER).kind, 'discard', 'equal is not better');
  assert.match(judgeFirstRun(1.1, best(1.0), 0.01, LOWER).evidence, /not better/);
  assert.equal(judgeFirstRun(0.9, best(1.0), 0.01, HIGHER).kind, 'discard');
  const small = judgeFirstRun(0.995, best(1.0), 0.01, { ...LOWER, minImprovement: 0.01 });
  assert.equal(small.kind, 'discard');
  assert.match(small.evidence, /not more than minImprovement 0\.01/);
});

test("judgeFirstRun: without a noise estimate it is autoresearch's rule; with zero noise one run is the truth", () => {
  const v = judgeFirstRun(0.99, best(1.0), null, LOWER);
  assert.equal(v.kind, 'keep');
  assert.match(v.evidence, /no noise estimate/);
  const d = judgeFirstRun(0.9999, best(1.0, 1.0, 1.0), 0, LOWER);
  assert.equal(d.kind, 'keep');
  assert.match(d.evidence, /identical/);
  assert.equal(judgeFirstRun(1.01, best(1.0), 0, HIGHER).kind, 'keep');
});

test('judgeFirstRun: a clear win is kept, a win inside the noise is confirmed', () => {
  // sigma 0.01, best of 3 runs: margin = 2 * 0.01 * sqrt(1 + 1/3) = 0.0231; clear win > 1.5 x that.
  const clear = judgeFirstRun(0.95, best(1.0, 1.0, 1.0), 0.01, LOWER);
  assert.equal(clear.kind, 'keep');
  assert.ok(clear.kind === 'keep' && Math.abs(clear.delta + 0.05) < 1e-12);
  const inside = judgeFirstRun(0.99, best(1.0, 1.0, 1.0), 0.01, LOWER);
  assert.equal(inside.kind, 'confirm');
  assert.match(inside.evidence, /confirming with 4 more seeds/);
  // With confirmation switched off, the margin alone decides.
  assert.equal(judgeFirstRun(0.97, best(1.0, 1.0, 1.0), 0.01, { ...LOWER, confirmRuns: 0 }).kind, 'keep');
  assert.equal(judgeFirstRun(0.99, best(1.0, 1.0, 1.0), 0.01, { ...LOWER, confirmRuns: 0 }).kind, 'discard');
});

test("judgeConfirmed: the fresh runs' mean must clear k standard errors of the difference", () => {
  // sigma 0.01, 4 fresh vs 10 best: standard error 0.01 * sqrt(1/4 + 1/10) = 0.005916; margin 0.01183.
  const b = groupOf(Array(10).fill(1.0));
  const keep = judgeConfirmed(groupOf([0.985, 0.987, 0.986, 0.986]), b, 0.01, LOWER);
  assert.equal(keep.kind, 'keep');
  assert.match(keep.evidence, /mean of 4 fresh runs 0\.986 vs best 1 \(10 runs\)/);
  assert.equal(judgeConfirmed(groupOf([0.99, 0.99, 0.99, 0.99]), b, 0.01, LOWER).kind, 'discard');
  // Higher is better; 2 vs 2 runs: margin 2 * 0.01 * sqrt(1/2 + 1/2) = 0.02.
  assert.equal(judgeConfirmed(groupOf([1.025, 1.025]), groupOf([1.0, 1.0]), 0.01, HIGHER).kind, 'keep');
  assert.equal(judgeConfirmed(groupOf([1.015, 1.015]), groupOf([1.0, 1.0]), 0.01, HIGHER).kind, 'discard');
  assert.equal(
    judgeConfirmed(groupOf([1.025, 1.025]), groupOf([1.0, 1.0]), 0.01, { ...HIGHER, minImprovement: 0.03 }).kind,
    'discard',
  );
});

test('judgeCandidate: a keep is adopted the moment it is decided, so an experiment judged in the same instant meets the new best', async () => {
  const state: NoiseState = {
    best: { sha: 'base', experiment: 0, group: best(1.5), nextRun: 1, pending: 0 },
    pool: { ss: 0, dof: 0 },
  };
  const parentOf: Record<string, string> = { a: 'base', b: 'base' };
  const io = (name: string, experiment: number): JudgingIO => ({
    candidate: async () => ({ metric: 1.3, failed: false, reason: '' }),
    best: async () => ({ metric: 1.2, failed: false, reason: '' }),
    onBest: () => parentOf[name] === state.best.sha,
    rebase: async () => {
      parentOf[name] = state.best.sha;
      return true;
    },
    adopt: (keep) => adoptBest(state, { sha: name, experiment, group: keep.group, nextRun: keep.runs }),
  });
  // Both first runs end together (one workflow activation): a is better than the base, and so is b.
  const [a, b] = await Promise.all([
    judgeCandidate({ metric: 1.2, failed: false, reason: '' }, state, LOWER, io('a', 1)),
    judgeCandidate({ metric: 1.3, failed: false, reason: '' }, state, LOWER, io('b', 2)),
  ]);
  assert.equal(a.kind, 'keep');
  assert.equal(state.best.sha, 'a', 'a is the best');
  // b was judged against a, not against the base both started from: not a second keep off a's line.
  assert.notEqual(b.kind, 'keep', JSON.stringify(b));
});

test('launchBlocked: experiments, hours and cost each stop new experiments, and only when reached', () => {
  const none = { maxExperiments: null, maxHours: null, maxCostUsd: null };
  const s = { next: 4, costUsd: 0.5, startedAtMs: 1_000_000 }; // experiments 1..3 launched
  assert.equal(launchBlocked(s, none, 1_000_000 + 1e12), null, 'no budget: never ends');
  assert.equal(launchBlocked(s, { ...none, maxExperiments: 4 }, 1_000_000), null);
  assert.match(launchBlocked(s, { ...none, maxExperiments: 3 }, 1_000_000)!, /budget reached: 3 of 3 experiments/);
  const hour = 3_600_000;
  assert.equal(launchBlocked(s, { ...none, maxHours: 2 }, 1_000_000 + 2 * hour - 1), null);
  assert.match(launchBlocked(s, { ...none, maxHours: 2 }, 1_000_000 + 2 * hour)!, /budget reached: 2 h/);
  assert.match(launchBlocked(s, { ...none, maxHours: 0.5 }, 1_000_000 + hour)!, /0\.5 h/);
  assert.equal(launchBlocked(s, { ...none, maxCostUsd: 0.51 }, 1_000_000), null);
  assert.match(launchBlocked(s, { ...none, maxCostUsd: 0.5 }, 1_000_000)!, /\$0\.50 of \$0\.50/);
});

test('nextFix: a crash opens maxFixAttempts fix attempts that count down to none', () => {
  let fix = nextFix(null, { sha: 'a'.repeat(40), experiment: 4 }, 2);
  assert.deepEqual(fix, { crashedSha: 'a'.repeat(40), experiment: 4, attemptsLeft: 2 });
  fix = nextFix(fix, { sha: 'b'.repeat(40), experiment: 5 }, 2);
  assert.deepEqual(
    fix,
    { crashedSha: 'b'.repeat(40), experiment: 5, attemptsLeft: 1 },
    'the fix of a fix works on the newest crash',
  );
  fix = nextFix(fix, { sha: 'c'.repeat(40), experiment: 6 }, 2);
  assert.equal(fix, null, 'attempts spent: the campaign moves on');
  assert.equal(nextFix(null, { sha: 'd'.repeat(40), experiment: 1 }, 0), null, 'maxFixAttempts 0: no fixes at all');
  assert.equal(nextFix(null, { sha: 'd'.repeat(40), experiment: 1 }, 1)!.attemptsLeft, 1);
});
