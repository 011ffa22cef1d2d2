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
