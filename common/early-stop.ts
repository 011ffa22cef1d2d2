// The early-stop rule: should a run whose learning curve so far looks worse than the best's stop now?
// One pure definition for the GPU worker (live, as each progress point arrives) and bench/fidelity.ts.
//
// Comparing the candidate with the best at the same point stops little: ideas differ in how fast they
// learn by more than most harms, so a run that trails at 40% may well end level. The rule predicts where
// the candidate's curve will END instead, and stops it when that end is clearly worse than the best's.
// - The prediction: the candidate's points so far (those the best's runs also cover) are fitted as the
//   best's mean curve, stretched and shifted: value(t) = end + slope x (best(t) - best's end), by least
//   squares weighted by progress (early points are noisier and further from the end). `end` is where the
//   candidate heads; `slope` how much descent it has ahead compared with the best (> 1: a slow starter,
//   after a longer warm-up say, gaining on the best: it gets a good predicted end, not a stop).
// - Its error: the same prediction made for each of the best's own runs, cut at the same point and fitted
//   to the mean of the others (leave one out), misses that run's real end by some amount; the rule takes
//   the root mean square of those misses, or the fit's own standard error if that is larger (a candidate
//   whose curve is noisier, or bends unlike the best's, is predicted less well), and adds the spread of
//   the best's runs' ends (their seeds) in quadrature: together, the uncertainty u.
// - The stop: the predicted end is worse than the best's mean end by more than margin x u, plus `bloom`
//   x what the best still gains from this point to its end (an allowance for late bloomers whose curves
//   bend unlike the best's, which no fit foresees: largest early, nothing at the end), at each of the
//   last `checks` points, all at or past `after` (a prediction from the curve up to each of them).
// The defaults stop about half of bench:fidelity's first runs, at 44% of their budget on average, with
// about 1% of would-be keeps stopped. With fewer than 2 runs of the best there is no spread: nothing is
// stopped. Only the curves are compared: if the progress lines print a training loss while the metric is
// measured on held-out data, a regulariser can trail all the way and still win; print a validation figure.
import { thinCurve, type Curve, type CurvePoint } from './curves';

export interface EarlyStopSettings {
  /** No stop before this fraction of the budget. */
  after: number;
  /** How far the predicted end must be worse than the best's, in uncertainties u (see above). */
  margin: number;
  direction: 'lower' | 'higher';
  /** The late-bloomer allowance, in multiples of what the best still gains from this point to its end. */
  bloom?: number;
  /** How many consecutive points (all at or past `after`) must call for the stop. */
  checks?: number;
  /** What the progress lines print, for the evidence ('loss'). */
  name?: string;
}

/** The defaults (tuned on bench/fidelity.ts; see docs/judging.md, early stop). */
export const EARLY_STOP_DEFAULTS: Required<Omit<EarlyStopSettings, 'direction' | 'name'>> = {
  after: 0.3,
  margin: 0.75,
  bloom: 0.02,
  checks: 1,
};

/** Why a run stops: its value and the best's at progress `at`, the spread there, where both head, the evidence. */
export interface StopVerdict {
  at: number;
  value: number;
  best: number;
  spread: number;
  /** The candidate's predicted end, and the best's mean end. */
  predicted: number;
  end: number;
  evidence: string;
}

/** The smallest uncertainty, relative to the figure: identical reference curves still leave room for rounding. */
const SPREAD_FLOOR = 1e-4;
/** Curves are thinned to this many points before fitting: a call stays cheap however often a run prints. */
const FIT_POINTS = 64;

/**
 * Whether a run whose curve so far is `candidate` should stop now, judged against the best's runs'
 * curves (`reference`, at least 2 of 2 points or more; fewer: never stop); null: go on. The evidence reads
 * "stopped at 40%: loss 3.41 vs best 3.22 ± 0.03 (3 runs); heading for ...", with `settings.name` for "loss".
 */
export function earlyStop(candidate: Curve, reference: Curve[], settings: EarlyStopSettings): StopVerdict | null {
  const s = { ...EARLY_STOP_DEFAULTS, name: 'loss', ...settings };
  if (candidate.length < s.checks || candidate[candidate.length - s.checks].at < s.after) return null;
  const refs = reference.filter((c) => c.length >= 2).map((c) => thinCurve(c, FIT_POINTS));
  if (refs.length < 2) return null;
  const run = thinCurve(candidate, FIT_POINTS);
  const sign = s.direction === 'lower' ? 1 : -1;
  const ends = refs.map((c) => c[c.length - 1].value);
  const end = meanOf(ends);
  const floor = SPREAD_FLOOR * Math.abs(end);
  const seeds = Math.max(floor, sd(ends));
  const looks: Look[] = [];
  for (const point of run.slice(-s.checks)) {
    const l = look(run, refs, { point, end, seeds, sign, bloom: s.bloom });
    if (!l || l.gap <= s.margin * l.u + l.allowance) return null;
    looks.push(l);
  }
  const { point, best, spread, predicted, u, allowance, gap } = looks[looks.length - 1];
  const f = (x: number) => Number(x.toPrecision(4));
  return {
    at: point.at,
    value: point.value,
    best,
    spread,
    predicted,
    end,
    evidence:
      `stopped at ${Math.round(100 * point.at)}%: ${s.name} ${f(point.value)} vs best ${f(best)} ± ${f(spread)} ` +
      `(${refs.length} runs); its curve heads for ${f(predicted)} against the best's ${f(end)}, worse by ${f(gap)}, ` +
      `more than ${s.margin} x ${f(u)} (the prediction's error and the seeds) + ${f(allowance)} (a late bloomer's ` +
      `allowance)${s.checks > 1 ? `, at ${s.checks} points in a row` : ''}`,
  };
}

