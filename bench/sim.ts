// What the simulated benchmarks (noise, campaigns) share: seeded draws, their arguments, and
// Nightlab's real judging (workflows/judging.ts) applied to runs drawn from a simulated trainer.
import { parseConfig } from '../common/config';
import type { NoiseState } from '../common/shared';
import { groupOf, noisePolicy, type JudgementOf, type NoisePolicy } from '../workflows/decisions';
import { judgeCandidate, judgeSequentially, type RunLite } from '../workflows/judging';

/** The noise settings a bench takes from its command line (the config's defaults otherwise). */
export const POLICY_OPTIONS = ['falseKeep', 'detect', 'confirmRuns', 'bestRuns', 'baselineRuns'] as const;

/**
 * The bench's arguments, `--name value`: its own (`defaults`) and the noise settings; the noise
 * policy and baseline runs through the real config schema (lower is better).
 */
export function benchSetup<T extends Record<string, number>>(
  defaults: T,
): { args: T; policy: NoisePolicy; baselineRuns: number } {
  const raw = { editable: ['train.py'], run: { command: 'python3 train.py' }, metric: { name: 'val_bpb' } };
  const noiseOf = (o: Record<string, unknown>) => Object.fromEntries(POLICY_OPTIONS.map((k) => [k, Number(o[k])]));
  const all = args({ ...defaults, ...noiseOf(parseConfig(raw, 'bench').noise) });
  const config = parseConfig({ ...raw, noise: noiseOf(all) }, 'bench');
  return { args: all as T, policy: noisePolicy(config), baselineRuns: config.noise.baselineRuns };
}

/** `--name value` pairs of the command line over `defaults`; an unknown name is an error. */
function args(defaults: Record<string, number>): Record<string, number> {
  const out = { ...defaults };
  for (let i = 2; i < process.argv.length; i += 2) {
    const name = process.argv[i].replace(/^--/, '');
    if (!(name in defaults)) throw new Error(`unknown option --${name} (known: ${Object.keys(defaults).join(', ')})`);
    out[name] = Number(process.argv[i + 1]);
  }
  return out;
}

/** mulberry32: a small seeded generator, so the figures repeat run after run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal draws (Box-Muller) from a uniform generator. */
export function gaussian(u: () => number): () => number {
  return () => {
    const a = Math.max(u(), Number.EPSILON);
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
  };
}

/** Nightlab's two rules: sequential (campaigns started since `sequential-judging`), and confirmation (before). */
export type Rule = 'sequential' | 'confirm';

/** The noise state of a campaign whose best (`sha`) has these runs. */
export function noiseState(sha: string, runs: number[]): NoiseState {
  return {
    best: { sha, experiment: 0, group: groupOf(runs), nextRun: runs.length, pending: 0 },
    pool: { ss: 0, dof: 0 },
  };
}

const ok = (metric: number): RunLite => ({ metric, failed: false, reason: '' });

/**
 * Judges one candidate with Nightlab's real judging: `candidate()` and `best()` draw a run of the
 * candidate and of the best; with `suspects`, a gain too good to be true is judged as the workflow
 * does. The best never moves during a judgement here (one experiment at a time). Returns the
 * judgement and the best's re-runs it made (they count toward its runs).
 */
export async function judge(
  rule: Rule,
  state: NoiseState,
  policy: NoisePolicy,
  draw: { candidate: () => number; best: () => number },
  suspects?: { largestGain: number | null },
): Promise<{ judgement: JudgementOf<'keep' | 'discard' | 'crash'>; bestRuns: number }> {
  let bestRuns = 0;
  const io = {
    candidate: async () => ok(draw.candidate()),
    best: async () => {
      bestRuns += 1;
      return ok(draw.best());
    },
    onBest: () => true,
    rebase: async () => {
      throw new Error('the best never moves while a candidate is judged here');
    },
  };
  const judging = rule === 'sequential' ? judgeSequentially : judgeCandidate;
  const judgement = await judging(ok(draw.candidate()), state, policy, io, suspects);
  return { judgement, bestRuns };
}
