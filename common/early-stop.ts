// The early-stop rule: should a run whose learning curve so far looks worse than the best's stop now?
// One pure definition for the GPU worker (live, as each progress point arrives) and bench/fidelity.ts.
//
// At the candidate's latest point (progress p, a fraction of the budget), the best's runs' curves (the
// reference, 2 or more) are read at p by linear interpolation. The run stops when, at each of its last
// `checks` points, all at or past `after`, it is worse than the best's mean there by more than
//   margin x spread(p)  +  bloom x descent(p)
// - spread(p): how far the best's own runs (other seeds) lie apart at p, their standard deviation. Seeds
//   scatter most early, so it is floored by the spread at every later checkpoint of the reference: a spread
//   that looks small at p by chance (2 or 3 curves) does not make the rule bolder than at the end.
// - descent(p): what the best still gains from p to the end of its runs (its mean at p minus its mean at
//   the end). A late bloomer (longer warm-up, more regularisation, another schedule) learns faster later;
//   `bloom` 0.5 lets a candidate be behind by half of what the best still has to gain: it is stopped only
//   if it would have to gain more than 1.5 times as much as the best in the rest of its budget. The
//   allowance is largest early and vanishes at the end: the rule is most careful where curves predict least.
// Only the curves are compared: if the progress lines print a training loss while the metric is measured
// on held-out data, a regulariser can trail all the way and still win; print a validation figure then.
import type { Curve, CurvePoint } from './curves';

export interface EarlyStopSettings {
  /** No stop before this fraction of the budget. */
  after: number;
  /** How far outside the best's spread, in spreads (standard deviations across the best's runs). */
  margin: number;
  direction: 'lower' | 'higher';
  /** The late-bloomer allowance, in multiples of what the best still gains from this point to its end (1). */
  bloom?: number;
  /** How many consecutive points (all at or past `after`) must show the gap (3). */
  checks?: number;
  /** What the progress lines print, for the evidence ('loss'). */
  name?: string;
}

/** The defaults (tuned on bench/fidelity.ts; see docs/judging.md, early stop). */
export const EARLY_STOP_DEFAULTS: Required<Omit<EarlyStopSettings, 'direction' | 'name'>> = {
  after: 0.3,
  margin: 3,
  bloom: 0.5,
  checks: 3,
};

/** Why a run stops: its value and the best's at progress `at`, the spread there, and the evidence line. */
export interface StopVerdict {
  at: number;
  value: number;
  best: number;
  spread: number;
  evidence: string;
}

/** The smallest spread, relative to the figure: identical reference curves still leave room for rounding. */
const SPREAD_FLOOR = 1e-4;

/**
 * Whether a run whose curve so far is `candidate` should stop now, judged against the best's runs'
 * curves (`reference`, at least 2 of 2 points or more; fewer: never stop); null: go on. The evidence reads
 * "stopped at 40%: loss 3.41 vs best 3.22 ± 0.03 (3 runs); ...", with `settings.name` for "loss".
 */
export function earlyStop(candidate: Curve, reference: Curve[], settings: EarlyStopSettings): StopVerdict | null {
  const s = { ...EARLY_STOP_DEFAULTS, name: 'loss', ...settings };
  const refs = reference.filter((c) => c.length >= 2);
  const last = candidate.slice(-s.checks);
  if (refs.length < 2 || last.length < s.checks || last[0].at < s.after) return null;
  const sign = s.direction === 'lower' ? 1 : -1;
  const end = meanOf(refs.map((c) => c[c.length - 1].value));
  const later = laterSpreads(refs);
  const looks = last.map((point) => look(point, refs, { end, later, sign }, s));
  if (looks.some((l) => l === null || l.gap <= l.needed)) return null;
  const { point, best, spread, descent, gap } = looks[looks.length - 1]!;
  const f = (x: number) => Number(x.toPrecision(4));
  return {
    at: point.at,
    value: point.value,
    best,
    spread,
    evidence:
      `stopped at ${Math.round(100 * point.at)}%: ${s.name} ${f(point.value)} vs best ${f(best)} ± ${f(spread)} ` +
      `(${refs.length} runs); worse by ${f(gap)} at ${s.checks} points in a row, more than ` +
      `${s.margin} x ${f(spread)} + ${s.bloom} x ${f(descent)} the best still gains`,
  };
}

/** What every checkpoint needs of the reference: its mean at the end, the spread from each of its points on. */
interface ReferenceView {
  end: number;
  later: { at: number; spread: number }[];
  sign: number;
}

/** One checkpoint: the candidate's gap to the best's mean at its progress (positive: worse), and the gap needed. */
function look(point: CurvePoint, refs: Curve[], view: ReferenceView, s: Required<EarlyStopSettings>) {
  if (refs.some((c) => point.at < c[0].at)) return null; // the best printed nothing this early: no comparison
  const values = refs.map((c) => valueAt(c, point.at));
  const best = meanOf(values);
  const floor = SPREAD_FLOOR * Math.max(Math.abs(best), Math.abs(view.end));
  const after = view.later.find((l) => l.at > point.at)?.spread ?? 0;
  const spread = Math.max(floor, sd(values), after);
  const descent = Math.max(0, view.sign * (best - view.end));
  const gap = view.sign * (point.value - best);
  return { point, best, spread, descent, gap, needed: s.margin * spread + s.bloom * descent };
}

/** At each point of the first reference curve, the largest spread across the curves from there to the end. */
function laterSpreads(refs: Curve[]): { at: number; spread: number }[] {
  const out = refs[0].map((p) => ({ at: p.at, spread: sd(refs.map((c) => valueAt(c, p.at))) }));
  for (let i = out.length - 2; i >= 0; i--) out[i].spread = Math.max(out[i].spread, out[i + 1].spread);
  return out;
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