/** One checkpoint: the candidate's predicted end and how much worse than the best's it is (positive: worse). */
interface Look {
  point: CurvePoint;
  best: number;
  spread: number;
  predicted: number;
  u: number;
  allowance: number;
  gap: number;
}

function look(
  run: Curve,
  refs: Curve[],
  o: { point: CurvePoint; end: number; seeds: number; sign: number; bloom: number },
): Look | null {
  const at = o.point.at;
  const start = Math.max(...refs.map((c) => c[0].at));
  const fit = predictEnd(upTo(run, at, start), refs);
  if (!fit) return null; // too few points the best's runs also cover: no prediction yet
  const misses = refs.map((c, k) => {
    const own = predictEnd(upTo(c, at, start), [...refs.slice(0, k), ...refs.slice(k + 1)]);
    return own ? own.end - c[c.length - 1].value : Infinity;
  });
  const miss = Math.sqrt(meanOf(misses.map((m) => m * m)));
  const u = Math.sqrt(Math.max(miss, fit.se) ** 2 + o.seeds ** 2);
  const values = refs.map((c) => valueAt(c, at));
  const best = meanOf(values);
  const ahead = Math.max(0, o.sign * (best - o.end));
  return {
    point: o.point,
    best,
    spread: sd(values),
    predicted: fit.end,
    u,
    allowance: o.bloom * ahead,
    gap: o.sign * (fit.end - o.end),
  };
}

/** A curve's points from `start` up to `at`. */
const upTo = (c: Curve, at: number, start: number) => c.filter((p) => p.at >= start && p.at <= at);

/**
 * Where a curve heads: fitted as value = end + slope x (mean(t) - mean's end), the mean of `refs`, by least
 * squares, with the standard error of `end`; null with fewer than 3 points or none of the mean's descent.
 */
export function predictEnd(points: Curve, refs: Curve[]): { end: number; slope: number; se: number } | null {
  if (points.length < 3) return null;
  const last = meanOf(refs.map((c) => c[c.length - 1].value));
  const xs = points.map((p) => meanOf(refs.map((c) => valueAt(c, p.at))) - last);
  const ys = points.map((p) => p.value);
  const ws = points.map((p) => p.at); // early points are noisier, and further from the end
  const sw = ws.reduce((a, w) => a + w, 0);
  const wmean = (v: number[]) => v.reduce((a, x, i) => a + ws[i] * x, 0) / sw;
  const [mx, my] = [wmean(xs), wmean(ys)];
  const sxx = xs.reduce((a, x, i) => a + ws[i] * (x - mx) ** 2, 0);
  if (!(sxx > 0)) return null;
  const slope = xs.reduce((a, x, i) => a + ws[i] * (x - mx) * (ys[i] - my), 0) / sxx;
  const end = my - slope * mx;
  const rss = ys.reduce((a, y, i) => a + ws[i] * (y - end - slope * xs[i]) ** 2, 0);
  // The standard error of `end`, the weights taken as inverse variances up to a common factor.
  const se = Math.sqrt((rss / Math.max(1, points.length - 2)) * (1 / sw + (mx * mx) / sxx));
  return { end, slope, se };
}

/**
 * The rule applied as the GPU worker applies it, one point at a time as a run prints them: the first
 * verdict that stops `curve` against `reference`; null if the run goes to its end. For benches and tests.
 */
export function firstStop(curve: Curve, reference: Curve[], settings: EarlyStopSettings): StopVerdict | null {
  for (let i = 1; i <= curve.length; i++) {
    const verdict = earlyStop(curve.slice(0, i), reference, settings);
    if (verdict) return verdict;
  }
  return null;
}

/** A curve's value at progress `at`: linear between its points, its first or last value outside them. */
export function valueAt(curve: Curve, at: number): number {
  if (at <= curve[0].at) return curve[0].value;
  for (let i = 1; i < curve.length; i++) {
    const [a, b] = [curve[i - 1], curve[i]];
    if (at <= b.at) return b.at === a.at ? b.value : a.value + ((b.value - a.value) * (at - a.at)) / (b.at - a.at);
  }
  return curve[curve.length - 1].value;
}

function meanOf(xs: number[]): number {
  return xs.reduce((a, x) => a + x, 0) / xs.length;
}

/** Sample standard deviation (n - 1). */
function sd(xs: number[]): number {
  const m = meanOf(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}
