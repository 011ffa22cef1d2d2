// The campaign's decisions, pure: noise groups, first-run and confirmed judgements, the sequential
// rule (each look, and whole judgements run by run), adopting a keep at once, budgets, crash fixes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adoptBest, judgeCandidate, judgeSequentially, type JudgingIO, type RunLite } from '../workflows/judging';
import {
  nextEarlyStops,
  closeGroup,
  configuredSequential,
  groupOf,
  groupSS,
  judgeConfirmed,
  judgeFirstRun,
  judgeSequential,
  launchBlocked,
  mean,
  nextFix,
  noiseSigma,
  normalOfT,
  runFailed,
  sequentialBounds,
  type NoisePolicy,
} from '../workflows/decisions';
import { parseConfig } from '../common/config';
import type { NoiseState } from '../common/shared';

const LOWER: NoisePolicy = {
  direction: 'lower',
  minImprovement: 0,
  k: 2,
  confirmRuns: 4,
  bestRuns: 10,
  falseKeep: 0.05,
  detect: 2,
};
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

// The sequential rule. Noise sigma 0.01 throughout; `known` is a pool of 100 degrees of freedom
// (the noise is well known), and the best has 10 runs of mean 1.0.
const known = { ss: 0.0001 * 100, dof: 100 };
const tenRuns = groupOf([0.99, 1.01, 0.99, 1.01, 0.99, 1.01, 0.99, 1.01, 0.99, 1.01]);
const look = (xs: number[], o: { best?: ReturnType<typeof groupOf>; pool?: typeof known; last?: boolean } = {}) =>
  judgeSequential(groupOf(xs), o.best ?? tenRuns, o.pool ?? known, LOWER, o.last ?? false);

test('normalOfT: a t statistic weighs less the fewer degrees of freedom its noise estimate has', () => {
  assert.equal(normalOfT(2, Infinity), 2);
  // Exact normal deviates of the same tails: t 2 with 10 dof is z 1.790; t -3 with 5 dof is z -2.169.
  assert.ok(Math.abs(normalOfT(2, 10) - 1.79) < 0.01, `${normalOfT(2, 10)}`);
  assert.ok(Math.abs(normalOfT(-3, 5) + 2.169) < 0.01, `${normalOfT(-3, 5)}`);
  assert.ok(normalOfT(3, 2) < normalOfT(3, 10) && normalOfT(3, 10) < normalOfT(3, 1000) && normalOfT(3, 1000) < 3);
  assert.equal(normalOfT(0, 3), 0);
});

test('sequentialBounds: keep above, discard below, wider the fewer false keeps are allowed', () => {
  const b = sequentialBounds(LOWER, 1, 10);
  assert.ok(b.keep > 0 && b.discard < 0, JSON.stringify(b));
  const strict = sequentialBounds({ ...LOWER, falseKeep: 0.01 }, 1, 10);
  assert.ok(strict.keep > b.keep, 'fewer false keeps: a higher bound to keep');
});

test('judgeSequential: not better on the first run is discarded; no noise estimate or zero noise: one run decides', () => {
  assert.match(look([1.0]).evidence, /not better/);
  assert.equal(look([1.0]).kind, 'discard');
  const small = judgeSequential(groupOf([0.995]), tenRuns, known, { ...LOWER, minImprovement: 0.01 }, false);
  assert.equal(small.kind, 'discard');
  assert.match(small.evidence, /not more than minImprovement 0\.01/);
  const none = look([0.99], { best: groupOf([1.0]), pool: { ss: 0, dof: 0 } });
  assert.equal(none.kind, 'keep');
  assert.match(none.evidence, /no noise estimate/);
  const zero = look([0.9999], { best: groupOf([1.0, 1.0, 1.0]), pool: { ss: 0, dof: 0 } });
  assert.equal(zero.kind, 'keep');
  assert.match(zero.evidence, /identical/);
});

test('judgeSequential: a clear win is kept on one run, a gain inside the noise gets one more run, a loser is dropped', () => {
  const clear = look([0.95]);
  assert.equal(clear.kind, 'keep');
  assert.match(clear.evidence, /0\.95 vs best 1 \(10 runs\): better by 0\.05 .*>= keep bound/);
  assert.ok(clear.kind === 'keep' && clear.runs === 1 && Math.abs(clear.delta + 0.05) < 1e-12);
  const inside = look([0.99]);
  assert.equal(inside.kind, 'confirm');
  assert.match(inside.evidence, /one more run/);
  // Three runs that average no gain: the evidence is against a 2-sigma gain.
  const loser = look([0.99, 1.005, 1.005]);
  assert.equal(loser.kind, 'discard');
  assert.match(loser.evidence, /mean of 3 runs 1 vs best 1 .*<= discard bound/);
  // Higher is better too.
  assert.equal(judgeSequential(groupOf([1.05]), tenRuns, known, { ...LOWER, direction: 'higher' }, false).kind, 'keep');
});

