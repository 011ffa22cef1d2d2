// The early-stop rule (common/early-stop.ts), pure: a clearly worse curve stops with its evidence; a late
// bloomer, a curve inside the best's spread, and anything before `after` go on; 'higher' is the mirror.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EARLY_STOP_DEFAULTS, earlyStop, valueAt, type EarlyStopSettings } from '../common/early-stop';
import type { Curve } from '../common/curves';

const LOWER: EarlyStopSettings = { ...EARLY_STOP_DEFAULTS, direction: 'lower' };
const HIGHER: EarlyStopSettings = { ...LOWER, direction: 'higher' };
const STEPS = 20;

/** A loss curve decaying like a power law to `final` (speed: how much of the descent is still ahead), plus a wobble. */
function curve(final: number, o: { speed?: number; wobble?: number; seed?: number } = {}): Curve {
  const { speed = 1, wobble = 0.01, seed = 0 } = o;
  return Array.from({ length: STEPS }, (_, i) => {
    const at = (i + 1) / STEPS;
    const descent = 0.5 * speed * ((at + 0.02) ** -0.5 - 1.02 ** -0.5);
    return { at, value: final + descent + wobble * Math.sin(7 * at + seed) };
  });
}

/** The curve up to (and including) progress `at`, as the worker has seen it then. */
const upTo = (c: Curve, at: number) => c.filter((p) => p.at <= at + 1e-9);

/** The first progress at which the rule stops `c`, feeding it one point at a time as the worker does. */
function stopsAt(c: Curve, reference: Curve[], settings = LOWER) {
  for (let i = 1; i <= c.length; i++) {
    const verdict = earlyStop(c.slice(0, i), reference, settings);
    if (verdict) return verdict;
  }
  return null;
}

const BEST = [curve(3.2, { seed: 0 }), curve(3.21, { seed: 2 }), curve(3.19, { seed: 4 })];

test('a clearly worse curve stops after `after`, with evidence naming the figures', () => {
  const verdict = stopsAt(curve(3.6), BEST);
  assert.ok(verdict, 'a curve 0.4 worse than the best all along stops');
  assert.ok(verdict.at >= LOWER.after && verdict.at < 1, `stopped at ${verdict.at}`);
  assert.ok(verdict.value - verdict.best > 0.3);
  assert.equal(
    verdict.best,
    (valueAt(BEST[0], verdict.at) + valueAt(BEST[1], verdict.at) + valueAt(BEST[2], verdict.at)) / 3,
  );
  assert.match(
    verdict.evidence,
    new RegExp(
      `^stopped at ${Math.round(100 * verdict.at)}%: loss \\d\\.\\d+ vs best \\d\\.\\d+ ± 0\\.\\d+ \\(3 runs\\)`,
    ),
  );
  assert.match(verdict.evidence, /at 3 points in a row/);
  assert.match(
    earlyStop(upTo(curve(3.6), 0.9), BEST, { ...LOWER, name: 'val_bpb' })!.evidence,
    /: val_bpb 3\.6\d* vs best/,
  );
});

test('nothing stops before `after`, however bad; nor with fewer than `checks` points past it, or one reference', () => {
  const awful = curve(9);
  for (let at = 0.05; at < LOWER.after - 0.01; at += 0.05) assert.equal(earlyStop(upTo(awful, at), BEST, LOWER), null);
  // Points at 0.3 and 0.35 only are past `after`: three are needed in a row.
  assert.equal(earlyStop(upTo(awful, 0.35), BEST, LOWER), null);
  assert.ok(earlyStop(upTo(awful, 0.4), BEST, LOWER));
  assert.equal(earlyStop(upTo(awful, 0.4), BEST.slice(0, 1), LOWER), null, 'one reference curve: no spread');
  assert.equal(earlyStop(upTo(awful, 0.4), BEST, { ...LOWER, after: 0.5 }), null);
});

test('a late bloomer (slower at first, better at the end) is never stopped', () => {
  // Has 1.4x the best's descent still ahead of it, yet ends 0.05 better than the best: far behind at 30-50%.
  const bloomer = curve(3.15, { speed: 1.4 });
  assert.ok(valueAt(bloomer, 0.3) - valueAt(BEST[0], 0.3) > 0.1, 'it trails by more than 5 spreads early');
  assert.equal(stopsAt(bloomer, BEST), null);
  // Without the allowance for what the best still gains, the same curve would be stopped: the guard matters.
  assert.ok(stopsAt(bloomer, BEST, { ...LOWER, bloom: 0 }));
});

test('a curve inside the best spread is not stopped; one a little worse at the end is left to the judge', () => {
  assert.equal(stopsAt(curve(3.2, { seed: 1 }), BEST), null);
  assert.equal(stopsAt(curve(3.215, { seed: 3 }), BEST), null);
  // Worse at every point by 2 spreads (the best's is 0.0184 from 30% on): not enough for margin 3, even with no
  // late-bloomer allowance; enough for margin 1.5.
  const twoSpreads = curve(3.2 + 2 * 0.0184);
  assert.equal(stopsAt(twoSpreads, BEST, { ...LOWER, bloom: 0 }), null);
  assert.ok(stopsAt(twoSpreads, BEST, { ...LOWER, bloom: 0, margin: 1.5 }));
});

test('identical reference curves (a deterministic target) still leave the late-bloomer allowance', () => {
  const same = [curve(3.2, { wobble: 0 }), curve(3.2, { wobble: 0 })];
  assert.equal(stopsAt(curve(3.15, { speed: 1.4, wobble: 0 }), same), null);
  assert.ok(stopsAt(curve(3.3, { wobble: 0 }), same));
});

test("direction 'higher': a curve clearly below the best's stops, one above it never does", () => {
  const flip = (c: Curve): Curve => c.map((p) => ({ at: p.at, value: 10 - p.value }));
  const best = BEST.map(flip);
  const worse = stopsAt(flip(curve(3.6)), best, HIGHER);
  assert.ok(worse && worse.value < worse.best);
  assert.match(worse.evidence, /^stopped at \d+%: loss 6\.\d+ vs best/);
  assert.equal(stopsAt(flip(curve(2.8)), best, HIGHER), null);
  assert.equal(stopsAt(flip(curve(3.15, { speed: 1.4 })), best, HIGHER), null);
  assert.equal(stopsAt(curve(3.6), BEST, HIGHER), null, 'a higher loss is better when higher is better');
});
