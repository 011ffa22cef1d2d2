// The early-stop rule (common/early-stop.ts), pure: a clearly worse curve stops with its evidence; a late
// bloomer, a curve inside the best's spread, and anything before `after` go on; 'higher' is the mirror.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { EARLY_STOP_DEFAULTS, earlyStop, firstStop, valueAt, type EarlyStopSettings } from '../common/early-stop';
import type { Curve } from '../common/curves';

const LOWER: EarlyStopSettings = { ...EARLY_STOP_DEFAULTS, direction: 'lower' };
const HIGHER: EarlyStopSettings = { ...LOWER, direction: 'higher' };
const STEPS = 20;

/**
 * A loss curve decaying like a power law to `final`, plus a wobble. speed: how much of the descent is still
 * ahead; warmup: the share of the budget before it starts to descend; late: a gap that closes linearly by 70%
 * (a curve that bends unlike the best's, as after a schedule change).
 */
function curve(
  final: number,
  o: { speed?: number; wobble?: number; seed?: number; warmup?: number; late?: number } = {},
) {
  const { speed = 1, wobble = 0.01, seed = 0, warmup = 0, late = 0 } = o;
  return Array.from({ length: STEPS }, (_, i) => {
    const at = (i + 1) / STEPS;
    const t = Math.max(0, (at - warmup) / (1 - warmup));
    const descent = 0.5 * speed * ((t + 0.02) ** -0.5 - 1.02 ** -0.5);
    return { at, value: final + descent + late * Math.max(0, 0.7 - at) + wobble * Math.sin(7 * at + seed) };
  });
}

/** The curve up to (and including) progress `at`, as the worker has seen it then. */
const upTo = (c: Curve, at: number) => c.filter((p) => p.at <= at + 1e-9);

/** The rule's verdict on `c`, fed one point at a time as the worker does. */
const stopsAt = (c: Curve, reference: Curve[], settings = LOWER) => firstStop(c, reference, settings);

const BEST = [curve(3.2, { seed: 0 }), curve(3.21, { seed: 2 }), curve(3.19, { seed: 4 })];
const END = (BEST[0][STEPS - 1].value + BEST[1][STEPS - 1].value + BEST[2][STEPS - 1].value) / 3;

test('a clearly worse curve stops after `after`, with evidence naming the figures and where the curves head', () => {
  const verdict = stopsAt(curve(3.6), BEST);
  assert.ok(verdict, 'a curve 0.4 worse than the best all along stops');
  assert.ok(verdict.at >= LOWER.after && verdict.at < 1, `stopped at ${verdict.at}`);
  assert.ok(verdict.value - verdict.best > 0.3);
  assert.equal(
    verdict.best,
    (valueAt(BEST[0], verdict.at) + valueAt(BEST[1], verdict.at) + valueAt(BEST[2], verdict.at)) / 3,
  );
  assert.ok(Math.abs(verdict.predicted - 3.6) < 0.03, `predicted end ${verdict.predicted}`);
  assert.equal(verdict.end, END);
  assert.match(
    verdict.evidence,
    new RegExp(
      `^stopped at ${Math.round(100 * verdict.at)}%: loss \\d\\.\\d+ vs best \\d\\.\\d+ ± 0\\.\\d+ \\(3 runs\\); ` +
        `its curve heads for 3\\.6\\d* against the best's 3\\.2\\d*, worse by 0\\.\\d+, more than 0\\.75 x 0\\.\\d+`,
    ),
  );
  assert.match(
    earlyStop(upTo(curve(3.6), 0.9), BEST, { ...LOWER, name: 'val_bpb' })!.evidence,
    /: val_bpb 3\.6\d* vs best/,
  );
  assert.match(stopsAt(curve(3.6), BEST, { ...LOWER, checks: 3 })!.evidence, /, at 3 points in a row$/);
});

test('nothing stops before `after`, however bad; nor with fewer than `checks` points past it, or one reference', () => {
  const awful = curve(9);
  for (let at = 0.05; at < LOWER.after - 0.01; at += 0.05) assert.equal(earlyStop(upTo(awful, at), BEST, LOWER), null);
  assert.ok(earlyStop(upTo(awful, 0.3), BEST, LOWER));
  // Points at 0.3 and 0.35 only are past `after`: with checks 3, three are needed in a row.
  const three = { ...LOWER, checks: 3 };
  assert.equal(earlyStop(upTo(awful, 0.35), BEST, three), null);
  assert.ok(earlyStop(upTo(awful, 0.4), BEST, three));
  assert.equal(earlyStop(upTo(awful, 0.4), BEST.slice(0, 1), LOWER), null, 'one reference curve: no spread');
  assert.equal(earlyStop(upTo(awful, 0.4), [], LOWER), null);
  assert.equal(earlyStop(upTo(awful, 0.4), BEST, { ...LOWER, after: 0.5 }), null);
});