test('judgeSequential: the same gain weighs less when the noise is known from few runs; the last run allowed decides', () => {
  // 3 sigmas better. With the noise well known, kept on one run; from 3 baseline runs (2 dof), not yet.
  assert.equal(look([0.97]).kind, 'keep');
  const few = look([0.97], { best: groupOf([0.99, 1.0, 1.01]), pool: { ss: 0, dof: 0 } });
  assert.equal(few.kind, 'confirm');
  assert.match(few.evidence, /2 dof/);
  // On the last run allowed there is no "one more run": 5 runs 1.5 sigma better are kept, 5 even ones are not.
  const last = look([0.985, 0.985, 0.985, 0.985, 0.985], { last: true });
  assert.equal(last.kind, 'keep');
  assert.match(last.evidence, /last run allowed/);
  assert.equal(look([0.999, 1.0, 0.998, 1.0, 0.999], { last: true }).kind, 'discard');
});

/** A judging IO over planned figures: the candidate's runs in order, the best's re-runs in order. */
function planned(state: NoiseState, o: { candidate: number[]; best?: number[]; onBest?: () => boolean }) {
  const calls = { candidate: [] as { run: number; fresh?: boolean }[], best: [] as number[], rebases: 0 };
  const ok = (metric: number): RunLite => ({ metric, failed: false, reason: '' });
  const io: JudgingIO = {
    candidate: async (run, fresh) => {
      calls.candidate.push({ run, fresh });
      const x = o.candidate.shift();
      return x === undefined || Number.isNaN(x) ? { metric: null, failed: true, reason: 'out of memory' } : ok(x);
    },
    best: async (_best, run) => {
      calls.best.push(run);
      return ok(o.best?.shift() ?? 1.0);
    },
    onBest: o.onBest ?? (() => true),
    rebase: async () => {
      calls.rebases += 1;
      return true;
    },
    adopt: (keep) => adoptBest(state, { sha: 'cand', experiment: 9, group: keep.group, nextRun: keep.runs }),
  };
  return { io, calls };
}

const bestOf = (xs: number[], pool = known): NoiseState => ({
  best: { sha: 'base', experiment: 0, group: groupOf(xs), nextRun: xs.length, pending: 0 },
  pool: { ...pool },
});

test('judgeSequentially: a change that does nothing is dropped after a few runs, the best re-run up to twice its runs', async () => {
  const state = bestOf([0.99, 1.0, 1.01]);
  const { io, calls } = planned(state, { candidate: [1.0, 1.002, 1.0, 0.999] });
  const j = await judgeSequentially({ metric: 0.99, failed: false, reason: '' }, state, LOWER, io);
  assert.equal(j.kind, 'discard', j.evidence);
  assert.ok(j.runs >= 2 && j.runs <= 1 + LOWER.confirmRuns, `${j.runs} runs`);
  assert.deepEqual(
    calls.candidate.map((c) => c.run),
    Array.from({ length: j.runs - 1 }, (_, i) => i + 1),
    'each further run has its own seed',
  );
  assert.ok(calls.best.length > 0);
  assert.equal(state.best.group.n, 3 + calls.best.length, "the best's re-runs sharpen its mean for every candidate");
  assert.equal(state.best.group.n, Math.max(3, 2 * j.runs), "the best was re-run up to twice the candidate's runs");
  assert.equal(state.pool.dof, known.dof + j.runs - 1, "the discarded candidate's runs join the noise estimate");
  assert.match(j.evidence, /one more run; .*<= discard bound/);
});

test('judgeSequentially: a best with bestRuns runs is not re-run; a clear win costs one run', async () => {
  const state = bestOf([0.99, 1.01, 0.99, 1.01, 0.99, 1.01, 0.99, 1.01, 0.99, 1.01]);
  const first = planned(state, { candidate: [0.985, 0.98, 0.985, 0.98] });
  const j = await judgeSequentially({ metric: 0.985, failed: false, reason: '' }, state, LOWER, first.io);
  assert.equal(j.kind, 'keep', j.evidence);
  assert.ok(j.runs > 1, 'a 1.5-sigma first run is not enough alone');
  assert.equal(first.calls.best.length, 0, 'the best already has bestRuns runs');
  assert.equal(state.best.sha, 'cand', 'adopted the moment it was decided');
  assert.equal(state.best.group.n, j.runs, 'the new best: the runs that decided it');
  const next = bestOf([1.0, 1.0, 0.99, 1.01, 0.99, 1.01, 0.99, 1.01, 0.99, 1.01]);
  const clear = planned(next, { candidate: [] });
  const k = await judgeSequentially({ metric: 0.9, failed: false, reason: '' }, next, LOWER, clear.io);
  assert.equal(k.kind, 'keep');
  assert.equal(k.runs, 1);
  assert.equal(clear.calls.candidate.length + clear.calls.best.length, 0);
});

