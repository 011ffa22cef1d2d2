// bench/search: does a search with memory and moves of its own beat hill-climbing with no memory?
// A simulated target has 8 settings of 3 values each (the first, the default); its true metric
// (lower is better) is a sum of effects, in units of the run-to-run noise sigma:
//   - most values do harm (+|N(0, 1.5)|), many help a little, inside the noise (-U(0, 1)), a few a
//     lot (-2 to -4): what one-change-at-a-time hill-climbing finds;
//   - two pairs of values only help together: each alone -0.5 (inside the noise, so a careful judge
//     discards it, and it is left among the near misses), both -5 (combine finds them);
//   - one pair stops helping once the other lands: A alone -2, B alone -3, both -2 (A, kept first,
//     now costs 1 sigma: ablate finds it);
//   - once the single changes are used up, the campaign is on a plateau.
// A run's figure is the true metric plus Gaussian noise (sigma 0.004); the trainer is instant.
// Proposers (random, the `mutate` proposer's kind; scripted, repeating itself as LLMs do) and
// strategies (autoresearch's greedy rule; nightlab with no memory, with the archive, with the archive
// and the moves) are those of bench/climb.ts, each over the same targets and seeds, every
// experiment counted (budget in experiments).
// Per strategy, proposer and budget (50, 100, 300 experiments): the final best's true regret (its
// true metric minus the optimum, found by trying all 3^8 settings; mean and p90, in noise sigmas),
// GPU runs spent on duplicates (candidates whose settings were trained before, per campaign), runs
// per experiment (the baseline's and the best's re-runs included), and false keeps (keeps of a
// candidate not truly better than the best, or for an ablation truly worse, per such candidate).
//
// Last, per proposer, the ratio the search is judged by: nightlab+moves' mean regret over autoresearch's.
//
//   npm run bench:search [-- --campaigns 100 --seed 1 --seeds 1 --experiments 300]
// --seeds n: the targets of seeds seed..seed+n-1 together (n x campaigns); --experiments: the
// budgets up to this many only (100: a quicker run of the ratio); and the noise settings, as in
// bench:noise (--falseKeep, --detect, --confirmRuns, --bestRuns, --baselineRuns).
import { DEFAULT_SEARCH } from '../common/search';
import { additive, campaign, type Landscape, type Snapshot, type Strategy } from './climb';
import { benchSetup, gaussian, rng } from './sim';
import { figure } from './harness';

const {
  args: ARGS,
  policy,
  baselineRuns,
} = benchSetup({ campaigns: 100, seed: 1, seeds: 1, noise: 1, experiments: 300 });

const SETTINGS = 8;
const VALUES = 3;
const BASE = 1.0;
const SIGMA = 0.004; // run-to-run noise; effects are in its units
const HORIZONS = [50, 100, 300].filter((h) => h <= ARGS.experiments);
const JUDGED_AT = 100; // experiments: the budget the ratio is read at

/** A target drawn at random, with the structure above. */
function landscape(seed: number): Landscape {
  const u = rng(seed);
  const z = gaussian(rng(seed + 1));
  const effect = Array.from({ length: SETTINGS }, () =>
    Array.from({ length: VALUES }, (_, v) => {
      if (v === 0) return 0;
      const r = u();
      if (r < 0.45) return 1.5 * Math.abs(z()); // harm
      if (r < 0.85) return -u(); // a small gain, inside the noise
      return -(2 + 2 * u()); // a large gain
    }),
  );
  // Structure on distinct settings, drawn at random: two synergies and one overlap.
  const order = Array.from({ length: SETTINGS }, (_, i) => i).sort(() => u() - 0.5);
  const at = (i: number): [number, number] => [order[i], 1 + Math.floor(u() * (VALUES - 1))];
  const set = (p: [number, number], x: number) => (effect[p[0]][p[1]] = x);
  const pairs: Landscape['pairs'] = [];
  for (const i of [0, 2]) {
    const [a, b] = [at(i), at(i + 1)];
    [set(a, -0.5), set(b, -0.5)];
    pairs.push({ a, b, extra: -4 });
  }
  const [a, b] = [at(4), at(5)];
  [set(a, -2), set(b, -3)];
  pairs.push({ a, b, extra: 3 });
  return { effect, pairs };
}

