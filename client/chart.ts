// The progress chart in autoresearch's style: x = experiment number, y = the metric; discarded runs
// are grey dots, kept runs green dots labelled with their descriptions, crashes red crosses on the
// worst edge (they have no metric), and the running best a green step line.
//
// `chartData` is a pure function of ledger rows, so tests check the chart from data. `chartSpec`
// turns it into a Vega-Lite spec, the same one the dashboard renders in the browser; `renderSvg`
// and `renderPng` draw it on the server (Vega renders SVG without a canvas; resvg rasterizes it).
import type { ExperimentRecord, Decision } from '../common/shared';

export type ChartRow = Pick<ExperimentRecord, 'experiment' | 'status' | 'metric' | 'description'> &
  Partial<Pick<ExperimentRecord, 'outcome' | 'reason'>> & {
    /** Every run of its commit (client/results.ts): a kept one's line is drawn at their mean. */
    figures?: { mean: number | null };
  };

export interface ChartPoint {
  experiment: number;
  status: Decision;
  /** The metric as recorded; null for a crash. */
  metric: number | null;
  /** Where the point is drawn: the metric, or the chart's edge for crashes and off-scale runs. */
  y: number;
  /** A discarded run far worse than the baseline, drawn on the edge instead of squashing the scale. */
  clipped: boolean;
  description: string;
  outcome: string;
}

export interface ChartData {
  title: string;
  metricName: string;
  direction: 'lower' | 'higher';
  yTitle: string;
  /** Every experiment, in order (the baseline is experiment 0 and counts as kept). */
  points: ChartPoint[];
  /** The running best after each experiment: the best kept metric so far (a step line). */
  best: { experiment: number; metric: number }[];
  /** Kept experiments and their labels; `labelled` is false where the label would overlap another. */
  kept: { experiment: number; metric: number; label: string; labelled: boolean }[];
  /** Experiments without a metric, drawn as red crosses on the worst edge. */
  crashes: { experiment: number; y: number; description: string; outcome: string }[];
  /** [bottom, top] of the y axis, as metric values. */
  yDomain: [number, number];
  xDomain: [number, number];
  counts: { experiments: number; kept: number; discarded: number; crashed: number };
}

export const COLORS = { discarded: '#b0b0b0', kept: '#2ca02c', crashed: '#d62728', best: '#2ca02c' } as const;
const LABEL_CHARS = 48;
const LABEL_ANGLE = 30;
/** Labels closer than this (px, across the text's direction) to a shown one are left out. */
const LABEL_GAP_PX = 12;

export interface ChartSize {
  width: number;
  height: number;
}
export const DEFAULT_SIZE: ChartSize = { width: 1000, height: 480 };

function label(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > LABEL_CHARS ? `${line.slice(0, LABEL_CHARS - 1)}…` : line;
}