test('judgeSequentially: a candidate whose best moved is rebased and judged afresh; a crash on a further run is a crash', async () => {
  const state = bestOf([0.99, 1.0, 1.01]);
  let moved = true;
  const { io, calls } = planned(state, {
    candidate: [0.9, 0.9],
    onBest: () => {
      const was = !moved;
      moved = false;
      return was;
    },
  });
  const j = await judgeSequentially({ metric: 0.9, failed: false, reason: '' }, state, LOWER, io);
  assert.equal(calls.rebases, 1);
  assert.equal(j.kind, 'keep', j.evidence);
  assert.match(j.evidence, /built on an old best: rebased, judged afresh; 0\.9 vs best/);
  assert.equal(j.runs, 2, 'the first run, then one on the rebased commit');
  assert.ok(j.kind === 'keep' && j.group.n === 1, "only the rebased commit's run is its figure");

  const crashing = bestOf([0.99, 1.0, 1.01]);
  const c = planned(crashing, { candidate: [NaN] });
  const k = await judgeSequentially({ metric: 0.99, failed: false, reason: '' }, crashing, LOWER, c.io);
  assert.equal(k.kind, 'crash');
  assert.ok(k.kind === 'crash' && k.failedRun === 1 && k.runs === 2);
  assert.match(k.evidence, /run 1 crashed: out of memory/);
});

test('judgeSequentially: a suspect gain is never kept on its first run: fresh runs on clean caches decide', async () => {
  const state = bestOf([0.99, 1.0, 1.01]);
  const { io, calls } = planned(state, { candidate: [1.0, 1.001, 0.999, 1.0] });
  const j = await judgeSequentially({ metric: 0.5, failed: false, reason: '' }, state, LOWER, io, {
    largestGain: null,
  });
  assert.equal(j.kind, 'discard', 'the fresh runs show no gain');
  assert.match(j.suspect ?? '', /suspect gain/);
  assert.ok(calls.candidate.length >= 1 && calls.candidate.every((c) => c.fresh === true));
  assert.ok(!/^0\.5 vs/.test(j.evidence.split('; ')[1] ?? ''), 'the first run is not evidence');
});

test('configuredSequential: a config parsed now has the sequential settings; one parsed before does not', () => {
  const config = parseConfig(
    { editable: ['train.py'], run: { command: 'python3 train.py' }, metric: { name: 'val_bpb' } },
    'test',
  );
  assert.equal(configuredSequential(config), true);
  const { falseKeep: _f, detect: _d, ...before } = config.noise;
  assert.equal(configuredSequential({ noise: before as typeof config.noise }), false);
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

test("the early stop's audit: stops count on one best; an audited run that did not lose turns stopping off", () => {
  let e = nextEarlyStops(undefined, { sha: 'a', stopped: true, audited: false, fine: false });
  e = nextEarlyStops(e, { sha: 'a', stopped: true, audited: false, fine: false });
  assert.deepEqual(e, { sha: 'a', inARow: 2, off: false });
  // A run to the end that lost (the stops were right): counting starts again, stopping stays on.
  assert.deepEqual(nextEarlyStops(e, { sha: 'a', stopped: false, audited: true, fine: false }), {
    sha: 'a',
    inARow: 0,
    off: false,
  });
  // One that did not lose: the best's curves are not believed again.
  const off = nextEarlyStops(e, { sha: 'a', stopped: false, audited: true, fine: true });
  assert.deepEqual(off, { sha: 'a', inARow: 0, off: true });
  assert.equal(nextEarlyStops(off, { sha: 'a', stopped: false, audited: false, fine: false }).off, true);
  // Only an audited run turns it off; another best starts afresh.
  assert.equal(nextEarlyStops(e, { sha: 'a', stopped: false, audited: false, fine: true }).off, false);
  assert.deepEqual(nextEarlyStops(off, { sha: 'b', stopped: true, audited: false, fine: false }), {
    sha: 'b',
    inARow: 1,
    off: false,
  });
});
