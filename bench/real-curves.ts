// bench:real-curves: the early-stop rule (common/early-stop.ts) on real learning curves from a GPU
// (bench/gpu/curves.py: a small char-level GPT, eight configs, several seeds each). Prints the seeds'
// spread of the final validation loss, each config's effect in those sigmas, how well the value at
// 10/30/50% of the budget ranks the runs' ends (Spearman), how far the rule's predicted end is from where
// each candidate's curve ends, and where the rule, live point by point with its defaults, stops each run against
// the base config's runs (a base run against the other base runs).
//
//   npm run bench:real-curves [-- FILE.jsonl]     (default: test/fixtures/gpu-curves.jsonl, one H200)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EARLY_STOP_DEFAULTS, firstStop, predictEnd, valueAt } from '../common/early-stop';
import type { Curve } from '../common/curves';

interface Run {
  config: string;
  seed: number;
  final: number;
  train: Curve;
  val: Curve;
}
const FIXTURE = fileURLToPath(new URL('../test/fixtures/gpu-curves.jsonl', import.meta.url));
const file = process.argv[2] ?? FIXTURE;
const runs: Run[] = readFileSync(file, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
const by = new Map<string, Run[]>();
for (const r of runs) by.set(r.config, [...(by.get(r.config) ?? []), r]);
const base = by.get('base') ?? [];

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
const ranks = (xs: number[]) => xs.map((x) => xs.filter((y) => y < x).length);
function spearman(a: number[], b: number[]): number {
  const [ra, rb] = [ranks(a), ranks(b)];
  return 1 - (6 * ra.reduce((s, r, i) => s + (r - rb[i]) ** 2, 0)) / (a.length * (a.length ** 2 - 1));
}

const spreads = [...by.values()].filter((rs) => rs.length > 1).map((rs) => sd(rs.map((r) => r.final)));
const sigma = Math.sqrt(mean(spreads.map((s) => s * s)));
const baseEnd = mean(base.map((r) => r.final));
console.log(
  `# ${path.relative(process.cwd(), file)}: ${runs.length} runs, ${by.size} configs; seeds' sigma of the final val loss ${sigma.toFixed(4)} (pooled)`,
);
for (const [config, rs] of by) {
  const ends = rs.map((r) => r.final);
  console.log(
    `${config.padEnd(10)} runs ${rs.length}  final ${mean(ends).toFixed(4)}  effect ${((mean(ends) - baseEnd) / sigma).toFixed(1).padStart(5)} sigma`,
  );
}
for (const kind of ['val', 'train'] as const)
  console.log(
    `${kind.padEnd(5)} curve: rank of the value at 10/30/50% vs the final (Spearman) ${[0.1, 0.3, 0.5]
      .map((x) =>
        spearman(
          runs.map((r) => valueAt(r[kind], x)),
          runs.map((r) => r.final),
        ).toFixed(2),
      )
      .join(' / ')}`,
  );
// How well the rule's prediction (the base's mean curve, stretched and shifted, fitted to a run's points so
// far) tells where each candidate's curve ends: the root mean square of its miss, in sigmas.
for (const kind of ['val', 'train'] as const) {
  const misses = [0.3, 0.5].map((at) => {
    const errors = runs
      .filter((r) => r.config !== 'base')
      .map((r) => {
        const end = predictEnd(
          r[kind].filter((p) => p.at <= at + 1e-9),
          base.map((b) => b[kind]),
        )?.end;
        return (end ?? NaN) - r[kind][r[kind].length - 1].value;
      });
    return `${(Math.sqrt(mean(errors.map((e) => e * e))) / sigma).toFixed(2)} at ${100 * at}%`;
  });
  console.log(
    `${kind.padEnd(5)} curve: the rule's predicted end misses where a candidate's curve ends by ${misses.join(', ')} (sigmas)`,
  );
}

/** Where the rule, live with its defaults, stops a run against the reference runs' curves; 1: it runs to its end. */
function stopAt(curve: Curve, reference: Curve[]): number {
  return firstStop(curve, reference, { ...EARLY_STOP_DEFAULTS, direction: 'lower' })?.at ?? 1;
}

for (const kind of ['val', 'train'] as const) {
  const { after, margin } = EARLY_STOP_DEFAULTS;
  console.log(
    `\nearly stop on the ${kind} curves (after ${after}, margin ${margin}): where each run stops (-: its end)`,
  );
  for (const [config, rs] of by) {
    const stops = rs.map((r) =>
      stopAt(
        r[kind],
        (config === 'base' ? base.filter((b) => b !== r) : base).map((b) => b[kind]),
      ),
    );
    const label = config === 'base' ? 'the base' : mean(rs.map((r) => r.final)) < baseEnd ? 'better' : 'worse';
    console.log(
      `${config.padEnd(10)} ${label.padEnd(8)}  ${stops.map((a) => (a < 1 ? `${Math.round(100 * a)}%` : '-')).join(' ')}`,
    );
  }
  // The candidates (every run but the base's): the share of their GPU time saved, and the runs stopped that
  // ended better than the base's mean (those a judge might have kept).
  const candidates = runs.filter((r) => r.config !== 'base');
  const at = candidates.map((r) =>
    stopAt(
      r[kind],
      base.map((b) => b[kind]),
    ),
  );
  const lost = candidates.filter((r, i) => at[i] < 1 && r.final < baseEnd).length;
  console.log(
    `candidates: ${(100 * (1 - mean(at))).toFixed(0)}% of their GPU time saved; stopped, yet ending better than the base: ${lost} of ${candidates.filter((r) => r.final < baseEnd).length}`,
  );
}
