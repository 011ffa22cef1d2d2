// bench/campaigns: what a researcher gets from a whole campaign, not from one decision. A simulated
// target has 8 settings of 3 values each (the first, the default). Each value other than the
// default changes the metric (lower is better) by an effect of its own: most do harm or little,
// a few help a lot; some pairs interact (two gains that overlap count once; two values that only
// help together). A run's figure is the true metric of the settings plus Gaussian noise, from
// small to as large as the effects. Proposals are random: one setting to another value, on top of
// the best (the mutate proposer's kind of search). Each system spends the same number of GPU runs:
//   autoresearch:     one baseline run; one run per experiment, kept if lower than the best's figure;
//   nightlab:         the real judgeSequentially of workflows/judging.ts, the default policy,
//                     suspect gains and keeps adopted at once as in the workflow;
//   nightlab-confirm: the real judgeCandidate (the rule of campaigns started before).
// Nightlab starts no experiment once its runs (baseline and the best's re-runs included) reach the
// budget; the one in flight finishes. One line per system and noise level: the true figure of the
// final best (and the share of the possible gain it reached), how far the reported best is from
// its truth (overclaim: the mean of truth minus reported, above 0 when the reported figure is better
// than the truth; and the mean absolute error), the runs spent, the experiments and the keeps.
//
//   npm run bench:campaigns [-- --campaigns 200 --runs 200 --seed 1]
// and the noise settings, as in bench:noise (--falseKeep, --detect, --confirmRuns, --bestRuns, --baselineRuns).
import { adoptBest } from '../workflows/judging';
import { improvement, mean } from '../workflows/decisions';
import { benchSetup, gaussian, judge, noiseState, rng, type Rule } from './sim';
import { figure } from './harness';

const { args: ARGS, policy, baselineRuns } = benchSetup({ campaigns: 200, runs: 200, seed: 1 });

const SETTINGS = 8;
const VALUES = 3;
const BASE = 1.0; // the default settings' true metric
const UNIT = 0.01; // a typical effect
const NOISE = [0.1, 0.3, 0.6, 1.0]; // run-to-run noise, in units of UNIT

type Settings = number[];
interface Landscape {
  /** effect[s][v]: the metric's change when setting s has value v (0 for the default). */
  effect: number[][];
  /** Pairs of (setting, value) whose joint effect is not the sum of their own. */
  pairs: { a: [number, number]; b: [number, number]; extra: number }[];
}

/** A target drawn at random: effects of several sizes, a few interacting pairs. */
function landscape(u: () => number, z: () => number): Landscape {
  const effect = Array.from({ length: SETTINGS }, () =>
    Array.from({ length: VALUES }, (_, v) => {
      if (v === 0) return 0;
      const r = u();
      if (r < 0.5) return UNIT * Math.abs(z()); // harm
      if (r < 0.85) return -UNIT * 0.5 * u(); // a small gain
      return -UNIT * (1.5 + 2.5 * u()); // a large gain
    }),
  );
  const pick = (): [number, number] => [Math.floor(u() * SETTINGS), 1 + Math.floor(u() * (VALUES - 1))];
  const pairs = Array.from({ length: 4 }, (_, i) => {
    const [a, b] = [pick(), pick()];
    const [ea, eb] = [effect[a[0]][a[1]], effect[b[0]][b[1]]];
    if (a[0] === b[0]) return { a, b, extra: 0 }; // one setting cannot have both values
    // Two gains that overlap count once (the smaller is taken back); a synergy helps only together.
    const extra = i % 2 ? -UNIT * (1 + u()) : ea < 0 && eb < 0 ? -Math.max(ea, eb) : 0;
    return { a, b, extra };
  });
  return { effect, pairs };
}

function truth(l: Landscape, s: Settings): number {
  let m = BASE;
  for (let i = 0; i < SETTINGS; i++) m += l.effect[i][s[i]];
  for (const p of l.pairs) if (s[p.a[0]] === p.a[1] && s[p.b[0]] === p.b[1]) m += p.extra;
  return m;
}

/** The best true metric of any settings (all 3^8 of them). */
function optimum(l: Landscape): number {
  let best = Infinity;
  for (let code = 0; code < VALUES ** SETTINGS; code++) {
    const s = Array.from({ length: SETTINGS }, (_, i) => Math.floor(code / VALUES ** i) % VALUES);
    best = Math.min(best, truth(l, s));
  }
  return best;
}