export function chartData(
  input: ChartRow[],
  opts: { metricName: string; direction: 'lower' | 'higher'; tag?: string; size?: ChartSize },
): ChartData {
  const rows = [...input].sort((a, b) => a.experiment - b.experiment);
  const sign = opts.direction === 'lower' ? 1 : -1;
  // "Badness": larger is worse in either direction, so the scale logic is written once.
  const bad = (v: number) => sign * v;
  const unbad = (b: number) => sign * b;
  const measured = rows.filter((r) => r.status !== 'crash' && r.metric !== null && Number.isFinite(r.metric));

  // The best kept figure up to each experiment number: the mean of every run of its commit where
  // the rows have it (re-runs re-estimate a best, and the next keep was judged against that), else
  // the decided figure. Kept runs are improvements when decided, so in a serial campaign this is
  // the latest keep; with experiments in parallel (decided out of number order) the best-so-far
  // keeps the line monotone.
  const best: ChartData['best'] = [];
  let current: number | null = null;
  for (const r of rows) {
    const figure = r.figures?.mean ?? r.metric;
    if (
      r.status === 'keep' &&
      figure !== null &&
      Number.isFinite(figure) &&
      (current === null || bad(figure) < bad(current))
    )
      current = figure;
    if (current !== null) best.push({ experiment: r.experiment, metric: current });
  }

  // The scale: from the best run to the baseline, plus room for discarded runs up to one
  // improvement-span worse than the baseline; runs worse than that sit on the edge (clipped).
  let lo: number, hi: number, limit: number;
  if (measured.length === 0) {
    lo = 0;
    hi = 1;
    limit = 1;
  } else {
    const bads = [...measured.map((r) => bad(r.metric!)), ...best.map((b) => bad(b.metric))];
    const bestB = Math.min(...bads);
    const worstB = Math.max(...bads);
    const baseline = rows.find((r) => r.status === 'keep' && r.metric !== null);
    const baseB = baseline ? bad(baseline.metric!) : worstB;
    const span = baseB - bestB;
    const floor = Math.max(Math.abs(baseB) * 0.02, 1e-6);
    limit = baseB + Math.max(span, floor);
    const shownWorst = Math.min(worstB, limit);
    const pad = Math.max((shownWorst - bestB) * 0.08, floor / 2);
    lo = bestB - pad;
    hi = shownWorst + pad;
  }
  const edge = unbad(hi);

  const points: ChartPoint[] = rows.map((r) => {
    const crashed = r.status === 'crash' || r.metric === null || !Number.isFinite(r.metric);
    const clipped = !crashed && bad(r.metric!) > limit;
    return {
      experiment: r.experiment,
      status: crashed ? 'crash' : r.status,
      metric: crashed ? null : r.metric,
      y: crashed ? edge : clipped ? unbad(limit) : r.metric!,
      clipped,
      description: r.description,
      outcome: r.outcome ?? (crashed ? 'crash' : 'ok'),
    };
  });
  const lastX = rows.length ? rows[rows.length - 1].experiment : 1;
  const xDomain: [number, number] = [-0.5, Math.max(lastX, 1) + 0.5];
  const yDomain: [number, number] = opts.direction === 'lower' ? [unbad(lo), unbad(hi)] : [unbad(hi), unbad(lo)];
  const kept = thinLabels(
    points
      .filter((p) => p.status === 'keep')
      .map((p) => ({ experiment: p.experiment, metric: p.metric!, label: label(p.description), labelled: true })),
    xDomain,
    yDomain,
    opts.size ?? DEFAULT_SIZE,
    opts.direction,
  );
  const crashes = points
    .filter((p) => p.status === 'crash')
    .map((p) => ({ experiment: p.experiment, y: p.y, description: p.description, outcome: p.outcome }));
  const experimentsRun = rows.filter((r) => r.experiment > 0).length;
  const improvements = kept.filter((k) => k.experiment > 0).length;
  return {
    title: `${opts.tag ? `Nightlab ${opts.tag}` : 'Nightlab progress'}: ${experimentsRun} experiments, ${improvements} kept improvement${improvements === 1 ? '' : 's'}`,
    metricName: opts.metricName,
    direction: opts.direction,
    yTitle: `${opts.metricName} (${opts.direction} is better)`,
    points,
    best,
    kept,
    crashes,
    yDomain,
    xDomain,
    counts: {
      experiments: experimentsRun,
      kept: improvements,
      discarded: points.filter((p) => p.status === 'discard').length,
      crashed: crashes.length,
    },
  };
}

/**
 * Rotated labels are parallel lines of text; one closer than LABEL_GAP_PX (measured across the
 * text) to the last shown label is left out. The best (last) kept run always keeps its label.
 */
function thinLabels(
  kept: ChartData['kept'],
  xDomain: [number, number],
  yDomain: [number, number],
  size: ChartSize,
  direction: 'lower' | 'higher',
): ChartData['kept'] {
  const px = (k: { experiment: number; metric: number }) => ({
    x: ((k.experiment - xDomain[0]) / (xDomain[1] - xDomain[0])) * size.width,
    y: ((yDomain[1] - k.metric) / (yDomain[1] - yDomain[0] || 1)) * size.height, // screen y grows downwards
  });
  const a = (LABEL_ANGLE * Math.PI) / 180;
  // Text direction on screen: up-right for lower-is-better, down-right for higher.
  const dir = { x: Math.cos(a), y: direction === 'lower' ? -Math.sin(a) : Math.sin(a) };
  const apart = (p: { x: number; y: number }, q: { x: number; y: number }) =>
    Math.abs((q.x - p.x) * dir.y - (q.y - p.y) * dir.x) >= LABEL_GAP_PX;
  const shown: number[] = [];
  kept.forEach((k, i) => {
    const p = px(k);
    if (i === kept.length - 1) {
      // The best keeps its label; the labels it would overlap give way.
      while (shown.length && !apart(px(kept[shown.at(-1)!]), p)) shown.pop();
      shown.push(i);
    } else if (!shown.length || apart(px(kept[shown.at(-1)!]), p)) {
      shown.push(i);
    }
  });
  return kept.map((k, i) => ({ ...k, labelled: shown.includes(i) }));
}

/** The filled "x" drawn for crashes (a Vega symbol path, in a unit square). */
const CROSS = 'M-1,-0.7L-0.7,-1L0,-0.3L0.7,-1L1,-0.7L0.3,0L1,0.7L0.7,1L0,0.3L-0.7,1L-1,0.7L-0.3,0Z';

