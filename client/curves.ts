// Learning curves for people: an experiment's runs drawn beside the runs of the best it was built on
// (its parent commit), from the records alone, as a small self-contained SVG that the report and the
// dashboard both show. Numbers only go into the SVG: nothing a run printed is drawn as text.
import type { Curve } from '../common/curves';
import { screeningRuns, type LedgerRow } from '../lib/ledger';

/** An experiment's curves: its own runs', and those of the best it was compared with. */
export interface ExperimentCurves {
  runs: Curve[];
  best: Curve[];
}

const SIZE = { width: 480, height: 180, pad: 36 };
const COLORS = { keep: '#2ca02c', discard: '#888888', crash: '#d62728', best: '#1f77b4' } as const;

/** The curves of experiment `n` and of its parent's runs, or null when none of its runs printed progress lines. */
export function experimentCurves(ledger: LedgerRow[], n: number): ExperimentCurves | null {
  const row = ledger.find((r) => r.kind === 'experiment' && r.experiment === n);
  if (!row || row.kind !== 'experiment') return null;
  const runs = screeningRuns(ledger);
  const curvesOf = (keep: (r: Extract<LedgerRow, { kind: 'run' }>) => boolean) =>
    runs.filter((r) => keep(r) && r.curve?.length).map((r) => r.curve!);
  const own = curvesOf((r) => r.experiment === n && r.commit === row.commit);
  if (!own.length) return null;
  // The parent's runs, wherever they were made (its own experiment, or re-runs beside later candidates).
  const best = row.parent === row.commit ? [] : curvesOf((r) => r.commit === row.parent);
  return { runs: own, best };
}

/** The curves of experiment `n` drawn (see curvesSvg), or '' when it has none. */
export function experimentCurvesSvg(ledger: LedgerRow[], n: number, status: string): string {
  const c = experimentCurves(ledger, n);
  return c ? curvesSvg(c, status as keyof typeof COLORS) : '';
}

/** The curves as an SVG: progress (0–100%) across, the printed value up; the best's in blue. */
export function curvesSvg(c: ExperimentCurves, status: keyof typeof COLORS): string {
  const { width, height, pad } = SIZE;
  const values = [...c.runs, ...c.best].flat().map((p) => p.value);
  const [lo, hi] = robustRange(values);
  const x = (at: number) => pad + at * (width - 2 * pad);
  const y = (v: number) => height - pad - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo || 1)) * (height - 2 * pad);
  const line = (curve: Curve, color: string, dash = '') =>
    `<polyline fill="none" stroke="${color}" stroke-width="1.5"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${curve
      .map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`)
      .join(' ')}"/>`;
  const label = (tx: number, ty: number, text: string, anchor = 'start') =>
    `<text x="${tx}" y="${ty}" font-size="10" text-anchor="${anchor}" fill="#555">${text}</text>`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img">`,
    `<rect x="${pad}" y="${pad}" width="${width - 2 * pad}" height="${height - 2 * pad}" fill="none" stroke="#ddd"/>`,
    label(pad - 4, pad + 4, num(hi), 'end'),
    label(pad - 4, height - pad, num(lo), 'end'),
    label(pad, height - pad + 14, '0%'),
    label(width - pad, height - pad + 14, '100% of the run', 'end'),
    ...c.best.map((curve) => line(curve, COLORS.best, '4 3')),
    ...c.runs.map((curve) => line(curve, COLORS[status] ?? COLORS.discard)),
    label(pad, pad - 8, `this experiment's runs (${c.runs.length})`),
    c.best.length
      ? `<text x="${width - pad}" y="${pad - 8}" font-size="10" text-anchor="end" fill="${COLORS.best}">the best's runs (${c.best.length}), dashed</text>`
      : '',
    '</svg>',
  ].join('');
}

/** The range the curves are drawn over: early spikes (a loss of 9 at step 1) would flatten the rest. */
function robustRange(values: number[]): [number, number] {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];
  return [at(0), at(0.95)];
}

function num(v: number): string {
  return Number.isFinite(v) ? String(Number(v.toPrecision(4))) : '';
}