test('late bloomers (slower at first, better at the end) are not stopped', () => {
  // More descent ahead (1.4x the best's), or a longer warm-up: far behind at 30-50%, 0.05 better at the end.
  // Their curves are the best's stretched: the fit sees them gaining and predicts their end.
  for (const bloomer of [curve(3.15, { speed: 1.4 }), curve(3.15, { warmup: 0.15 })]) {
    assert.ok(valueAt(bloomer, 0.3) - valueAt(BEST[0], 0.3) > 0.1, 'it trails by 10 spreads at 30%');
    assert.equal(stopsAt(bloomer, BEST), null);
  }
  // A curve that trails by a gap closing only later bends unlike the best's: the fit cannot see it coming, the
  // `bloom` allowance (a share of what the best still gains) spares it; without it, the curve is stopped.
  const bends = curve(3.15, { late: 0.2 });
  assert.equal(stopsAt(bends, BEST), null);
  assert.ok(stopsAt(bends, BEST, { ...LOWER, bloom: 0 }));
});

test('a curve inside the best spread is not stopped; one a little worse only with a small margin', () => {
  assert.equal(stopsAt(curve(3.2, { seed: 1 }), BEST), null);
  assert.equal(stopsAt(curve(3.205, { seed: 3 }), BEST), null);
  assert.equal(stopsAt(curve(3.2, { seed: 1, wobble: 0.02 }), BEST), null, 'a noisier curve is predicted less well');
  const worse = curve(3.23);
  assert.ok(stopsAt(worse, BEST));
  assert.equal(stopsAt(worse, BEST, { ...LOWER, margin: 3 }), null);
});

test('identical reference curves (a deterministic target): a bloomer goes on, a loser stops', () => {
  const same = [curve(3.2, { wobble: 0 }), curve(3.2, { wobble: 0 })];
  assert.equal(stopsAt(curve(3.15, { speed: 1.4, wobble: 0 }), same), null);
  assert.equal(stopsAt(curve(3.15, { late: 0.1, wobble: 0 }), same), null, 'its misfit to the best widens the error');
  // A deeper bend is stopped by the default allowance (small: bench:fidelity pays for every bit of it); a
  // target known to bend late takes a larger one.
  const bends = curve(3.15, { late: 0.2, wobble: 0 });
  assert.ok(stopsAt(bends, same));
  assert.equal(stopsAt(bends, same, { ...LOWER, bloom: 0.1 }), null);
  assert.ok(stopsAt(curve(3.3, { wobble: 0 }), same));
});

test("direction 'higher': a curve clearly below the best's stops, one above it never does", () => {
  const flip = (c: Curve): Curve => c.map((p) => ({ at: p.at, value: 10 - p.value }));
  const best = BEST.map(flip);
  const worse = stopsAt(flip(curve(3.6)), best, HIGHER);
  assert.ok(worse && worse.value < worse.best && worse.predicted < worse.end);
  assert.match(worse.evidence, /^stopped at \d+%: loss 6\.\d+ vs best/);
  assert.equal(stopsAt(flip(curve(2.8)), best, HIGHER), null);
  assert.equal(stopsAt(flip(curve(3.15, { speed: 1.4 })), best, HIGHER), null);
  assert.equal(stopsAt(flip(curve(3.15, { late: 0.2 })), best, HIGHER), null);
  assert.equal(stopsAt(curve(3.6), BEST, HIGHER), null, 'a higher loss is better when higher is better');
});

test('long curves (a point per step) are thinned: the same verdicts', () => {
  const dense = (c: Curve): Curve =>
    Array.from({ length: 2000 }, (_, i) => ({ at: (i + 1) / 2000, value: valueAt(c, (i + 1) / 2000) }));
  const best = BEST.map(dense);
  assert.ok(earlyStop(upTo(dense(curve(3.6)), 0.5), best, LOWER));
  assert.equal(earlyStop(upTo(dense(curve(3.15, { speed: 1.4 })), 0.5), best, LOWER), null);
});

/** A run of bench/gpu/curves.py, as its fixtures hold it. */
type RealRun = { config: string; final: number; train: Curve; val: Curve };

/**
 * The runs of a real-curve fixture, those of some configs, and where the rule, live point by point, stops a
 * run's curve of a kind against the base's runs (but that run itself); null: it runs to its end.
 */