const STRATEGIES: Strategy[] = ['autoresearch', 'nightlab', 'nightlab+archive', 'nightlab+moves'];
console.log(
  `# ${ARGS.campaigns * ARGS.seeds} targets (seed ${ARGS.seeds > 1 ? `${ARGS.seed}-${ARGS.seed + ARGS.seeds - 1}` : ARGS.seed}) x ${SETTINGS} settings of ${VALUES} values (2 synergies, 1 overlap), noise sigma ${SIGMA}; regret in noise sigmas; nightlab: falseKeep ${policy.falseKeep}, detect ${policy.detect}, confirmRuns ${policy.confirmRuns}, bestRuns ${policy.bestRuns}, baselineRuns ${baselineRuns}; search ${JSON.stringify(DEFAULT_SEARCH)}`,
);
const seeds = Array.from({ length: ARGS.seeds }, (_, i) => ARGS.seed + i);
// Target c of seed s, and its campaign's seed: the same for a seed whether it runs alone or with others.
const targets = seeds.flatMap((s) =>
  Array.from({ length: ARGS.campaigns }, (_, c) => ({
    target: additive(landscape(s * 1_000_003 + c), BASE, SIGMA),
    seed: s * 7 + c,
  })),
);
const results = new Map<string, (Snapshot & { regret: number })[][]>();
for (const kind of ['random', 'scripted'] as const)
  for (const strategy of STRATEGIES) {
    const all: (Snapshot & { regret: number })[][] = [];
    for (const { target, seed } of targets) {
      const snaps = await campaign({
        strategy,
        kind,
        target,
        noise: ARGS.noise * SIGMA,
        seed,
        policy,
        baselineRuns,
        experiments: HORIZONS,
      });
      all.push(snaps.map((s) => ({ ...s, regret: (s.truth - target.optimum) / SIGMA })));
    }
    results.set(`${kind}/${strategy}`, all);
  }
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(0.9 * xs.length) - 1];
const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const [h, horizon] of HORIZONS.entries())
  for (const kind of ['random', 'scripted'] as const) {
    for (const strategy of STRATEGIES) {
      const snaps = results.get(`${kind}/${strategy}`)!.map((s) => s[h]);
      const regrets = snaps.map((s) => s.regret);
      figure(strategy.padEnd(16), {
        proposer: kind.padEnd(8),
        experiments: String(horizon).padStart(3),
        regret: avg(regrets).toFixed(2).padStart(5),
        p90: p90(regrets).toFixed(2).padStart(5),
        'duplicate-runs': avg(snaps.map((s) => s.dupRuns))
          .toFixed(1)
          .padStart(5),
        'runs/experiment': avg(snaps.map((s) => s.runs / s.experiments)).toFixed(2),
        'false-keeps': `${((100 * avg(snaps.map((s) => s.falseKeeps))) / Math.max(1e-9, avg(snaps.map((s) => s.notBetter)))).toFixed(1)}%`,
      });
    }
  }
// The search's ratio: nightlab+moves' mean regret over autoresearch's, at the budget it is judged at.
const at = HORIZONS.indexOf(JUDGED_AT);
if (at >= 0)
  for (const kind of ['random', 'scripted'] as const) {
    const meanRegret = (strategy: Strategy) => avg(results.get(`${kind}/${strategy}`)!.map((s) => s[at].regret));
    figure('ratio'.padEnd(16), {
      proposer: kind.padEnd(8),
      experiments: String(JUDGED_AT).padStart(3),
      'nightlab+moves/autoresearch': (meanRegret('nightlab+moves') / meanRegret('autoresearch')).toFixed(3),
    });
  }
