// Learning curves: what a run prints while it trains, read as (progress, value) points. Shared by the
// GPU worker (which reads them as the run streams and may stop a losing run), the workflow (which keeps
// the best's curves to compare against), the records, and the benches. No I/O here.

/** One point of a learning curve: how far the run is (0..1 of its budget) and the figure it printed. */
export interface CurvePoint {
  at: number;
  value: number;
}

/** A run's learning curve, in the order it printed. */
export type Curve = CurvePoint[];

/** The most points a curve keeps in records and workflow history; longer curves are thinned evenly. */
export const CURVE_POINTS = 64;
/**
 * The most points a run's curve holds while it streams: a run printing progress lines without end
 * (millions a minute) must not fill the GPU worker's memory. Full, every other point is dropped.
 */
const STREAM_POINTS = 2048;

/**
 * autoresearch's progress line, `step 00123 (45.2%) | loss: 3.210000 | ...` (its train.py ends it with
 * a carriage return, not a newline: lines are split on both). The tiny-lm example prints the same.
 */
export const AUTORESEARCH_PROGRESS = String.raw`^step\s+(?<step>\d+)\s+\((?<pct>[\d.]+)%\)\s*\|\s*loss:?\s+(?<value>[-+\d.eE]+)`;

/** How a run's progress lines are read (config `progress`). */
export interface ProgressSpec {
  /** A regular expression with named groups: `value`, and `pct` (percent done) or `step` (with `steps`). */
  pattern: string;
  /** The step count of a whole run, when the line has a step and no percentage. */
  steps?: number;
  /** What the value is called (in evidence and charts). */
  name: string;
  /** Which way the value is better. */
  direction: 'lower' | 'higher';
}

/** What is wrong with a progress pattern (and its `steps`), or null when lines can be read with it. */
export function progressProblem(pattern: string, steps?: number): string | null {
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch (err) {
    return `is not a regular expression: ${(err as Error).message}`;
  }
  const groups = new Set([...re.source.matchAll(/\(\?<([A-Za-z_]\w*)>/g)].map((m) => m[1]));
  if (!groups.has('value')) return 'must have a named group (?<value>...) around the figure (e.g. the loss)';
  if (!groups.has('pct') && !groups.has('step'))
    return 'must have a named group (?<pct>...) (percent of the run done) or (?<step>...) with progress.steps';
  if (!groups.has('pct') && !steps) return 'has a (?<step>...) group but no percentage: set progress.steps';
  return null;
}

/** Reads progress points out of a run's output as it streams (chunks may cut lines anywhere). */
export class ProgressReader {
  readonly curve: Curve = [];
  private readonly re: RegExp;
  private partial = '';

  constructor(private readonly spec: ProgressSpec) {
    this.re = new RegExp(spec.pattern);
  }

  /** The points the chunk completes, in order (also appended to `curve`). */
  feed(chunk: string): CurvePoint[] {
    const lines = (this.partial + chunk).split(/[\r\n]/);
    // Bounded: a run that prints megabytes without a line break cannot grow the buffer.
    this.partial = lines.pop()!.slice(-4096);
    const points = lines.map((l) => this.point(l)).filter((p): p is CurvePoint => p !== null);
    for (const p of points) {
      if (this.curve.length >= STREAM_POINTS) this.curve.splice(0, this.curve.length, ...halved(this.curve));
      this.curve.push(p);
    }
    return points;
  }

  private point(line: string): CurvePoint | null {
    const g = this.re.exec(line)?.groups;
    if (!g) return null;
    const value = Number(g.value);
    const at = g.pct !== undefined ? Number(g.pct) / 100 : Number(g.step) / (this.spec.steps ?? NaN);
    if (!Number.isFinite(value) || !Number.isFinite(at)) return null;
    return { at: Math.min(1, Math.max(0, at)), value };
  }
}

/** Every other point, the last one kept. */
function halved(curve: Curve): Curve {
  return curve.filter((_, i) => i % 2 === 1 || i === curve.length - 1);
}

/** At most `max` points, evenly spread over the curve, always keeping its last point. */
export function thinCurve(curve: Curve, max = CURVE_POINTS): Curve {
  if (curve.length <= max) return curve;
  const step = (curve.length - 1) / (max - 1);
  return Array.from({ length: max }, (_, i) => curve[Math.round(i * step)]);
}