function realRuns(fixture: string) {
  const runs: RealRun[] = readFileSync(new URL(`./fixtures/${fixture}`, import.meta.url), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const of = (...configs: string[]) => runs.filter((r) => configs.includes(r.config));
  const stopAt = (r: RealRun, kind: 'val' | 'train') =>
    stopsAt(
      r[kind],
      of('base')
        .filter((b) => b !== r)
        .map((b) => b[kind]),
    )?.at ?? null;
  return { runs, of, stopAt };
}

test('on real GPU curves (an H200, test/fixtures/gpu-curves.jsonl): clear losers stop at 30%, the better configs never', () => {
  // bench/gpu/curves.py: a small char-level GPT, 1500 steps, eight configs, 3-5 seeds each; the seeds'
  // sigma of the final val loss is 0.009. Worse by 4 to 21 sigmas: dropout 0.2, a third of the learning rate,
  // half the width, a warm-up of 40% (a slow starter that stays behind). Better by about 2 sigmas: a deeper
  // model, three times the learning rate. No effect: no weight decay. Both the validation and the smoothed
  // training loss are tried.
  const { runs, of, stopAt: stop } = realRuns('gpu-curves.jsonl');
  for (const kind of ['val', 'train'] as const) {
    const stopAt = (r: RealRun) => stop(r, kind);
    const losers = of('dropout', 'lr_lo', 'narrow', 'warm_long');
    assert.equal(losers.length, 17);
    assert.deepEqual(losers.map(stopAt), Array(losers.length).fill(0.3), kind);
    const winners = of('deeper', 'lr_hi');
    assert.equal(winners.length, 7);
    assert.deepEqual(winners.map(stopAt), Array(winners.length).fill(null), kind);
    // No run that ended better than the base's mean is stopped; of the changes that do nothing (no weight
    // decay, and each base run against the other three), at most one run each, and never before 45%.
    const baseEnd = of('base').reduce((a, r) => a + r.final, 0) / of('base').length;
    const better = runs.filter((r) => r.config !== 'base' && r.final < baseEnd);
    assert.deepEqual(
      better.filter((r) => stopAt(r) !== null).map((r) => r.config),
      [],
      kind,
    );
    for (const stops of [of('wd0').map(stopAt), of('base').map(stopAt)]) {
      const stopped = stops.filter((at): at is number => at !== null);
      assert.ok(stopped.length <= 1 && stopped.every((at) => at >= 0.45), `${kind}: ${stops.join(' ')}`);
    }
  }
});

test('on real GPU curves of mild changes (test/fixtures/gpu-curves-mild.jsonl): the clear losers stop, the winners never, a third of the time saved', () => {
  // bench/gpu/mild.sh: the same GPT, the base (12 seeds) and eleven mild changes (5-8 seeds each), the kind
  // most of a campaign's experiments are; the seeds' sigma of the final val loss is 0.0078. Better by 2.3 to
  // 3.4 sigmas: 1.3 and 2 times the learning rate, a fifth layer. Worse: 0.7 times the learning rate and a
  // width of 192 (3.8, 4.8 sigmas), a third layer (2.5), a 20% warm-up (1.1). Within half a sigma: dropout
  // 0.05, a 10% warm-up, weight decay 0.05 and 0.2.
  const { runs, of, stopAt } = realRuns('gpu-curves-mild.jsonl');
  const base = of('base');
  const baseEnd = base.reduce((a, r) => a + r.final, 0) / base.length;
  const candidates = runs.filter((r) => r.config !== 'base');
  // Where each candidate stops, per kind of curve, computed once.
  const at = { val: candidates.map((r) => stopAt(r, 'val')), train: candidates.map((r) => stopAt(r, 'train')) };
  // On the validation curves: every run of the clear losers stops at 30%, none of the winners' runs.
  assert.deepEqual(
    of('lr_07', 'dim_192').map((r) => stopAt(r, 'val')),
    Array(12).fill(0.3),
  );
  assert.deepEqual(
    of('lr_13', 'lr_20', 'layers_5').map((r) => stopAt(r, 'val')),
    Array(17).fill(null),
  );
  // Of the 31 runs that ended better than the base's mean, one is stopped: a lucky run of dropout 0.05
  // (half a sigma worse on average), which a judge could only have kept falsely.
  const lostVal = candidates.filter((r, i) => r.final < baseEnd && at.val[i] !== null);
  assert.deepEqual(
    lostVal.map((r) => r.config),
    ['drop_05'],
  );
  const saved = (kind: 'val' | 'train') => 1 - at[kind].reduce<number>((a, x) => a + (x ?? 1), 0) / candidates.length;
  assert.ok(saved('val') > 0.25, `saved ${saved('val')}`);
  // On the training loss a regulariser trails all the way and still wins on held-out data: weight decay 0.2
  // is stopped in runs that ended better. Why progress lines should print a validation figure (docs/judging.md).
  const lostTrain = candidates.filter((r, i) => r.final < baseEnd && at.train[i] !== null).map((r) => r.config);
  assert.ok(lostTrain.filter((c) => c === 'wd_20').length >= 2, lostTrain.join(' '));
});