/** The chart as a Vega-Lite spec (plain JSON: the dashboard sends it to the browser as is). */
export function chartSpec(d: ChartData, size: ChartSize = DEFAULT_SIZE): Record<string, unknown> {
  const lower = d.direction === 'lower';
  const x = {
    field: 'experiment',
    type: 'quantitative',
    title: 'Experiment #',
    scale: { domain: d.xDomain, nice: false, zero: false },
    axis: { tickMinStep: 1, format: 'd' },
  };
  const y = (field: string) => ({
    field,
    type: 'quantitative',
    title: d.yTitle,
    scale: { domain: d.yDomain, nice: false, zero: false },
  });
  const points = d.points.map((p) => ({
    ...p,
    series: p.status === 'keep' ? 'kept' : p.status === 'crash' ? 'crashed' : p.clipped ? 'off scale' : 'discarded',
  }));
  // One color and shape scale over the point layers, so the legend lists each series once.
  const series = [
    ['discarded', COLORS.discarded, 'circle'],
    ['off scale', COLORS.discarded, lower ? 'triangle-up' : 'triangle-down'],
    ['kept', COLORS.kept, 'circle'],
    ['crashed', COLORS.crashed, CROSS],
  ].filter(([name]) => points.some((p) => p.series === name) || name === 'kept' || name === 'discarded');
  const legend = {
    title: null,
    orient: lower ? 'top-right' : 'bottom-right',
    fillColor: 'rgba(255,255,255,0.85)',
    padding: 6,
  };
  const color = {
    field: 'series',
    type: 'nominal',
    legend,
    scale: { domain: series.map((s) => s[0]), range: series.map((s) => s[1]) },
  };
  const shape = {
    field: 'series',
    type: 'nominal',
    legend,
    scale: { domain: series.map((s) => s[0]), range: series.map((s) => s[2]) },
  };
  const tooltip = [
    { field: 'experiment', type: 'quantitative', title: '#' },
    { field: 'metric', type: 'quantitative', title: d.metricName, format: '.6f' },
    { field: 'status', type: 'nominal' },
    { field: 'outcome', type: 'nominal' },
    { field: 'description', type: 'nominal' },
  ];
  const last = d.best.at(-1);
  const layers: Record<string, unknown>[] = [
    {
      data: { values: d.best.map((b) => ({ ...b })) }, // copies: Vega tags the objects it is given
      mark: { type: 'line', interpolate: 'step-after', strokeWidth: 2, color: COLORS.best, opacity: 0.85 },
      encoding: { x, y: y('metric') },
    },
    {
      data: { values: points.filter((p) => p.status === 'discard') },
      mark: { type: 'point', filled: true, size: 45, opacity: 0.75 },
      encoding: { x, y: y('y'), color, shape, tooltip },
    },
    {
      data: { values: points.filter((p) => p.status === 'crash') },
      mark: { type: 'point', filled: true, size: 110, opacity: 0.9, clip: false },
      encoding: { x, y: y('y'), color, shape, tooltip },
    },
    {
      data: { values: points.filter((p) => p.status === 'keep') },
      mark: { type: 'point', filled: true, size: 90, opacity: 1, stroke: '#1b5e20', strokeWidth: 1 },
      encoding: { x, y: y('y'), color, shape, tooltip },
    },
    {
      data: { values: d.kept.filter((k) => k.labelled).map((k) => ({ ...k })) },
      // Up and to the right of each dot for lower-is-better (the empty side), mirrored otherwise.
      mark: {
        type: 'text',
        align: 'left',
        baseline: 'middle',
        dx: 6,
        dy: lower ? -4 : 4,
        angle: lower ? -LABEL_ANGLE : LABEL_ANGLE,
        fontSize: 10,
        color: '#1b5e20',
      },
      encoding: { x, y: y('metric'), text: { field: 'label' } },
    },
  ];
  if (last) {
    layers.push({
      data: { values: [{ ...last, text: `best ${last.metric.toFixed(6)}` }] },
      mark: {
        type: 'text',
        align: 'left',
        baseline: lower ? 'top' : 'bottom',
        dx: 4,
        dy: lower ? 4 : -4,
        fontSize: 11,
        fontWeight: 'bold',
        color: COLORS.best,
      },
      encoding: { x, y: y('metric'), text: { field: 'text' } },
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: d.title, anchor: 'start', fontSize: 16 },
    width: size.width,
    height: size.height,
    background: 'white',
    config: {
      font: 'DejaVu Sans, Liberation Sans, Arial, sans-serif',
      axis: { gridColor: '#eeeeee' },
      view: { stroke: '#dddddd' },
    },
    layer: layers,
  };
}

/** The chart as SVG text, drawn by Vega on the server (no canvas needed). */
export async function renderSvg(d: ChartData, size?: ChartSize): Promise<string> {
  const vega = await import('vega');
  const vl = await import('vega-lite');
  const compiled = vl.compile(chartSpec(d, size) as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** SVG to PNG with resvg (system fonts; twice the SVG's size for a sharp picture). */
export async function renderPng(svg: string, scale = 2): Promise<Buffer> {
  const { Resvg } = await import('@resvg/resvg-js');
  const r = new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: scale },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  });
  return r.render().asPng();
}