/** A random change of one setting, on top of `s`. */
function propose(s: Settings, u: () => number): Settings {
  const i = Math.floor(u() * SETTINGS);
  const next = [...s];
  next[i] = (s[i] + 1 + Math.floor(u() * (VALUES - 1))) % VALUES;
  return next;
}

interface Outcome {
  truth: number;
  reported: number;
  runs: number;
  experiments: number;
  keeps: number;
}

type System = 'autoresearch' | 'nightlab' | 'nightlab-confirm';
const RULES: Record<Exclude<System, 'autoresearch'>, Rule> = { nightlab: 'sequential', 'nightlab-confirm': 'confirm' };

async function campaign(system: System, l: Landscape, sigma: number, seed: number): Promise<Outcome> {
  const u = rng(seed);
  const z = gaussian(rng(seed + 7919));
  const run = (s: Settings) => truth(l, s) + sigma * z();
  let best: Settings = Array(SETTINGS).fill(0);
  if (system === 'autoresearch') {
    let figure = run(best);
    let keeps = 0;
    for (let e = 1; e < ARGS.runs; e++) {
      const c = propose(best, u);
      const x = run(c);
      if (x < figure) [best, figure, keeps] = [c, x, keeps + 1];
    }
    return { truth: truth(l, best), reported: figure, runs: ARGS.runs, experiments: ARGS.runs - 1, keeps };
  }
  const state = noiseState(
    '0',
    Array.from({ length: baselineRuns }, () => run(best)),
  );
  let runs = baselineRuns;
  let experiments = 0;
  let keeps = 0;
  let largestGain: number | null = null;
  while (runs < ARGS.runs) {
    const c = propose(best, u);
    experiments += 1;
    const old = mean(state.best.group);
    const draw = { candidate: () => run(c), best: () => run(best) };
    const { judgement, bestRuns } = await judge(RULES[system], state, policy, draw, { largestGain });
    runs += judgement.runs + bestRuns;
    if (judgement.kind !== 'keep') continue;
    // Adopted as the workflow's state does it: the new best's runs, the old best's into the pool.
    largestGain = Math.max(largestGain ?? 0, improvement(mean(judgement.group), old, 'lower'));
    adoptBest(state, {
      sha: String(experiments),
      experiment: experiments,
      group: judgement.group,
      nextRun: judgement.runs,
    });
    best = c;
    keeps += 1;
  }
  return { truth: truth(l, best), reported: mean(state.best.group), runs, experiments, keeps };
}

const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;

console.log(
  `# ${ARGS.campaigns} campaigns per noise level, ${ARGS.runs} GPU runs each; ${SETTINGS} settings x ${VALUES} values, effects ~${UNIT} (base ${BASE}); nightlab: falseKeep ${policy.falseKeep}, detect ${policy.detect}, confirmRuns ${policy.confirmRuns}, bestRuns ${policy.bestRuns}, baselineRuns ${baselineRuns}`,
);
for (const n of NOISE) {
  const sigma = n * UNIT;
  const lands = Array.from({ length: ARGS.campaigns }, (_, c) => {
    const seed = ARGS.seed * 1_000_003 + c;
    return landscape(rng(seed), gaussian(rng(seed + 1)));
  });
  const optima = lands.map(optimum);
  for (const system of ['autoresearch', 'nightlab', 'nightlab-confirm'] as const) {
    const out: Outcome[] = [];
    for (let c = 0; c < lands.length; c++) out.push(await campaign(system, lands[c], sigma, ARGS.seed * 7 + c));
    const avg = (f: (o: Outcome, i: number) => number) => out.reduce((a, o, i) => a + f(o, i), 0) / out.length;
    const share = avg((o, i) => (BASE - o.truth) / (BASE - optima[i]));
    figure(system, {
      noise: `${sigma.toFixed(3)}`,
      'true-best': avg((o) => o.truth).toFixed(4),
      'of-possible': `${(100 * share).toFixed(0)}%`,
      overclaim: signed(avg((o) => o.truth - o.reported)),
      '|error|': avg((o) => Math.abs(o.reported - o.truth)).toFixed(4),
      runs: avg((o) => o.runs).toFixed(0),
      experiments: avg((o) => o.experiments).toFixed(0),
      keeps: avg((o) => o.keeps).toFixed(1),
    });
  }
}
